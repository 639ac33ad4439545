"""What the commands share: declaring a command, the configuration with command-line
overrides, reading a job file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .exits import EPILOG


def add_command(commands, name: str, handler, help: str) -> argparse.ArgumentParser:
    """A subcommand ``name`` of ``commands`` (argparse subparsers) that runs ``handler(args)``."""
    sub = commands.add_parser(name, help=help, description=help, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.set_defaults(handler=handler)
    return sub


def settings_from(args):
    """The configuration (``--config``, else ``$SPARKRUNNER_CONFIG``, else conf/sparkrunner.yaml)
    with what the command line overrides in it: ``--data-dir``, ``--master``."""
    from .. import config

    settings = config.load(args.config)
    changes = {}
    if getattr(args, "data_dir", None):
        changes["data_dir"] = args.data_dir.absolute()
    if getattr(args, "master", None):
        import dataclasses

        changes["spark"] = dataclasses.replace(settings.spark, master=args.master)
    return settings.with_overrides(**changes) if changes else settings


def read_input(path: str) -> bytes:
    """The bytes of a job file, or of standard input for ``-``."""
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read job file {path!r}: {exc.strerror}") from exc
