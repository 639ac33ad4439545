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
    sub.add_argument("--ssl-certfile", type=Path, metavar="PEM",
                     help="serve HTTPS with this certificate (chain); with --ssl-keyfile "
                          "(configuration: service.ssl_certfile)")
    sub.add_argument("--ssl-keyfile", type=Path, metavar="PEM",
                     help="the certificate's private key (configuration: service.ssl_keyfile)")


def cmd_serve(args) -> int:
    import dataclasses

    import uvicorn

    from ..api import create_app
    from ..service import JobService

    settings = settings_from(args)
    changes = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    changes.update({k: str(v.absolute()) for k, v in (("ssl_certfile", args.ssl_certfile),
                                                       ("ssl_keyfile", args.ssl_keyfile)) if v is not None})
    service = dataclasses.replace(settings.service, **changes)
    settings = settings.with_overrides(service=service)
    if bool(service.ssl_certfile) != bool(service.ssl_keyfile):
        raise UsageError("HTTPS needs both the certificate and its private key: give --ssl-certfile "
                         "and --ssl-keyfile (or service.ssl_certfile and service.ssl_keyfile), or neither")
    for path in (service.ssl_certfile, service.ssl_keyfile):
        if path and not Path(path).is_file():
            raise UsageError(f"no such file: {path!r}")
    if not is_loopback(service.host) and not service.tokens:
        # Anyone who can reach the port could run code as this user.
        raise UsageError(f"refusing to serve on {service.host!r} without authentication: configure "
                         "service.tokens, or bind to a loopback address (127.0.0.1, ::1, localhost)")
    tls = bool(service.ssl_certfile)
    if not tls and not is_loopback(service.host):
        print("sparkrunner: warning: tokens travel in clear over plain HTTP: give --ssl-certfile and "
              "--ssl-keyfile, or put TLS in front", file=sys.stderr, flush=True)
    # Made here, not in the server's startup: a data directory in use, or several users and no
    # sandbox, is a clear error (exit 2).
    app = create_app(settings, JobService(settings), manage=True)
    print(f"sparkrunner: serving on {'https' if tls else 'http'}://{service.host}:{service.port} "
          f"(data in {settings.data_dir}, at most {service.max_concurrent_jobs} jobs at once)",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=service.host, port=service.port,
                log_level="info" if args.verbose else "warning",
                ssl_certfile=service.ssl_certfile or None, ssl_keyfile=service.ssl_keyfile or None)
    return EXIT_OK


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
