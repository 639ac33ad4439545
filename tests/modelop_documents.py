"""Job documents shaped like the ones ModelOp Center really produces, field by field.

Built from what documents exported from ModelOp Center hold (see the real-documents issue): the
engine record, the model's catalogue fields, schemas as arrays, FILE assets with ``fileContent``
(base64) and ``fileContentString`` and a ``localFile`` path on ModelOp's server, MinIO
attachments whose ``name`` is a path, HDFS data assets with junk ``repositoryInfo``. Only the data
locations differ from a real document: they are local paths in the test's directory.

Every builder returns a fresh document; ``submit_like_modelop`` fills in the primary source the
way ModelOp's own ``submit.py`` does (``name`` set to the model's file name, ``sourceCode`` to
its text).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

MODEL_ID = "7ff1fa87-2bd9-4c1f-9c4a-3cb1b2f8fa9f"
ENGINE = {
    "engineType": "SPARK_RUNTIME",
    "name": "spark-runtime-1",
    "executorMemory": "512MB",
    "sparkConf": {"--master": "yarn"},
    "inputEndpoints": [],
    "outputEndpoints": [],
    "state": "INIT",
    "tags": ["spark", "hadoop"],
    "id": "c5d3c5a8-6e0a-4a5b-9a6a-2f3c0e1d9b11",
    "group": "modelop",
    "version": 7,
    "createdDate": "2021-03-26T14:10:02.117Z",
    "lastModifiedDate": "2021-03-26T14:12:20.345Z",
    "_links": {"self": {"href": "http://localhost:8090/model-manage/api/engines/c5d3c5a8"}},
}
GIT_REPO = {"repositoryType": "GIT_REPO", "repositoryRemote": "https://github.com/modelop/titanic.git",
            "repositoryBranch": "master", "secure": True}
MINIO = {"repositoryType": "S3_REPOSITORY", "secure": False, "host": "minio", "port": 9000,
         "region": "default-region"}
HDFS_JUNK = {"repositoryType": "HDFS_REPOSITORY", "host": "myoutputfile", "port": 0}

#: The Avro schema a FILE asset carries, as ModelOp stores it: bytes in fileContent, the parsed
#: value in fileContentString.
INPUT_AVRO = {
    "type": "record", "name": "titanic_input", "namespace": "com.modelop",
    "fields": [{"name": "PassengerId", "type": "int"}, {"name": "Pclass", "type": "int"},
               {"name": "Sex", "type": "string"}, {"name": "Age", "type": ["null", "double"]},
               {"name": "Fare", "type": "double"}],
}
#: ModelOp's extended schema: a list of field objects.
EXTENDED_INPUT = [
    {"name": "PassengerId", "type": "int", "dataClass": "numerical", "role": "non-predictor",
     "protectedClass": False, "driftCandidate": False, "specialValues": [], "scoringOptional": False},
    {"name": "Pclass", "type": "int", "dataClass": "categorical", "role": "predictor",
     "protectedClass": False, "driftCandidate": True, "specialValues": [], "scoringOptional": False},
    {"name": "Sex", "type": "string", "dataClass": "categorical", "role": "predictor",
     "protectedClass": True, "driftCandidate": True, "specialValues": [], "scoringOptional": False},
    {"name": "Fare", "type": "double", "dataClass": "numerical", "role": "predictor",
     "protectedClass": False, "driftCandidate": True, "specialValues": [], "scoringOptional": False},
    {"name": "Survived", "type": "int", "dataClass": "categorical", "role": "label",
     "protectedClass": False, "driftCandidate": False, "specialValues": [], "scoringOptional": True},
]
EXTENDED_OUTPUT = [
    {"name": "PassengerId", "type": "int", "dataClass": "numerical", "role": "non-predictor",
     "protectedClass": False, "driftCandidate": False, "specialValues": [], "scoringOptional": False},
    {"name": "score", "type": "double", "dataClass": "numerical", "role": "score",
     "protectedClass": False, "driftCandidate": False, "specialValues": [], "scoringOptional": True},
]

PASSENGERS = """PassengerId,Pclass,Sex,Age,Fare
1,3,male,22,7.25
2,1,female,38,71.2833
3,3,female,26,7.925
4,1,female,35,53.1
5,3,male,,8.05
"""

#: A Spark model of the three-list kind. It reads the schema FILE asset by relative path in
#: init (the driver's working directory), a FILE asset that came in inputData, and reports what
#: it was handed: the MinIO attachments go by unopened.
SPARK_SOURCE = '''\
import json
from pyspark.sql import SparkSession

SCHEMA = None

# modelop.init
def begin():
    global SCHEMA
    SCHEMA = json.load(open("df_sample_scored_input_schema.avsc"))

# modelop.score
def action(external_inputs, external_outputs, external_model_assets):
    spark = SparkSession.builder.getOrCreate()
    fares = json.load(open("fare_bands.json"))
    columns = [field["name"] for field in SCHEMA["fields"]]
    df = spark.read.option("header", True).option("inferSchema", True).csv(external_inputs[0]["fileUrl"])
    df = df.select(*columns)
    df = df.withColumn("band", (df.Fare >= fares["high"]).cast("string"))
    df.coalesce(1).write.mode("overwrite").json(external_outputs[0]["fileUrl"])
    return {"rows": df.count(), "columns": columns, "high": fares["high"],
            "attachments": [a["fileUrl"] for a in external_model_assets],
            "executor_memory": spark.conf.get("spark.executor.memory"),
            "master": spark.sparkContext.master}
'''

#: A plain Python record model (modelMetaData.type PYTHON) scored on the workers.
PYTHON_SOURCE = '''\
# modelop.init
def begin():
    global RATE
    RATE = 0.5

# modelop.score
def action(passenger):
    yield {"PassengerId": passenger["PassengerId"], "score": RATE * passenger["Fare"] / (passenger["Pclass"] or 1)}
'''


def file_asset(filename: str, content: bytes | str, *, role: str = "MODEL_SCHEMA", parsed=None,
               name: str | None = None) -> dict:
    """A FILE asset as ModelOp sends it: no ``content``, the bytes in ``fileContent``."""
    data = content.encode() if isinstance(content, str) else content
    asset = {
        "assetId": f"asset-{filename}",
        "assetType": "FILE",
        "assetRole": role,
        "filename": filename,
        "fileFormat": "UNKNOWN",
        "fileSize": len(data),
        "fileContent": base64.b64encode(data).decode(),
        "fileContentString": parsed if parsed is not None else data.decode(),
        "localFile": f"/tmp/model-manage-repos/{MODEL_ID}/{filename}",
        "repositoryInfo": GIT_REPO,
        "importedRepository": {"repositoryType": "GIT_REPO", "repositoryRemote": GIT_REPO["repositoryRemote"]},
    }
    if name is not None:
        asset["name"] = name
    return asset


def minio_attachment(stem: str, extension: str, role: str) -> dict:
    bucket_key = f"6d1c0e2a-8a4f-4a7e-a3c1-{stem}/9f2b7c1d-{stem}.{extension}"
    return {"assetType": "EXTERNAL_FILE", "assetRole": role, "name": bucket_key,
            "filename": f"{stem}.{extension}", "fileFormat": "UNKNOWN", "fileSize": 1024,
            "fileUrl": f"http://minio:9000/modelop/{bucket_key}", "repositoryInfo": MINIO}


def data_asset(url: str, fmt: str = "CSV", role: str | None = None) -> dict:
    asset = {"assetType": "EXTERNAL_FILE", "name": "", "filename": Path(url).name, "fileUrl": url,
             "fileFormat": fmt, "fileSize": 0, "repositoryInfo": HDFS_JUNK}
    if role:
        asset["assetRole"] = role
    return asset


def schema_entry(name: str, definition) -> dict:
    return {"schemaId": f"schema-{name}", "name": name, "schemaDefinition": definition}


def model(source_name: str, assets: list[dict], meta: dict) -> dict:
    primary = {"assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE", "primaryModelSource": True,
               "sourceCodeType": "MODEL", "sourceCodeFilePath": source_name, "name": source_name,
               "sourceCode": "", "repositoryInfo": GIT_REPO, "scoreFunction": "action",
               "initFunction": "begin"}
    return {
        "id": "0c1d2e3f-model-snapshot",
        "version": 3,
        "metaData": {"name": meta["name"], "description": "", "tags": ["titanic"]},
        "targetRuntimes": [],
        "associatedModels": [],
        "modelDocuments": [],
        "gitDifferences": [],
        "storedModel": {
            "id": MODEL_ID,
            "modelAssets": [primary, *assets],
            "modelMetaData": {"custom": {}, "tags": ["demo"], "description": "Titanic survival",
                              "classicModel": False, "attachments": [],
                              "repositoryInfo": GIT_REPO, **meta},
        },
    }


def job(model_part: dict, inputs: list[dict], outputs: list[dict], job_type: str = "MODEL_BATCH_JOB") -> dict:
    return {
        "jobType": job_type,
        "jobStatus": "CREATED",
        "jobResult": None,
        "group": "modelop",
        "lastModifiedBy": "john",
        "createdDate": "2021-03-26T14:12:20.345Z",
        "lastModifiedDate": "2021-03-26T14:12:20.345Z",
        "modelWritesOutput": True,
        "jobParameters": {},
        "targetEngine": copy.deepcopy(ENGINE),
        "model": model_part,
        "inputData": inputs,
        "outputData": outputs,
        "_links": {"self": {"href": "http://localhost:8090/model-manage/api/jobs/{id}"}},
    }


def spark_job(tmp_path: Path) -> dict:
    """A PYSPARK three-list score job: list schemas, a FILE schema asset read on the driver, a
    FILE asset in inputData, MinIO attachments, ``--master: yarn`` and ``executorMemory``."""
    data = tmp_path / "passengers.csv"
    data.write_text(PASSENGERS)
    schema_bytes = json.dumps(INPUT_AVRO, indent=2).encode()
    assets = [file_asset("df_sample_scored_input_schema.avsc", schema_bytes, parsed=INPUT_AVRO),
              minio_attachment("readme", "md", "README_FILE"),
              minio_attachment("comparator", "json", "TEST_RESULT_COMPARATOR")]
    meta = {"name": "titanic-spark", "type": "PYSPARK",
            "inputSchema": [schema_entry("df_sample_scored_input_schema.avsc", INPUT_AVRO)],
            "outputSchema": []}
    bands = {"high": 50.0}
    inputs = [data_asset(str(data)),
              file_asset("fare_bands.json", json.dumps(bands), role="INPUT_DATA", parsed=bands)]
    outputs = [data_asset(str(tmp_path / "scored"), fmt="JSON")]
    return submit_like_modelop(job(model("titanic_spark.py", assets, meta), inputs, outputs), SPARK_SOURCE)


def python_job(tmp_path: Path) -> dict:
    """A PYTHON record model with ModelOp's extended schemas and input checking on."""
    data = tmp_path / "passengers.csv"
    data.write_text(PASSENGERS.replace("5,3,male,,8.05", "5,3,male,,cheap"))  # one bad Fare
    meta = {"name": "titanic-python", "type": "PYTHON",
            "inputSchema": [schema_entry("df_sample_scored_input_schema.avsc", EXTENDED_INPUT)],
            "outputSchema": [schema_entry("df_sample_scored_output_schema.avsc", EXTENDED_OUTPUT)],
            "enableInputSchemaChecking": True, "enableOutputSchemaChecking": False}
    inputs = [data_asset(str(data))]
    outputs = [data_asset(str(tmp_path / "scores"), fmt="JSON"),
               data_asset(str(tmp_path / "rejected"), fmt="JSON", role="REJECTED_RECORDS")]
    return submit_like_modelop(job(model("titanic_python.py", [], meta), inputs, outputs), PYTHON_SOURCE)


def submit_like_modelop(payload: dict, source: str) -> dict:
    """What ModelOp's submit.py does to an exported job: the primary asset's name and source."""
    for asset in payload["model"]["storedModel"]["modelAssets"]:
        if asset.get("primaryModelSource"):
            asset["sourceCode"] = source
            asset["name"] = asset["sourceCodeFilePath"]
            return payload
    raise ValueError("No primary model source found in job object")
