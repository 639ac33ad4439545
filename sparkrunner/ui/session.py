"""The dashboard's logins: a signed session cookie made from the API's own tokens, and the
tokens its forms carry against cross-site requests.

A user logs in with their name and API token (checked as the API checks HTTP basic); the cookie
then names them until it expires. It is signed with a key of this service run mixed with the
user's token digest, so it is forged by nobody, ends with the service run, and a changed token
ends every session made with the old one. It is ``HttpOnly`` (no page script reads it) and
``SameSite=Strict`` (a browser sends it with no request another site starts).

Every form that changes something carries a token derived from the session (:meth:`csrf`), and
every POST must come from the dashboard's own origin when the browser says where it came from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import urlsplit

from ..auth import Tokens

COOKIE = "sparkrunner_session"
#: How long a login lasts.
SESSION_SECONDS = 8 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Login sessions over ``tokens``; with no tokens configured everyone is the one user ""."""

    def __init__(self, tokens: Tokens):
        self.tokens = tokens
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return self.tokens.enabled

    def _mac(self, user: str, payload: str) -> str:
        digest = self.tokens.digest_of(user) or b""
        return _b64(hmac.new(self._key + digest, payload.encode(), hashlib.sha256).digest())

    def login(self, user: str, token: str) -> str | None:
        """A cookie value for ``user`` when ``token`` is theirs; None otherwise."""
        credentials = base64.b64encode(f"{user}:{token}".encode()).decode()
        found, _ = self.tokens.user_of(f"Basic {credentials}")
        if found is None or found != user:
            return None
        payload = _b64(json.dumps({"u": user, "e": int(time.time()) + SESSION_SECONDS}).encode())
        return f"{payload}.{self._mac(user, payload)}"

    def user_of(self, cookie: str | None) -> str | None:
        """The user a session cookie names; None when it is missing, forged or expired."""
        if not self.enabled:
            return ""
        payload, _, mac = (cookie or "").partition(".")
        try:
            fields = json.loads(_unb64(payload))
            user, expires = str(fields["u"]), int(fields["e"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            return None
        if expires < time.time() or self.tokens.digest_of(user) is None:
            return None
        return user if hmac.compare_digest(mac, self._mac(user, payload)) else None

    def csrf(self, cookie: str | None) -> str:
        """The token the session's forms carry."""
        return _b64(hmac.new(self._key, b"csrf:" + (cookie or "").encode(), hashlib.sha256).digest())

    def csrf_ok(self, cookie: str | None, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf(cookie), sent)


def same_origin(origin: str | None, referer: str | None, host: str | None, scheme: str) -> bool:
    """Whether a POST comes from a page of this service, by its Origin (else Referer) header;
    a request that names neither (not a browser's) passes, the session and CSRF token decide."""
    source = origin if origin and origin != "null" else referer
    if origin == "null":
        return False
    if not source:
        return True
    parts = urlsplit(source)
    return parts.scheme == scheme and parts.netloc == host
