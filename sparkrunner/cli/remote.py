"""Clients of a running service: ``submit``, ``status``, ``logs``, ``cancel`` and ``list``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import FieldError, JobInvalid, RequestRefused, UsageError
from .common import add_command, read_input
from .progressbar import ProgressView
from .exits import EXIT_FAILED, EXIT_OK


def add_commands(commands) -> None:
    def client_command(name: str, handler, help: str):
        sub = add_command(commands, name, handler, help)
        sub.add_argument("--url", help="the service (default: $SPARKRUNNER_URL, else http://127.0.0.1:8765)")
        sub.add_argument("--token-file", type=Path,
                         help="file holding the API token (default: $SPARKRUNNER_TOKEN; never put "
                              "a token itself on a command line)")
        return sub

    sub = client_command("submit", cmd_submit, "submit a job to the service and print its id")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--wait", action="store_true",
                     help="follow the job's state and log; exit 0 if it completes, 1 otherwise")
    sub.add_argument("--idempotency-key", help="submitting again with this key returns the first job")
    sub = client_command("status", cmd_status, "show a job")
    sub.add_argument("id")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="draw the job's progress until it ends, then show it; exit 0 if it completes, 1 otherwise")
    sub = client_command("logs", cmd_logs, "print a job's driver log")
    sub.add_argument("id")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    sub = client_command("cancel", cmd_cancel, "cancel a job")
    sub.add_argument("id")
    sub = client_command("list", cmd_list, "list jobs, newest first")
    sub.add_argument("--status", action="append", help="only jobs in this state (repeatable)")
    sub.add_argument("--type", dest="job_type", help="only jobs of this jobType")
    sub.add_argument("--size", type=int, default=20, help="how many (default 20)")


def _client(args):
    from ..client import Client

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {str(args.token_file)!r}: {exc.strerror}") from exc
    return Client(args.url, token)


def _print_json(value) -> None:
    print(json.dumps(value, indent=2))


def _ended(job: dict) -> int:
    return EXIT_OK if job["jobStatus"] == "COMPLETE" else EXIT_FAILED


def cmd_submit(args) -> int:
    from ..jobspec import parse_document

    client = _client(args)
    try:
        job = client.submit(parse_document(read_input(args.job)), idempotency_key=args.idempotency_key)
    except RequestRefused as exc:
        if exc.status == 422:
            raise JobInvalid([FieldError(e.get("path", "$"), e.get("message", "")) for e in exc.errors]) from exc
        raise
    print(job["id"], flush=True)
    if not args.wait:
        return EXIT_OK
    with ProgressView() as view:
        job = client.wait(job["id"], on_line=print, on_job=view.job)
    print(f"sparkrunner: {job['jobStatus']}: {job['reason']}", file=sys.stderr)
    return _ended(job)


def cmd_status(args) -> int:
    client = _client(args)
    if not args.follow:
        _print_json(client.get(args.id))
        return EXIT_OK
    with ProgressView() as view:
        job = client.wait(args.id, on_job=view.job)
    _print_json(job)
    return _ended(job)


def cmd_logs(args) -> int:
    client = _client(args)
    if args.follow:
        return _ended(client.wait(args.id, on_line=print))
    for line in client.log_cursor(args.id).read():
        print(line)
    return EXIT_OK


def cmd_cancel(args) -> int:
    job = _client(args).cancel(args.id)
    print(f"{job['id']}: {job['jobStatus']}" + (" (cancel requested)" if job["cancelRequested"] and
                                                 job["jobStatus"] in ("WAITING", "RUNNING") else ""))
    return EXIT_OK


def cmd_list(args) -> int:
    page = _client(args).list(status=args.status, job_type=args.job_type, size=args.size)
    print(f"{'ID':36}  {'STATUS':9}  {'TYPE':24}  {'CREATED':24}  NAME")
    for job in page["jobs"]:
        print(f"{job['id']:36}  {job['jobStatus']:9}  {job['jobType']:24}  {job['createdDate']:24}  {job['name']}")
    if page["total"] > len(page["jobs"]):
        print(f"({len(page['jobs'])} of {page['total']})")
    return EXIT_OK
