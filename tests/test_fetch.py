"""Downloads: only http and https, on every redirect hop; at most MAX_REDIRECTS redirects; the
timeout bounds the whole download, however many connections the redirects open."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from corpus import make_jpeg

from semsql.fetch import MAX_REDIRECTS, FetchError, fetch
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.sources import iter_candidates


class Stall(socketserver.BaseRequestHandler):
    """An "FTP server" that sends a banner, then a byte a second for a minute."""

    def handle(self) -> None:
        try:
            self.request.sendall(b"220")
            for _ in range(60):
                self.request.sendall(b"-")
                time.sleep(1)
        except OSError:
            pass


class Redirects(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stall_port = 0
    blackhole_port = 0
    image = b""

    def do_GET(self) -> None:
        path = self.path
        if path == "/image.jpg":
            self.answer(200, self.image, ("Content-Type", "image/jpeg"))
        elif path == "/to_ftp":
            self.redirect(f"ftp://127.0.0.1:{self.stall_port}/x.jpg")
        elif path == "/to_upper_ftp":
            self.redirect(f"FTP://127.0.0.1:{self.stall_port}/x.jpg")
        elif path == "/to_file":
            self.redirect("file:///etc/passwd")
        elif path == "/to_data":
            self.redirect("data:image/jpeg;base64,AAAA")
        elif path == "/to_upper_http":
            self.redirect(f"HTTP://127.0.0.1:{self.server.server_port}/image.jpg")
        elif path == "/loop":
            self.redirect("/loop")
        elif path.startswith("/chain/"):  # /chain/N: N more redirects, then the image
            left = int(path.removeprefix("/chain/"))
            if left:
                self.redirect(f"/chain/{left - 1}")
            else:
                self.answer(200, self.image, ("Content-Type", "image/jpeg"))
        elif path == "/slow_to_blackhole":
            time.sleep(1.5)  # inside the socket timeout, but most of the deadline
            self.redirect(f"http://127.0.0.1:{self.blackhole_port}/x.jpg")
        else:
            self.answer(404, b"no")

    def redirect(self, location: str) -> None:
        self.answer(302, b"", ("Location", location))

    def answer(self, code: int, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose connects hang: its listen queue is full and nobody accepts."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        yield listener.getsockname()[1]
    finally:
        filler.close()
        listener.close()


@pytest.fixture
def server(tmp_path, blackhole: int) -> Iterator[str]:
    stall = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Stall)
    stall.daemon_threads = True
    handler = type(
        "Handler",
        (Redirects,),
        {
            "stall_port": stall.server_address[1],
            "blackhole_port": blackhole,
            "image": make_jpeg(tmp_path / "image.jpg").read_bytes(),
        },
    )
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    web.daemon_threads = True
    for running in (stall, web):
        threading.Thread(target=running.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{web.server_port}"
    finally:
        for running in (stall, web):
            running.shutdown()
            running.server_close()


def within(seconds: float, call: Callable[[], object]) -> object:
    """What `call` returned or raised, failing the test when it takes longer than `seconds`
    (it is left running in a daemon thread: before the fix some of these never return)."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still running after {seconds} s"
    return outcome[0]


def fetch_error(url: str, timeout: float = 3.0) -> FetchError:
    error = within(timeout + 5, lambda: fetch(url, max_bytes=1_000_000, timeout=timeout))
    assert isinstance(error, FetchError), error
    return error


@pytest.mark.parametrize("path", ["/to_ftp", "/to_upper_ftp"])
def test_a_redirect_to_ftp_fails_at_once(server: str, path: str) -> None:
    started = time.monotonic()
    error = fetch_error(server + path)
    assert time.monotonic() - started < 2
    assert str(error).startswith(f"cannot fetch {server}{path}: redirected to ")
    assert str(error).endswith(": unsupported URL scheme ftp: only http and https are fetched")
    assert error.transient is False


@pytest.mark.parametrize(("path", "scheme"), [("/to_file", "file"), ("/to_data", "data")])
def test_a_redirect_to_another_scheme_is_refused(server: str, path: str, scheme: str) -> None:
    error = fetch_error(server + path)
    assert f": unsupported URL scheme {scheme}: only http and https are fetched" in str(error)
    assert "\n" not in str(error)


def test_a_redirect_to_uppercase_http_is_followed(server: str) -> None:
    assert fetch(server + "/to_upper_http", max_bytes=1_000_000, timeout=3).startswith(b"\xff\xd8")


def test_fetch_itself_takes_only_http_and_https() -> None:
    error = fetch_error("ftp://127.0.0.1:9/x.jpg")
    assert str(error) == (
        "cannot fetch ftp://127.0.0.1:9/x.jpg: unsupported URL scheme ftp: "
        "only http and https are fetched"
    )


def test_redirects_are_followed_up_to_the_limit(server: str) -> None:
    body = fetch(f"{server}/chain/{MAX_REDIRECTS}", max_bytes=1_000_000, timeout=3)
    assert body.startswith(b"\xff\xd8")
    error = fetch_error(f"{server}/chain/{MAX_REDIRECTS + 1}")
    assert str(error) == (
        f"cannot fetch {server}/chain/{MAX_REDIRECTS + 1}: more than {MAX_REDIRECTS} redirects"
        f" (the last to {server}/chain/0)"
    )


def test_a_redirect_loop_is_one_line(server: str) -> None:
    error = fetch_error(server + "/loop")
    assert str(error) == (
        f"cannot fetch {server}/loop: more than {MAX_REDIRECTS} redirects"
        f" (the last to {server}/loop)"
    )


def test_the_deadline_covers_the_connects_of_redirects(server: str) -> None:
    # The first hop takes 1.5 s of the 2; the redirect's connect hangs. It gets what is left,
    # not a socket timeout of its own (2 s more).
    started = time.monotonic()
    error = fetch_error(server + "/slow_to_blackhole", timeout=2.0)
    elapsed = time.monotonic() - started
    assert "not finished after 2 s (the timeout bounds the whole download)" in str(error)
    assert elapsed < 3.0


def test_a_redirect_to_ftp_fails_its_item_alone(
    conn: psycopg.Connection, server: str, tmp_path
) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    conn.commit()
    good = make_jpeg(tmp_path / "good.jpg", seed=3)
    candidates = list(iter_candidates([f"{server}/to_ftp", str(good), f"{server}/image.jpg"]))
    job_id = create_job(conn, "default", {})
    summary = within(30, lambda: run_ingest(conn, job_id, candidates, IngestOptions()))
    assert not isinstance(summary, BaseException), summary
    assert (summary.new, summary.failed, summary.status) == (2, 1, "completed")
    (failure,) = summary.errors
    assert failure["uri"] == f"{server}/to_ftp"
    assert failure["code"] == "unreadable"
    assert "unsupported URL scheme ftp" in failure["error"]


def test_the_worker_refuses_a_redirect_to_ftp_for_good(server: str) -> None:
    from semsql.decode import InputError, load_image

    error = within(10, lambda: load_image(f"{server}/to_ftp", 64))
    assert isinstance(error, InputError), error
    assert error.permanent
    assert "unsupported URL scheme ftp" in str(error)


def test_an_uppercase_http_url_is_fetched_and_stored_in_lower_case(
    conn: psycopg.Connection, server: str
) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    conn.commit()
    upper = "HTTP" + server.removeprefix("http") + "/image.jpg"
    job_id = create_job(conn, "default", {})
    summary = run_ingest(conn, job_id, list(iter_candidates([upper])), IngestOptions())
    assert (summary.new, summary.failed) == (1, 0), summary.errors
    (uri,) = conn.execute("SELECT uri FROM semsql.assets").fetchone()
    assert uri == f"{server}/image.jpg"
