"""Bearer-token authentication for the service, as a small pure-ASGI middleware.

With a token, every request except ``/healthz``, the login page and the static assets
(CSS/JS, no data) needs ``Authorization: Bearer <token>`` or the session cookie the login
page sets. Without a token nothing is checked: the runtime then binds to loopback only.

Why the cookie holds ``HMAC(token, "tickwork-session")`` rather than the token: a cookie
leaked from a browser profile does not reveal the token the CLI and scripts use, and
rotating the token invalidates every session. Comparisons use ``hmac.compare_digest``.

CSRF: the cookie is ``SameSite=Strict`` and ``HttpOnly``, and state changes are POST,
PATCH or DELETE only. Independently of the token, a state-changing request whose
``Origin`` header names another host is refused (403): without a token, this stops a web
page in the user's browser from posting forms to the loopback service.

Pure ASGI (not ``BaseHTTPMiddleware``) so the server-sent-events stream passes through
untouched and a client disconnect still reaches it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

COOKIE_NAME = "tickwork_session"
OPEN_PATHS = frozenset({"/healthz", "/login", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)
# Paths answered with 401 JSON; everything else is an HTML page (redirect to login).
MACHINE_PREFIXES = ("/api", "/metrics", "/openapi.json", "/docs", "/redoc")
UNSAFE_METHODS = frozenset({"POST", "PATCH", "DELETE", "PUT"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def session_value(token: str) -> str:
    """The cookie value for ``token``: a keyed digest, never the token itself."""
    return hmac.new(token.encode(), b"tickwork-session", hashlib.sha256).hexdigest()


def token_ok(token: str, candidate: str | None) -> bool:
    if candidate is None:
        return False
    return hmac.compare_digest(token.encode(), candidate.encode())


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


def authorized(token: str, headers: dict[str, str]) -> bool:
    """True when the request carries the bearer token or a valid session cookie."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and token_ok(token, value.strip()):
        return True
    raw = headers.get("cookie")
    if raw:
        try:
            jar: SimpleCookie = SimpleCookie(raw)
        except Exception:  # a malformed Cookie header is simply "no session"
            return False
        morsel = jar.get(COOKIE_NAME)
        if morsel is not None and hmac.compare_digest(
            session_value(token).encode(), morsel.value.encode()
        ):
            return True
    return False


def is_machine_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in MACHINE_PREFIXES)


def safe_next(target: str | None) -> str:
    """A local redirect target: an absolute path on this site, else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def cross_origin(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    host = headers.get("host", "")
    return urlsplit(origin).netloc.lower() != host.lower()


async def _send_json(send: Send, status: int, code: str, message: str,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Refuses unauthenticated (and cross-origin state-changing) requests."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope.get("path", "/")
        if scope.get("method", "GET") in UNSAFE_METHODS and cross_origin(headers):
            await _send_json(send, 403, "cross_origin",
                             "state-changing requests from another origin are refused")
            return
        if (self.token is None or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
                or authorized(self.token, headers)):
            await self.app(scope, receive, send)
            return
        if is_machine_path(path) or scope.get("method", "GET") != "GET":
            await _send_json(send, 401, "unauthorized",
                             "missing or wrong token: send 'Authorization: Bearer <token>'",
                             [(b"www-authenticate", b'Bearer realm="tickwork"')])
            return
        qs = scope.get("query_string", b"").decode("latin-1")
        target = path + ("?" + qs if qs else "")
        location = "/login?next=" + quote(target, safe="")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")),
                                (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
