"""The dashboard's pages, served by the service under ``/ui``: rendered on the server from
jinja2 templates (shipped in the package), with SVG charts and no script at all; pages refresh
themselves while something runs.

- ``/ui/login`` (GET, POST) and ``/ui/logout`` (POST): the API's tokens, as a session cookie;
- ``/ui/jobs``: the user's jobs, newest first, filtered by state and type, a page at a time;
- ``/ui/jobs/{id}``: one job: its document summarised, timeline, progress, log tail, result
  and charts, the Spark UI link while it runs, a cancel button;
- ``/ui/jobs/{id}/log``: its driver log; ``/ui/jobs/{id}/cancel`` (POST): cancels it.

A user sees only their own jobs, as in the API.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ..auth import UI_PREFIX
from ..errors import JobNotFound
from ..service import JobService
from ..states import ACTIVE_STATES, JobStatus
from ..store import JobRecord
from .results import charts_of
from .session import COOKIE, SESSION_SECONDS, Sessions, same_origin
from .summary import summarise

PAGE_SIZE = 20
#: Seconds between a page's own refreshes: the list, and a job's page while the job is unfinished.
LIST_REFRESH_SECONDS = 5
JOB_REFRESH_SECONDS = 2
LOG_TAIL_LINES = 40
LOG_PAGE_LINES = 2000
JOB_TYPES = ("MODEL_BATCH_JOB", "MODEL_BATCH_TEST_JOB", "MODEL_BATCH_TRAINING_JOB", "SPARK_SCRIPT_JOB")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h " if hours else "") + f"{rest // 60}m {rest % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def environment() -> Environment:
    env = Environment(loader=PackageLoader("sparkrunner.ui", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    return env


class Pages:
    """The dashboard over one service."""

    def __init__(self, sessions: Sessions):
        self.sessions = sessions
        self.templates = environment()

    def render(self, request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
        cookie = request.cookies.get(COOKIE)
        html = self.templates.get_template(template).render(
            prefix=UI_PREFIX, csrf=self.sessions.csrf(cookie), auth=self.sessions.enabled,
            user=context.pop("user", None), **context)
        return HTMLResponse(html, status_code=status, headers={
            "Cache-Control": "no-store", "X-Frame-Options": "DENY",
            # Nothing but this service's own page: no script, no remote fonts or images.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"})

    def user(self, request: Request) -> str | None:
        return self.sessions.user_of(request.cookies.get(COOKIE))

    def to_login(self) -> RedirectResponse:
        return RedirectResponse(f"{UI_PREFIX}/login", status_code=303)

    def checked_post(self, request: Request, form: dict[str, str]) -> str | None:
        """The user of a POST from the dashboard itself with the session's CSRF token; else None."""
        cookie = request.cookies.get(COOKIE)
        if not same_origin(request.headers.get("origin"), request.headers.get("referer"),
                           request.headers.get("host"), request.url.scheme):
            return None
        if not self.sessions.csrf_ok(cookie, form.get("csrf")):
            return None
        return self.user(request)


async def _form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the only kind the dashboard sends)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {key: values[0] for key, values in parse_qs(body, keep_blank_values=True).items()}


def _service(request: Request) -> JobService:
    return request.app.state.service


def _own(request: Request, job_id: str, user: str) -> JobRecord:
    record = _service(request).get(job_id)
    if record.owner != user:
        raise JobNotFound(job_id)  # another user's job does not exist for you
    return record


def _timeline(record: JobRecord) -> list[tuple[str, float | None]]:
    steps = [("submitted", record.created), ("spark-submit started", record.started),
             ("application running", record.running)]
    if record.status.is_terminal:
        steps.append((record.status.value.lower(), record.ended))
    return steps


def ui_router(sessions: Sessions) -> APIRouter:
    pages = Pages(sessions)
    router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)

    @router.get("")
    def home():
        return RedirectResponse(f"{UI_PREFIX}/jobs", status_code=303)

    @router.get("/login")
    def login_form(request: Request):
        if not sessions.enabled or pages.user(request) is not None:
            return RedirectResponse(f"{UI_PREFIX}/jobs", status_code=303)
        return pages.render(request, "login.html")

    @router.post("/login")
    async def login(request: Request):
        form = await _form(request)
        if not same_origin(request.headers.get("origin"), request.headers.get("referer"),
                           request.headers.get("host"), request.url.scheme):
            return pages.render(request, "login.html", 403, error="refused: the form came from another site")
        cookie = sessions.login(form.get("user", ""), form.get("token", ""))
        if cookie is None:
            return pages.render(request, "login.html", 401, error="unknown user or wrong token",
                                typed=form.get("user", ""))
        response = RedirectResponse(f"{UI_PREFIX}/jobs", status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=SESSION_SECONDS, path=UI_PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    @router.post("/logout")
    async def logout(request: Request):
        form = await _form(request)
        if pages.checked_post(request, form) is None:
            return Response("refused: not a form of this dashboard's session", status_code=403)
        response = RedirectResponse(f"{UI_PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=UI_PREFIX, httponly=True, samesite="strict")
        return response

    @router.get("/jobs")
    def jobs(request: Request, state: str = Query(""), type: str = Query(""), page: int = Query(1, ge=1)):
        user = pages.user(request)
        if user is None:
            return pages.to_login()
        states = [JobStatus(state)] if state in JobStatus.__members__ else None
        job_type = type if type in JOB_TYPES else None
        service = _service(request)
        records, total = service.list_jobs(status=states, job_type=job_type, owner=user,
                                           offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        pages_total = max(1, math.ceil(total / PAGE_SIZE))

        def link(n: int) -> str:
            query = {k: v for k, v in (("state", state), ("type", type), ("page", n)) if v}
            return f"{UI_PREFIX}/jobs?{urlencode(query)}"

        now = time.time()
        rows = [{"record": r, "progress": service.progress(r),
                 "duration": _duration((r.ended or now) - r.started) if r.started else "—"} for r in records]
        return pages.render(request, "jobs.html", user=user, rows=rows, total=total, page=page,
                            pages=pages_total, state=state if states else "", type=job_type or "",
                            states=[s.value for s in JobStatus], types=JOB_TYPES,
                            previous=link(page - 1) if page > 1 else None,
                            next=link(page + 1) if page < pages_total else None,
                            refresh=LIST_REFRESH_SECONDS)

    def own_page(request: Request, job_id: str) -> tuple[str, JobRecord] | Response:
        """(user, job) of a logged-in user's own job; else the login form, or the missing page
        (another user's job does not exist for them)."""
        user = pages.user(request)
        if user is None:
            return pages.to_login()
        try:
            return user, _own(request, job_id, user)
        except JobNotFound:
            return pages.render(request, "missing.html", 404, user=user, job_id=job_id)

    @router.get("/jobs/{job_id}")
    def job(request: Request, job_id: str):
        found = own_page(request, job_id)
        if isinstance(found, Response):
            return found
        user, record = found
        service = _service(request)
        result = service.result(record)
        return pages.render(
            request, "job.html", user=user, record=record, summary=summarise(record),
            timeline=_timeline(record), progress=service.progress(record),
            log=service.log_tail(record, LOG_TAIL_LINES), result=result, charts=charts_of(result),
            result_json=json.dumps(result, indent=2) if result is not None else None,
            spark_ui=record.ui_url if record.status in ACTIVE_STATES else None,
            cancellable=not record.status.is_terminal and not record.cancel_requested,
            refresh=None if record.status.is_terminal else JOB_REFRESH_SECONDS)

    @router.get("/jobs/{job_id}/log")
    def job_log(request: Request, job_id: str):
        found = own_page(request, job_id)
        if isinstance(found, Response):
            return found
        user, record = found
        begin, total, lines = _service(request).read_log(record, None, LOG_PAGE_LINES)
        return pages.render(request, "log.html", user=user, record=record, lines=lines, begin=begin,
                            total=total, refresh=None if record.status.is_terminal else JOB_REFRESH_SECONDS)

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str):
        user = pages.checked_post(request, await _form(request))
        if user is None:
            return Response("refused: not a form of this dashboard's session", status_code=403)
        try:
            _own(request, job_id, user)
        except JobNotFound:
            return pages.render(request, "missing.html", 404, user=user, job_id=job_id)
        _service(request).cancel(job_id)
        return RedirectResponse(f"{UI_PREFIX}/jobs/{job_id}", status_code=303)

    return router
