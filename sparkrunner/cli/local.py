"""Commands that need no service: ``schema``, ``validate``, ``render`` and ``run``.

``run`` launches the job the way the service does (:class:`sparkrunner.launcher.Launcher`), here,
as the user at the keyboard, echoing spark-submit's output.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from pathlib import Path

from .common import add_command, read_input, settings_from
from .progressbar import DriverProgress, ProgressView
from .exits import EXIT_FAILED, EXIT_OK


def add_commands(commands) -> None:
    add_command(commands, "schema", cmd_schema, "print the JSON Schema of a modelBatchJob")
    sub = add_command(commands, "validate", cmd_validate, "check a job document without running it")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub = add_command(commands, "render", cmd_render, "lay out a job's working directory without running it")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--workdir", required=True, type=Path, help="directory to create (must not exist, or be empty)")
    sub = add_command(commands, "run", cmd_run, "run a job with spark-submit here, without a service")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--workdir", type=Path,
                     help="working directory to create (default: DATA_DIR/runs/<run id>)")
    sub.add_argument("--data-dir", type=Path, help="where runs are kept (configuration: data_dir)")
    sub.add_argument("--master", help="Spark master (configuration: spark.master; default local[*])")
    sub.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="end the run after this long (default: the job's timeoutSeconds)")
    sub.add_argument("-q", "--quiet", action="store_true", help="do not echo spark-submit's output")
    sub.add_argument("--sandbox", action="store_true",
                     help="run it in the sandbox the service uses (bubblewrap): it sees only its "
                          "working directory, the local roots and the system (configuration: "
                          "sandbox: on)")
    sub.add_argument("--warm", action="store_true",
                     help="run it on a warm Spark Connect server this machine keeps between runs "
                          "(the first --warm run starts it; stop it with `sparkrunner stop-warm`); "
                          "a job that cannot run warm runs cold, and says why")
    add_command(commands, "stop-warm", cmd_stop_warm, "stop the warm Spark Connect server `run --warm` keeps")


#: Why ``run`` runs a job cold without ``--warm``.
COLD_WITHOUT_WARM = "sparkrunner run runs jobs cold unless --warm"


def load_job(path: str, settings, warm: bool = False):
    """The admitted job in the file at ``path`` (``-`` for standard input); ``warm``: it may run warm.

    Here the job runs as whoever runs the command, so local paths are not limited to the
    service's roots (:data:`Origin.LOCAL`).
    """
    from ..admission import Origin, admit
    from ..jobspec import parse_document

    return admit(parse_document(read_input(path)), settings, Origin.LOCAL,
                 warm_unavailable=None if warm else COLD_WITHOUT_WARM)


def _print_warnings(job) -> None:
    for warning in job.warnings:
        print(f"sparkrunner: warning: {warning}", file=sys.stderr)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def cmd_schema(args) -> int:
    from ..jobspec import schema

    print(json.dumps(schema(), indent=2))
    return EXIT_OK


def cmd_validate(args) -> int:
    job = load_job(args.job, settings_from(args), warm=True)
    spec = job.spec
    _print_warnings(job)
    from ..script import ScriptSpec

    if isinstance(spec, ScriptSpec):
        print(f"ok: {spec.job_type} job {spec.name!r} runs {spec.file}"
              + (f" with arguments {list(spec.args)}" if spec.args else ""))
        return EXIT_OK
    counts = f"{len(spec.inputs)} input(s), {len(spec.outputs)} output(s), {len(spec.attachments)} attachment(s)"
    init = f", init {spec.init_function}()" if spec.init_function else ""
    path = f", on each {spec.scoring.form} on the Python workers" if spec.scoring else ""
    if spec.scoring and spec.scoring.mlflow:
        path = ", with mlflow.pyfunc on each batch on the Python workers"
    where = spec.primary.filename if spec.primary else f"the MLflow model {spec.scoring.mlflow.url}"
    print(f"ok: {spec.job_type} job {spec.name!r} calls {spec.role.value} function "
          f"{spec.function}(){init} in {where}{path}; {counts}")
    execution = job.execution
    print(f"execution: {'warm where warm jobs run (the service, run --warm)' if execution.warm else 'cold'}"
          f": {execution.reason}")
    return EXIT_OK


def cmd_render(args) -> int:
    from ..command import build_argv, mask_argv, mask_properties, spark_properties, spark_submit_path
    from ..prepare import spark_defaults
    from ..workdir import render

    settings = settings_from(args)
    job = load_job(args.job, settings)
    _print_warnings(job)
    argv = build_argv(settings, job, args.workdir.absolute(), spark_submit_path(settings))
    properties = mask_properties(spark_properties(settings, job, spark_defaults(settings)))
    workdir = render(job.spec, args.workdir, new_run_id(), job.settings.conf)
    print(f"working directory: {workdir}")
    print("command: " + " ".join(mask_argv(argv)))
    # Only shown: `run` writes them to the properties file the command names (secrets and all).
    print("properties: " + " ".join(f"{key}={value}" for key, value in properties.items()))
    return EXIT_OK


def cmd_run(args) -> int:
    from ..command import child_env
    from ..errors import HdfsCheckFailed
    from ..workdir import LOG_FILENAME, RESULT_FILENAME
    from ..launcher import Launcher
    from ..sandbox import choose

    settings = settings_from(args)
    job = load_job(args.job, settings, warm=args.warm)
    # One user, their own files: no sandbox unless asked for (here, or by sandbox: on).
    sandbox = choose(settings, child_env(settings), service=False, asked=args.sandbox)
    spec = job.spec
    if args.quiet:
        _print_warnings(job)  # otherwise they are echoed with the log, whose first lines they are
    run_id = new_run_id()
    workdir = (args.workdir or settings.data_dir / "runs" / run_id).absolute()
    try:
        submit = Launcher(settings, sandbox).prepare(job, workdir, run_id)
    except HdfsCheckFailed as exc:
        print("sparkrunner: ERROR: before spark-submit:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return EXIT_FAILED
    from ..script import ScriptSpec

    kind = "script" if isinstance(spec, ScriptSpec) else spec.role.value
    how = ""
    if job.execution.warm:
        from ..warm.local import warm_run

        submit = warm_run(settings, submit)
        how = ", warm"
    elif args.warm:
        how = f", cold: {job.execution.reason}"
    print(f"sparkrunner: running {kind} job {spec.name!r} in {workdir}{how}", file=sys.stderr)

    # Installed before the start: spark-submit has a session of its own, so Ctrl-C, a closed
    # terminal or a kill reach it only through us.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, lambda *_: submit.cancel()) for sig in stop_signals}
    try:
        # The bar (on a terminal) is drawn on stderr; the echoed log goes to stdout, above it.
        with ProgressView() as view, DriverProgress(view) as progress:
            echo = None if args.quiet else _Echo(sys.stdout)  # stdout as the bar leaves it
            submit.start()
            outcome = submit.wait(timeout=args.timeout or spec.timeout_seconds, echo=echo,
                                  on_line=progress.on_line)
            view.update(outcome.status.value, None)
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


def cmd_stop_warm(args) -> int:
    from ..warm.local import stop

    stopped = stop()
    print({True: "sparkrunner: stopped the warm Spark Connect server",
           False: "sparkrunner: no warm Spark Connect server runs",
           None: "sparkrunner: could not tell whether the warm server runs; try again"}[stopped])
    return EXIT_OK if stopped is not None else EXIT_FAILED


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
