"""The Airflow hook for a sparkrunner service: its REST API, blocking and async."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from airflow.sdk import BaseHook

from ..client import CSRF_HEADER, Client, error_from_answer, unreachable
from ..errors import ApiError, ConfigError

if TYPE_CHECKING:
    from airflow.sdk import Connection

DEFAULT_SCHEME = "http"


def endpoint(conn: Connection) -> tuple[str, str | None]:
    """(base URL, API token) of a ``sparkrunner`` connection.

    ``host`` is a host name, or a whole URL when a proxy serves the API under a path;
    ``schema`` is the URL scheme (``http``, the default, or ``https``); ``password`` is the token.
    """
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        raise ConfigError(f"the Airflow connection {conn.conn_id!r} has no host: set it to the "
                          "sparkrunner service's host name, e.g. 127.0.0.1")
    if "://" in host:
        url = host
        if conn.port and urlsplit(host).port is None:
            parts = urlsplit(host)
            url = parts._replace(netloc=f"{parts.netloc}:{conn.port}").geturl()
    else:
        scheme = (conn.schema or DEFAULT_SCHEME).strip().lower()
        if scheme not in ("http", "https"):
            raise ConfigError(f"the Airflow connection {conn.conn_id!r} has schema {conn.schema!r}; "
                              "it is the URL scheme of the sparkrunner service: http or https")
        url = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    return url, conn.password or None


class SparkRunnerHook(BaseHook):
    """Talks to a sparkrunner service named by an Airflow connection of type ``sparkrunner``.

    The blocking methods serve operators on workers; the ``a``-prefixed ones serve triggers,
    which must not block the triggerer's event loop. Every failure is a
    :class:`sparkrunner.errors.ApiError`: :class:`~sparkrunner.errors.ServiceUnavailable` when
    the service was unreachable or failing (asking again later may help).
    """

    conn_name_attr = "sparkrunner_conn_id"
    default_conn_name = "sparkrunner_default"
    conn_type = "sparkrunner"
    hook_name = "sparkrunner"

    def __init__(self, sparkrunner_conn_id: str = default_conn_name, timeout: float = 30.0):
        super().__init__()
        self.sparkrunner_conn_id = sparkrunner_conn_id
        self.timeout = timeout
        self._async_endpoint: tuple[str, str | None] | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login", "extra"],
            "relabeling": {"schema": "Scheme", "password": "API token"},
            "placeholders": {"host": "sparkrunner.example.com", "port": "8765", "schema": "http or https",
                             "password": "bearer token, if the service asks for one"},
        }

    # -- blocking, for operators --------------------------------------------------------------

    @cached_property
    def client(self) -> Client:
        url, token = endpoint(self.get_connection(self.sparkrunner_conn_id))
        return Client(url, token, timeout=self.timeout)

    def get_conn(self) -> Client:
        return self.client

    def submit(self, job: dict, idempotency_key: str | None = None) -> dict:
        """Submits a job document; returns the job's view (an earlier job's, when the key was used)."""
        return self.client.submit(job, idempotency_key=idempotency_key)

    def get(self, job_id: str) -> dict:
        """The job's view: ``jobStatus``, ``reason``, ``result``, ``logTail``, times."""
        return self.client.get(job_id)

    def log(self, job_id: str, start: int | None = None, size: int = 1000) -> dict:
        """A page of the job's driver log: ``{"from", "total", "log": [lines]}``; without
        ``start``, the last ``size`` lines."""
        return self.client.log(job_id, start=start, size=size)

    def cancel(self, job_id: str) -> dict:
        """Asks the service to cancel the job (repeatable; a finished job stays as it is)."""
        return self.client.cancel(job_id)

    def test_connection(self) -> tuple[bool, str]:
        """For the connection form's Test button."""
        try:
            health = self.client.health()
        except ApiError as exc:
            return False, str(exc)
        return True, f"sparkrunner {health.get('version', '?')} at {self.client.url} is up"

    # -- async, for triggers ------------------------------------------------------------------

    async def _arequest(self, method: str, path: str) -> dict:
        if self._async_endpoint is None:
            self._async_endpoint = endpoint(await self.aget_connection(self.sparkrunner_conn_id))
        url, token = self._async_endpoint
        headers = {CSRF_HEADER: "sparkrunner-airflow"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.request(method, url + path, headers=headers)
        except httpx.HTTPError as exc:
            raise unreachable(url, exc) from exc
        if response.status_code >= 400:
            raise error_from_answer(response.status_code, response.text)
        return response.json()

    async def aget(self, job_id: str) -> dict:
        """The job's view, as :meth:`get`."""
        return await self._arequest("GET", f"/jobs/{job_id}")

    async def acancel(self, job_id: str) -> dict:
        """Cancels the job, as :meth:`cancel`."""
        return await self._arequest("POST", f"/jobs/{job_id}/cancel")
