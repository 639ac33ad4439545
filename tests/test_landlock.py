"""The warm job's sandbox (Landlock), applied in a forked process as the fork server applies it."""

from __future__ import annotations

import json
import os
import sys

import pytest

from sparkrunner.inside import landlock
from sparkrunner.sandbox import View, landlock_paths, unhidable

pytestmark = pytest.mark.skipif(landlock.unavailable() is not None,
                                reason=f"Landlock cannot run here: {landlock.unavailable()}")

PYTHON_PATHS = sorted({sys.prefix, sys.base_prefix, os.path.dirname(landlock.__file__)})
SYSTEM = ["/usr", "/lib", "/lib64", "/etc", "/proc"]


def in_sandbox(read_write, attempts) -> dict[str, str]:
    """Runs each attempt (name -> callable) in a forked child restricted to reading the system
    and Python and writing ``read_write``; what each did: "ok" or the error's name."""
    pid = os.fork()
    if pid == 0:
        try:
            landlock.drop_privileges()
            landlock.restrict([*SYSTEM, *PYTHON_PATHS], [str(p) for p in read_write])
            done = {}
            for name, attempt in attempts.items():
                try:
                    attempt()
                    done[name] = "ok"
                except OSError as exc:
                    done[name] = type(exc).__name__
            # The verdicts go out through a file the child may write (its own directory).
            with open(read_write[0] / "attempts.json", "w") as f:
                json.dump(done, f)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return json.loads((read_write[0] / "attempts.json").read_text())


def test_a_sandboxed_process_reaches_its_own_directory_and_nothing_else_of_the_host(tmp_path, monkeypatch):
    own, other, data = tmp_path / "job-a", tmp_path / "job-b", tmp_path / "data"
    for directory in (own, other, data):
        directory.mkdir()
    (other / "result.json").write_text('{"secret": 1}')
    (data / "jobs.db").write_text("tokens")
    monkeypatch.setenv("SERVICE_SECRET", "s3cret")
    parent = os.getpid()
    done = in_sandbox([own], {
        "write own": lambda: (own / "out.txt").write_text("mine"),
        "read system": lambda: open("/etc/hostname").read(),
        "read another job": lambda: (other / "result.json").read_text(),
        "list another job": lambda: os.listdir(other),
        "read the data directory": lambda: (data / "jobs.db").read_text(),
        "write outside": lambda: (tmp_path / "escape.txt").write_text("x"),
        "write /tmp": lambda: open("/tmp/sparkrunner-landlock-escape", "w"),
        "signal the parent": lambda: os.kill(parent, 0),  # 0: a check, harmless if it got through
        "read the parent's environment": lambda: open(f"/proc/{parent}/environ").read(),
    })
    assert done == {
        "write own": "ok", "read system": "ok",
        "read another job": "PermissionError", "list another job": "PermissionError",
        "read the data directory": "PermissionError", "write outside": "PermissionError",
        "write /tmp": "PermissionError", "signal the parent": "PermissionError",
        "read the parent's environment": "PermissionError",
    }
    assert (own / "out.txt").read_text() == "mine"
    assert not (tmp_path / "escape.txt").exists()
    assert not os.path.exists("/tmp/sparkrunner-landlock-escape")


def test_the_paths_are_those_a_cold_jobs_sandbox_shows():
    view = View(system=("/usr", "/etc"), installs=("/opt/python",), roots=("/srv/data",))
    read_only, read_write = landlock_paths(view)
    assert read_only[:3] == ["/usr", "/etc", "/opt/python"] and "/proc" in read_only
    assert read_write == ["/srv/data", "/dev/null"]  # not /dev/shm, which other processes share


def test_a_hidden_path_inside_a_shown_one_cannot_be_hidden_and_says_so():
    assert unhidable(View(roots=("/srv",), hidden_dirs=("/var/lib/sparkrunner",))) is None
    why = unhidable(View(roots=("/srv",), hidden_dirs=("/srv/sparkrunner-data",)))
    assert why == ("/srv/sparkrunner-data must stay hidden from jobs, but lies inside /srv, which "
                   "jobs see: a warm job's sandbox (Landlock) cannot hide it")
