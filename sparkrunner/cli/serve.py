"""``sparkrunner serve``: the REST service, until interrupted."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError
from .common import add_command, settings_from
from .exits import EXIT_OK


def add_commands(commands) -> None:
    sub = add_command(commands, "serve", cmd_serve, "run the job service (REST) until interrupted")
    sub.add_argument("--host", help="address to bind (configuration: service.host; default 127.0.0.1)")
    sub.add_argument("--port", type=int, help="port (configuration: service.port; default 8765)")
    sub.add_argument("--data-dir", type=Path, help="job store and working directories (configuration: data_dir)")


def cmd_serve(args) -> int:
    import dataclasses

    import uvicorn

    from ..api import create_app
    from ..service import JobService

    settings = settings_from(args)
    service = dataclasses.replace(settings.service, **{k: v for k, v in
                                  (("host", args.host), ("port", args.port)) if v is not None})
    settings = settings.with_overrides(service=service)
    if not is_loopback(service.host) and not service.tokens:
        # Anyone who can reach the port could run code as this user.
        raise UsageError(f"refusing to serve on {service.host!r} without authentication: configure "
                         "service.tokens, or bind to a loopback address (127.0.0.1, ::1, localhost)")
    print(f"sparkrunner: serving on http://{service.host}:{service.port} "
          f"(data in {settings.data_dir}, at most {service.max_concurrent_jobs} jobs at once)",
          file=sys.stderr, flush=True)
    # Made here, not in the server's startup: a data directory in use is a clear error (exit 2).
    app = create_app(settings, JobService(settings), manage=True)
    uvicorn.run(app, host=service.host, port=service.port,
                log_level="info" if args.verbose else "warning")
    return EXIT_OK


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
