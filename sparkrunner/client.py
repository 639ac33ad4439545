"""A client of the sparkrunner REST service, and the pieces every client shares.

:class:`Client` (over requests) serves the command line and the Airflow operator; the Airflow
trigger talks to the service asynchronously through the hook, with the same pieces:
:func:`error_from_answer` and :func:`unreachable` turn a failed request into the same errors,
:class:`LogCursor` pages through a job's log from where it last stopped, and :class:`Tolerance`
decides when a follower gives up on a service that fails to answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Iterator
from urllib.parse import quote

import requests

from .errors import ApiError, ServiceUnavailable, api_error
from .states import JobStatus

log = logging.getLogger(__name__)

URL_ENV = "SPARKRUNNER_URL"
CSRF_HEADER = "X-Requested-By"
TOKEN_ENV = "SPARKRUNNER_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8765"
#: Lines asked for per request when reading a log forward.
LOG_PAGE = 1000


def error_from_answer(status: int, text: str) -> ApiError:
    """The error for an HTTP answer with ``status`` (400 or more) and body ``text``: the
    service's ``detail`` and ``errors`` when the body is its JSON, else the start of the text."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": text.strip()[:500]}
    return api_error(status, str(body.get("detail", body)), body.get("errors"))


def unreachable(url: str, exc: BaseException) -> ServiceUnavailable:
    """The error for a request that got no answer from the service at ``url``."""
    return ServiceUnavailable(0, f"cannot reach the sparkrunner service at {url}: {str(exc) or repr(exc)}")


class LogCursor:
    """Reads a job's driver log forward, a page at a time, from where it last stopped.

    ``page(start, size)`` answers as ``GET /jobs/{id}/log``: ``{"from", "total", "log"}``.
    """

    def __init__(self, page: Callable[[int, int], dict], position: int = 0, size: int = LOG_PAGE):
        self._page = page
        #: The number of the next line to read (the lines before it were handed out).
        self.position = position
        self.size = size

    def read(self) -> Iterator[str]:
        """Every line not handed out yet, in order, up to the log's present end. ``position``
        moves with each line, so a failure half-way loses and repeats nothing."""
        while True:
            page = self._page(self.position, self.size)
            lines = page["log"]
            for offset, line in enumerate(lines, start=1):
                self.position = page["from"] + offset
                yield line
            self.position = page["from"] + len(lines)
            if self.position >= page["total"] or not lines:
                return


class Tolerance:
    """How many failed requests in a row a follower puts up with: up to ``max_failures``
    transient ones (:class:`ServiceUnavailable`: a restart, an overload), and no other."""

    def __init__(self, max_failures: int):
        self.max_failures = max_failures
        self.failures = 0

    def failed(self, exc: ApiError) -> bool:
        """Counts ``exc``; True when asking again may still help."""
        self.failures += 1
        return exc.transient and self.failures <= self.max_failures

    def succeeded(self) -> None:
        self.failures = 0


class Client:
    """The service's REST API over requests; every failure is an :class:`ApiError`."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0):
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.session = requests.Session()
        self.timeout = timeout
        token = token or os.environ.get(TOKEN_ENV)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        # Marks requests as a program's, not a browser form's (the service's cross-site check).
        self.session.headers[CSRF_HEADER] = "sparkrunner-client"

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.url + path, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise unreachable(self.url, exc) from exc
        if response.status_code >= 400:
            raise error_from_answer(response.status_code, response.text)
        return response

    def submit(self, document: dict, idempotency_key: str | None = None) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/jobs", json=document, headers=headers).json()

    def get(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}").json()

    def list(self, status: list[str] | None = None, job_type: str | None = None,
             start: int = 0, size: int = 20) -> dict:
        params: dict[str, Any] = {"from": start, "size": size}
        if status:
            params["jobStatus"] = status
        if job_type:
            params["jobType"] = job_type
        return self._call("GET", "/jobs", params=params).json()

    def log(self, job_id: str, start: int | None = None, size: int = 100) -> dict:
        params: dict[str, Any] = {"size": size}
        if start is not None:
            params["from"] = start
        return self._call("GET", f"/jobs/{job_id}/log", params=params).json()

    def log_cursor(self, job_id: str, start: int = 0) -> LogCursor:
        """A :class:`LogCursor` on the job's log, at line ``start``."""
        return LogCursor(lambda begin, size: self.log(job_id, start=begin, size=size), start)

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/cancel").json()

    # -- registered models --------------------------------------------------------------------

    def register_model(self, body: dict) -> dict:
        """Registers ``{"name", "model", "defaults"}`` (or ``{"name", "fromJob"}``); the new version."""
        return self._call("POST", "/models", json=body).json()

    def models(self) -> list[dict]:
        return self._call("GET", "/models").json()["models"]

    def model(self, name: str) -> dict:
        """The model's versions, newest first."""
        return self._call("GET", f"/models/{quote(name, safe='')}").json()

    def delete_model(self, name: str, version: int | None = None) -> dict:
        path = f"/models/{quote(name, safe='')}" + (f"/versions/{version}" if version is not None else "")
        return self._call("DELETE", path).json()

    def create_job(self, model: str, body: dict, version: int | None = None) -> dict:
        """A job of registered model ``model`` (``body``: jobType, inputData, outputData, …)."""
        params = {"version": version} if version is not None else {}
        return self._call("POST", f"/models/{quote(model, safe='')}/jobs", json=body, params=params).json()

    def health(self) -> dict:
        return self._call("GET", "/healthz").json()

    def wait(self, job_id: str, poll_seconds: float = 1.0, on_line: Callable[[str], None] | None = None,
             timeout: float | None = None, max_failed_polls: int = 5,
             on_job: Callable[[dict], None] | None = None) -> dict:
        """Follows a job until it ends and returns its last view; with ``on_line``, every new
        line of its log is passed there as it appears, with ``on_job`` every view of the job
        (its state and progress). Up to ``max_failed_polls`` transient failures in a row (the
        service restarting) are waited out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor = self.log_cursor(job_id)
        tolerance = Tolerance(max_failed_polls)
        while True:
            try:
                job = self.get(job_id)
                if on_job is not None:
                    on_job(job)
                if on_line is not None:
                    for line in cursor.read():
                        on_line(line)
            except ApiError as exc:
                if not tolerance.failed(exc):
                    raise
                log.warning("Following job %s failed (%d of %d failures in a row tolerated): %s",
                            job_id, tolerance.failures, max_failed_polls, exc)
            else:
                tolerance.succeeded()
                if JobStatus(job["jobStatus"]).is_terminal:
                    return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still not finished after {timeout} s")
            time.sleep(poll_seconds)
