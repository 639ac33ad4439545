"""The sandbox around a job's spark-submit (bubblewrap), and whether it can run here.

Inside, a job sees

- the system (``/usr``, ``/etc``, ``/sys``, the ``/bin`` and ``/lib`` links) and the Python, Java
  and Spark installations sparkrunner runs with, read-only;
- the configured local roots (``policy.local_roots``) and its own working directory, read-write;
- a private ``/tmp`` (a directory in its working directory, removed when the run ends), and its
  own ``/proc`` and ``/dev``: PID and IPC namespaces of its own, so it can neither see nor signal
  the service or another job;
- no capabilities, even when the service runs as root, and no way to gain one (bwrap sets
  no_new_privs).

It does not see the data directory (the job store, the other jobs), the configuration file,
``spark.conf_dir``'s ``spark-defaults.conf`` (the cluster's secret), the TLS files, the service
user's home, ``policy.hidden``, nor anything else of the host that is not listed above. The
network is shared: clusters, HDFS and object stores are reached as before.

Where paths nest, the more specific one wins: a working directory inside the hidden data
directory is visible, a hidden directory inside a local root is not.

:func:`bwrap_argv` is pure (a :class:`View` and a run's paths in, bwrap's argv out);
:func:`host_view` finds the paths on this host; :func:`probe` says whether bwrap works here;
:func:`choose` applies the ``sandbox`` setting and returns the :class:`Sandbox` the launcher uses.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from . import __file__ as package_init
from .command import spark_home
from .config import SandboxMode, Settings
from .errors import SandboxUnavailable
from .prepare import DEFAULTS_FILENAME

log = logging.getLogger(__name__)

#: The Debian (and Ubuntu) package with bwrap, named in every message about a missing sandbox.
PACKAGE = "bubblewrap"
#: The system's directories, bound read-only where they are directories (or made the same
#: symbolic links, on a merged /usr).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
#: Variables of the service's environment a sandboxed job gets (and those starting LC_);
#: ``spark.env`` is added whatever its names. Anything else (tokens, cloud keys, the service's
#: own settings) stays outside.
KEPT_VARIABLES = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "LD_LIBRARY_PATH",
    "JAVA_HOME", "SPARK_HOME", "SPARK_CONF_DIR", "SPARK_LOCAL_IP", "SPARK_LOCAL_HOSTNAME",
    "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONIOENCODING",
    "PYTHONUTF8", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "HADOOP_HOME", "HADOOP_USER_NAME", "KRB5_CONFIG",
})


@dataclass(frozen=True)
class View:
    """What every sandboxed run sees, as paths of this host (absolute, links resolved)."""

    #: Read-only at the same place.
    system: tuple[str, ...] = ()
    #: Symbolic links made at the same place: (path, target), e.g. ("/bin", "usr/bin").
    links: tuple[tuple[str, str], ...] = ()
    #: The Python, Java and Spark installations and sparkrunner's package: read-only.
    installs: tuple[str, ...] = ()
    #: policy.local_roots: read-write.
    roots: tuple[str, ...] = ()
    #: Hidden directories (an empty read-only directory in their place) and files (an empty
    #: file), where they lie inside something the sandbox shows.
    hidden_dirs: tuple[str, ...] = ()
    hidden_files: tuple[str, ...] = ()


# Where the same path is named twice, the later kind wins: a root that is also hidden is hidden.
_SYSTEM, _SCRATCH, _INSTALL, _ROOT, _HIDE, _WORKDIR = range(6)


def bwrap_argv(bwrap: str, view: View, workdir: Path, scratch: Path) -> list[str]:
    """bwrap's command line, up to and including ``--``, for a run in ``workdir`` whose private
    /tmp is the directory ``scratch``."""
    workdir, scratch = str(workdir), str(scratch)
    entries: list[tuple[str, int, list[str]]] = []
    entries += [(p, _SYSTEM, ["--ro-bind", p, p]) for p in view.system]
    entries.append(("/tmp", _SCRATCH, ["--bind", scratch, "/tmp"]))
    entries += [(p, _INSTALL, ["--ro-bind", p, p]) for p in view.installs]
    entries += [(p, _ROOT, ["--bind", p, p]) for p in view.roots]
    entries.append((workdir, _WORKDIR, ["--bind", workdir, workdir]))
    shown = list(entries)
    read_only = []  # made read-only at the end: a shown path inside needs a mount point first
    for path in view.hidden_dirs:
        if _inside_something_shown(path, shown):
            entries.append((path, _HIDE, ["--tmpfs", path]))
            read_only.append(path)
    for path in view.hidden_files:
        if _inside_something_shown(path, shown):
            entries.append((path, _HIDE, ["--ro-bind", "/dev/null", path]))
    argv = [bwrap,
            # Its own PID and IPC namespaces; no capabilities, even as root. No --new-session:
            # the run must stay in the process group the service signals to cancel it (it has
            # no terminal whose input it could fake).
            "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--cap-drop", "ALL"]
    for path, target in view.links:
        argv += ["--symlink", target, path]
    argv += ["--dev", "/dev", "--proc", "/proc"]
    # Outer paths first, so that a more specific path is mounted over what holds it.
    for _, _, args in sorted(entries, key=lambda e: (_depth(e[0]), e[1], e[0])):
        argv += args
    for path in sorted(read_only):
        argv += ["--remount-ro", path]
    argv += ["--remount-ro", "/", "--chdir", workdir, "--"]
    return argv


def _depth(path: str) -> int:
    return len(Path(path).parts)


def _inside_something_shown(path: str, shown: list[tuple[str, int, list[str]]]) -> bool:
    """Whether the sandbox would show ``path`` (the private /tmp shows nothing of the host's)."""
    holders = [(p, kind) for p, kind, _ in shown if Path(path).is_relative_to(p)]
    if not holders:
        return False
    _, kind = max(holders, key=lambda h: (_depth(h[0]), h[1]))
    return kind != _SCRATCH


def sandbox_env(env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a sandboxed run: what :data:`KEPT_VARIABLES` names of ``env``, the
    operator's ``extra`` (spark.env), and HOME and TMPDIR in the private /tmp."""
    kept = {k: v for k, v in env.items() if k in KEPT_VARIABLES or k.startswith("LC_")}
    return {**kept, **extra, "HOME": "/tmp", "TMPDIR": "/tmp"}


def landlock_paths(view: View) -> tuple[list[str], list[str]]:
    """(read-only, read-write) paths of a warm job's Landlock sandbox for ``view``: the same as
    bwrap's, with the host's /proc (Landlock keeps other processes' entries closed) and its
    harmless devices (not /dev/shm, which other processes share)."""
    return ([*view.system, *view.installs, "/proc", "/dev/urandom", "/dev/random", "/dev/zero"],
            [*view.roots, "/dev/null"])


def unhidable(view: View) -> str | None:
    """A hidden path Landlock could not hide (it lies inside a path the view shows: Landlock
    can only allow, never take back); None when there is none."""
    shown = [*view.system, *view.installs, *view.roots]
    for path in (*view.hidden_dirs, *view.hidden_files):
        holder = next((p for p in shown if Path(path).is_relative_to(p)), None)
        if holder is not None:
            return (f"{path} must stay hidden from jobs, but lies inside {holder}, which jobs see: "
                    "a warm job's sandbox (Landlock) cannot hide it")
    return None


# -- this host -----------------------------------------------------------------------------------

def host_view(settings: Settings, env: Mapping[str, str]) -> View:
    """The :class:`View` of this host for runs under ``settings`` with environment ``env``."""
    system, links = [], []
    for path in SYSTEM_PATHS:
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            system.append(path)
    installs = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix,
                Path(package_init).parent, spark_home(settings)]
    for python in {settings.spark.python or sys.executable, env.get("PYSPARK_PYTHON", "")}:
        if python:  # a virtual environment's prefix, and the interpreter's it links to
            installs += [Path(python).absolute().parent.parent, Path(python).resolve().parent.parent]
    java = shutil.which("java", path=env.get("PATH"))
    if java:
        installs.append(Path(java).resolve().parent.parent)
    for name in ("JAVA_HOME", "HADOOP_CONF_DIR", "YARN_CONF_DIR", "HADOOP_HOME"):
        if env.get(name):
            installs.append(env[name])
    resolver = Path("/etc/resolv.conf").resolve()  # often a link into /run
    if resolver.exists():
        installs.append(resolver.parent)
    hidden = [settings.data_dir, Path.home(), *settings.policy.hidden]
    if settings.source:
        hidden.append(settings.source)
    if settings.spark.conf_dir:
        hidden.append(Path(settings.spark.conf_dir).expanduser() / DEFAULTS_FILENAME)
    hidden += [p for p in (settings.service.ssl_certfile, settings.service.ssl_keyfile) if p]
    system_dirs = [Path(p) for p in system]
    return View(
        system=tuple(system), links=tuple(links),
        installs=_unique(p for p in _existing(installs, dirs=True)
                         if not any(Path(p).is_relative_to(s) for s in system_dirs)),
        roots=_unique(_existing(settings.policy.local_roots, dirs=True)),
        hidden_dirs=_unique(_existing(hidden, dirs=True)),
        hidden_files=_unique(_existing(hidden, dirs=False)))


def _existing(paths, dirs: bool) -> list[str]:
    found = []
    for path in paths:
        real = Path(os.path.realpath(Path(path).expanduser()))
        if real.is_dir() if dirs else real.is_file():
            found.append(str(real))
    return found


def _unique(paths) -> tuple[str, ...]:
    return tuple(dict.fromkeys(paths))


def probe(bwrap: str | None = None) -> str | None:
    """Why a sandbox cannot run here (bwrap missing, or refused its namespaces); None when it can."""
    bwrap = bwrap or shutil.which("bwrap")
    if not bwrap:
        return f"bwrap is not installed (the package {PACKAGE})"
    try:
        done = subprocess.run(
            [bwrap, "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--cap-drop", "ALL",
             "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{bwrap} could not be run: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        return f"{bwrap} cannot make a sandbox here ({why})"
    return None


class Sandbox:
    """A working bwrap under one configuration: wraps each run's spark-submit."""

    def __init__(self, bwrap: str, settings: Settings, env: Mapping[str, str]):
        self.bwrap, self.settings, self.host_env = bwrap, settings, dict(env)

    def argv(self, workdir: Path, scratch: Path, read_only: Sequence[str] = ()) -> list[str]:
        """bwrap's argv for a run in ``workdir``, which sees ``read_only`` too (its own Python
        environment). The host is looked at again for each run: a hidden directory made since
        (a cluster started later) is hidden from it too."""
        view = host_view(self.settings, self.host_env)
        if read_only:
            view = dataclasses.replace(view, installs=_unique([*view.installs, *read_only]))
        return bwrap_argv(self.bwrap, view, workdir, scratch)

    def build_argv(self, workdir: Path, scratch: Path, writable: Sequence[str],
                   read_only: Sequence[str]) -> list[str]:
        """bwrap's argv for a build of a model's environment in ``workdir``: it sees what a job
        sees and ``read_only`` (package indexes on this host), but writes only ``workdir`` and
        ``writable`` (uv's download cache), not the local roots."""
        view = host_view(self.settings, self.host_env)
        view = dataclasses.replace(view, roots=_unique(writable),
                                   installs=_unique([*view.installs, *read_only]))
        return bwrap_argv(self.bwrap, view, workdir, scratch)

    def env(self, env: Mapping[str, str]) -> dict[str, str]:
        """The environment of a run in the sandbox, from spark-submit's ``env``."""
        return sandbox_env(env, self.settings.spark.env)

    def landlock_paths(self) -> tuple[list[str], list[str]]:
        """What a warm job's process may read, and read and write besides its own directory
        (:mod:`sparkrunner.inside.landlock`): what a cold job's sandbox shows."""
        return landlock_paths(host_view(self.settings, self.host_env))

    def warm_problem(self) -> str | None:
        """Why warm jobs cannot be sandboxed here as cold ones are; None when they can."""
        from .inside import landlock

        return landlock.unavailable() or unhidable(host_view(self.settings, self.host_env))


def choose(settings: Settings, env: Mapping[str, str], *, service: bool, asked: bool = False,
           why_not: str | None = None) -> Sandbox | None:
    """The sandbox jobs run in under ``settings``, or None; raises SandboxUnavailable when
    one is needed and cannot be had.

    ``service``: the service (``auto`` means on where bwrap works), else ``sparkrunner run``
    (``auto`` means off unless ``asked``). ``why_not`` stands in for :func:`probe` (tests).
    """
    mode = settings.sandbox
    if mode is SandboxMode.OFF and not asked:
        return None
    if mode is SandboxMode.AUTO and not service and not asked:
        return None
    why = why_not if why_not is not None else probe()
    if not why:
        return Sandbox(shutil.which("bwrap") or "bwrap", settings, env)
    if mode is SandboxMode.ON or asked:
        raise SandboxUnavailable(f"a sandbox is asked for, but {why}: install {PACKAGE} "
                                 f"(apt-get install {PACKAGE})")
    if settings.service.tokens:
        raise SandboxUnavailable(
            f"refusing to serve several users (service.tokens) without a sandbox: {why}. Any user's "
            f"model could read every user's jobs, results and tokens. Install {PACKAGE} "
            f"(apt-get install {PACKAGE}), or write 'sandbox: off' in the configuration to run "
            "every job with the service's rights anyway")
    log.warning("NO SANDBOX: %s. Jobs run with the service's rights and can read its data "
                "directory and configuration. Install %s (apt-get install %s), or write "
                "'sandbox: off' in the configuration to say this is intended.", why, PACKAGE, PACKAGE)
    return None
