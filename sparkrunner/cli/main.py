"""The ``sparkrunner`` command's parser and entry point."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import JobInvalid, SparkRunnerError
from . import cluster, local, models, remote, serve
from .exits import EPILOG, EXIT_INVALID, exit_code


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (see :mod:`sparkrunner.cli.exits`)."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except JobInvalid as exc:
        print(f"error: the job is invalid ({len(exc.errors)} problem{'s' * (len(exc.errors) > 1)}):",
              file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return exit_code(exc)
    except SparkRunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except ModuleNotFoundError as exc:
        # Model code runs in spark-submit, never in this process: a missing module here is one
        # of sparkrunner's own dependencies, and the fix is to install it, not a traceback.
        package = missing_package(exc.name or "")
        print(f"error: the Python package {package!r} is not installed: pip install {package} "
              f"(or reinstall sparkrunner, which depends on it)", file=sys.stderr)
        return EXIT_INVALID


#: Packages whose import name is not the name to install.
_PACKAGE_OF_MODULE = {"yaml": "pyyaml", "prometheus_client": "prometheus-client"}


def missing_package(module: str) -> str:
    """The name to ``pip install`` for a missing module (``yaml.constructor`` → ``pyyaml``)."""
    top = module.partition(".")[0]
    return _PACKAGE_OF_MODULE.get(top, top)


def parser() -> argparse.ArgumentParser:
    """The whole command line: global options, then one command."""
    top = argparse.ArgumentParser(
        prog="sparkrunner", description="Run ModelOp-style modelBatchJob documents on Apache Spark.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"sparkrunner {__version__}")
    top.add_argument("--config", metavar="FILE",
                     help="configuration file (default: $SPARKRUNNER_CONFIG, else conf/sparkrunner.yaml)")
    top.add_argument("-v", "--verbose", action="store_true", help="log what sparkrunner does")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.add_commands(commands)
    serve.add_commands(commands)
    cluster.add_commands(commands)
    remote.add_commands(commands)
    models.add_commands(commands)
    return top

