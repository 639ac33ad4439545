"""What runs inside spark-submit's process group, not in the service or the command line.

- :mod:`.supervise` wraps spark-submit: it records who it is and how spark-submit ended, so a
  restarted service can tell (``python -m sparkrunner.inside.supervise``);
- :mod:`.driver` is the script spark-submit runs: copied into every working directory as
  ``sparkrunner_driver.py``, it calls the model's functions; a warm run calls its ``main()`` in
  the service's fork child instead, in a Spark Connect session;
- :mod:`.scoring` is the distributed scoring path for plain Python models: copied in as
  ``sparkrunner_scoring.py`` and shipped to the executors with ``--py-files``.

The driver and the scoring path run wherever Spark runs them, where sparkrunner may not be
installed: they import nothing from sparkrunner. The service side only copies their files
(:mod:`sparkrunner.workdir`), and starts the supervisor and reads what it wrote
(:mod:`sparkrunner.launcher`).
"""
