"""Each model's own Python packages: virtual environments built once with uv, cached, shared.

A job whose model names packages (:mod:`sparkrunner.requirements`) runs on an environment of its
own: a virtual environment holding those packages, layered over the base installation (the
interpreter sparkrunner runs jobs with), so that pyspark, pandas, pyarrow and everything else the
base has are reused, not installed again, unless the model pins other versions.

- **Keyed** by the base's Python version, its pyspark version, every base package's version
  (the environment relies on those it does not install) and the sorted, normalized requirement
  set: jobs naming the same packages share one environment.
- **Built once**: ``uv pip compile`` resolves the set (wheels only unless
  ``environments.only_binary`` is off, with the reused base packages held to the base's
  versions), the packages the base already has at the resolved version are dropped, and
  ``uv pip install --no-deps`` installs the rest into a fresh ``uv venv``. A ``.pth`` file then
  adds the base's site-packages *after* the environment's own, so a version the model pinned wins.
  The build runs in the sandbox (when jobs do), where it may write only its own build directory
  and uv's download cache, and it has ``environments.build_timeout_seconds``.
- **Shared**: a file lock per key; a second job needing a set being built waits for that build.
- **Bounded**: ``environments.max_cache_mb``; after each build the least recently used
  environments not in use are removed (a job holds a shared lock on its environment while it
  runs), then uv's download cache if still over.
- **Shipped**: on a cluster the environment is packed once into ``environment.tar.gz`` beside it,
  which the job's spark-submit ships with ``spark.archives``.

uv reads no pip configuration: the indexes pip uses here (``pip config list``: index-url,
extra-index-url, find-links, cert) are handed to it, unless ``environments.index_url`` and
its siblings name others.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .config import EnvironmentSettings, Settings
from .errors import EnvironmentFailed
from .proc import signal_group
from .requirements import Requirements

log = logging.getLogger(__name__)

#: The name a cluster's executors unpack the archive under (``spark.archives``'s ``#`` part).
ARCHIVE_LINK = "environment"
ARCHIVE_FILENAME = "environment.tar.gz"
#: The executors' Python, inside the unpacked archive.
EXECUTOR_PYTHON = f"./{ARCHIVE_LINK}/bin/python"
#: The .pth file that layers the base's site-packages under the environment's own.
BASE_PTH = "zz_sparkrunner_base.pth"
#: How a line of a job's log about its environment starts.
LOG_PREFIX = "sparkrunner: environment: "
#: Variables a build passes through to uv besides the sandbox's own: the way out to the indexes.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                   "http_proxy", "https_proxy", "all_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR")
#: How long an early check (``uv pip compile``, at submit time) may take before it is skipped.
CHECK_TIMEOUT_SECONDS = 60
#: How long a set seen to resolve is taken as resolvable without asking uv again: a burst of
#: jobs bringing one new set resolves it once, not once per request, until its build lands.
RESOLVED_SECONDS = 600.0


# -- the base installation --------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """The interpreter jobs run with, as an environment is layered over it."""

    python: str
    version: str
    #: Its site-packages directories (purelib, platlib), added under each environment's own.
    site_packages: tuple[str, ...]
    #: Every distribution installed there: canonical name -> version.
    distributions: Mapping[str, str]


_PROBE = r"""
import json, sys, sysconfig, importlib.metadata as m
paths = sysconfig.get_paths()
dists = []
for d in m.distributions():
    name = d.metadata["Name"]
    if name:
        dists.append([name, d.version])
print(json.dumps({"version": ".".join(map(str, sys.version_info[:3])),
                  "site": list(dict.fromkeys([paths["purelib"], paths["platlib"]])),
                  "dists": dists}))
"""


def probe_base(python: str) -> Base:
    """What :class:`Base` finds by asking ``python`` itself (which needs nothing but its
    standard library: names are made canonical here)."""
    done = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise EnvironmentFailed(f"cannot inspect the base interpreter {python!r}: "
                                f"{done.stderr.strip()[-500:]}")
    found = json.loads(done.stdout)
    distributions: dict[str, str] = {}
    for name, version in found["dists"]:  # the first found wins, as on sys.path
        distributions.setdefault(canonicalize_name(name), version)
    return Base(python, found["version"], tuple(found["site"]), distributions)


def env_key(base: Base, requirements: Requirements, settings: EnvironmentSettings) -> str:
    """The cache key of ``requirements``' environment over ``base``: what decides its content.

    Every base distribution counts, not only pyspark's: a package the base has at the resolved
    version is not installed (:func:`to_install`), so an environment built over one base would
    see another version of it after the base changed."""
    reused = reused_pins(base, requirements, settings)
    material = {"python": base.version, "pyspark": base.distributions.get("pyspark", ""),
                "base": sorted(base.distributions.items()),
                "reused": reused, "requirements": list(requirements.lines),
                "only_binary": settings.only_binary}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:20]


def reused_pins(base: Base, requirements: Requirements, settings: EnvironmentSettings) -> list[str]:
    """The base packages held to the base's version (``name==version``): those of
    ``environments.reuse`` the base has, unless the model asks for a version the base's does
    not satisfy (``pandas`` or ``pandas>=2`` keep the base's pandas 2.3; ``pandas==3.0.0`` does not)."""
    asked: dict[str, list] = {}
    for line in requirements.lines:
        req = Requirement(line)
        asked.setdefault(canonicalize_name(req.name), []).append(req.specifier)
    pins = []
    for name in sorted({canonicalize_name(n) for n in settings.reuse}):
        version = base.distributions.get(name)
        if version is not None and all(spec.contains(version, prereleases=True)
                                       for spec in asked.get(name, [])):
            pins.append(f"{name}=={version}")
    return pins


_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def to_install(lock: str, base: Base) -> list[str]:
    """The lines of ``uv pip compile``'s output the environment must install: every pinned
    package but those the base has at that very version."""
    wanted = []
    for line in lock.splitlines():
        found = _PINNED.match(line.strip())
        if not found:
            continue
        name, version = canonicalize_name(found.group(1)), found.group(2)
        if base.distributions.get(name) != version:
            wanted.append(f"{name}=={version}")
    return wanted


# -- indexes ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Indexes:
    """Where uv finds packages: the configured indexes, or pip's."""

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    cert: str = ""

    def uv_env(self) -> dict[str, str]:
        """The variables that hand these indexes to uv. Variables, not options: an index URL may
        carry a password, and a process's argv is readable by every user of the host."""
        env = {"UV_INDEX_URL": self.index_url} if self.index_url else {}
        if self.extra_index_urls:
            env["UV_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        if self.find_links:
            env["UV_FIND_LINKS"] = ",".join(self.find_links)  # uv splits this one at commas
        return env

    def local_dirs(self) -> list[str]:
        """Directories on this host the indexes live in, which a sandboxed build must see: a
        find-links directory, and a local index with the directory holding it (a simple index's
        pages link to files beside it, such as ``/srv/pypi/simple`` to ``/srv/pypi/files``)."""
        found = []
        for location, holder in ([(url, True) for url in (self.index_url, *self.extra_index_urls)]
                                 + [(link, False) for link in self.find_links]):
            path = location.removeprefix("file://") if location.startswith("file://") else (
                location if location.startswith("/") else "")
            if path and os.path.isdir(path):
                path = os.path.realpath(path)
                found.append(os.path.dirname(path) if holder else path)
        return found


def indexes_from(settings: EnvironmentSettings, pip_config: Mapping[str, str] | None) -> Indexes:
    """The indexes of ``settings`` where it names any, else those of pip's configuration
    (``pip config list`` as a mapping, see :func:`pip_config`)."""
    if settings.index_url or settings.extra_index_urls or settings.find_links:
        return Indexes(settings.index_url, settings.extra_index_urls, settings.find_links)
    config = pip_config or {}

    def pick(name: str) -> str:
        # pip's own precedence: its environment variables, then [install], then [global].
        for section in (":env:", "install", "global"):
            if f"{section}.{name}" in config:
                return config[f"{section}.{name}"]
        return ""

    return Indexes(pick("index-url"), tuple(pick("extra-index-url").split()),
                   tuple(pick("find-links").split()), pick("cert"))


def pip_config(python: str = sys.executable) -> dict[str, str]:
    """pip's configuration here (``pip config list``), {"global.index-url": "...", ...};
    empty where pip is missing or says nothing."""
    try:
        done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    config = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip().strip("'\"")
    return config


def uv_binary() -> str:
    """The uv program that came with sparkrunner (the ``uv`` wheel), else one on PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise EnvironmentFailed("uv is not installed: pip install uv (a dependency of sparkrunner)")
        return found


# -- environments -----------------------------------------------------------------------------

@dataclass(frozen=True)
class PythonEnv:
    """A built environment a job runs on."""

    key: str
    path: Path
    #: Its packed form, for a cluster's executors (None on a local master).
    archive: Path | None
    #: Lines for the job's log: built or reused, and the build's own log when built now.
    log_lines: tuple[str, ...]

    @property
    def python(self) -> str:
        return str(self.path / "env" / "bin" / "python")


class EnvironmentCache:
    """The environments of one cache directory: found, built, held and evicted.

    ``sandbox`` (a :class:`sparkrunner.sandbox.Sandbox`) wraps each build; None builds without.
    Thread- and process-safe: a file lock per key.
    """

    def __init__(self, root: Path, settings: Settings, sandbox=None, python: str | None = None):
        self.root = Path(root)
        self.config = settings.environments
        self.settings = settings
        self.sandbox = sandbox
        self.python = python or settings.spark.python or sys.executable
        self._base: Base | None = None
        self._indexes: Indexes | None = None
        #: Keys seen to resolve by :meth:`check`, with when (time.monotonic()).
        self._resolved: dict[str, float] = {}

    @property
    def base(self) -> Base:
        if self._base is None:
            self._base = probe_base(self.python)
        return self._base

    @property
    def indexes(self) -> Indexes:
        if self._indexes is None:
            self._indexes = indexes_from(self.config, pip_config())
        return self._indexes

    def key(self, requirements: Requirements) -> str:
        return env_key(self.base, requirements, self.config)

    def is_built(self, requirements: Requirements) -> bool:
        return (self.root / self.key(requirements) / "meta.json").is_file()

    # -- one job's environment ----------------------------------------------------------------

    def ensure(self, requirements: Requirements, archive: bool = False) -> tuple[PythonEnv, "Hold"]:
        """The environment of ``requirements`` (built now, or found built), and a hold on it that
        keeps it from eviction until closed. Raises EnvironmentFailed with uv's own error lines.

        Two locks per key: the *build* lock, held while the environment is built or packed (a
        job needing the same set waits on it), and the *use* lock, which each job running on the
        environment holds shared and eviction takes exclusive, without waiting.
        """
        self._make_root()
        key = self.key(requirements)
        grew = False  # the cache grows only by a build or an archive: only then is it bounded again
        while True:
            build = Hold(self._lock_path(key, "build"))
            try:
                build.exclusive()  # waits for a build of the same set under way
                meta = self.root / key / "meta.json"
                grew = grew or not meta.is_file() or (archive and not (self.root / key / ARCHIVE_FILENAME).is_file())
                if meta.is_file():
                    built = json.loads(meta.read_text())
                    lines = [f"{LOG_PREFIX}reusing {key} ({' '.join(requirements.lines)}), built "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(built['built']))} "
                             f"in {built['build_seconds']:.1f} s"]
                else:
                    lines = self._build(key, requirements)
                packed = self._pack(key) if archive else None
                if packed is not None:
                    lines.append(f"{LOG_PREFIX}shipped to the executors as {packed.name}#{ARCHIVE_LINK}")
            finally:
                build.close()
            hold = Hold(self._lock_path(key, "use"))
            hold.shared()
            if meta.is_file():  # not evicted between the two locks
                os.utime(meta)  # its last use, for eviction
                break
            hold.close()
        if grew:
            self.evict(keep=key)
        return PythonEnv(key, self.root / key, packed, tuple(lines)), hold

    def check(self, requirements: Requirements) -> str | None:
        """uv's error lines when ``requirements`` cannot be resolved (an unknown package, no
        wheel for this platform); None when they can, or when the check could not finish in
        time (the build then says)."""
        if self.is_built(requirements):
            return None
        self._make_root()
        key = self.key(requirements)
        checking = Hold(self._lock_path(key, "check"))
        try:
            checking.exclusive()  # the same set checked at once by two requests: uv runs once
            seen = self._resolved.get(key)
            if seen is not None and time.monotonic() - seen < RESOLVED_SECONDS:
                return None
            with tempfile.TemporaryDirectory(prefix=".check-", dir=self.root) as work:
                try:
                    self._compile(Path(work), requirements, timeout=CHECK_TIMEOUT_SECONDS)
                except EnvironmentFailed as exc:
                    return None if exc.timed_out else exc.detail
            now = time.monotonic()
            for old in [k for k, t in list(self._resolved.items()) if now - t >= RESOLVED_SECONDS]:
                self._resolved.pop(old, None)  # the expired go as new ones come: the map stays small
            self._resolved[key] = now
            return None
        finally:
            checking.close()

    # -- building ----------------------------------------------------------------------------

    def _build(self, key: str, requirements: Requirements) -> list[str]:
        """Builds the environment ``key`` into place; the lines for the job's log."""
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=self.root))
        try:
            lock, output = self._compile(work, requirements, timeout=self.config.build_timeout_seconds)
            wanted = to_install(lock, self.base)
            (work / "install.txt").write_text("".join(f"{line}\n" for line in wanted))
            left = self.config.build_timeout_seconds - (time.monotonic() - started)
            output += self._uv(work, ["venv", "--quiet", "--relocatable", "--python", self.python,
                                      str(work / "env")], left)
            if wanted:
                output += self._uv(work, ["pip", "install", "--no-deps", "--compile-bytecode",
                                          "--link-mode", "copy", *self._binary_args(),
                                          "--python", str(work / "env" / "bin" / "python"),
                                          "-r", str(work / "install.txt")],
                                   self.config.build_timeout_seconds - (time.monotonic() - started))
            self._layer_over_base(work / "env")
            seconds = time.monotonic() - started
            (work / "build.log").write_text(output)
            (work / "meta.json").write_text(json.dumps({
                "key": key, "requirements": list(requirements.lines), "installed": wanted,
                "base": self.python, "built": time.time(), "build_seconds": seconds,
                "size": _size(work)}))
            shutil.rmtree(work / "tmp", ignore_errors=True)
            os.rename(work, self.root / key)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log.info("Built environment %s (%s) in %.1f s.", key, " ".join(requirements.lines), seconds)
        reused = len(lock_lines(lock)) - len(wanted)
        lines = [f"{LOG_PREFIX}built {key} for {' '.join(requirements.lines)} in {seconds:.1f} s: "
                 f"installed {' '.join(wanted) or 'nothing'}; {reused} package(s) reused from the base"]
        lines += [f"{LOG_PREFIX}| {line}" for line in output.splitlines() if line.strip()]
        return lines

    def _compile(self, work: Path, requirements: Requirements, timeout: float) -> tuple[str, str]:
        """(lock, uv's output): ``requirements`` resolved against the indexes."""
        (work / "requirements.in").write_text(requirements.text())
        (work / "reused.txt").write_text("".join(f"{pin}\n" for pin in
                                                 reused_pins(self.base, requirements, self.config)))
        output = self._uv(work, ["pip", "compile", "--quiet", "--no-header", "--no-annotate",
                                 *self._binary_args(), "--python", self.python,
                                 "-c", str(work / "reused.txt"), "-o", str(work / "lock.txt"),
                                 str(work / "requirements.in")], timeout)
        return (work / "lock.txt").read_text(), output

    def _binary_args(self) -> list[str]:
        return ["--only-binary", ":all:"] if self.config.only_binary else []

    def _uv(self, work: Path, args: Sequence[str], timeout: float) -> str:
        """Runs uv (in the sandbox when there is one) with ``work`` its only writable place
        besides uv's download cache; its output, or EnvironmentFailed with its error lines."""
        argv = [uv_binary(), *args]
        env = {k: v for k, v in os.environ.items() if k in PROXY_VARIABLES}
        env.update(self.indexes.uv_env())
        env.update({"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work / "tmp"),
                    "TMPDIR": str(work / "tmp"), "UV_CACHE_DIR": str(self.uv_cache),
                    "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
        if self.indexes.cert and "SSL_CERT_FILE" not in env:
            env["SSL_CERT_FILE"] = self.indexes.cert
        (work / "tmp").mkdir(exist_ok=True)
        self.uv_cache.mkdir(exist_ok=True)
        if self.sandbox is not None:
            argv = self.build_sandbox_argv(work) + argv
            env.update(HOME="/tmp", TMPDIR="/tmp")
        with self._using_uv_cache():
            output, returncode = _run_group(argv, work, env, timeout)
        if returncode is None:
            raise EnvironmentFailed(f"building the job's Python environment took longer than "
                                    f"{self.config.build_timeout_seconds} s "
                                    "(environments.build_timeout_seconds)", log=output, timed_out=True)
        if returncode != 0:
            raise EnvironmentFailed(f"building the job's Python environment failed: {error_lines(output)}",
                                    log=output, detail=error_lines(output))
        return output

    def build_sandbox_argv(self, work: Path) -> list[str]:
        """bwrap's argv (up to ``--``) for a build in ``work``: it sees what a job sees, and the
        indexes' local directories, read-only; it writes only ``work`` and uv's download cache."""
        uv_dir = os.path.dirname(os.path.realpath(uv_binary()))
        return self.sandbox.build_argv(work, work / "tmp", [str(self.uv_cache)],
                                       [*self.indexes.local_dirs(), uv_dir])

    def _layer_over_base(self, env: Path) -> None:
        """Adds the base's site-packages after the environment's own (its .pth files run too)."""
        site = next((env / "lib").glob("python*/site-packages"))
        lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in self.base.site_packages)
        (site / BASE_PTH).write_text(lines)

    def _pack(self, key: str) -> Path:
        """The environment's archive for a cluster's executors, packed once."""
        target = self.root / key / ARCHIVE_FILENAME
        if not target.is_file():
            partial = target.with_name(f".{ARCHIVE_FILENAME}.{os.getpid()}")
            with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
                tar.add(self.root / key / "env", arcname=".")
            os.rename(partial, target)
        return target

    # -- the cache's bounds ------------------------------------------------------------------

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv-cache"

    @property
    def uv_cache_lock(self) -> Path:
        """The lock each uv run holds shared, and removing uv's download cache exclusive."""
        return self.root / "locks" / "uv-cache.use"

    def _make_root(self) -> None:
        for directory in (self.root, self.root / "locks"):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _lock_path(self, key: str, kind: str) -> Path:
        return self.root / "locks" / f"{key}.{kind}"

    def entries(self) -> list[tuple[float, int, str]]:
        """(last use, size in bytes, key) of every built environment, least recently used first."""
        found = []
        for meta in self.root.glob("*/meta.json"):
            if meta.parent.name.startswith("."):
                continue  # a build about to be renamed into place (pathlib's glob matches dot names)
            try:
                size = json.loads(meta.read_text())["size"]
                archive = meta.with_name(ARCHIVE_FILENAME)
                size += archive.stat().st_size if archive.is_file() else 0
                found.append((meta.stat().st_mtime, size, meta.parent.name))
            except (OSError, ValueError, KeyError):
                continue
        return sorted(found)

    def evict(self, keep: str = "") -> list[str]:
        """Removes least recently used environments not in use until the cache holds at most
        ``environments.max_cache_mb``, then uv's download cache if need be; the keys removed."""
        budget = self.config.max_cache_mb * 1024 * 1024
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, key in entries:
            if total <= budget:
                break
            if key == keep:
                continue
            build, use = Hold(self._lock_path(key, "build")), Hold(self._lock_path(key, "use"))
            try:
                if not (build.exclusive(wait=False) and use.exclusive(wait=False)):
                    continue  # a job runs on it, or it is being packed
                trash = Path(tempfile.mkdtemp(prefix=f".evicted-{key}-", dir=self.root))
                os.rename(self.root / key, trash / key)
                shutil.rmtree(trash, ignore_errors=True)
            finally:
                build.close()
                use.close()
            total -= size
            removed.append(key)
            log.info("Evicted environment %s (%.1f MB): the cache is bounded to %d MB.", key,
                     size / 1e6, self.config.max_cache_mb)
        if total + _size(self.uv_cache) > budget and self.uv_cache.is_dir():
            self._remove_uv_cache()
        return removed

    @contextlib.contextmanager
    def _using_uv_cache(self):
        """Holds uv's download cache for a uv run: eviction does not remove it meanwhile."""
        in_use = Hold(self.uv_cache_lock)
        try:
            in_use.shared()
            yield
        finally:
            in_use.close()

    def _remove_uv_cache(self) -> None:
        """Removes uv's download cache unless a uv run (another job's build) is using it: it
        is only a cache, and the next eviction tries again."""
        lock = Hold(self.uv_cache_lock)
        try:
            if lock.exclusive(wait=False):
                shutil.rmtree(self.uv_cache, ignore_errors=True)
        finally:
            lock.close()


def lock_lines(lock: str) -> list[str]:
    return [line for line in lock.splitlines() if _PINNED.match(line.strip())]


def error_lines(output: str, most: int = 12) -> str:
    """uv's error, as one text: from its first error line on (at most ``most`` lines)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines)
                  if line.startswith(("error", "×", "x ", "Because")) or "error:" in line), None)
    picked = lines[start:] if start is not None else lines[-most:]
    return " ".join(picked[:most]) or "uv failed and said nothing"


def _run_group(argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> tuple[str, int | None]:
    """(output, exit code) of ``argv`` run in a process group of its own; the exit code is
    None when it ran past ``timeout`` seconds (at least 1) and its group was killed."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, text=True, errors="replace")
    try:
        output, _ = process.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return output, None
    return output, process.returncode


def _size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total


class Hold:
    """A file lock (flock): exclusive or shared. Closing it lets go; so does the process's end."""

    def __init__(self, path: Path):
        self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def exclusive(self, wait: bool = True) -> bool:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            return False

    def shared(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def inheritable_copy(self) -> int:
        """A copy of the lock's descriptor for a child to inherit (``pass_fds``), numbered 10 or
        more, clear of the low numbers a child may claim (:data:`sparkrunner.inside.supervise.STATUS_FD`).
        The lock lasts while the child holds it, whoever else closes theirs; close the copy
        once the child is started."""
        return fcntl.fcntl(self._fd, fcntl.F_DUPFD_CLOEXEC, 10)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def user_cache_dir() -> Path:
    """Where ``sparkrunner run`` keeps environments: $XDG_CACHE_HOME (or ~/.cache)/sparkrunner."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sparkrunner" / "environments"
