"""A stand-in for Spark's ``bin/spark-submit``: what sparkrunner reads from a run, without a JVM.

sparkrunner starts ``<spark.home>/bin/spark-submit`` under its supervisor in the job's working
directory, with the output going to ``driver.log``, and reads back only this: the lines the
driver prints (``sparkrunner: application: …``, ``sparkrunner: result: …``, ``sparkrunner: error:
…``), ``result.json``, and the exit status. This script prints and writes the same things, and
does what the job's instructions say, so the service's scheduling, queueing, cancel, timeout and
restart can be tested in a second instead of a JVM's ten.

Instructions come with the job, as a FILE asset named :data:`INSTRUCTIONS` (JSON, every key
optional; see :func:`standin_job`):

``start_seconds``  seconds before the application line (a JVM starting up; 0)
``seconds``        seconds the "application" then runs (0)
``exit``           the exit code (0); a non-zero code prints no result
``error``          the driver's one-line report of a failure in model code (printed to stderr)
``result``         a JSON value saved to result.json and reported, as the driver does (on exit 0)
``lines``          how many Spark-like INFO lines to print before ending (3)
``on_term``        on SIGTERM: ``"exit"`` runs "shutdown hooks" and exits 143 like the JVM (the
                   default), ``"die"`` takes the signal's default action, ``"ignore"`` ignores it
``child``          true: leave a process in the group, as the Python driver and workers are
                   (its pid in ``standin-child.pid``); it reacts to SIGTERM as ``on_term`` says
``ui_jobs``        serve a Spark UI's REST API (``/api/v1/applications[/{id}/jobs|/stages]``) on a
                   free port, reported in the application line, with this many Spark jobs of 10
                   tasks each, done one after another over ``seconds`` (0: no UI)

Every call is recorded, one JSON line per call, in ``standin-calls.jsonl`` in the working
directory: argv, pid, process group and the environment variables sparkrunner sets. Standard
library only; it runs under the interpreter that made it (see :func:`make_spark_home`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

INSTRUCTIONS = "spark-submit-standin.json"
CALLS = "standin-calls.jsonl"
CHILD_PID = "standin-child.pid"
#: What the JVM's exit code is after SIGTERM: 128 + 15, once its shutdown hooks have run.
JVM_TERM_EXIT = 143
ENV_KEYS = ("SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_CONF_DIR", "SPARK_LOCAL_IP",
            "HADOOP_CONF_DIR")


def make_spark_home(directory: Path) -> Path:
    """A Spark home whose ``bin/spark-submit`` is this stand-in; returns the home."""
    home = Path(directory)
    (home / "bin").mkdir(parents=True, exist_ok=True)
    script = home / "bin" / "spark-submit"
    script.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text())
    script.chmod(0o755)
    return home


def instructions(*, seconds: float = 0, start_seconds: float = 0, exit: int = 0, error: str | None = None,
                 result=None, lines: int = 3, on_term: str = "exit", child: bool = False,
                 ui_jobs: int = 0) -> dict:
    """The FILE asset that tells the stand-in what to do (see the module's docstring)."""
    told = {"seconds": seconds, "start_seconds": start_seconds, "exit": exit, "error": error,
            "result": result, "lines": lines, "on_term": on_term, "child": child, "ui_jobs": ui_jobs}
    return {"assetType": "FILE", "filename": INSTRUCTIONS, "content": json.dumps(told)}


def standin_job(*, seconds: float = 0, start_seconds: float = 0, exit: int = 0, error: str | None = None,
                result=None, lines: int = 3, on_term: str = "exit", child: bool = False, ui_jobs: int = 0,
                **fields) -> dict:
    """A job document (conftest's make_job with ``fields``) whose run under the stand-in does
    what the other arguments say."""
    from conftest import make_job

    told = instructions(seconds=seconds, start_seconds=start_seconds, exit=exit, error=error,
                        result=result, lines=lines, on_term=on_term, child=child, ui_jobs=ui_jobs)
    return make_job(assets=[told, *fields.pop("assets", [])], **fields)


def calls(workdir: Path) -> list[dict]:
    """Every call of the stand-in in ``workdir``, oldest first."""
    try:
        text = (Path(workdir) / CALLS).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines()]


def child_pid(workdir: Path, timeout: float = 30) -> int:
    """The pid of the process a run told ``child`` leaves in its group, once it has started, as
    this host numbers it (a sandboxed run writes the pid its own PID namespace gave it)."""
    path = Path(workdir) / CHILD_PID
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the stand-in in {str(workdir)!r} never started its child")
        time.sleep(0.02)
    return host_pid(int(path.read_text()), workdir)


def host_pid(pid: int, workdir: Path) -> int:
    """The host's pid of the process working in ``workdir`` that saw itself as ``pid`` (the last
    number of NSpid in /proc/<pid>/status); ``pid`` itself when there is none."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                numbers = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
            if int(numbers[-1]) == pid and os.readlink(f"/proc/{entry}/cwd") == str(workdir):
                return int(entry)
        except (OSError, IndexError, ValueError):
            continue
    return pid


# --- the program ------------------------------------------------------------------------------

def _say(kind: str, text: str, stream=None) -> None:
    stream = stream or sys.stdout
    stream.write(f"sparkrunner: {kind}: {text}\n")
    stream.flush()


def _info(text: str) -> None:
    print(time.strftime("%y/%m/%d %H:%M:%S") + " INFO " + text, flush=True)


def _usage_error(message: str) -> int:
    # As spark-submit says it: a line on stderr and exit code 1, before any "application".
    sys.stderr.write(f"Error: {message}\nRun with --help for usage help or --verbose for debug output\n")
    return 1


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


def _write_result(text: str) -> None:
    tmp = "result.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    os.replace(tmp, "result.json")


def _on_term(how: str) -> None:
    if how == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif how == "exit":
        def shutdown(signum, frame):
            _info("ShutdownHookManager: Shutdown hook called")
            os._exit(JVM_TERM_EXIT)
        signal.signal(signal.SIGTERM, shutdown)
    elif how != "die":
        raise SystemExit(_usage_error(f"unknown on_term {how!r} in {INSTRUCTIONS}"))


def _start_child(how: str) -> None:
    """A process left in the group, like the Python driver under the JVM."""
    code = ("import signal, time\n"
            + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if how == "ignore" else "")
            + "time.sleep(600)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    Path(CHILD_PID).write_text(str(child.pid))


TASKS_PER_JOB = 10


def ui_jobs_at(count: int, fraction: float) -> tuple[list[dict], list[dict]]:
    """(jobs, stages) as a Spark UI's REST API lists them, ``fraction`` of the way through
    ``count`` Spark jobs of one stage and :data:`TASKS_PER_JOB` tasks each, run one after another."""
    done_tasks = int(min(max(fraction, 0.0), 1.0) * count * TASKS_PER_JOB)
    jobs, stages = [], []
    for n in range(count):
        done = min(max(done_tasks - n * TASKS_PER_JOB, 0), TASKS_PER_JOB)
        started = done_tasks >= n * TASKS_PER_JOB
        status = "SUCCEEDED" if done == TASKS_PER_JOB else "RUNNING" if started else "UNKNOWN"
        active = 1 if status == "RUNNING" else 0
        jobs.append({"jobId": n, "name": f"collect at stand-in:{n}", "status": status, "stageIds": [n],
                     "jobTags": [], "numTasks": TASKS_PER_JOB, "numActiveTasks": active,
                     "numCompletedTasks": done, "numSkippedTasks": 0, "numFailedTasks": 0,
                     "numKilledTasks": 0, "numActiveStages": active,
                     "numCompletedStages": int(status == "SUCCEEDED"), "numSkippedStages": 0,
                     "numFailedStages": 0})
        stages.append({"stageId": n, "attemptId": 0, "numTasks": TASKS_PER_JOB, "numActiveTasks": active,
                       "numCompleteTasks": done, "numFailedTasks": 0,
                       "status": {"SUCCEEDED": "COMPLETE", "RUNNING": "ACTIVE"}.get(status, "PENDING")})
    return jobs[::-1], stages[::-1]  # newest first, as Spark lists them


def _serve_ui(app_id: str, count: int, seconds: float) -> str:
    """Serves a Spark UI's REST API for ``app_id`` in a thread; its URL."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    began = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            jobs, stages = ui_jobs_at(count, (time.monotonic() - began) / seconds if seconds else 1.0)
            path = self.path.split("?")[0].rstrip("/")
            base = f"/api/v1/applications/{app_id}"
            body = {"/api/v1/applications": [{"id": app_id, "name": "stand-in"}],
                    base + "/jobs": jobs, base + "/stages": stages}.get(path)
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def main(argv: list[str]) -> int:
    with open(CALLS, "a") as f:
        f.write(json.dumps({"argv": argv, "pid": os.getpid(), "pgid": os.getpgrp(), "cwd": os.getcwd(),
                            "env": {k: os.environ.get(k) for k in ENV_KEYS}}) + "\n")
    options, rest = {}, list(argv)
    while rest and rest[0].startswith("--"):
        flag = rest.pop(0)
        if flag == "--verbose":
            continue
        if not rest:
            return _usage_error(f"Missing argument for option '{flag}'.")
        options.setdefault(flag, []).append(rest.pop(0))
    if "--master" not in options or not rest:
        return _usage_error("Must specify a primary resource (JAR or Python file)")
    if not os.path.isfile(rest[0]):
        return _usage_error(f"Cannot load main class from the file {rest[0]}: no such file")
    try:
        told = json.loads(Path(INSTRUCTIONS).read_text())
    except FileNotFoundError:
        told = {}
    _on_term(told.get("on_term") or "exit")
    if told.get("child"):
        _start_child(told.get("on_term") or "exit")
    _info("SparkContext: Running Spark version 4.3.0 (stand-in)")
    _sleep(told.get("start_seconds") or 0)
    conf = dict(c.partition("=")[::2] for c in options.get("--conf", []))
    ui = "off" if conf.get("spark.ui.enabled") == "false" else "http://127.0.0.1:4040"
    app_id = f"local-{int(time.time() * 1000)}"
    if told.get("ui_jobs"):
        ui = _serve_ui(app_id, int(told["ui_jobs"]), float(told.get("seconds") or 0))
    _say("application", f"{app_id} is running; Spark UI {ui}")
    _sleep(told.get("seconds") or 0)
    for n in range(told.get("lines", 3)):
        _info(f"DAGScheduler: Job {n} finished")
    code = int(told.get("exit") or 0)
    if told.get("error"):
        print("Traceback (most recent call last):", file=sys.stderr, flush=True)
        _say("error", told["error"], sys.stderr)
    if code == 0 and told.get("result") is not None:
        text = json.dumps(told["result"])
        _write_result(text)
        _say("result", text)
    _info("SparkContext: Successfully stopped SparkContext")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
