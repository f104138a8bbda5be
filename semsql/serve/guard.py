"""The checks every request passes before any route: the token (a bearer header or the login
cookie), CSRF on requests that change data, and the size of request bodies.

CSRF: a browser sends its cookies (and, on loopback without a token, reaches the server at
all) from any site's page, so a request that changes data and does not carry the bearer token
must carry the page's CSRF token in the X-CSRF-Token header. Browsers cannot add that header
across sites without CORS, which this server does not allow, and cannot read it from a page
of another origin. A client that is no browser (curl, a script) sends no Origin, no
Sec-Fetch-Site and no cookie; on loopback without a token it needs no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache, partial
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from semsql.serve.errors import error_body
from semsql.serve.settings import LOOPBACK_HOSTS, ServeSettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOGIN_COOKIE = "semsql_login"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = ("/login", "/static/", "/healthz")
"""Paths that need no token: the login page itself, the CSS and JS, a health check."""
MAX_FORM_BYTES = 1 * 2**20
"""The largest body of a request that carries no upload (a form, a search)."""


def login_cookie_value(token: str) -> str:
    """What the login cookie holds: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"semsql serve login", hashlib.sha256).hexdigest()


def csrf_token(settings: ServeSettings, login: str | None) -> str:
    """The CSRF token of a session (the login cookie's, or none on loopback)."""
    message = b"csrf:" + (login or "").encode()
    return hmac.new(settings.csrf_secret, message, hashlib.sha256).hexdigest()


def cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie | None = None
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar = jar or SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: as if none were sent
                continue
    return {key: morsel.value for key, morsel in jar.items()} if jar else {}


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


class Guard:
    def __init__(self, app: ASGIApp, settings: ServeSettings, upload_paths: frozenset[str]):
        self.app = app
        self.settings = settings
        self.upload_paths = upload_paths
        self.login = login_cookie_value(settings.token) if settings.token else None
        # A session's CSRF token is the same on each of its requests: an HMAC made once.
        self.csrf = lru_cache(maxsize=256)(partial(csrf_token, settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope["path"]
        if self.settings.token is None and not _loopback_host(headers.get("host", "")):
            # Without a token only loopback is served: a page whose name was rebound to
            # 127.0.0.1 (DNS rebinding) is same-origin to itself, and its Host says so.
            await _json(send, 403, "this server answers only for 127.0.0.1, localhost or [::1]")
            return
        login = cookies(scope).get(LOGIN_COOKIE)
        bearer = self._bearer(headers)
        logged_in = bool(login and hmac.compare_digest(login, self.login or ""))
        needs_token = self.settings.token is not None and not path.startswith(OPEN_PATHS)
        if needs_token and not (bearer or logged_in):
            await self._refuse_unauthenticated(scope, send, path)
            return
        scope.setdefault("state", {})["csrf"] = self.csrf(login)
        if scope["method"] in UNSAFE_METHODS:
            problem = self._unsafe_problem(scope, headers, bearer, login)
            if problem is not None:
                await _json(send, *problem)
                return
        await self.app(scope, receive, send)

    def _bearer(self, headers: dict[str, str]) -> bool:
        given = headers.get("authorization", "")
        scheme, _, credentials = given.partition(" ")
        return bool(
            self.settings.token
            and scheme.lower() == "bearer"
            and hmac.compare_digest(credentials.strip().encode(), self.settings.token.encode())
        )

    def _unsafe_problem(
        self, scope: Scope, headers: dict[str, str], bearer: bool, login: str | None
    ) -> tuple[int, str] | None:
        """Why a request that changes data is refused (status, message), or None."""
        limit = (
            self.settings.max_upload_bytes if scope["path"] in self.upload_paths else MAX_FORM_BYTES
        )
        length = headers.get("content-length")
        if length is None and "chunked" in headers.get("transfer-encoding", ""):
            return 411, "send the body with a Content-Length"
        if length is not None:
            if not length.isdecimal():
                return 400, "Content-Length is not a number"
            if int(length) > limit:
                return 413, f"the request is {int(length):,} bytes, over the {limit:,}-byte limit"
        origin = headers.get("origin")
        if origin and urlsplit(origin).netloc != headers.get("host"):
            return 403, f"cross-origin request from {origin} refused"
        if bearer:
            return None
        from_browser = origin or "sec-fetch-site" in headers or login or "cookie" in headers
        if scope["path"] == "/login" or (not from_browser and self.settings.token is None):
            return None
        given = headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.csrf(login).encode()):
            return 403, "missing or wrong CSRF token (send the page's X-CSRF-Token header)"
        return None

    async def _refuse_unauthenticated(self, scope: Scope, send: Send, path: str) -> None:
        if path.startswith("/api/") or path in ("/docs", "/openapi.json"):
            await _json(send, 401, "a token is needed: Authorization: Bearer TOKEN", bearer=True)
            return
        target = path + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
        location = "/login?next=" + quote(target, safe="")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": b""})


@lru_cache(maxsize=256)
def _loopback_host(host: str) -> bool:
    return urlsplit("//" + host).hostname in LOOPBACK_HOSTS


async def _json(send: Send, status: int, message: str, bearer: bool = False) -> None:
    body = json.dumps(error_body(status, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if bearer:
        headers.append((b"www-authenticate", b'Bearer realm="semsql"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
