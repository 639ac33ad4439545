"""The ``sparkrunner`` command line.

- :mod:`.main`: the parser, and the exit code each kind of error gives;
- :mod:`.local`: ``schema``, ``validate``, ``render``, ``run`` (no service needed);
- :mod:`.serve`: ``serve``, the REST service;
- :mod:`.remote`: ``submit``, ``status``, ``logs``, ``cancel``, ``list``, clients of a service;
- :mod:`.cluster`: ``cluster up|down|status``, the development cluster.

Exit codes: 0 success; 1 the job failed; 2 the job, the command line or the configuration is
invalid; 3 the service cannot be reached or failed (see :data:`.main.EXIT_CODES`).
"""

from .main import main

__all__ = ["main"]
