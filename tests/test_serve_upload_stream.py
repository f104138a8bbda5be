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
from serve_support import coloured_png, live_server, only_stages, settings_for, wait_for

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


def raw_post(base: str, chunks: list[bytes], resume: threading.Event) -> bytes:
    """POST /api/assets over a plain socket: the first chunk, then (once `resume` is set) the
    others; the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    length = sum(len(chunk) for chunk in chunks)
    head = (
        f"POST /api/assets HTTP/1.1\r\nHost: {host}\r\nContent-Type: {HEADERS['content-type']}"
        f"\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=180) as sock:
        sock.sendall(head + chunks[0])
        resume.wait(120)
        for chunk in chunks[1:]:
            sock.sendall(chunk)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


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

    def stream_holds_the_asset() -> bool:
        with psycopg.connect(db_url) as conn:
            return bool(
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
                    " AND query LIKE '%ingest_batch%'"
                ).fetchone()[0]
            )

    with live_server(settings_for(db_url, tmp_path)) as base:
        resume = threading.Event()
        sender = threading.Thread(target=send_stalled, args=(base, resume), daemon=True)
        sender.start()
        try:
            wait_for(stream_holds_the_asset)
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
