"""Warm jobs: eligible jobs run on a warm Spark Connect server, in a process forked in milliseconds.

- :mod:`sparkrunner.execution` decides, at admission, whether a job may run warm;
- :mod:`.server`: one warm server, a Spark Connect server and its fork server, for one user;
- :mod:`.pool`: the service's servers, one per user, started, replaced and watched;
- :mod:`.run`: a warm job's run, followed as a cold one's;
- what runs in the job's process: :mod:`sparkrunner.inside.forkserver`, :mod:`sparkrunner.inside.landlock`
  and the driver.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..sandbox import Sandbox
from .pool import WarmPool

WARM_DIRNAME = "warm"


def unavailable(settings: Settings, sandbox: Sandbox | None) -> str | None:
    """Why the service cannot run jobs warm; None when it can."""
    if not settings.warm.enabled:
        return "warm jobs are off in the configuration (warm.enabled)"
    try:
        import grpc  # noqa: F401
        import pyspark.sql.connect.session  # noqa: F401
    except ImportError as exc:
        return f"Spark Connect's client is not installed ({exc}): install pyspark[connect]"
    if sandbox is not None:
        problem = sandbox.warm_problem()
        if problem:
            return f"warm jobs cannot be sandboxed here: {problem}"
    return None


def make_pool(settings: Settings, data_dir: Path, sandbox: Sandbox | None) -> tuple[WarmPool | None, str | None]:
    """The service's warm pool, or (None, why warm jobs cannot run)."""
    why = unavailable(settings, sandbox)
    if why:
        return None, why
    paths = sandbox.landlock_paths() if sandbox is not None else None
    return WarmPool(settings, Path(data_dir) / WARM_DIRNAME, sandbox, paths), None
