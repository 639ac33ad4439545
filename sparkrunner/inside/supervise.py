"""Runs one command and records how it ended, so a restarted service can still tell.

``python -m sparkrunner.inside.supervise EXIT_FILE STARTED_FILE -- ARGV...`` first writes its
own pid and start time to STARTED_FILE, then runs ARGV in this process group, waits for it,
writes ``{"returncode": N}`` to EXIT_FILE (atomically) and exits the same way.
It outlives SIGTERM sent to its group, so it can record how the command reacted to it; only
SIGKILL of the whole group ends it unrecorded. Standard library only (and :mod:`sparkrunner.proc`,
which is too): it starts on every run.

A sandboxed run has two: ``supervise EXIT_FILE STARTED_FILE --sandboxed -- bwrap … -- python -m
sparkrunner.inside.supervise --report-fd 3 -- spark-submit …``. The outer one stays outside the
sandbox, so the pid it records is the one the service sees and signals; the inner one reports
spark-submit's exit status on fd 3, because bwrap would turn a signal into 128 + its number.
bwrap ignores SIGTERM, so a cancel reaches spark-submit and is reported, instead of tearing the
sandbox down at once.

The working directory is the job's, which a sandboxed job may write into: files are written
under fresh names and renamed into place, never opened through a link the job left there.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile

from ..proc import start_time

#: The file descriptor the inner supervisor of a sandboxed run reports on.
STATUS_FD = 3
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def write_json(path, value):
    """Writes ``value`` to ``path`` atomically and durably, never through a link."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=directory or ".", prefix="." + name + ".")  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(value, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def record(exit_file, returncode):
    write_json(exit_file, {"returncode": returncode})


def _start(argv, **kwargs):
    try:
        return subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        sys.stderr.write("sparkrunner: error: cannot start %s: %s\n" % (argv[0], exc.strerror))
        return None


def _exit_as(returncode):
    return returncode if returncode >= 0 else 128 - returncode


def report(fd, argv):
    """Inside a sandbox: runs ``argv`` and writes its exit status to ``fd``."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda *_: None)  # a handler: exec resets it, spark-submit gets the signal
    child = _start(argv)
    returncode = 127 if child is None else child.wait()
    try:
        os.write(fd, b"%d\n" % returncode)
    except OSError:
        pass
    return _exit_as(returncode)


def _status_pipe():
    """A pipe whose write end is :data:`STATUS_FD` (inherited), and its read end (not)."""
    read, write = os.pipe()
    kept = fcntl.fcntl(read, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(read)
    if write != STATUS_FD:
        os.dup2(write, STATUS_FD)
        os.close(write)
    return kept


def _reported(read_fd):
    """The last exit status written to the pipe, or None."""
    os.set_blocking(read_fd, False)
    data = b""
    try:
        while True:
            chunk = os.read(read_fd, 4096)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    for line in reversed(data.split(b"\n")):
        try:
            return int(line)
        except ValueError:
            continue
    return None


def main(args):
    if len(args) >= 3 and args[0] == "--report-fd" and args[2] == "--":
        return report(int(args[1]), args[3:])
    sandboxed = len(args) >= 3 and args[2] == "--sandboxed"
    if sandboxed:
        args = args[:2] + args[3:]
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: python -m sparkrunner.inside.supervise EXIT_FILE STARTED_FILE [--sandboxed] -- ARGV...\n"
                         "       python -m sparkrunner.inside.supervise --report-fd FD -- ARGV...\n")
        return 2
    exit_file, started_file, argv = args[0], args[1], args[3:]
    # First of all: a service that dies before it saves our pid finds it here on restart.
    pid = os.getpid()
    write_json(started_file, {"pid": pid, "start": str(start_time(pid))})
    status = None
    if sandboxed:
        # Ignored, and so ignored by bwrap too, which would otherwise end the whole sandbox on
        # a cancel's SIGTERM; the inner supervisor sets handlers, so spark-submit gets it.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        status = _status_pipe()
        child = _start(argv, pass_fds=(STATUS_FD,))
        os.close(STATUS_FD)
    else:
        # A handler, not SIG_IGN: handlers are reset by exec, so the command still gets the signal.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, lambda *_: None)
        child = _start(argv)
    if child is None:
        record(exit_file, 127)
        return 127
    returncode = child.wait()
    if status is not None:
        reported = _reported(status)
        if reported is not None:
            returncode = reported
    record(exit_file, returncode)
    return _exit_as(returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
