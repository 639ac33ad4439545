"""sparkrunner.proc, the one reader of /proc/<pid>/stat, against real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from sparkrunner import proc


def sleeper(*extra: str) -> subprocess.Popen:
    """A child in a session (and process group) of its own that sleeps until killed."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", *extra],
                            start_new_session=True)


def test_the_stat_of_this_process():
    found = proc.stat(os.getpid())
    assert (found.ppid, found.pgid, found.zombie) == (os.getppid(), os.getpgid(0), False)
    assert found.start_time == proc.start_time(os.getpid()) > 0


def test_a_command_name_with_spaces_and_parentheses_is_read_past(tmp_path):
    odd = tmp_path / "a b) (c"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        found = proc.stat(child.pid)
        assert (found.ppid, found.pgid) == (os.getpid(), child.pid) and found.state in "RSD"
        assert proc.is_running(child.pid, found.start_time)
    finally:
        child.kill()
        child.wait()


def test_a_pid_with_another_start_time_is_not_the_process_recorded():
    child = sleeper()
    try:
        started = proc.start_time(child.pid)
        assert proc.is_running(child.pid, started) and proc.is_running(child.pid, str(started))
        assert not proc.is_running(child.pid, started + 1)
    finally:
        child.kill()
        child.wait()
    assert proc.stat(child.pid) is None and proc.start_time(child.pid) is None
    assert not proc.is_running(child.pid, started)


def test_a_zombie_has_no_start_time():
    child = sleeper()
    child.kill()
    deadline = time.monotonic() + 10
    while proc.stat(child.pid).state != "Z":  # not yet reaped: its /proc entry stays
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert proc.stat(child.pid).zombie and proc.start_time(child.pid) is None
    child.wait()


def test_a_group_is_found_whole_and_signalled_whole():
    leader = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                               "'import time; time.sleep(300)']); print('ok', flush=True); time.sleep(300)"],
                              start_new_session=True, stdout=subprocess.PIPE)
    try:
        assert leader.stdout.readline() == b"ok\n"
        members = proc.group_members(leader.pid)
        assert leader.pid in members and len(members) == 2
        assert proc.signal_group(leader.pid, signal.SIGKILL)
        leader.wait()
        deadline = time.monotonic() + 10
        while proc.group_members(leader.pid):  # the grandchild dies in its own time
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.signal_group(leader.pid, signal.SIGKILL)
        leader.wait()


def test_signalling_a_group_that_is_gone_is_not_an_error():
    child = sleeper()
    child.kill()
    child.wait()  # reaped, and it had no children: nothing of its group is left
    assert proc.signal_group(child.pid, signal.SIGTERM) is False


def test_the_ports_a_process_listens_on():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port in proc.listening_ports(os.getpid())
        assert port in proc.listening_ports()
    assert port not in proc.listening_ports(os.getpid())
