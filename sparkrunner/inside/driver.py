"""sparkrunner's driver: the fixed script spark-submit runs in every job's working directory.

It imports the job metadata module and the model's primary source, calls the init function with
no arguments, then the job's function with three lists of asset dicts (inputs, outputs, model
attachments), and saves a JSON-serializable return value to result.json. A job with a scoring
plan (a one-parameter score function) runs sparkrunner_scoring instead, which calls init and the
function on the Python workers; its counts of records are the result.

A script job (a Livy batch) runs the user's script instead, as ``python file args...`` would:
the driver reports the application when the script starts Spark, and the script's exit status is
the driver's.

A *warm* run (``SPARKRUNNER_WARM=1``) calls :func:`main` in a process forked by the service, with
the working directory as its cwd and ``SPARK_REMOTE`` naming a Spark Connect server: the session
is a Connect session (the model's own ``getOrCreate()`` gets it too). The driver first sets it up
as spark-submit would have set up a cold run (the metadata's ``warm_session``: the job's SQL
settings, its modules and files as session artifacts), and SIGTERM interrupts the session's
operations on the server before the process dies by it. What Spark Connect lacks (a
SparkContext, RDDs, broadcasts, accumulators) ends the job with an error that says to resubmit
it with ``"executionMode": "cold"``; nothing is retried.

It depends on nothing but the standard library and pyspark, because it runs wherever the Spark
driver runs. Lines it prints for sparkrunner start with "sparkrunner: ".
"""

import importlib.util
import json
import os
import re
import runpy
import signal
import sys
import threading
import traceback

RESULT_FILE = "result.json"
EXIT_MODEL_FAILED = 1
#: Set by the service in the environment of a warm run.
WARM_VARIABLE = "SPARKRUNNER_WARM"
#: Set for a warm run whose session the next job of the same model takes over (warm/run.py):
#: the session is left open at the end, its Python workers ready.
KEEP_SESSION_VARIABLE = "SPARKRUNNER_KEEP_SESSION"
#: pyspark's error conditions for what a Spark Connect client cannot do.
CONNECT_LACKS = frozenset({"JVM_ATTRIBUTE_NOT_SUPPORTED", "NOT_IMPLEMENTED",
                           "CONTEXT_UNAVAILABLE_FOR_REMOTE_CLIENT"})
RESUBMIT_COLD = 'resubmit the job with "executionMode": "cold"'
#: How long a SIGTERM waits for the server to interrupt the session's operations.
INTERRUPT_WAIT_SECONDS = 10


def say(kind, text, stream=None):
    stream = stream or sys.stdout
    stream.write("sparkrunner: %s: %s\n" % (kind, text))
    stream.flush()


def load_primary(path):
    """The model's primary source as a module, whatever its file name (titanic-spark.py too)."""
    # Prefixed, so that a model.py, code.py or test.py never replaces a module of that name.
    name = "sparkrunner_model_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    try:
        # Functions of a module loaded from a file are pickled by reference, and executors
        # cannot import it by that name: ship them by value instead.
        from pyspark import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except (ImportError, AttributeError, ValueError):
        pass
    return module


def report_application(sc):
    say("application", "%s is running; Spark UI %s" % (sc.applicationId, sc.uiWebUrl or "off"))


def start_spark():
    """Starts the Spark session the model will get from getOrCreate(), and reports the app."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    report_application(spark.sparkContext)
    return spark


def is_warm():
    return os.environ.get(WARM_VARIABLE) == "1"


def start_warm_spark(cancel):
    """The Spark Connect session SPARK_REMOTE names (the one the model's getOrCreate() gets),
    reported like a cold run's application."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    cancel.session = spark
    conf = spark.conf
    # A Connect client has no SparkContext: the server's own properties are read through the
    # session's conf. The UI's address is not among them unless it was configured.
    ui = "off"
    if conf.get("spark.ui.enabled", "true") == "true" and conf.get("spark.ui.port", None):
        ui = "http://%s:%s" % (conf.get("spark.driver.host", "localhost"), conf.get("spark.ui.port"))
    say("application", "%s is running; Spark UI %s" % (conf.get("spark.app.id", "unknown"), ui))
    return spark


def set_up_warm_session(spark, setup, workdir):
    """Gives the session what spark-submit gives a cold run: the job's SQL settings, and its
    modules and files as session artifacts, which the server's Python workers find in their
    working directory (SparkFiles' root), as a cold run's workers find --py-files and --files."""
    conf = spark.conf
    for key, value in setup["sql_conf"].items():
        try:
            conf.set(key, value)
        except Exception as exc:
            if _condition(exc) not in ("CANNOT_MODIFY_STATIC_CONFIG", "CANNOT_MODIFY_CONFIG"):
                raise
            current = _effective(conf, key)
            if current != value:
                raise WarmUnavailable("the Spark setting %s=%s is fixed when Spark starts, and the warm "
                                      "server has %r" % (key, value, current)) from exc
    for kind in ("pyfile", "file"):
        paths = [os.path.join(workdir, a["path"]) for a in setup["artifacts"] if a["kind"] == kind]
        if paths:
            spark.addArtifacts(*paths, pyfile=kind == "pyfile", file=kind == "file")
    for artifact in setup["artifacts"]:
        if artifact["kind"] == "directory":
            spark.addArtifacts(zipped(artifact, workdir), archive=True)


def zipped(artifact, workdir):
    """A directory artifact (an MLflow model) as ``archive.zip#name``: artifacts are files, and
    Spark unpacks an archive into a directory of that name beside the session's other files."""
    import shutil

    base = os.path.join(workdir, "sparkrunner_archive_" + re.sub(r"\W", "_", artifact["name"]))
    archive = shutil.make_archive(base, "zip", root_dir=os.path.join(workdir, artifact["path"]))
    return "%s#%s" % (archive, artifact["name"])


def _effective(conf, key):
    """The value ``key`` has in the session, its default included; None when it has none.
    (``conf.get(key, None)`` would give None for a default: only a set value is returned.)"""
    try:
        return conf.get(key)
    except Exception:
        return None


class WarmUnavailable(Exception):
    """The job needs what a warm (Spark Connect) run does not have; the message says what."""


def _condition(exc):
    get = getattr(exc, "getCondition", None)
    try:
        return get() if get else None
    except Exception:
        return None


def lacks_connect(exc):
    """Whether ``exc`` (or what it was raised from) says Spark Connect lacks an API."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WarmUnavailable) or _condition(exc) in CONNECT_LACKS:
            return True
        if type(exc).__name__ == "PySparkNotImplementedError":
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class CancelOnSigterm:
    """A warm run's SIGTERM (cancel, timeout): the session's operations on the Connect server
    are interrupted, then the process dies by SIGTERM.

    A Python signal handler runs on the main thread between bytecodes, and the main thread may
    be blocked in a gRPC call for as long as a query runs; so SIGTERM is blocked in every thread
    and a helper thread waits for it with sigwait.
    """

    def __init__(self):
        self.session = None
        self.terminating = threading.Event()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # threads started later inherit it
        threading.Thread(target=self._wait, name="sparkrunner-sigterm", daemon=True).start()

    def _wait(self):
        signal.sigwait({signal.SIGTERM})
        self.terminating.set()
        if self.session is not None:
            # In its own thread: a server that does not answer must not keep the process alive.
            interrupting = threading.Thread(target=self._interrupt, daemon=True)
            interrupting.start()
            interrupting.join(INTERRUPT_WAIT_SECONDS)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # the default action: the process ends

    def _interrupt(self):
        try:
            self.session.interruptAll()
        except Exception as exc:
            say("warning", "interrupting the session's operations failed: %s" % (exc,), sys.stderr)

    def hold_if_terminating(self):
        """Once SIGTERM has come, the process ends by it, not by returning an exit status."""
        if self.terminating.is_set():
            threading.Event().wait()


def report_when_spark_starts():
    """Reports the application as soon as the script starts Spark, however it does: with
    SparkSession.builder.getOrCreate(), SparkContext.getOrCreate() or SparkContext(...)."""
    from pyspark import SparkContext

    original = SparkContext.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        SparkContext.__init__ = original  # once: the first context is the application
        report_application(self)

    SparkContext.__init__ = __init__


def stop_spark():
    """Stops the Spark context a script left running (spark-submit would at exit)."""
    from pyspark import SparkContext

    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()


def find_shipped(filename):
    """Where spark-submit put a script it fetched with --py-files: in a directory on sys.path."""
    for entry in sys.path:
        candidate = os.path.join(entry or ".", filename)
        if entry and os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def exit_status(code):
    """The process exit status of ``sys.exit(code)``, as Python computes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write("%s\n" % (code,))  # sys.exit("message") prints it and exits 1
    return 1


def run_script(script, workdir):
    """Runs a script job's script as ``python file args...``, with the application reported
    when it starts Spark; returns the exit status."""
    label = "script %r" % script["filename"]
    path = os.path.join(workdir, script["filename"]) if script["copied"] else find_shipped(script["filename"])
    if path is None:
        say("error", "%s (%s) is not on the driver's Python path: spark-submit did not fetch it"
                     % (label, script["file"]), sys.stderr)
        return EXIT_MODEL_FAILED
    report_when_spark_starts()
    sys.argv = [path] + list(script["args"])
    sys.path.insert(0, os.path.dirname(path))  # as python puts a script's directory first
    try:
        try:
            runpy.run_path(path, run_name="__main__")
            status = 0
        except SystemExit as exc:
            status = exit_status(exc.code)
            if status != 0:
                say("error", "%s exited with status %s" % (label, status), sys.stderr)
        except BaseException as exc:
            status = fail(label, exc)
    finally:
        stop_spark()
    return status


def to_json(result):
    """The result as JSON text, or None when it cannot be serialized."""
    def plain(value):
        if hasattr(value, "tolist"):  # numpy arrays and scalars
            return value.tolist()
        if hasattr(value, "item"):
            return value.item()
        raise TypeError("%s is not JSON-serializable" % type(value).__name__)

    def finite(value):
        # NaN is not JSON: an AUC over one class is NaN, and it should not cost the whole result.
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    try:
        return json.dumps(finite(json.loads(json.dumps(result, default=plain))), allow_nan=False)
    except (TypeError, ValueError):
        return None


def save_result(text, directory):
    tmp = os.path.join(directory, RESULT_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, os.path.join(directory, RESULT_FILE))


def fail(what, exc):
    """Prints the traceback for the log, then one clear line saying what failed."""
    traceback.print_exc()
    # A Spark Connect error may carry the server's stack trace after its message, and a worker's
    # error its SQLSTATE on a line of its own.
    message = [line for line in str(exc).split("\n\nJVM stacktrace:")[0].strip().splitlines()
               if not re.match(r"\s*SQLSTATE: \w+$", line)]
    if type(exc).__name__ == "PythonException":
        message = message[-1:]  # the error raised on a Python worker, e.g. "ValueError: ..."
    lacking = is_warm() and lacks_connect(exc)
    if lacking and message:
        # pyspark goes on to advise a session without Spark Connect: the job document chooses that.
        message = [message[0].split(". ")[0].rstrip(".")]
    line = "%s raised %s%s" % (what, type(exc).__name__, ": " + message[0] if message else "")
    if lacking:
        line += "; this is not available on a warm (Spark Connect) run: " + RESUBMIT_COLD
    say("error", line, sys.stderr)
    return EXIT_MODEL_FAILED


def calls(job, model, spark):
    """(label, call) of what the job runs, in order."""
    label = "%s function %r" % (job.function_role, job.method_to_be_executed)
    plan = getattr(job, "scoring_plan", None)
    if plan:
        import sparkrunner_scoring

        source = None  # an MLflow model has no source: the plan names its directory
        if job.primary_source:
            with open(job.primary_source, encoding="utf-8") as f:
                source = f.read()
        # In a kept session the workers keep the model loaded for the next job of the same model
        # (the key says which model; it is the job's own otherwise, so each job inits its model).
        key = "kept-session" if is_warm() and os.environ.get(KEEP_SESSION_VARIABLE) == "1" else job.job_id
        described = {"source": source, "filename": job.primary_source, "key": key,
                     "function": job.method_to_be_executed, "init": job.init_function}
        return [(label, lambda: sparkrunner_scoring.run(spark, plan, described))]
    found = []
    if job.init_function:
        found.append(("init function %r" % job.init_function,
                      lambda: getattr(model, job.init_function)()))
    found.append((label, lambda: getattr(model, job.method_to_be_executed)(
        job.job_input, job.job_output, job.job_model_assets_input)))
    return found


def whole_lines_on_stdout():
    """Each printed line reaches the log in one write, still at once.

    spark-submit runs a Python driver with PYTHONUNBUFFERED, and copies its output into the log
    from a thread of its own, beside the JVM's own log lines: unbuffered, print() writes each of
    its pieces apart, and a JVM line could land inside a printed line ("words: 6" + a Spark line
    + " argv: ..."). Livy's users never see that (Livy reads stdout and stderr apart).
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(line_buffering=True, write_through=False)
        except (ValueError, OSError):  # a stream that cannot: left as it is
            pass


def main():
    workdir = os.getcwd()  # kept: a model may chdir, the result still belongs here
    whole_lines_on_stdout()
    sys.path.insert(0, workdir)  # secondary sources and FILE assets sit beside the driver
    import sparkrunner_job_metadata as job

    if getattr(job, "script", None):
        return run_script(job.script, workdir)
    if not is_warm():
        return run_job(job, start_spark(), workdir)
    cancel = CancelOnSigterm()
    try:
        return run_warm(job, cancel, workdir)
    finally:
        cancel.hold_if_terminating()


def run_warm(job, cancel, workdir):
    """Runs the job in the Spark Connect session SPARK_REMOTE names, set up as a cold run's."""
    setup = job.warm_session
    if setup["cold_only"]:
        say("error", "this job cannot run warm (Spark Connect): %s; %s"
                     % ("; ".join(setup["cold_only"]), RESUBMIT_COLD), sys.stderr)
        return EXIT_MODEL_FAILED
    try:
        spark = start_warm_spark(cancel)
    except BaseException as exc:
        return fail("starting the Spark Connect session", exc)
    try:
        set_up_warm_session(spark, setup, workdir)
    except BaseException as exc:
        end_spark(spark)
        return fail("setting up the Spark Connect session", exc)
    return run_job(job, spark, workdir)


def run_job(job, spark, workdir):
    """Calls the job's functions in ``spark``'s application and saves the result; stops Spark."""
    try:
        try:
            # The scoring path loads the model on the Python workers only.
            model = None if getattr(job, "scoring_plan", None) else load_primary(job.primary_source)
        except BaseException as exc:
            return fail("loading %s" % job.primary_source, exc)
        for label, call in calls(job, model, spark):
            try:
                result = call()
                if hasattr(result, "__next__"):  # a generator: run it to the end
                    result = list(result)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    return fail(label, exc)
                result = None
            except BaseException as exc:
                return fail(label, exc)
        if result is not None:
            text = to_json(result)
            if text is None:
                say("warning", "the function returned a %s, which is not JSON-serializable; "
                               "no result saved" % type(result).__name__)
            else:
                save_result(text, workdir)
                say("result", text)
        return 0
    finally:
        end_spark(spark)


def end_spark(spark):
    """Stops Spark: a cold run's application, or releases a warm run's session, unless the
    service keeps that session for the next job (the process's exit closes the connection)."""
    if is_warm() and os.environ.get(KEEP_SESSION_VARIABLE) == "1":
        return
    spark.stop()


if __name__ == "__main__":
    sys.exit(main())
