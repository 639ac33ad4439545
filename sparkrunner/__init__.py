"""sparkrunner: run ModelOp-style modelBatchJob documents on Apache Spark."""

__version__ = "0.1.0"
