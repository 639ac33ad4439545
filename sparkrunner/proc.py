"""Processes as Linux's ``/proc`` shows them: the one reader of ``/proc/<pid>/stat``.

A pid alone can name a later, unrelated process once the first has gone; a pid with its start
time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot) names exactly one. The launcher,
the supervisor and the development cluster all tell processes apart this way, through here.

Standard library only, and cheap to import: the supervisor imports it on every run.
"""

from __future__ import annotations

import os


class ProcStat:
    """The fields of ``/proc/<pid>/stat`` sparkrunner looks at."""

    __slots__ = ("state", "ppid", "pgid", "start_time")

    def __init__(self, state: str, ppid: int, pgid: int, start_time: int):
        self.state, self.ppid, self.pgid, self.start_time = state, ppid, pgid, start_time

    @property
    def zombie(self) -> bool:
        """Exited, with only its parent's wait outstanding."""
        return self.state == "Z"

    def __repr__(self) -> str:
        return (f"ProcStat(state={self.state!r}, ppid={self.ppid}, pgid={self.pgid}, "
                f"start_time={self.start_time})")


def stat(pid: int) -> ProcStat | None:
    """Process ``pid`` as ``/proc/<pid>/stat`` shows it; None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after it do not.
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(state=fields[0], ppid=int(fields[1]), pgid=int(fields[2]), start_time=int(fields[19]))


def start_time(pid: int) -> int | None:
    """The start time of a live process (clock ticks since boot); None if gone or a zombie.

    Recorded with a pid, it tells a reused pid from the process that was started.
    """
    found = stat(pid)
    return None if found is None or found.zombie else found.start_time


def is_running(pid: int, started: int | str) -> bool:
    """Whether process ``pid`` is alive and is the one that started at ``started``."""
    now = start_time(pid)
    return now is not None and str(now) == str(started)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None and found.pgid == pgid and not found.zombie:
                members.append(int(entry.name))
    return members


def signal_group(pgid: int, sig: int) -> bool:
    """Sends ``sig`` to a process group; a group that is already gone is not an error."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        import logging  # here: the supervisor, which imports this module, never gets here

        logging.getLogger(__name__).warning("Not allowed to signal process group %d.", pgid)
        return False


def listening_ports(pid: int | None = None) -> set[int]:
    """TCP ports listened on, IPv4 or IPv6, by process ``pid`` or by anyone."""
    sockets = None
    if pid is not None:
        sockets = set()
        try:
            for fd in os.scandir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    sockets.add(target[len("socket:["):-1])
        except OSError:
            return set()
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and (sockets is None or fields[9] in sockets):  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None:
                children.setdefault(found.ppid, []).append(int(entry.name))
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(children.get(current, []))
    return total
