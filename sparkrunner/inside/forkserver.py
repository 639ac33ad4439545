"""The fork server of a warm Spark Connect server: one process per warm job, started in milliseconds.

``python -m sparkrunner.inside.forkserver`` imports Spark Connect's client, pandas, pyarrow and
sparkrunner's driver once, then reads requests, one JSON object per line, on its standard input
and answers each on its standard output:

- the first line is its configuration: ``{"read_only": [...], "read_write": [...],
  "sandbox": true}``, what every job may read and write (:mod:`sparkrunner.inside.landlock`);
- ``{"job": ID, "workdir": DIR, "log": FILE, "exit": FILE, "supervisor": FILE, "env": {...}}``
  starts a job: answered
  ``{"job": ID, "pid": PID}``, the pid of the job's supervisor, or ``{"job": ID, "error": ...}``;
- ``{"warmup": true, "env": {...}}`` runs a small query, so that the server's first job does not
  pay its JIT and Python workers: answered ``{"warmup": SECONDS}`` when it is done.
It ends when its standard input closes.

Each job is two processes forked from here, the same pair as a cold job's supervisor and
spark-submit (:mod:`sparkrunner.inside.supervise`):

- the *supervisor* leads a new session and process group (the service signals that group to
  cancel), writes its pid and start time to the ``supervisor`` file, waits for the job,
  interrupts the job's Connect session if the job did not end cleanly (a killed client would
  leave its query running on the server), and writes the job's exit status to the ``exit`` file;
- the *job* goes into the working directory, writes its output to the ``log``, takes the job's
  environment (``SPARK_REMOTE`` names the server and the session, and so the job's Spark session
  is a Connect one), drops its privileges and restricts itself with Landlock to its own
  directory, then runs sparkrunner's driver as a cold job's would run.

A forked job starts with none of another job's state: the fork server never runs a job's code
and never opens a connection (a gRPC channel must not cross a fork).
"""

import json
import os
import signal
import sys
import time
import traceback

from ..proc import start_time
from .supervise import record, write_json

#: How long the supervisor tries to interrupt the session of a job that died.
INTERRUPT_SECONDS = 10
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def preimport():
    """What every job needs and takes seconds to import: imported once, here."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyspark.sql.connect.session  # noqa: F401
    import pyspark.sql.connect.functions  # noqa: F401
    import pyspark.sql.functions  # noqa: F401
    import pyspark.cloudpickle  # noqa: F401
    from . import driver, landlock  # noqa: F401


def main():
    preimport()
    config = json.loads(sys.stdin.readline())
    signal.signal(signal.SIGCHLD, _reap)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("warmup"):
            reply({"warmup": warm_up(request["env"])})
            continue
        _ENDED.clear()  # supervisors' statuses: their exit.json says it
        try:
            reply({"job": request["job"], "pid": launch(request, config)})
        except Exception as exc:  # the server serves the next job whatever this one did
            reply({"job": request.get("job"), "error": "%s: %s" % (type(exc).__name__, exc)})
    return 0


#: Exit statuses of the children reaped, by pid (supervisors are never waited for).
_ENDED = {}


def _reap(*_):
    """Reaps every ended child (on SIGCHLD), so that none stays a zombie."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _ENDED[pid] = status


def reply(answer):
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def launch(request, config):
    """Forks the job's supervisor and returns its pid."""
    return fork(supervise, request, config)


def fork(function, *args):
    """Forks a child that runs ``function(*args)`` and exits with what it returns (70 when it
    raises, after the traceback); the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            code = function(*args)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def supervise(request, config):
    """The job's supervisor: runs the job in a child, records how it ended."""
    os.setsid()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)  # the job gets them; this one records what follows
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    write_json(request["supervisor"], {"pid": os.getpid(), "start": str(start_time(os.getpid()))})
    job = fork(run_job, request, config)
    while True:
        try:
            _, status = os.waitpid(job, 0)
            break
        except InterruptedError:
            continue
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        interrupt(request["env"])
    record(request["exit"], returncode)
    return 0


def run_job(request, config):
    """In the job's own process: its directory, output, environment and sandbox, then the driver."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    workdir = request["workdir"]
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    if config.get("sandbox"):
        from . import landlock

        landlock.drop_privileges()
        landlock.restrict(config["read_only"], [*config["read_write"], workdir])
    sys.argv = [os.path.join(workdir, "driver.py")]
    from . import driver

    try:
        return driver.main() or 0
    except SystemExit as exc:
        return driver.exit_status(exc.code)


def interrupt(env):
    """Interrupts whatever the job's session still runs on the server, and releases it."""
    os.environ.update(env)
    try:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.remote(env["SPARK_REMOTE"]).getOrCreate()
        spark.interruptAll()
        spark.stop()
    except BaseException as exc:  # the server may be gone: then so is the query
        lines = str(exc).strip().splitlines()
        sys.stderr.write("sparkrunner: the job's Spark session could not be interrupted: %s\n"
                         % (lines[0] if lines else type(exc).__name__))


def warm_up(env):
    """Runs a small query in a child (the fork server itself never connects); its seconds."""
    began = time.monotonic()
    pid = fork(_first_query, env)
    while pid not in _ENDED:
        time.sleep(0.01)
    del _ENDED[pid]
    return round(time.monotonic() - began, 3)


def _first_query(env):
    """A query that starts the server's Python workers too."""
    os.environ.update(env)
    import pandas as pd
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(env["SPARK_REMOTE"]).getOrCreate()

    def plus_one(batches):
        for batch in batches:
            yield pd.DataFrame({"id": batch["id"] + 1})

    spark.range(100).mapInPandas(plus_one, "id long").count()
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
