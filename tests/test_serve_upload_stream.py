"""Hostile clients of the streamed uploads (POST /api/assets ingested as its body arrives),
against a real uvicorn server and the real database: a stalled body must hold up no one else,
and a refused or broken-off request leaves nothing behind."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
from serve_support import (
    coloured_png,
    live_server,
    only_stages,
    settings_for,
    start_server,
    wait_for,
)

from semsql.serve import upload_stream

BOUNDARY = "semsqlhostileboundary"
HEADERS = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def part(headers: str, data: bytes) -> bytes:
    return f"--{BOUNDARY}\r\nContent-Disposition: form-data; {headers}\r\n\r\n".encode() + (
        data + b"\r\n"
    )


def file_part(name: str, data: bytes) -> bytes:
    return part(f'name="files"; filename="{name}"', data)


def end() -> bytes:
    return f"--{BOUNDARY}--\r\n".encode()


def raw_post(
    base: str, chunks: list[bytes], resume: threading.Event, hang_up: bool = False
) -> bytes:
    """POST /api/assets over a plain socket: the first chunk, then (once `resume` is set) the
    others, or nothing more where `hang_up`; the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    length = sum(len(chunk) for chunk in chunks)
    head = (
        f"POST /api/assets HTTP/1.1\r\nHost: {host}\r\nContent-Type: {HEADERS['content-type']}"
        f"\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=180) as sock:
        sock.sendall(head + chunks[0])
        resume.wait(120)
        if hang_up:
            return b""
        for chunk in chunks[1:]:
            sock.sendall(chunk)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def stream_holds_an_asset(db_url: str) -> bool:
    """Whether a streamed ingest's transaction is open, a file of its request stored in it."""
    with psycopg.connect(db_url) as conn:
        return bool(
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
                " AND query LIKE '%ingest_batch%'"
            ).fetchone()[0]
        )


def open_transactions(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        ).fetchone()[0]


def job_status(base: str, job_id: int) -> str:
    return httpx.get(f"{base}/api/jobs/{job_id}", timeout=30).json()["status"]


def test_a_stalled_stream_holds_up_no_upload_of_the_same_bytes(db_url: str, tmp_path: Path) -> None:
    """A client sends a file and then stalls, its stream's transaction open with that file's
    asset: another upload of the same bytes (whose asset would wait on that unique key), and
    the uploads queued behind it, still complete meanwhile."""
    only_stages(db_url, ())
    same = coloured_png((200, 100, 50))
    body = part('name="tags"', b"stalled") + file_part("same.png", same)
    body += file_part("later.png", coloured_png((1, 2, 3))) + end()
    cut = body.index(b"later.png")  # same.png has ended: it is stored and ingested
    first, rest = body[:cut], body[cut:]
    stalled: list[bytes] = []

    def send_stalled(base: str, resume: threading.Event) -> None:
        stalled.append(raw_post(base, [first, rest], resume))

    with live_server(settings_for(db_url, tmp_path)) as base:
        resume = threading.Event()
        sender = threading.Thread(target=send_stalled, args=(base, resume), daemon=True)
        sender.start()
        try:
            wait_for(lambda: stream_holds_an_asset(db_url))
            twin = httpx.post(
                f"{base}/api/assets", files=[("files", ("twin.png", same, "image/png"))], timeout=60
            )
            assert twin.status_code == 202, twin.text
            other = httpx.post(
                f"{base}/api/assets",
                files=[("files", ("other.png", coloured_png((9, 9, 9)), "image/png"))],
                timeout=60,
            )
            assert other.status_code == 202, other.text
            for answer in (twin, other):
                job_id = answer.json()["job_id"]
                wait_for(lambda job_id=job_id: job_status(base, job_id) == "completed", 60)
        finally:
            resume.set()
            sender.join(120)
        status, answer = stalled[0].split(b"\r\n", 1)[0], stalled[0].split(b"\r\n\r\n", 1)[1]
        assert b" 202 " in status, stalled[0]
        stalled_id = json.loads(answer)["job_id"]
        wait_for(lambda: job_status(base, stalled_id) in ("completed", "failed"), 60)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT j.id, j.status, j.new_count, j.skipped_count, j.failed_count"
            " FROM semsql.jobs j ORDER BY j.id"
        ).fetchall()
        assets = conn.execute("SELECT count(*) FROM semsql.assets").fetchone()[0]
    # same.png once (the stalled upload's copy is a duplicate of the twin's), later.png, other
    assert assets == 3, rows
    assert all(status == "completed" for _, status, *_ in rows), rows
    assert sum(failed for *_, failed in rows) == 0, rows


def test_a_client_gone_mid_stream_leaves_nothing_behind(db_url: str, tmp_path: Path) -> None:
    """The client hangs up after its first file was ingested in the stream's transaction: no
    file, job or asset is left, nor a transaction open, and the server serves the next."""
    only_stages(db_url, ())
    body = part('name="caption"', b"gone") + file_part("a.png", coloured_png((7, 8, 9)))
    body += file_part("b.png", coloured_png((9, 8, 7))) + end()
    cut = body.index(b"b.png")
    with live_server(settings_for(db_url, tmp_path)) as base:
        hang_up = threading.Event()
        sender = threading.Thread(
            target=raw_post, args=(base, [body[:cut], body[cut:]], hang_up, True), daemon=True
        )
        sender.start()
        wait_for(lambda: stream_holds_an_asset(db_url))
        hang_up.set()
        sender.join(60)
        wait_for(lambda: open_transactions(db_url) == 0)
        wait_for(lambda: not list((tmp_path / "media").rglob("*.*")))
        assert httpx.get(f"{base}/api/jobs", timeout=30).json() == []
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone() == (0,)
        answer = httpx.post(
            f"{base}/api/assets",
            files=[("files", ("c.png", coloured_png((1, 1, 1)), "image/png"))],
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        wait_for(lambda: job_status(base, job_id) == "completed")


def test_a_stream_stalled_past_its_limit_gives_way_and_its_upload_still_lands(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that brings no file for STALL_LIMIT seconds: its stream rolls back (no open
    transaction, no writer connection held meanwhile) and the request is ingested whole."""
    monkeypatch.setattr(upload_stream, "STALL_LIMIT", 0.5)
    only_stages(db_url, ())
    body = part('name="tags"', b"slow") + file_part("a.png", coloured_png((3, 4, 5)))
    body += file_part("b.png", coloured_png((5, 4, 3))) + end()
    cut = body.index(b"b.png")
    answers: list[bytes] = []
    with live_server(settings_for(db_url, tmp_path)) as base:
        resume = threading.Event()
        sender = threading.Thread(
            target=lambda: answers.append(raw_post(base, [body[:cut], body[cut:]], resume)),
            daemon=True,
        )
        sender.start()
        wait_for(lambda: stream_holds_an_asset(db_url))
        wait_for(lambda: open_transactions(db_url) == 0)  # given way, the client still silent
        resume.set()
        sender.join(60)
        job_id = json.loads(answers[0].partition(b"\r\n\r\n")[2])["job_id"]
        wait_for(lambda: job_status(base, job_id) == "completed")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT new_count FROM semsql.jobs").fetchall() == [(2,)]
        assert conn.execute("SELECT count(*) FROM semsql.tags WHERE label = 'slow'").fetchone() == (
            2,
        )


def test_many_concurrent_uploads_of_the_same_bytes_store_one_asset(
    db_url: str, tmp_path: Path
) -> None:
    """Eight clients upload the same image at once, fields first (so each would stream):
    every job completes, one asset, the others duplicates of it, no failure."""
    only_stages(db_url, ())
    same = coloured_png((123, 45, 67), size=(640, 480))
    body = part('name="tags"', b"crowd") + file_part("same.png", same)
    body += file_part("own.png", coloured_png((3, 3, 3))) + end()
    answers: list[bytes] = []
    go = threading.Event()
    go.set()
    with live_server(settings_for(db_url, tmp_path)) as base:
        senders = [
            threading.Thread(target=lambda: answers.append(raw_post(base, [body], go)))
            for _ in range(8)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
        assert len(answers) == 8 and all(b" 202 " in a.split(b"\r\n")[0] for a in answers)
        ids = [json.loads(a.split(b"\r\n\r\n", 1)[1])["job_id"] for a in answers]
        for job_id in ids:
            wait_for(lambda job_id=job_id: job_status(base, job_id) == "completed")
        assert open_transactions(db_url) == 0
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone() == (2,)
        counts = conn.execute(
            "SELECT sum(new_count), sum(skipped_count), sum(failed_count) FROM semsql.jobs"
        ).fetchone()
    assert counts == (2, 14, 0)


def test_a_server_forced_to_stop_mid_stream_stops_and_leaves_nothing(
    db_url: str, tmp_path: Path
) -> None:
    """A stalled client's stream is open when the server is told to stop at once (a second
    Ctrl-C): it stops, leaving no file, job, asset or open transaction; restarted, it serves."""
    only_stages(db_url, ())
    settings = settings_for(db_url, tmp_path)
    body = part('name="tags"', b"cut") + file_part("a.png", coloured_png((5, 6, 7)))
    body += file_part("b.png", coloured_png((7, 6, 5))) + end()
    cut = body.index(b"b.png")
    server, thread, base = start_server(settings)
    never = threading.Event()
    sender = threading.Thread(
        target=raw_post, args=(base, [body[:cut], body[cut:]], never), daemon=True
    )
    sender.start()
    try:
        wait_for(lambda: stream_holds_an_asset(db_url))
        server.should_exit = server.force_exit = True
        thread.join(60)
        assert not thread.is_alive(), "the server did not stop"
    finally:
        never.set()
    wait_for(lambda: open_transactions(db_url) == 0)
    assert not list((tmp_path / "media").rglob("*.*"))
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM semsql.jobs").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone() == (0,)
    with live_server(settings) as base:
        answer = httpx.post(
            f"{base}/api/assets",
            files=[("files", ("c.png", coloured_png((1, 1, 1)), "image/png"))],
            timeout=60,
        )
        assert answer.status_code == 202, answer.text


def five_then(last: bytes) -> bytes:
    body = part('name="caption"', b"five good ones")
    for n in range(5):
        body += file_part(f"{n}.png", coloured_png((n, 2 * n, 3 * n)))
    return body + last


REFUSED = {
    "a file over the limit after five": (
        five_then(file_part("big.jpg", b"\xff\xd8\xff\xe0" + b"0" * 60_000) + end()),
        413,
    ),
    "more files than allowed": (
        five_then(b"".join(file_part(f"x{n}.png", coloured_png((n, 1, 1))) for n in range(5))),
        413,
    ),
    "a body cut short inside a file": (five_then(file_part("cut.png", b"\x89PNG")[:-2]), 400),
    "no closing boundary": (five_then(b""), 400),
    "an invalid collection before the files": (
        part('name="collection"', b"bell\x07") + five_then(end()),
        400,
    ),
    "an invalid collection after the files": (
        five_then(part('name="collection"', b"   ") + end()),
        400,
    ),
    "a field that is not UTF-8 after the files": (
        five_then(part('name="tags"', b"\xff\xfe") + end()),
        400,
    ),
    "only a sidecar": (
        part('name="caption"', b"x") + file_part("a.xmp", b"<x:xmpmeta/>") + end(),
        415,
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_streamed_request_leaves_nothing(db_url: str, tmp_path: Path, case: str) -> None:
    body, status = REFUSED[case]
    only_stages(db_url, ())
    go = threading.Event()
    go.set()
    settings = settings_for(db_url, tmp_path, max_file_bytes=50_000, max_files=8)
    with live_server(settings) as base:
        answer = raw_post(base, [body], go)
        assert f" {status} ".encode() in answer.split(b"\r\n")[0], answer
        wait_for(lambda: open_transactions(db_url) == 0)
        assert not list((tmp_path / "media").rglob("*.*"))
        assert httpx.get(f"{base}/api/jobs", timeout=30).json() == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone() == (0,)
