"""Who is asking, and whether to listen: API tokens and the guard in front of every request.

:class:`Guard` is plain ASGI middleware. For each HTTP request it

1. authenticates, when tokens are configured: ``Authorization: Bearer <token>``, or HTTP basic
   ``user:token`` as bulk-scoring APIs accept, names the user; anything else is a 401. The
   liveness probe and the OpenAPI document stay open;
2. protects against cross-site requests: a request that changes state (anything but GET, HEAD,
   OPTIONS and DELETE, which no form can send and no page's script may send without the
   service's consent, a CORS preflight it never gives) needs a bearer token, an ``X-Requested-By`` header (as Livy asks) or a body declared
   as JSON (``Content-Type: application/json`` or ``*/*+json``, parameters allowed), which is
   what ModelOp's and Livy's clients send. A browser's cross-site form post can carry none of
   them: forms send only ``application/x-www-form-urlencoded``, ``multipart/form-data`` and
   ``text/plain``, and a script that sets any other type or header needs the service's consent
   (a CORS preflight, which it never gives). A browser does add a basic-auth password it
   remembers, which is why basic does not count;
3. limits the body: at most ``max_request_bytes``, counted as it arrives, so that a chunked body
   without a Content-Length is refused too (413); neither uvicorn nor FastAPI limits this.

The user's name goes to ``request.state.user`` ("" when authentication is off).

The dashboard (paths under ``/ui``) is a browser's, and signs in its own way: a login form sets a
session cookie, and its forms carry a token against cross-site requests
(:mod:`sparkrunner.ui.session`). The guard only limits its bodies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Mapping

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

#: Paths anyone may read, also with authentication on.
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Methods that change state and that a cross-site page cannot send: no form sends them, and a
#: page's script needs a CORS preflight. Livy's clients kill a batch with a bare DELETE (the
#: ``livy`` package sends no Content-Type).
UNFORGEABLE_METHODS = frozenset({"DELETE"})
CSRF_HEADER = "X-Requested-By"
CHALLENGE = 'Bearer realm="sparkrunner", Basic realm="sparkrunner"'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Tokens:
    """The configured {user: token} table; tokens may be given as "sha256:<hex digest>"."""

    def __init__(self, tokens: Mapping[str, str]):
        # The configuration checked the digests' form (config.from_dict).
        self._digests = {user: bytes.fromhex(token.removeprefix("sha256:")) if token.startswith("sha256:")
                          else _digest(token) for user, token in tokens.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def digest_of(self, user: str) -> bytes | None:
        """The SHA-256 digest of ``user``'s token (keys the dashboard's session cookies)."""
        return self._digests.get(user)

    def user_of(self, authorization: str | None) -> tuple[str | None, bool]:
        """(user, sent as a bearer token) for an Authorization header; user is None if unknown."""
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer" and credentials:
            digest = _digest(credentials)
            found = None
            for user, expected in self._digests.items():  # no early exit: same time for all
                if hmac.compare_digest(digest, expected):
                    found = user
            return found, found is not None
        if scheme.lower() == "basic" and credentials:
            try:
                user, sep, token = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, False
            expected = self._digests.get(user)
            if sep and expected is not None and hmac.compare_digest(_digest(token), expected):
                return user, False
        return None, False


#: Where the dashboard lives.
UI_PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def is_json(content_type: str) -> bool:
    """True for a Content-Type of JSON: ``application/json``, ``type/subtype+json`` or JSON lines
    (:data:`JSON_LINES_TYPES`), with or without parameters (``; charset=utf-8``)."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, slash, subtype = media.partition("/")
    return bool(kind and slash) and (media == "application/json" or media in JSON_LINES_TYPES or
                                     (subtype.endswith("+json") and len(subtype) > len("+json")))


#: JSON lines (bulk scoring's body): like JSON, a type no HTML form can send.
JSON_LINES_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/jsonlines",
                              "application/x-jsonlines"})


class Guard:
    """Authentication, cross-site protection and the body limit, before any route runs."""

    def __init__(self, app, tokens: Tokens, max_request_bytes: int, msg_paths: tuple[str, ...] = ()):
        self.app, self.tokens, self.max_bytes = app, tokens, max_request_bytes
        #: Paths (with what lies under them) whose refusals are Livy's {"msg": ...}.
        self.msg_paths = msg_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        user, bearer = "", False
        if is_ui_path(scope["path"]):  # the dashboard checks its session cookie and CSRF token itself
            body, complete = await self._read_body(receive)
            if body is None:
                return await self._refuse(413, self._too_large(), scope, receive, send)
            scope.setdefault("state", {})["user"] = None
            return await self.app(scope, _replay(body, complete, receive), send)
        if self.tokens.enabled and scope["path"] not in OPEN_PATHS:
            user, bearer = self.tokens.user_of(headers.get("authorization"))
            if user is None:
                detail = ("the token is not valid" if headers.get("authorization") else
                          "authentication required: send 'Authorization: Bearer <token>' or HTTP basic user:token")
                return await self._refuse(401, detail, scope, receive, send, {"WWW-Authenticate": CHALLENGE})
        if (scope["method"] not in SAFE_METHODS | UNFORGEABLE_METHODS and not bearer and not headers.get(CSRF_HEADER, "").strip()
                and not is_json(headers.get("content-type", ""))):
            return await self._refuse(403, f"a request that changes state needs a bearer token, an {CSRF_HEADER} "
                                      "header or a JSON body (Content-Type: application/json) "
                                      "(protection against cross-site requests)", scope, receive, send)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(413 if declared.isdigit() else 400,
                                 self._too_large() if declared.isdigit() else "Content-Length is not a number",
                                 scope, receive, send)
        body, complete = await self._read_body(receive)
        if body is None:
            return await self._refuse(413, self._too_large(), scope, receive, send)
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, _replay(body, complete, receive), send)

    async def _refuse(self, status: int, detail: str, scope, receive, send, headers: dict | None = None):
        livy = any(scope["path"] == p or scope["path"].startswith(p + "/") for p in self.msg_paths)
        body = {"msg": detail} if livy else {"detail": detail}
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (service.max_request_bytes)"

    async def _read_body(self, receive) -> tuple[bytes | None, bool]:
        """(the whole body, whether it arrived) — or (None, _) once it passes the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None, False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True


def _replay(body: bytes, complete: bool, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            if complete:
                return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as uvicorn would say it

    return replay

