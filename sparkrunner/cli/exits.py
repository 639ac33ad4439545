"""The command line's exit codes, and which kind of error gives which."""

from __future__ import annotations

from ..errors import (BulkRefused, ClusterError, ConfigError, DataDirInUse, EnvironmentFailed, HdfsCheckFailed,
                      JobInvalid, JobNotFound, ModelNotFound, RequestRefused, ServiceUnavailable, SparkNotFound,
                      SparkRunnerError, StoreError, UsageError, WorkdirError)

EXIT_OK = 0
#: The job failed (also: the cluster did not start, or is not running).
EXIT_FAILED = 1
#: The job, the command line or the configuration is invalid (or a package sparkrunner needs is missing).
EXIT_INVALID = 2
#: The service cannot be reached, failed (5xx) or is overloaded, or its job store is unusable.
EXIT_UNAVAILABLE = 3

#: The exit code of each kind of error; the first class that matches decides.
EXIT_CODES: tuple[tuple[type[SparkRunnerError], int], ...] = (
    (ServiceUnavailable, EXIT_UNAVAILABLE),
    (StoreError, EXIT_UNAVAILABLE),
    (JobInvalid, EXIT_INVALID),
    (RequestRefused, EXIT_INVALID),  # a wrong job id or token, a refused request
    (JobNotFound, EXIT_INVALID),
    (ModelNotFound, EXIT_INVALID),
    (BulkRefused, EXIT_INVALID),  # too large, or no records
    (UsageError, EXIT_INVALID),  # also ClusterUsageError
    (ConfigError, EXIT_INVALID),
    (SparkNotFound, EXIT_INVALID),  # spark.home names no Spark
    (WorkdirError, EXIT_INVALID),  # e.g. --workdir is not empty
    (DataDirInUse, EXIT_INVALID),  # --data-dir is another service's
    (HdfsCheckFailed, EXIT_FAILED),  # the job failed before spark-submit
    (EnvironmentFailed, EXIT_FAILED),  # so did its Python environment's build
    (ClusterError, EXIT_FAILED),
)

#: For --help.
EPILOG = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_FAILED}  the job failed (or ended CANCELLED); the cluster is not running
  {EXIT_INVALID}  the job, the command line or the configuration is invalid; no such job;
     the service refused the request (a wrong token); a package sparkrunner needs is missing
  {EXIT_UNAVAILABLE}  the service cannot be reached, failed or is overloaded (try again later)"""


def exit_code(exc: SparkRunnerError) -> int:
    """The exit code for a command that ended with ``exc``."""
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_FAILED
