"""A client of the sparkrunner REST service, over requests."""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import requests

from .errors import SparkRunnerError
from .states import JobStatus

URL_ENV = "SPARKRUNNER_URL"
CSRF_HEADER = "X-Requested-By"
TOKEN_ENV = "SPARKRUNNER_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8765"


class ApiError(SparkRunnerError):
    """The service refused a request or could not be reached; ``status`` is 0 for the latter."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        self.status, self.detail, self.errors = status, detail, errors or []
        super().__init__(detail if not status else f"HTTP {status}: {detail}")


class Client:
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
            raise ApiError(0, f"cannot reach the sparkrunner service at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text.strip()[:500]}
            raise ApiError(response.status_code, str(body.get("detail", body)), body.get("errors"))
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

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/cancel").json()

    def health(self) -> dict:
        return self._call("GET", "/healthz").json()

    def wait(self, job_id: str, poll_seconds: float = 1.0, on_line: Callable[[str], None] | None = None,
             timeout: float | None = None) -> dict:
        """Follows a job until it ends and returns its last view; with ``on_line``, every new
        line of its log is passed there as it appears."""
        deadline = None if timeout is None else time.monotonic() + timeout
        seen = 0
        while True:
            job = self.get(job_id)
            if on_line is not None:
                while True:
                    page = self.log(job_id, start=seen, size=1000)
                    for line in page["log"]:
                        on_line(line)
                    seen = page["from"] + len(page["log"])
                    if seen >= page["total"]:
                        break
            if JobStatus(job["jobStatus"]).is_terminal:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['jobStatus']} after {timeout} s")
            time.sleep(poll_seconds)
