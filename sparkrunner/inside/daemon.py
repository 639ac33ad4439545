"""The daemon of a cluster executor's Python workers, without the cluster's secret in its environment.

Copied into the working directory as ``sparkrunner_daemon.py``, shipped with ``--py-files`` and
named by ``spark.python.daemon.module`` on a cluster. Spark's standalone Worker gives every
executor JVM the cluster's authentication secret in the variable ``_SPARK_AUTH_SECRET``, and the
JVM hands its environment on to the Python daemon that forks the workers running a job's code.
This module replaces itself with ``pyspark.daemon`` (same interpreter, process and file
descriptors) started without that variable, so neither the daemon nor a worker holds it, not
even in ``/proc/<pid>/environ``, which shows the environment a process was started with.

It cannot hide the executor JVM's own environment from code running as the same user: see the
README on what a job's executor code can reach. Standard library only.
"""

import os
import sys

SECRET_ENV = "_SPARK_AUTH_SECRET"

if __name__ == "__main__":
    env = {name: value for name, value in os.environ.items() if name != SECRET_ENV}
    os.execve(sys.executable, [sys.executable, "-m", "pyspark.daemon", *sys.argv[1:]], env)
