"""http(s) downloads bounded in size and in time: the timeout covers the whole download.

A socket timeout alone bounds each read, so a server that sends a few bytes every second
holds a download for as long as it likes. Here a timer shuts the connection's socket down
when the deadline passes, whatever the transfer is doing (status line, headers, body or a
redirect), and the download fails with a message that says so. Each connection (one per
redirect) is given only the time left as its connect timeout. Name lookups are not
interruptible this way.

Only http and https are fetched, on every hop: the opener has no other scheme's handler
(urllib's default one follows a redirect to ftp://, whose transfer no deadline watches), and
a redirect elsewhere, or more than MAX_REDIRECTS of them, fails the download in one line.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import re
import socket
import string
import threading
import time
import urllib.error
import urllib.request
from http.client import HTTPMessage
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

USER_AGENT = "semsql"
SCHEMES = frozenset({"http", "https"})
"""The only URL schemes fetched, on the first request and on every redirect."""
MAX_REDIRECTS = 5
"""Redirects followed per download; browsers allow 20, but an image behind more than a few is a
trap or a loop."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def url_scheme(text: str) -> str | None:
    """The scheme of a URL written `scheme://...`, in lower case (schemes are case-insensitive);
    None for anything else, a path included."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match and text[match.end() :].startswith("//") else None


def opaque_scheme(text: str) -> str | None:
    """The scheme of a URI without "//" (data:, javascript:, mailto:), in lower case; None when
    the text does not start with one. A file may be named like this too ("a:b.jpg"), so
    callers take it as a URI only when no such file exists. One-letter schemes are drive
    letters, never URIs."""
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) < 2 or text[match.end() :].startswith("//"):
        return None
    return match.group(1).lower()


def with_lower_scheme(url: str) -> str:
    """`url` with its scheme in lower case ("HTTP://x/a.jpg" -> "http://x/a.jpg")."""
    scheme = url_scheme(url)
    return url if scheme is None else scheme + url[len(scheme) :]


# Answers that waiting will not change.
_PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 410, 414, 451})


class FetchError(Exception):
    """Why a URL could not be downloaded; `status` is the HTTP status where there was one,
    `transient` whether trying again later may help."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class TooLarge(FetchError):
    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


def fetch(url: str, *, max_bytes: int, timeout: float, user_agent: str = USER_AGENT) -> bytes:
    """The body of `url`, at most `max_bytes`, downloaded within `timeout` seconds in all."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise FetchError(f"cannot fetch {url}: {scheme_problem(scheme)}", transient=False)
    request = urllib.request.Request(url, headers={"User-Agent": user_agent})
    with _Deadline(timeout) as deadline:
        opener = _opener(deadline)
        try:
            with opener.open(request, timeout=timeout) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise TooLarge(f"{url} is {int(declared)} bytes, over {max_bytes}")
                data: bytes = response.read(max_bytes + 1)
        except _Refused as error:
            raise FetchError(f"cannot fetch {url}: {error}", transient=False) from None
        except urllib.error.HTTPError as error:
            error.close()
            message = f"HTTP {error.code} {error.reason} from {url}"
            transient = error.code not in _PERMANENT_STATUSES
            raise FetchError(message, status=error.code, transient=transient) from None
        except (OSError, ValueError, http.client.HTTPException) as error:
            # OSError covers URLError, timeouts and resets; ValueError and HTTPException a
            # malformed URL or redirect target, or a response cut short.
            if deadline.expired or deadline.remaining() <= 0:
                raise deadline.error(url) from None
            reason = getattr(error, "reason", None) or error
            raise FetchError(f"cannot fetch {url}: {reason}", transient=True) from None
        if deadline.expired:  # the socket was shut down: what was read is cut short
            raise deadline.error(url)
    if len(data) > max_bytes:
        raise TooLarge(f"{url} is over the {max_bytes}-byte limit")
    return data


def scheme_problem(scheme: str) -> str:
    return f"unsupported URL scheme {scheme or '(none)'}: only http and https are fetched"


class _Refused(Exception):
    """A redirect that is not followed; fetch reports it for the URL it was given."""


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """An opener for http and https alone, every connection watched by the deadline. It is
    put together by hand: build_opener would add ftp, file and data handlers."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HTTPHandler(deadline),
        _HTTPSHandler(deadline),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows at most MAX_REDIRECTS redirects, each to an http or https URL."""

    def http_error_302(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
    ) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location is None:
            return None  # no target: HTTPDefaultErrorHandler reports the status
        # As urllib does: headers are decoded as ISO-8859-1; encode what a URL cannot hold.
        target = urljoin(
            req.full_url, quote(location, encoding="iso-8859-1", safe=string.punctuation)
        )
        hops = getattr(req, "semsql_redirects", 0) + 1
        fp.close()
        scheme = urlsplit(target).scheme.lower()
        if scheme not in SCHEMES:
            raise _Refused(f"redirected to {_shown(target)}: {scheme_problem(scheme)}")
        if hops > MAX_REDIRECTS:
            raise _Refused(f"more than {MAX_REDIRECTS} redirects (the last to {_shown(target)})")
        new = self.redirect_request(req, fp, code, msg, headers, target)
        if new is None:
            return None
        new.semsql_redirects = hops  # type: ignore[attr-defined]
        return self.parent.open(new, timeout=req.timeout)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _shown(url: str, limit: int = 200) -> str:
    """A URL for a one-line message: no control characters, at most `limit` characters."""
    text = "".join(char if char.isprintable() else "?" for char in url)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def abort_downloads() -> None:
    """Ends every download in progress in this process at once (each fails with "stopped"):
    an interrupted ingest need not wait for its slowest URL."""
    with _ACTIVE_LOCK:
        active = list(_ACTIVE)
    for deadline in active:
        deadline.abort()


class _Deadline:
    """Shuts down the sockets it watches once `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.aborted = False
        self._ends = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)

    def abort(self) -> None:
        self.aborted = True
        self._expire()

    def remaining(self) -> float:
        return self._ends - time.monotonic()

    def connect_timeout(self, timeout: Any) -> float:
        """The socket timeout of a new connection: the time left, at most."""
        left = self.remaining()
        if left <= 0:
            raise TimeoutError("the deadline has passed")
        if isinstance(timeout, int | float):
            return min(float(timeout), left)
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shut(sock)
            else:
                self._sockets.append(sock)

    def error(self, url: str) -> FetchError:
        if self.aborted:
            return FetchError(f"cannot fetch {url}: the download was stopped", transient=True)
        return FetchError(
            f"cannot fetch {url}: not finished after {self.seconds:g} s"
            " (the timeout bounds the whole download)",
            transient=True,
        )

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


_ACTIVE: set[_Deadline] = set()
_ACTIVE_LOCK = threading.Lock()


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: the reading thread owns the TLS
    # state, and only needs its next read to end. A closed socket has no descriptor left
    # (fileno -1), so this never reaches a descriptor number reused since.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        self.timeout = self._deadline.connect_timeout(self.timeout)
        super().connect()
        self._deadline.watch(self.sock)


class _WatchedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        self.timeout = self._deadline.connect_timeout(self.timeout)
        super().connect()  # TCP, a proxy tunnel if any, then TLS: self.sock is the final one
        self._deadline.watch(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_WatchedHTTPConnection, deadline=self._deadline)
        return self.do_open(connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self._deadline = deadline

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_WatchedHTTPSConnection, deadline=self._deadline)
        return self.do_open(connection, req, context=self._context)  # type: ignore[attr-defined]
