"""Registered models from the command line, as ModelOp's ``moc`` works with them:
``model register|list|show|delete`` and ``job create batchjob|testjob|trainingjob MODEL INPUT OUTPUT``."""

from __future__ import annotations

import argparse
import sys
from pathlib import PurePosixPath

from ..errors import UsageError
from .common import read_input
from .exits import EPILOG, EXIT_OK
from .remote import client_command, client_of, ended, follow, print_json, refusals_listed

#: ``job create``'s kinds, as ModelOp's ``moc job create`` names them, and their jobTypes.
JOB_KINDS = {"batchjob": "MODEL_BATCH_JOB", "testjob": "MODEL_BATCH_TEST_JOB",
             "trainingjob": "MODEL_BATCH_TRAINING_JOB"}
#: A data file's fileFormat, told by its name's suffix (``--input-format`` and ``--output-format`` say otherwise).
FORMAT_OF_SUFFIX = {".csv": "CSV", ".json": "JSON", ".jsonl": "JSON", ".parquet": "PARQUET"}


def add_commands(commands) -> None:
    group = commands.add_parser("model", help="register, list, show and delete models (on the service)",
                                description="Registered models on the service.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    models = group.add_subparsers(dest="model_command", required=True, metavar="COMMAND")
    sub = client_command(models, "register", cmd_register, "register a model (a new version of its name)")
    sub.add_argument("file", help="a modelBatchJob (its model and job defaults are taken) or just its "
                                  "model part, as JSON; - for standard input")
    sub.add_argument("--name", help="the model's name (default: the model's modelMetaData.name)")
    client_command(models, "list", cmd_list, "list your models at their latest versions")
    sub = client_command(models, "show", cmd_show, "show a model's versions")
    sub.add_argument("name")
    sub = client_command(models, "delete", cmd_delete, "delete a model (or one version)")
    sub.add_argument("name")
    sub.add_argument("--version", type=int, help="only this version")

    group = commands.add_parser("job", help="create a job of a registered model (on the service)",
                                description="Jobs of registered models.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    jobs = group.add_subparsers(dest="job_command", required=True, metavar="COMMAND")
    sub = client_command(jobs, "create", cmd_create,
                         "create a job of a registered model with new data and print its id")
    sub.add_argument("kind", choices=list(JOB_KINDS), help=", ".join(f"{k}: {v}" for k, v in JOB_KINDS.items()))
    sub.add_argument("model", help="the model: NAME (its latest version) or NAME:VERSION")
    sub.add_argument("input", help="the input's fileUrl (a path, file:, hdfs:, s3a:, …)")
    sub.add_argument("output", help="the output's fileUrl")
    sub.add_argument("--input-format", help="the input's fileFormat (default: by its suffix)")
    sub.add_argument("--output-format", help="the output's fileFormat (default: by its suffix)")
    sub.add_argument("--wait", action="store_true",
                     help="follow the job's state and log; exit 0 if it completes, 1 otherwise")
    sub.add_argument("--register", metavar="NAME",
                     help="trainingjob: once it completes, register what it wrote (its output) as the "
                          "next version of NAME, the trained model's attachment (implies --wait)")


def cmd_register(args) -> int:
    from ..jobspec import parse_document
    from ..models import DEFAULT_FIELDS

    document = parse_document(read_input(args.file))
    if "storedModel" in document:  # just the model part
        body = {"model": document}
    else:  # a modelBatchJob: its model, and its job fields a model keeps as defaults
        body = {"model": document.get("model"), "defaults": {k: document[k] for k in DEFAULT_FIELDS if k in document}}
    if args.name:
        body["name"] = args.name
    with refusals_listed():
        model = client_of(args).register_model(body)
    print(model["ref"])
    return EXIT_OK


def cmd_list(args) -> int:
    models = client_of(args).models()
    print(f"{'NAME':30}  {'VERSION':>7}  {'CREATED':24}  JOB TYPES")
    for model in models:
        print(f"{model['name']:30}  {model['version']:>7}  {model['createdDate']:24}  {', '.join(model['jobTypes'])}")
    return EXIT_OK


def cmd_show(args) -> int:
    print_json(client_of(args).model(args.name))
    return EXIT_OK


def cmd_delete(args) -> int:
    answer = client_of(args).delete_model(args.name, args.version)
    print(f"{args.name}: {answer['deleted']} version(s) deleted")
    return EXIT_OK


def cmd_create(args) -> int:
    if args.register and args.kind != "trainingjob":
        raise UsageError(f"--register registers what a training job wrote; {args.kind} trains nothing")
    name, _, version = args.model.partition(":")
    if version and not version.isdigit():
        raise UsageError(f"MODEL {args.model!r} must be NAME or NAME:VERSION (a number)")
    body = {"jobType": JOB_KINDS[args.kind],
            "inputData": [data_asset(args.input, args.input_format)],
            "outputData": [data_asset(args.output, args.output_format)]}
    client = client_of(args)
    with refusals_listed():
        job = client.create_job(name, body, int(version) if version else None)
    print(job["id"], flush=True)
    if not (args.wait or args.register):
        return EXIT_OK
    job = follow(client, job["id"])
    if job["jobStatus"] != "COMPLETE" or not args.register:
        return ended(job)
    with refusals_listed():
        model = client.register_model({"name": args.register, "fromJob": job["id"]})
    print(f"sparkrunner: registered {model['ref']}", file=sys.stderr)
    print(model["ref"])
    return EXIT_OK


def data_asset(url: str, file_format: str | None) -> dict:
    """An EXTERNAL_FILE asset for ``url``, its fileFormat ``file_format`` or told by its suffix."""
    path = PurePosixPath(url.rstrip("/"))
    return {"assetType": "EXTERNAL_FILE", "name": path.name, "fileUrl": url,
            "fileFormat": (file_format or FORMAT_OF_SUFFIX.get(path.suffix.lower(), "UNKNOWN")).upper()}

