"""The development cluster: a Spark standalone cluster on 127.0.0.1 from the pyspark wheel.

For trying the standalone profile and for the tests, never for production: ``sparkrunner
cluster up|down|status`` (:mod:`sparkrunner.cli.cluster`) drives it.

- :mod:`.daemons` starts, stops and looks at the Master and Workers, secure by default;
- :mod:`.record` is what it keeps in the cluster directory (``cluster.json``, the secret).
"""

from ..errors import ClusterError, ClusterUsageError
from .daemons import DEFAULT_CLUSTER_DIR, START_TIMEOUT, down, master_state, status, up
from .record import ClusterInfo, Daemon, read_info

__all__ = ["ClusterError", "ClusterInfo", "ClusterUsageError", "DEFAULT_CLUSTER_DIR", "Daemon",
           "START_TIMEOUT", "down", "master_state", "read_info", "status", "up"]
