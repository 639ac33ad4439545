"""Runs one command and records how it ended, so a restarted service can still tell.

``python -m sparkrunner.supervise EXIT_FILE -- ARGV...`` runs ARGV in this process group,
waits for it, writes ``{"returncode": N}`` to EXIT_FILE (atomically) and exits the same way.
It outlives SIGTERM sent to its group, so it can record how the command reacted to it; only
SIGKILL of the whole group ends it unrecorded. Standard library only: it starts on every run.
"""

import json
import os
import signal
import subprocess
import sys


def record(exit_file, returncode):
    tmp = exit_file + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"returncode": returncode}, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, exit_file)


def main(args):
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m sparkrunner.supervise EXIT_FILE -- ARGV...\n")
        return 2
    exit_file, argv = args[0], args[2:]
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
