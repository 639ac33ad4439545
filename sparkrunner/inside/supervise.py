"""Runs one command and records how it ended, so a restarted service can still tell.

``python -m sparkrunner.inside.supervise EXIT_FILE STARTED_FILE -- ARGV...`` first writes its
own pid and start time to STARTED_FILE, then runs ARGV in this process group, waits for it,
writes ``{"returncode": N}`` to EXIT_FILE (atomically) and exits the same way.
It outlives SIGTERM sent to its group, so it can record how the command reacted to it; only
SIGKILL of the whole group ends it unrecorded. Standard library only (and :mod:`sparkrunner.proc`,
which is too): it starts on every run.
"""

import json
import os
import signal
import subprocess
import sys

from ..proc import start_time


def write_json(path, value):
    """Writes ``value`` to ``path`` atomically and durably."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(value, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def record(exit_file, returncode):
    write_json(exit_file, {"returncode": returncode})


def main(args):
    if len(args) < 4 or args[2] != "--":
        sys.stderr.write("usage: python -m sparkrunner.inside.supervise EXIT_FILE STARTED_FILE -- ARGV...\n")
        return 2
    exit_file, started_file, argv = args[0], args[1], args[3:]
    # First of all: a service that dies before it saves our pid finds it here on restart.
    pid = os.getpid()
    write_json(started_file, {"pid": pid, "start": str(start_time(pid))})
    # A handler, not SIG_IGN: handlers are reset by exec, so the command still gets the signal.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        sys.stderr.write("sparkrunner: error: cannot start %s: %s\n" % (argv[0], exc.strerror))
        record(exit_file, 127)
        return 127
    returncode = child.wait()
    record(exit_file, returncode)
    return returncode if returncode >= 0 else 128 - returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
