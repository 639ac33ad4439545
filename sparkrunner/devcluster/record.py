"""What ``cluster up`` keeps in the cluster directory: its record, its secret, its properties.

``cluster.json`` names the cluster's processes (pid and start time, so that a later pid is never
mistaken for one of them) and where everything is; the secret and the client's
``spark-defaults.conf`` are written readable by their owner only, and removed with the record.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ClusterError

STATE_FILE = "cluster.json"
SECRET_FILE = "secret"
DAEMON_CONF_DIR = "daemon-conf"
DAEMON_PROPERTIES = "daemon.properties"
CLIENT_CONF_DIR = "client-conf"


@dataclass(frozen=True)
class Daemon:
    """One process up() started: a Master or a Worker, leader of its own process group."""

    name: str
    pid: int
    #: Field 22 of /proc/<pid>/stat: with the pid, names this process and no later one.
    start_time: int
    log: str


@dataclass(frozen=True)
class ClusterInfo:
    """What up() started and where it keeps it; saved as ``<cluster_dir>/cluster.json``."""

    cluster_dir: str
    master_url: str
    webui_url: str
    secret_file: str
    #: SPARK_CONF_DIR for spark-submit: its spark-defaults.conf holds the secret.
    client_conf_dir: str
    spark_home: str
    workers: int
    processes: tuple[Daemon, ...]

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "ClusterInfo":
        try:
            raw = json.loads(text)
            raw.pop("version", None)
            raw["processes"] = tuple(Daemon(**p) for p in raw["processes"])
            return cls(**raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ClusterError(f"{source!r} is not a cluster record sparkrunner wrote ({exc}); "
                               "remove it if no cluster is running") from exc


def read_info(cluster_dir: Path) -> ClusterInfo | None:
    """The cluster recorded in ``cluster_dir``, or None."""
    path = Path(cluster_dir).expanduser().resolve() / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClusterError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return ClusterInfo.from_json(text, str(path))


def forget(cluster_dir: Path) -> None:
    """Removes the record, the secret and the client's copy of it: the secret dies with its
    cluster, and the next up() makes a new one."""
    for path in (cluster_dir / STATE_FILE, cluster_dir / SECRET_FILE,
                 cluster_dir / CLIENT_CONF_DIR / "spark-defaults.conf"):
        path.unlink(missing_ok=True)


def properties_text(values: dict[str, str], purpose: str) -> str:
    """A Java properties file's text, headed by why it was written."""
    lines = [f"# Written by sparkrunner cluster up. {purpose}"]
    lines += [f"{key} {value}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by this user only, replacing it atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created with mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
