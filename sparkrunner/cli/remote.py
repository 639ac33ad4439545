"""Clients of a running service: ``submit``, ``status``, ``logs``, ``cancel`` and ``list``."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

from ..errors import FieldError, JobInvalid, RequestRefused, UsageError
from .common import add_command, read_input
from .progressbar import ProgressView
from .exits import EXIT_FAILED, EXIT_OK


def client_command(commands, name: str, handler, help: str):
    """A command that talks to the service: ``--url`` and ``--token-file`` besides its own."""
    sub = add_command(commands, name, handler, help)
    sub.add_argument("--url", help="the service (default: $SPARKRUNNER_URL, else http://127.0.0.1:8765)")
    sub.add_argument("--token-file", type=Path,
                     help="file holding the API token (default: $SPARKRUNNER_TOKEN; never put "
                          "a token itself on a command line)")
    return sub


def add_commands(commands) -> None:
    sub = client_command(commands, "submit", cmd_submit, "submit a job to the service and print its id")
    sub.add_argument("job", help="job document (JSON), or - for standard input")
    sub.add_argument("--wait", action="store_true",
                     help="follow the job's state and log; exit 0 if it completes, 1 otherwise")
    sub.add_argument("--idempotency-key", help="submitting again with this key returns the first job")
    sub = client_command(commands, "status", cmd_status, "show a job")
    sub.add_argument("id")
    sub.add_argument("-f", "--follow", action="store_true",
                     help="draw the job's progress until it ends, then show it; exit 0 if it completes, 1 otherwise")
    sub = client_command(commands, "logs", cmd_logs, "print a job's driver log")
    sub.add_argument("id")
    sub.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    sub = client_command(commands, "cancel", cmd_cancel, "cancel a job")
    sub.add_argument("id")
    sub = client_command(commands, "list", cmd_list, "list jobs, newest first")
    sub.add_argument("--status", action="append", help="only jobs in this state (repeatable)")
    sub.add_argument("--type", dest="job_type", help="only jobs of this jobType")
    sub.add_argument("--size", type=int, default=20, help="how many (default 20)")


def client_of(args):
    from ..client import Client

    token = None
    if args.token_file:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {str(args.token_file)!r}: {exc.strerror}") from exc
    return Client(args.url, token)


def print_json(value) -> None:
    print(json.dumps(value, indent=2))


def ended(job: dict) -> int:
    return EXIT_OK if job["jobStatus"] == "COMPLETE" else EXIT_FAILED


def cmd_submit(args) -> int:
    from ..jobspec import parse_document

    client = client_of(args)
    with refusals_listed():
        job = client.submit(parse_document(read_input(args.job)), idempotency_key=args.idempotency_key)
    print(job["id"], flush=True)
    if not args.wait:
        return EXIT_OK
    return ended(follow(client, job["id"]))


@contextmanager
def refusals_listed():
    """A 422 from the service raised as JobInvalid, so its problems are listed one a line."""
    try:
        yield
    except RequestRefused as exc:
        if exc.status == 422:
            raise JobInvalid([FieldError(e.get("path", "$"), e.get("message", "")) for e in exc.errors]) from exc
        raise


def follow(client, job_id: str) -> dict:
    """Follows a job to its end, its log printed and its progress drawn; its last view."""
    with ProgressView() as view:
        job = client.wait(job_id, on_line=print, on_job=view.job)
    print(f"sparkrunner: {job['jobStatus']}: {job['reason']}", file=sys.stderr)
    return job


def cmd_status(args) -> int:
    client = client_of(args)
    if not args.follow:
        print_json(client.get(args.id))
        return EXIT_OK
    with ProgressView() as view:
        job = client.wait(args.id, on_job=view.job)
    print_json(job)
    return ended(job)


def cmd_logs(args) -> int:
    client = client_of(args)
    if args.follow:
        return ended(client.wait(args.id, on_line=print))
    for line in client.log_cursor(args.id).read():
        print(line)
    return EXIT_OK


def cmd_cancel(args) -> int:
    job = client_of(args).cancel(args.id)
    print(f"{job['id']}: {job['jobStatus']}" + (" (cancel requested)" if job["cancelRequested"] and
                                                 job["jobStatus"] in ("WAITING", "RUNNING") else ""))
    return EXIT_OK


def cmd_list(args) -> int:
    page = client_of(args).list(status=args.status, job_type=args.job_type, size=args.size)
    print(f"{'ID':36}  {'STATUS':9}  {'TYPE':24}  {'CREATED':24}  NAME")
    for job in page["jobs"]:
        print(f"{job['id']:36}  {job['jobStatus']:9}  {job['jobType']:24}  {job['createdDate']:24}  {job['name']}")
    if page["total"] > len(page["jobs"]):
        print(f"({len(page['jobs'])} of {page['total']})")
    return EXIT_OK
