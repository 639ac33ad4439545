"""``sparkrunner run --warm``: a warm Spark Connect server kept on this machine between runs.

The server is pyspark's own persistent local Connect server (``spark.local.connect.reuse``):
the first ``run --warm`` starts it, later runs find it through its discovery file (in a
directory only this user can read, with its token) and reuse it, and ``sparkrunner stop-warm``
stops it. The job's driver runs in a process of its own, as a cold run's spark-submit would,
with ``SPARK_REMOTE`` naming the server and a session of its own.
"""

from __future__ import annotations

import os
import sys
import uuid

from ..config import Settings
from ..launcher import SparkSubmit
from ..workdir import DRIVER_FILENAME
from .server import TOKEN_VARIABLE


def warm_run(settings: Settings, cold: SparkSubmit) -> SparkSubmit:
    """The warm run of a prepared job in place of ``cold``, on the local warm server (started
    if there is none: that takes a while, once)."""
    from pyspark.sql.connect.local_server import reuse_or_start_local_connect_server

    before = os.environ.get(TOKEN_VARIABLE)
    url = reuse_or_start_local_connect_server(
        settings.spark.master, {**settings.spark.conf, "spark.driver.memory": settings.warm.driver_memory})
    token = os.environ[TOKEN_VARIABLE]  # set by pyspark for its own client; ours is the driver's
    if before is None:
        del os.environ[TOKEN_VARIABLE]
    env = {**cold.env, "SPARK_REMOTE": f"{url}/;session_id={uuid.uuid4()}", TOKEN_VARIABLE: token,
           "SPARKRUNNER_WARM": "1"}
    python = cold.env.get("PYSPARK_DRIVER_PYTHON") or sys.executable
    return SparkSubmit([python, str(cold.cwd / DRIVER_FILENAME)], cold.cwd, env, cold.log_path,
                       cold.exit_file, sandbox=cold.sandbox)


def stop() -> bool | None:
    """Stops the local warm server: True if one was stopped, False if none ran, None if unsure."""
    from pyspark.sql.connect.local_server import stop_local_connect_server

    return stop_local_connect_server()
