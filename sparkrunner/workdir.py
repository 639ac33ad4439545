"""Lays out a job's working directory: sources, metadata module, driver, FILE assets, job.json
(a script job's: its script, when local, the metadata module, the driver, job.json).

The names of the files sparkrunner keeps there (driver, log, result, exit status, …) are defined
here, once, with the rule every other file name must follow.

The directory is written under a temporary name beside its destination and renamed into place,
so a half-written working directory is never seen under the real name. Once the job runs it may
write there too: :func:`open_job_file` is how its files are read back.
"""

from __future__ import annotations

import errno
import json
import os
import pprint
import re
import shutil
import stat
import tempfile
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Mapping

from .errors import WorkdirError
from .policy import local_path

if TYPE_CHECKING:
    from .jobspec import JobSpec
    from .script import ScriptSpec

DIR_MODE = 0o700
FILE_MODE = 0o600

# The files sparkrunner itself writes into every working directory, named here once; an asset
# may not take these names.
DRIVER_FILENAME = "sparkrunner_driver.py"
METADATA_MODULE = "sparkrunner_job_metadata"
METADATA_FILENAME = METADATA_MODULE + ".py"
JOB_FILENAME = "job.json"
LOG_FILENAME = "driver.log"
RESULT_FILENAME = "result.json"
EXIT_FILENAME = "exit.json"
SUPERVISOR_FILENAME = "supervisor.json"  # the supervisor says who it is (inside/supervise.py)
SCORING_MODULE = "sparkrunner_scoring"
SCORING_FILENAME = SCORING_MODULE + ".py"
#: Shipped to a cluster's executors: their Python daemon, without the cluster's secret.
DAEMON_MODULE = "sparkrunner_daemon"
DAEMON_FILENAME = DAEMON_MODULE + ".py"
#: spark-submit's --properties-file: every Spark property of the run, secrets too (0600);
#: removed when the run ends.
PROPERTIES_FILENAME = "sparkrunner_spark.properties"
#: A sandboxed run's private /tmp, removed when the run ends.
SCRATCH_DIRNAME = "sparkrunner_tmp"
RESERVED_FILENAMES = frozenset(
    {DRIVER_FILENAME, METADATA_FILENAME, JOB_FILENAME, LOG_FILENAME, RESULT_FILENAME, EXIT_FILENAME,
     SCORING_FILENAME, SUPERVISOR_FILENAME, PROPERTIES_FILENAME, SCRATCH_DIRNAME, DAEMON_FILENAME}
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def filename_problem(name: str, reserved: frozenset[str] = RESERVED_FILENAMES) -> str | None:
    """Why ``name`` cannot be a file in a working directory, or None when it can.

    A name must be one plain path component: it may not climb out of the directory, even once
    URL-decoded, and may not take a name sparkrunner writes itself.
    """
    for candidate in {name, urllib.parse.unquote(name)}:
        if not candidate:
            return "is not a file name: it is empty"
        if "/" in candidate or "\\" in candidate:
            return "is not a plain file name: it may not contain '/' or '\\'"
        if _CONTROL.search(candidate):
            return "is not a plain file name: it may not contain NUL or control characters"
        if "," in candidate or "#" in candidate:
            # spark-submit's --files and --py-files split on ',' and read '#' as a rename.
            return "is not a plain file name: it may not contain ',' or '#'"
        if candidate in (".", ".."):
            return "is not a plain file name: '.' and '..' are refused"
    if len(name.encode("utf-8")) > 255:
        return "is too long for a file name (at most 255 bytes)"
    if name in reserved:
        return f"is reserved for sparkrunner's own files ({', '.join(sorted(reserved))})"
    return None


def driver_source() -> str:
    """The fixed driver script copied into every working directory."""
    return resources.files("sparkrunner.inside").joinpath("driver.py").read_text()


def daemon_source() -> str:
    """The executors' Python daemon without the cluster's secret (inside/daemon.py)."""
    return resources.files("sparkrunner.inside").joinpath("daemon.py").read_text()


def scoring_source() -> str:
    """The fixed module of the distributed scoring path, copied in when a job uses it."""
    return resources.files("sparkrunner.inside").joinpath("scoring.py").read_text()


def warm_session(spec: JobSpec, spark_conf: Mapping[str, str]) -> dict:
    """What the driver sets up in its Spark Connect session when the job runs warm, as plain
    lists and dicts: ``sql_conf``, the ``spark.sql.*`` properties of ``spark_conf`` (the admitted
    job's resolved settings, what a cold run gets), applied with ``spark.conf.set``;
    ``artifacts``, the files a cold run ships with ``--py-files`` (``kind`` "pyfile"), ``--files``
    and ``addFile`` ("file"), added as session artifacts so that the Python workers find them as
    a cold run's do; an MLflow model's directory ("directory", with the ``name`` the workers
    find it under) is zipped by the driver and added as an archive, which Spark unpacks, since
    artifacts are files; ``cold_only``, why the job cannot run warm at all (a model attachment
    that is not a local file: artifacts are uploaded from the client), one sentence each.

    A path is a working directory's file name, or a model attachment's local path as the job
    gave it. A cold run ignores all of it.
    """
    artifacts = [{"path": SCORING_FILENAME, "kind": "pyfile"}] if spec.scoring else []
    artifacts += [{"path": m.filename, "kind": "pyfile"} for m in spec.modules]
    artifacts += [{"path": f.filename, "kind": "file"} for f in spec.shipped_files]
    cold_only = []
    for url in spec.scoring.attachments if spec.scoring else ():
        path = local_path(url)
        if path is None:
            cold_only.append(f"the model attachment {url!r} is not a local file, and a warm run "
                             "ships only local files to the Python workers")
        elif spec.scoring.mlflow is not None and url == spec.scoring.mlflow.url:
            artifacts.append({"path": path, "kind": "directory", "name": spec.scoring.mlflow.dirname})
        else:
            artifacts.append({"path": path, "kind": "file"})
    sql_conf = {key: spark_conf[key] for key in sorted(spark_conf) if key.startswith("spark.sql.")}
    return {"sql_conf": sql_conf, "artifacts": artifacts, "cold_only": cold_only}


def metadata_source(spec: JobSpec, job_id: str, spark_conf: Mapping[str, str] | None = None) -> str:
    """The job metadata module: what the driver calls, and with what, as Python literals; and
    what it sets up first when it runs warm (:func:`warm_session`, from ``spark_conf``)."""
    inputs, outputs, attachments = spec.asset_lists()
    values = {
        "job_id": job_id,
        "job_type": spec.job_type,
        "primary_source": spec.primary.filename if spec.primary else None,
        "function_role": spec.role.value,
        "method_to_be_executed": spec.function,
        "init_function": spec.init_function,
        "job_input": inputs,
        "job_output": outputs,
        "job_model_assets_input": attachments,
        "scoring_plan": spec.scoring.as_metadata() if spec.scoring else None,
        "warm_session": warm_session(spec, spark_conf or {}),
    }
    lines = [f'"""Job metadata for job {job_id}, written by sparkrunner; read by the driver."""', ""]
    lines += [f"{name} = {pprint.pformat(value, width=100, sort_dicts=False)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def script_metadata_source(spec: ScriptSpec, job_id: str) -> str:
    """The job metadata module of a script job: which script the driver runs, with what argv."""
    values = {
        "job_id": job_id,
        "job_type": spec.job_type,
        "script": {"file": spec.file, "filename": spec.filename, "copied": spec.local_path is not None,
                   "args": list(spec.args)},
    }
    lines = [f'"""Job metadata for script job {job_id}, written by sparkrunner; read by the driver."""', ""]
    lines += [f"{name} = {pprint.pformat(value, width=100, sort_dicts=False)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def read_script(spec: ScriptSpec) -> bytes:
    """A local script's bytes, from the file admission resolved and checked, and no other: a
    link put in its place, or in place of a directory above it, since then is refused."""
    try:
        fd = os.open(spec.local_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise WorkdirError(f"cannot read the script {spec.file!r}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        if os.readlink(f"/proc/self/fd/{f.fileno()}") != spec.local_path:
            raise WorkdirError(f"the script {spec.file!r} is no longer {spec.local_path!r}, the file "
                               "that was admitted: a link replaced part of its path")
        return f.read()


def job_files(spec: JobSpec | ScriptSpec, job_id: str,
              spark_conf: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """{file name: bytes} of everything a job's working directory holds when it is laid out;
    ``spark_conf`` is the job's resolved Spark properties, for a warm run's session."""
    # Imported here: script.py takes the file-name rule from this module.
    from .script import ScriptSpec

    common = {DRIVER_FILENAME: driver_source().encode("utf-8"),
              JOB_FILENAME: json.dumps(dict(spec.document), indent=2).encode("utf-8")}
    if isinstance(spec, ScriptSpec):
        files = {METADATA_FILENAME: script_metadata_source(spec, job_id).encode("utf-8"), **common}
        if spec.local_path is not None:
            files[spec.filename] = read_script(spec)  # what ran stays with the job
        return files
    files = {METADATA_FILENAME: metadata_source(spec, job_id, spark_conf).encode("utf-8"), **common}
    if spec.primary is not None:  # an MLflow model has none
        files[spec.primary.filename] = spec.primary.text.encode("utf-8")
    if spec.scoring:
        files[SCORING_FILENAME] = scoring_source().encode("utf-8")
    files.update((m.filename, m.text.encode("utf-8")) for m in spec.modules)
    files.update((f.filename, f.data) for f in spec.files)
    return files


def render(spec: JobSpec | ScriptSpec, dest: Path, job_id: str,
           spark_conf: Mapping[str, str] | None = None) -> Path:
    """Lays out ``spec`` in ``dest`` (which must not exist, or be empty) and returns its path.

    ``spark_conf`` is the admitted job's resolved Spark properties (``AdmittedJob.settings.conf``):
    a warm run sets its SQL settings in its session.
    """
    dest = Path(dest).absolute()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise WorkdirError(f"working directory {str(dest)!r} already exists and is not empty")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        raise WorkdirError(f"cannot create working directory {str(dest)!r}: {exc.strerror}") from exc
    try:
        for name, data in job_files(spec, job_id, spark_conf).items():
            write_file(tmp, name, data)
        os.chmod(tmp, DIR_MODE)
        os.rename(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise WorkdirError(f"cannot lay out working directory {str(dest)!r}: {exc}") from exc
        raise
    return dest


def write_file(directory: Path, name: str, data: bytes) -> Path:
    """Writes ``data`` to ``directory/name``, refusing any name that would land elsewhere.

    Checked twice: the name itself, and the resolved path's parent against the resolved
    directory; the file is created exclusively and never through a symbolic link.
    """
    problem = filename_problem(name, reserved=frozenset())
    if problem:
        raise WorkdirError(f"{name!r} {problem}")
    root = Path(directory).resolve()
    path = root / name
    if path.resolve().parent != root:
        raise WorkdirError(f"{name!r} would be written outside {str(root)!r}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return path


def open_job_file(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a plain file: never through a symbolic link, never a
    FIFO or a device. For files a job may have written (its log, result, exit status), so that
    a job cannot make the service read another file for it. Raises OSError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a plain file", str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
