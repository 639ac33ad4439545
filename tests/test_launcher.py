"""Running a child in its own process group: its log, its end reason, timeout and cancel.

These use small Python children (one that leaves a grandchild behind) to pin down process
handling exactly; tests/test_run_e2e.py runs the real spark-submit.
"""

import os
import sys
import time

from sparkrunner.launcher import LogWatcher, SparkSubmit, end_reason
from sparkrunner.states import JobStatus

# Starts a grandchild that would outlive its parent, writes its pid, then behaves as told.
CHILD = r'''
import os, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open("grandchild.pid", "w").write(str(grandchild.pid))
print("started", flush=True)
mode = sys.argv[1]
if mode == "fail":
    print("Traceback (most recent call last):", flush=True)
    print("sparkrunner: error: score function 'score' raised ValueError: bad row 7", file=sys.stderr, flush=True)
    sys.exit(1)
if mode == "sleep":
    time.sleep(300)
print("done", flush=True)
'''


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has exited; only its parent has not reaped it
        return f.read().split(") ")[1].split()[0] != "Z"


def gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` has died (signals are delivered asynchronously)."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = SparkSubmit([sys.executable, str(script), mode], tmp_path, dict(os.environ), tmp_path / "driver.log")
    run.start()
    return run


def grandchild(tmp_path) -> int:
    for _ in range(100):
        if (tmp_path / "grandchild.pid").exists() and (tmp_path / "grandchild.pid").read_text():
            return int((tmp_path / "grandchild.pid").read_text())
        time.sleep(0.05)
    raise AssertionError("the child never started its grandchild")


def test_a_clean_exit_completes_and_leaves_no_process(tmp_path):
    run = start(tmp_path, "ok")
    outcome = run.wait()
    assert (outcome.status, outcome.reason, outcome.exit_code) == (JobStatus.COMPLETE, "exit code 0", 0)
    log = (tmp_path / "driver.log").read_text().splitlines()
    assert log[0].startswith("sparkrunner: command: ") and log[1:] == ["started", "done"]
    assert (tmp_path / "driver.log").stat().st_mode & 0o777 == 0o600
    assert gone(grandchild(tmp_path))


def test_a_failure_reports_the_drivers_line(tmp_path):
    outcome = start(tmp_path, "fail").wait()
    assert outcome.status is JobStatus.ERROR
    assert outcome.reason == "exit code 1: score function 'score' raised ValueError: bad row 7"
    assert outcome.tail[-1].startswith("sparkrunner: error:")


def cancel_once_started(run):
    """An on_line callback: cancels ``run`` from inside its wait(), once the child says it
    started (its grandchild is then running), as the service cancels a run another thread follows."""
    def on_line(watcher, line):
        if line == "started":
            run.cancel()
    return on_line


def test_cancel_ends_the_whole_group(tmp_path):
    run = start(tmp_path, "sleep")
    pid = grandchild(tmp_path)
    outcome = run.wait(on_line=cancel_once_started(run))
    assert (outcome.status, outcome.reason) == (JobStatus.CANCELLED, "cancelled by user")
    assert outcome.signal == 15
    assert gone(pid)


def test_a_timeout_ends_the_run_as_error(tmp_path):
    run = start(tmp_path, "sleep")
    pid = grandchild(tmp_path)
    outcome = run.wait(timeout=0.5)
    assert (outcome.status, outcome.reason) == (JobStatus.ERROR, "timed out after 0.5 s")
    assert gone(pid)


def test_echo_copies_the_log_as_it_grows(tmp_path):
    class Sink:
        def __init__(self): self.text = ""
        def write(self, s): self.text += s
        def flush(self): pass
    sink = Sink()
    start(tmp_path, "ok").wait(echo=sink)
    assert sink.text.endswith("started\ndone\n")


def test_end_reasons():
    assert end_reason(-9).reason == "killed by signal 9"
    assert end_reason(-9).status is JobStatus.ERROR
    assert end_reason(2, tail=("INFO x", "Exception in thread main: boom", "INFO shutdown")).reason == \
        "exit code 2: Exception in thread main: boom"
    assert end_reason(0, cancelled=True).status is JobStatus.CANCELLED
    assert end_reason(143, timeout=60).reason == "timed out after 60 s"


def test_the_watcher_reads_partial_lines_once(tmp_path):
    log = tmp_path / "driver.log"
    log.write_bytes(b"sparkrunner: application: local-1 is running; Spark UI http://127.0.0.1:4040\npart")
    watcher = LogWatcher(log)
    assert watcher.poll() == ["sparkrunner: application: local-1 is running; Spark UI http://127.0.0.1:4040"]
    assert (watcher.application, watcher.ui_url) == ("local-1", "http://127.0.0.1:4040")
    with open(log, "ab") as f:
        f.write(b"ial\nlast")
    assert watcher.poll() == ["partial"]
    assert watcher.poll(final=True) == ["last"]


def test_the_exit_status_is_recorded_and_a_later_handle_can_read_it(tmp_path):
    run = start(tmp_path, "fail")
    run.wait()
    assert (tmp_path / "exit.json").read_text() == '{"returncode": 1}'
    later = SparkSubmit.attach(run.pid, run.start_time, tmp_path, tmp_path / "driver.log")
    assert not later.is_running()
    outcome = later.wait()
    assert outcome.reason == "exit code 1: score function 'score' raised ValueError: bad row 7"


def test_a_handle_attached_to_a_live_run_follows_it_and_can_cancel_it(tmp_path):
    run = start(tmp_path, "sleep")
    pid = grandchild(tmp_path)
    later = SparkSubmit.attach(run.pid, run.start_time, tmp_path, tmp_path / "driver.log")
    assert later.is_running()
    assert not SparkSubmit.attach(run.pid, "12345", tmp_path, tmp_path / "driver.log").is_running()  # a reused pid
    outcome = later.wait(on_line=cancel_once_started(later))
    assert (outcome.status, outcome.reason) == (JobStatus.CANCELLED, "cancelled by user")
    assert gone(pid)
    run.process.wait()  # reap it: the test is its parent


def test_only_the_command_killed_by_sigkill_is_reported_as_such(tmp_path):
    run = start(tmp_path, "sleep")
    grandchild(tmp_path)
    # The command is the supervisor's only child: kill it alone, as an OOM killer would.
    children = open(f"/proc/{run.pid}/task/{run.pid}/children").read().split()
    os.kill(int(children[0]), 9)
    outcome = run.wait()
    assert (outcome.status, outcome.reason, outcome.signal) == (JobStatus.ERROR, "killed by signal 9", 9)


def test_a_run_keeps_its_environment_held_after_the_service_lets_go(tmp_path):
    """The supervisor inherits the hold on the job's environment: a service that restarts (and
    so closes its own hold) while the run goes on leaves the environment held, never evicted."""
    from sparkrunner.environments import Hold

    lock = tmp_path / "env.use"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    run = SparkSubmit([sys.executable, str(script), "sleep"], tmp_path, dict(os.environ), tmp_path / "driver.log")
    run.hold = Hold(lock)
    run.hold.shared()
    run.start()
    grandchild(tmp_path)
    run.release()  # the service's own hold goes, as when it stops
    eviction = Hold(lock)
    try:
        assert not eviction.exclusive(wait=False)
        run.cancel()
        run.wait()
        assert eviction.exclusive(wait=False)
    finally:
        eviction.close()
