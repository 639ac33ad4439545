"""The sandbox: bwrap's whole command line, what a run sees of this host, its environment, when
the service and ``sparkrunner run`` use it, and runs in it (small Python children, no JVM):
exit status, signals, cancel, the pid the service records, re-attaching.

The hostile model, through the service and real spark-submits, is in
tests/reliability/test_sandbox.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from sparkrunner import config, proc
from sparkrunner.config import PolicySettings, SandboxMode, ServiceSettings, Settings, SparkSettings
from sparkrunner.errors import ConfigError, SandboxUnavailable
from sparkrunner.launcher import SparkSubmit
from sparkrunner.sandbox import PACKAGE, Sandbox, View, bwrap_argv, choose, host_view, probe, sandbox_env
from sparkrunner.states import JobStatus

WHY = "bwrap is not installed (the package bubblewrap)"

VIEW = View(
    system=("/usr", "/etc", "/sys"),
    links=(("/bin", "usr/bin"), ("/lib", "usr/lib")),
    installs=("/opt/venv", "/home/svc/python", "/srv/spark"),
    roots=("/srv/data", "/srv/shared"),
    hidden_dirs=("/srv/data/cluster", "/home/svc", "/var/lib/sparkrunner", "/srv/spark/conf-secret"),
    hidden_files=("/etc/sparkrunner/sparkrunner.yaml", "/srv/shared/tls.key", "/root/elsewhere.yaml"))


def test_the_whole_bwrap_command_line():
    argv = bwrap_argv("/usr/bin/bwrap", VIEW, Path("/var/lib/sparkrunner/jobs/j1"),
                      Path("/var/lib/sparkrunner/jobs/j1/sparkrunner_tmp"))
    assert argv == [
        "/usr/bin/bwrap", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--cap-drop", "ALL",
        "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
        "--dev", "/dev", "--proc", "/proc",
        # Outer paths first; at equal depth, the stronger kind last, then by name.
        "--ro-bind", "/etc", "/etc", "--ro-bind", "/sys", "/sys", "--ro-bind", "/usr", "/usr",
        "--bind", "/var/lib/sparkrunner/jobs/j1/sparkrunner_tmp", "/tmp",
        "--ro-bind", "/opt/venv", "/opt/venv",
        "--ro-bind", "/srv/spark", "/srv/spark",
        "--bind", "/srv/data", "/srv/data",
        "--bind", "/srv/shared", "/srv/shared",
        "--ro-bind", "/home/svc/python", "/home/svc/python",  # home is not shown, its Python is
        "--ro-bind", "/dev/null", "/etc/sparkrunner/sparkrunner.yaml",  # inside /etc: hidden
        "--tmpfs", "/srv/data/cluster",  # inside a root: hidden
        "--ro-bind", "/dev/null", "/srv/shared/tls.key",
        "--tmpfs", "/srv/spark/conf-secret",
        "--bind", "/var/lib/sparkrunner/jobs/j1", "/var/lib/sparkrunner/jobs/j1",
        # Read-only once every mount point inside them is made.
        "--remount-ro", "/srv/data/cluster", "--remount-ro", "/srv/spark/conf-secret",
        "--remount-ro", "/", "--chdir", "/var/lib/sparkrunner/jobs/j1", "--"]
    # Hidden paths no mount shows are left alone: /home/svc, the data directory, /root.
    assert "/home/svc" not in argv and "/var/lib/sparkrunner" not in argv and "/root/elsewhere.yaml" not in argv


def test_the_most_specific_path_wins():
    view = View(system=("/usr",), roots=("/srv/data",), hidden_dirs=("/srv/data", "/srv/data/jobs/j1/x"))
    argv = bwrap_argv("bwrap", view, Path("/srv/data/jobs/j1"), Path("/srv/data/jobs/j1/sparkrunner_tmp"))
    mounts = " ".join(argv[argv.index("/proc") + 1:])
    # The root equal to the data directory is hidden; the working directory inside it is shown.
    assert ("--bind /srv/data /srv/data --tmpfs /srv/data --bind /srv/data/jobs/j1 /srv/data/jobs/j1 ") in mounts
    # A hidden directory inside the working directory is hidden too (the job could put nothing
    # there anyway).
    assert mounts.endswith("--tmpfs /srv/data/jobs/j1/x --remount-ro /srv/data --remount-ro /srv/data/jobs/j1/x "
                           "--remount-ro / --chdir /srv/data/jobs/j1 --")


def test_the_environment_keeps_what_spark_needs_and_nothing_secret():
    env = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "JAVA_HOME": "/j", "SPARK_HOME": "/s",
           "PYSPARK_PYTHON": "/p", "PYTHONPATH": "/src", "HOME": "/home/svc", "SPARKRUNNER_TOKEN": "t0k3n",
           "AWS_SECRET_ACCESS_KEY": "k", "_SPARK_AUTH_SECRET": "s", "SPARKRUNNER_CONFIG": "/etc/s.yaml"}
    assert sandbox_env(env, {"HADOOP_CONF_DIR": "/etc/hadoop", "AWS_PROFILE": "jobs"}) == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "JAVA_HOME": "/j", "SPARK_HOME": "/s",
        "PYSPARK_PYTHON": "/p", "PYTHONPATH": "/src", "HADOOP_CONF_DIR": "/etc/hadoop", "AWS_PROFILE": "jobs",
        "HOME": "/tmp", "TMPDIR": "/tmp"}


def test_the_host_view_hides_the_service_and_shows_the_installations(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("home", "data", "roots/in", "roots/in/cluster", "conf-dir", "etc"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("conf-dir/spark-defaults.conf", "etc/sparkrunner.yaml", "etc/tls.crt", "etc/tls.key"):
        (tmp_path / name).write_text("x")
    path = tmp_path / "etc" / "sparkrunner.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nspark:\n  conf_dir: ../conf-dir\n"
                    "policy:\n  local_roots: [../roots/in]\n  hidden: [../roots/in/cluster, ../missing]\n"
                    "service:\n  ssl_certfile: tls.crt\n  ssl_keyfile: tls.key\n")
    settings = config.load(path)
    view = host_view(settings, {"PATH": os.environ["PATH"]})
    assert view.roots == (str(tmp_path / "roots" / "in"),)
    assert set(view.hidden_dirs) == {str(tmp_path / p) for p in ("data", "home", "roots/in/cluster")}
    assert set(view.hidden_files) == {str(tmp_path / p) for p in (
        "etc/sparkrunner.yaml", "conf-dir/spark-defaults.conf", "etc/tls.crt", "etc/tls.key")}
    import sparkrunner
    assert str(Path(sparkrunner.__file__).parent) in view.installs
    assert os.path.realpath(sys.prefix) in view.installs or any(
        os.path.realpath(sys.prefix).startswith(s) for s in view.system)


# -- when it is used ---------------------------------------------------------------------------

def tokens(**service) -> Settings:
    return Settings(service=ServiceSettings(tokens={"ann": "a" * 16, "bob": "b" * 16}, **service))


def test_auto_sandboxes_the_service_where_bwrap_works():
    assert isinstance(choose(Settings(), {}, service=True, why_not=""), Sandbox)
    assert isinstance(choose(tokens(), {}, service=True, why_not=""), Sandbox)


def test_auto_without_bwrap_warns_loudly_naming_the_package(caplog):
    with caplog.at_level(logging.WARNING, logger="sparkrunner.sandbox"):
        assert choose(Settings(), {}, service=True, why_not=WHY) is None
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "NO SANDBOX" in warning.getMessage() and "apt-get install bubblewrap" in warning.getMessage()
    assert "sandbox: off" in warning.getMessage()


def test_auto_refuses_several_users_without_a_sandbox():
    with pytest.raises(SandboxUnavailable) as refused:
        choose(tokens(), {}, service=True, why_not=WHY)
    assert "service.tokens" in str(refused.value) and PACKAGE in str(refused.value)
    assert "sandbox: off" in str(refused.value)
    assert isinstance(refused.value, ConfigError)  # `serve` exits 2, before it listens


def test_off_is_the_operators_choice_even_with_several_users(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose(tokens().with_overrides(sandbox=SandboxMode.OFF), {}, service=True, why_not=WHY) is None
    assert caplog.records == []


def test_on_refuses_without_bwrap_even_for_one_user():
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        choose(Settings(sandbox=SandboxMode.ON), {}, service=True, why_not=WHY)


def test_run_is_unsandboxed_unless_asked():
    assert choose(Settings(), {}, service=False, why_not="") is None
    assert choose(tokens(), {}, service=False, why_not=WHY) is None  # tokens concern the service
    assert isinstance(choose(Settings(), {}, service=False, asked=True, why_not=""), Sandbox)
    assert isinstance(choose(Settings(sandbox=SandboxMode.ON), {}, service=False, why_not=""), Sandbox)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        choose(Settings(), {}, service=False, asked=True, why_not=WHY)


@pytest.mark.parametrize("text, mode", [("sandbox: off\n", SandboxMode.OFF), ("sandbox: on\n", SandboxMode.ON),
                                        ("sandbox: auto\n", SandboxMode.AUTO), ("", SandboxMode.AUTO)])
def test_the_setting_reads_yaml_on_and_off(tmp_path, text, mode):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert config.load(path).sandbox is mode


def test_a_wrong_setting_names_the_choices(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sandbox: maybe\n")
    with pytest.raises(ConfigError, match="sandbox: 'maybe' is not one of auto, on, off"):
        config.load(path)


def test_probe_says_why_not_when_bwrap_is_missing(tmp_path):
    assert probe(str(tmp_path / "no-bwrap")).startswith(f"{tmp_path / 'no-bwrap'} could not be run")


# -- runs in it ----------------------------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(bool(probe()), reason=f"no working bwrap here ({probe()})")

CHILD = r'''
import json, os, signal, subprocess, sys, time
mode = sys.argv[1]
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
seen = {"pid": os.getpid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "ppid": os.getppid(), "tmp": os.listdir("/tmp"), "home": os.environ.get("HOME"),
        "uid": os.getuid(), "caps": [l for l in open("/proc/self/status") if l.startswith("CapEff")][0].split()[1]}
try:
    os.kill(int(sys.argv[2]), 0)
    seen["signal_outside"] = "sent"
except OSError as exc:
    seen["signal_outside"] = type(exc).__name__
open("seen.json", "w").write(json.dumps(seen))
print("started", flush=True)
if mode == "sleep":
    time.sleep(300)
if mode == "kill9":
    os.kill(os.getpid(), signal.SIGKILL)
sys.exit(int(mode) if mode.isdigit() else 0)
'''


def sandboxed(tmp_path: Path, mode: str) -> SparkSubmit:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "child.py").write_text(CHILD)
    (workdir / "sparkrunner_spark.properties").write_text("spark.authenticate.secret=s\n")
    sandbox = Sandbox("bwrap", Settings(data_dir=tmp_path / "data"), dict(os.environ))
    run = SparkSubmit([sys.executable, str(workdir / "child.py"), mode, str(os.getpid())], workdir,
                      sandbox.env(os.environ), workdir / "driver.log",
                      sandbox=sandbox.argv(workdir, workdir / "sparkrunner_tmp"))
    run.start()
    return run


def wait_for_file(path: Path, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@needs_bwrap
def test_a_run_sees_its_own_processes_only_and_cannot_signal_outside(tmp_path):
    run = sandboxed(tmp_path, "0")
    outcome = run.wait(timeout=60)
    assert (outcome.status, outcome.reason) == (JobStatus.COMPLETE, "exit code 0"), outcome
    seen = json.loads((tmp_path / "work" / "seen.json").read_text())
    assert seen["pid"] < 10 and max(seen["pids"]) < 10, seen  # its own PID namespace
    assert seen["signal_outside"] == "ProcessLookupError"  # the test's pid names nothing inside
    assert seen["home"] == "/tmp" and seen["caps"] == "0000000000000000"
    # Its private /tmp and its properties file are gone; the log says it was sandboxed.
    assert not (tmp_path / "work" / "sparkrunner_tmp").exists()
    assert not (tmp_path / "work" / "sparkrunner_spark.properties").exists()
    log = (tmp_path / "work" / "driver.log").read_text().splitlines()
    assert log[0].startswith("sparkrunner: command: ") and log[1].startswith("sparkrunner: sandbox: bwrap ")


@needs_bwrap
def test_the_recorded_pid_is_the_supervisor_outside_the_sandbox(tmp_path):
    run = sandboxed(tmp_path, "sleep")
    try:
        wait_for_file(tmp_path / "work" / "seen.json")
        started = wait_for_file(tmp_path / "work" / "supervisor.json")
        assert (started["pid"], started["start"]) == (run.pid, run.start_time)
        assert proc.stat(run.pid).pgid == run.pid
        # Everything inside is in the group the service signals.
        assert len(proc.group_members(run.pid)) >= 5  # supervisor, bwrap (2), supervisor, child, grandchild
        # A handle made from the record alone (after a restart) sees it and can cancel it.
        again = SparkSubmit.attach(started["pid"], started["start"], run.cwd, run.log_path)
        assert again.is_running()
        again.cancel()
        # This handle did not ask for it (the service's record says who did).
        assert run.wait(timeout=60).reason == "killed by signal 15"
    finally:
        run.terminate()
    deadline = time.monotonic() + 10
    while proc.group_members(run.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.group_members(run.pid) == []


@needs_bwrap
def test_a_cancel_reaches_the_command_and_its_status_is_reported(tmp_path):
    run = sandboxed(tmp_path, "sleep")
    wait_for_file(tmp_path / "work" / "seen.json")
    run.cancel()
    outcome = run.wait(timeout=60)
    assert (outcome.status, outcome.signal) == (JobStatus.CANCELLED, signal.SIGTERM)
    # The supervisor inside recorded the command's own end: SIGTERM, not bwrap's 128 + 15.
    assert json.loads((tmp_path / "work" / "exit.json").read_text()) == {"returncode": -signal.SIGTERM}
    assert proc.group_members(run.pid) == []


@needs_bwrap
@pytest.mark.parametrize("mode, reason", [("3", "exit code 3"), ("kill9", "killed by signal 9")])
def test_exit_codes_and_signals_come_through_the_sandbox(tmp_path, mode, reason):
    outcome = sandboxed(tmp_path, mode).wait(timeout=60)
    assert outcome.status is JobStatus.ERROR and outcome.reason.startswith(reason), outcome


@needs_bwrap
def test_a_link_left_in_the_working_directory_is_not_followed(tmp_path):
    secret = tmp_path / "other-job-result.json"
    secret.write_text('{"stolen": true}')
    run = sandboxed(tmp_path, "0")
    run.wait(timeout=60)
    (run.cwd / "exit.json").unlink()
    (run.cwd / "exit.json").symlink_to(secret)  # as a job could, for the service to read
    assert run.returncode() is None
    from sparkrunner.service.reader import tail_lines
    (run.cwd / "driver.log").unlink()
    (run.cwd / "driver.log").symlink_to(secret)
    assert tail_lines(run.cwd / "driver.log", 5) == []
