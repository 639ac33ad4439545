"""The ``sparkrunner`` command line.

Exit codes: 0 success, 1 the job failed, 2 the job or the command line is invalid.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .errors import JobInvalid, SparkRunnerError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class UsageError(SparkRunnerError):
    """The command line asks for something impossible (exit code 2)."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except JobInvalid as exc:
        print(f"error: the job is invalid ({len(exc.errors)} problem{'s' * (len(exc.errors) > 1)}):",
              file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_INVALID
    except SparkRunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ModuleNotFoundError as exc:
        # Model code runs in spark-submit, never in this process: a missing module here is one
        # of sparkrunner's own dependencies, and the fix is to install it, not a traceback.
        package = missing_package(exc.name or "")
        print(f"error: the Python package {package!r} is not installed: pip install {package} "
              f"(or reinstall sparkrunner, which depends on it)", file=sys.stderr)
        return EXIT_INVALID


#: Packages whose import name is not the name to install.
_PACKAGE_OF_MODULE = {"yaml": "pyyaml"}


def missing_package(module: str) -> str:
    """The name to ``pip install`` for a missing module (``yaml.constructor`` → ``pyyaml``)."""
    top = module.partition(".")[0]
    return _PACKAGE_OF_MODULE.get(top, top)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparkrunner", description="Run ModelOp-style modelBatchJob documents on Apache Spark.")
    parser.add_argument("--version", action="version", version=f"sparkrunner {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $SPARKRUNNER_CONFIG, else conf/sparkrunner.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what sparkrunner does")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        return sub

    command("schema", cmd_schema, "print the JSON Schema of a modelBatchJob")
    sub = command("validate", cmd_validate, "check a job document without running it")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub = command("render", cmd_render, "lay out a job's working directory without running it")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--workdir", required=True, type=Path, help="directory to create (must not exist, or be empty)")
    sub = command("run", cmd_run, "run a job with spark-submit here, without a service")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--workdir", type=Path,
                     help="working directory to create (default: DATA_DIR/runs/<run id>)")
    sub.add_argument("--data-dir", type=Path, help="where runs are kept (configuration: data_dir)")
    sub.add_argument("--master", help="Spark master (configuration: spark.master; default local[*])")
    sub.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="end the run after this long (default: the job's timeoutSeconds)")
    sub.add_argument("-q", "--quiet", action="store_true", help="do not echo spark-submit's output")

    sub = command("serve", cmd_serve, "run the job service (REST) until interrupted")
    sub.add_argument("--host", help="address to bind (configuration: service.host; default 127.0.0.1)")
    sub.add_argument("--port", type=int, help="port (configuration: service.port; default 8765)")
    sub.add_argument("--data-dir", type=Path, help="job store and working directories (configuration: data_dir)")

    from . import cluster

    cluster.add_commands(commands)

    def client_command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = command(name, handler, help)
        sub.add_argument("--url", help="the service (default: $SPARKRUNNER_URL, else http://127.0.0.1:8765)")
        sub.add_argument("--token-file", type=Path,
                         help="file holding the API token (default: $SPARKRUNNER_TOKEN; never put "
                              "a token itself on a command line)")
        return sub

    sub = client_command("submit", cmd_submit, "submit a job to the service and print its id")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--wait", action="store_true",
                     help="follow the job's state and log; exit 0 if it completes, 1 otherwise")
    sub.add_argument("--idempotency-key", help="submitting again with this key returns the first job")
    sub = client_command("status", cmd_status, "show a job")
    sub.add_argument("id")
    sub = client_command("logs", cmd_logs, "print a job's driver log")
    sub.add_argument("id")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    sub = client_command("cancel", cmd_cancel, "cancel a job")
    sub.add_argument("id")
    sub = client_command("list", cmd_list, "list jobs, newest first")
    sub.add_argument("--status", action="append", help="only jobs in this state (repeatable)")
    sub.add_argument("--type", dest="job_type", help="only jobs of this jobType")
    sub.add_argument("--size", type=int, default=20, help="how many (default 20)")
    return parser


def load_job(path: str, settings):
    """The admitted job in the file at ``path`` (``-`` for standard input).

    Here the job runs as whoever runs the command, so local paths are not limited to the
    service's roots (:data:`Origin.LOCAL`).
    """
    from .admission import Origin, admit
    from .jobspec import parse_document

    return admit(parse_document(_read(path)), settings, Origin.LOCAL)


def _print_warnings(job) -> None:
    for warning in job.warnings:
        print(f"sparkrunner: warning: {warning}", file=sys.stderr)


def _settings(args):
    from . import config

    settings = config.load(args.config)
    changes = {}
    if getattr(args, "data_dir", None):
        changes["data_dir"] = args.data_dir.absolute()
    if getattr(args, "master", None):
        import dataclasses

        changes["spark"] = dataclasses.replace(settings.spark, master=args.master)
    return settings.with_overrides(**changes) if changes else settings


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def cmd_schema(args) -> int:
    from .jobspec import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


def cmd_validate(args) -> int:
    job = load_job(args.job, _settings(args))
    spec = job.spec
    _print_warnings(job)
    from .script import ScriptSpec

    if isinstance(spec, ScriptSpec):
        print(f"ok: {spec.job_type} job {spec.name!r} runs {spec.file}"
              + (f" with arguments {list(spec.args)}" if spec.args else ""))
        return EXIT_OK
    counts = f"{len(spec.inputs)} input(s), {len(spec.outputs)} output(s), {len(spec.attachments)} attachment(s)"
    init = f", init {spec.init_function}()" if spec.init_function else ""
    path = f", on each {spec.scoring.form} on the Python workers" if spec.scoring else ""
    print(f"ok: {spec.job_type} job {spec.name!r} calls {spec.role.value} function "
          f"{spec.function}(){init} in {spec.primary.filename}{path}; {counts}")
    return EXIT_OK


def cmd_render(args) -> int:
    from .command import build_argv, mask_argv, spark_submit_path
    from .workdir import render

    settings = _settings(args)
    job = load_job(args.job, settings)
    _print_warnings(job)
    argv = build_argv(settings, job, args.workdir.absolute(), spark_submit_path(settings))
    workdir = render(job.spec, args.workdir, new_run_id())
    print(f"working directory: {workdir}")
    print("command: " + " ".join(mask_argv(argv)))
    return EXIT_OK


def cmd_run(args) -> int:
    from .command import child_env, spark_submit_path
    from .hdfs import Hdfs, HdfsCheckFailed
    from .jobspec import LOG_FILENAME, RESULT_FILENAME
    from .launcher import SparkSubmit
    from .prepare import prepare

    settings = _settings(args)
    job = load_job(args.job, settings)
    spec = job.spec
    if args.quiet:
        _print_warnings(job)  # otherwise they are echoed with the log, whose first lines they are
    run_id = new_run_id()
    workdir = (args.workdir or settings.data_dir / "runs" / run_id).absolute()
    try:
        argv = prepare(settings, job, workdir, run_id, spark_submit_path(settings), Hdfs(settings.hdfs))
    except HdfsCheckFailed as exc:
        print("sparkrunner: ERROR: before spark-submit:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_FAILED
    env = child_env(settings)
    from .script import ScriptSpec

    kind = "script" if isinstance(spec, ScriptSpec) else spec.role.value
    print(f"sparkrunner: running {kind} job {spec.name!r} in {workdir}", file=sys.stderr)

    submit = SparkSubmit(argv, workdir, env, workdir / LOG_FILENAME)
    # Installed before the start: spark-submit has a session of its own, so Ctrl-C, a closed
    # terminal or a kill reach it only through us.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: submit.cancel()) for sig in stop_signals}
    try:
        submit.start()
        outcome = submit.wait(timeout=args.timeout or spec.timeout_seconds,
                              echo=None if args.quiet else _Echo(sys.stdout))
    finally:
        if submit.is_running():  # we are leaving abnormally: never leave spark-submit behind
            submit.cancel()
            submit.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    result = workdir / RESULT_FILENAME
    print(f"sparkrunner: {outcome.status.value}: {outcome.reason}", file=sys.stderr)
    print(f"sparkrunner: log {workdir / LOG_FILENAME}" +
          (f", result {result}" if result.exists() else ""), file=sys.stderr)
    return EXIT_OK if outcome.succeeded else EXIT_FAILED


class _Echo:
    """The terminal copy of the log; a closed pipe (`| head`) stops the copy, not the run."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
        except (BrokenPipeError, ValueError):
            self.stream = None

    def flush(self) -> None:
        if self.stream is not None:
            try:
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                self.stream = None


def cmd_serve(args) -> int:
    import dataclasses

    import uvicorn

    from .api import create_app
    from .service import JobService

    settings = _settings(args)
    service = dataclasses.replace(settings.service, **{k: v for k, v in
                                  (("host", args.host), ("port", args.port)) if v is not None})
    settings = settings.with_overrides(service=service)
    if not _is_loopback(service.host) and not service.tokens:
        # Anyone who can reach the port could run code as this user.
        raise UsageError(f"refusing to serve on {service.host!r} without authentication: configure "
                         "service.tokens, or bind to a loopback address (127.0.0.1, ::1, localhost)")
    print(f"sparkrunner: serving on http://{service.host}:{service.port} "
          f"(data in {settings.data_dir}, at most {service.max_concurrent_jobs} jobs at once)",
          file=sys.stderr, flush=True)
    # Made here, not in the server's startup: a data directory in use is a clear error (exit 2).
    app = create_app(settings, JobService(settings), manage=True)
    uvicorn.run(app, host=service.host, port=service.port,
                log_level="info" if args.verbose else "warning")
    return EXIT_OK


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _client(args):
    from .client import Client

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {str(args.token_file)!r}: {exc.strerror}") from exc
    return Client(args.url, token)


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def cmd_submit(args) -> int:
    from .client import ApiError
    from .jobspec import parse_document

    client = _client(args)
    try:
        job = client.submit(parse_document(_read(args.job)), idempotency_key=args.idempotency_key)
    except ApiError as exc:
        if exc.status == 422:
            raise JobInvalid([_field_error(e) for e in exc.errors]) from exc
        raise
    print(job["id"], flush=True)
    if not args.wait:
        return EXIT_OK
    job = client.wait(job["id"], on_line=print)
    print(f"sparkrunner: {job['jobStatus']}: {job['reason']}", file=sys.stderr)
    return EXIT_OK if job["jobStatus"] == "COMPLETE" else EXIT_FAILED


def _read(path: str) -> bytes:
    """The bytes of a job file, or of standard input for ``-``."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read job file {path!r}: {exc.strerror}") from exc


def _field_error(error: dict):
    from .errors import FieldError

    return FieldError(error.get("path", "$"), error.get("message", ""))


def cmd_status(args) -> int:
    _print_json(_client(args).get(args.id))
    return EXIT_OK


def cmd_logs(args) -> int:
    client = _client(args)
    if args.follow:
        job = client.wait(args.id, on_line=print)
        return EXIT_OK if job["jobStatus"] == "COMPLETE" else EXIT_FAILED
    start = 0
    while True:
        page = client.log(args.id, start=start, size=1000)
        for line in page["log"]:
            print(line)
        start = page["from"] + len(page["log"])
        if start >= page["total"]:
            return EXIT_OK


def cmd_cancel(args) -> int:
    job = _client(args).cancel(args.id)
    print(f"{job['id']}: {job['jobStatus']}" + (" (cancel requested)" if job["cancelRequested"] and
                                                 job["jobStatus"] in ("WAITING", "RUNNING") else ""))
    return EXIT_OK


def cmd_list(args) -> int:
    page = _client(args).list(status=args.status, job_type=args.job_type, size=args.size)
    print(f"{'ID':36}  {'STATUS':9}  {'TYPE':24}  {'CREATED':24}  NAME")
    for job in page["jobs"]:
        print(f"{job['id']:36}  {job['jobStatus']:9}  {job['jobType']:24}  {job['createdDate']:24}  {job['name']}")
    if page["total"] > len(page["jobs"]):
        print(f"({len(page['jobs'])} of {page['total']})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
