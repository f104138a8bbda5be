"""An interrupted `semsql ingest` leaves no job "running" for ever: SIGTERM and SIGINT mark its
job failed and exit non-zero; after a SIGKILL, the next `semsql jobs` or `semsql ingest` sees
that the job's connection is gone and marks it failed, unless it had read all its files."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from corpus import make_jpeg

from semsql.cli.main import cli
from semsql.ingest import ABANDONED

FIRST_BATCH = 200  # IngestOptions.batch_size: stored before the ingest reaches the slow URL


class Endless(http.server.BaseHTTPRequestHandler):
    """An image that never finishes: a byte every 0.2 s for two minutes."""

    asked = threading.Event()

    def do_GET(self) -> None:
        self.asked.set()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_url() -> Iterator[tuple[str, threading.Event]]:
    asked = threading.Event()
    handler = type("Handler", (Endless,), {"asked": asked})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/slow.jpg", asked
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def observer(db_url: str) -> Iterator[psycopg.Connection]:
    """Autocommit: each query sees the jobs, and pg_stat_activity, as they are now."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def photos(folder: Path, count: int) -> Path:
    for n in range(count):
        make_jpeg(folder / f"{n:03d}.jpg", (16, 16), seed=n)
    return folder


def start_ingest(db_url: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "semsql.cli", "ingest", *args]
    env = {**os.environ, "SEMSQL_DATABASE_URL": db_url}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until(condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {condition.__doc__}"
        time.sleep(0.05)


def job(observer: psycopg.Connection, job_id: int = 1) -> dict:
    row = observer.execute(
        "SELECT status, error, new_count, ingested_at FROM semsql.jobs WHERE id = %s", [job_id]
    ).fetchone()
    return dict(zip(("status", "error", "new", "ingested_at"), row or (None,) * 4, strict=True))


def stuck_on_the_slow_url(
    db_url: str, observer: psycopg.Connection, folder: Path, url: str, asked: threading.Event
) -> subprocess.Popen:
    """An ingest of a folder and then a URL that never finishes, once it has stored the
    folder's first batch and is waiting for the URL."""
    process = start_ingest(db_url, str(folder), url)

    def reading_the_url() -> bool:
        """the first batch is stored and the URL is being read"""
        assert process.poll() is None, process.communicate()
        return asked.is_set() and job(observer)["new"] == FIRST_BATCH

    wait_until(reading_the_url)
    return process


@pytest.mark.parametrize(("sent", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_marks_the_job_failed(
    db_url, observer, no_stages, tmp_path: Path, slow_url, sent: signal.Signals, status: int
) -> None:
    url, asked = slow_url
    folder = photos(tmp_path / "photos", FIRST_BATCH + 20)
    process = stuck_on_the_slow_url(db_url, observer, folder, url, asked)

    process.send_signal(sent)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)

    assert time.monotonic() - started < 15  # the slow download is stopped, not waited for
    assert process.returncode == status, stderr
    assert stderr.splitlines()[-1] == (
        f"error: interrupted by {sent.name}: job 1 is marked failed (the files stored before "
        "stay stored; `semsql jobs 1` lists them)"
    )
    assert "Traceback" not in stderr
    found = job(observer)
    assert (found["status"], found["error"], found["new"]) == (
        "failed",
        f"interrupted by {sent.name}",
        FIRST_BATCH,
    )
    assets = observer.execute("SELECT count(*) FROM semsql.assets").fetchone()[0]
    assert assets == FIRST_BATCH


def killed(process: subprocess.Popen, observer: psycopg.Connection, job_id: int) -> None:
    """SIGKILL, and wait until the server has seen the connection go."""
    process.kill()
    process.communicate(timeout=60)

    def backend_gone() -> bool:
        """the killed ingest's backend has ended"""
        return not observer.execute(
            "SELECT semsql.backend_alive(backend_pid, backend_start) FROM semsql.jobs"
            " WHERE id = %s",
            [job_id],
        ).fetchone()[0]

    wait_until(backend_gone)


def test_after_sigkill_jobs_marks_the_abandoned_job_failed(
    db_url, semsql_env, observer, tmp_path: Path, slow_url
) -> None:
    url, asked = slow_url
    folder = photos(tmp_path / "photos", FIRST_BATCH + 20)
    reading = stuck_on_the_slow_url(db_url, observer, folder, url, asked)
    # A second ingest that has read its file and waits for its enrichment (no worker runs).
    waiting = start_ingest(db_url, str(make_jpeg(tmp_path / "more" / "x.jpg", seed=999)), "--wait")
    wait_until(lambda: job(observer, 2)["ingested_at"] is not None)
    assert waiting.poll() is None
    assert job(observer)["status"] == job(observer, 2)["status"] == "running"

    killed(reading, observer, 1)
    killed(waiting, observer, 2)
    result = CliRunner().invoke(cli, ["jobs", "--json"])

    assert result.exit_code == 0, result.output
    listed = {row["id"]: row for row in json.loads(result.stdout)}
    assert (listed[1]["status"], listed[1]["error"]) == ("failed", ABANDONED)
    assert listed[1]["new_count"] == FIRST_BATCH
    assert (listed[2]["status"], listed[2]["error"]) == ("running", None)  # the worker ends it


def test_after_sigkill_the_next_ingest_marks_the_abandoned_job_failed(
    db_url, semsql_env, observer, no_stages, tmp_path: Path, slow_url
) -> None:
    url, asked = slow_url
    folder = photos(tmp_path / "photos", FIRST_BATCH + 20)
    killed(stuck_on_the_slow_url(db_url, observer, folder, url, asked), observer, 1)
    assert job(observer)["status"] == "running"

    result = CliRunner().invoke(cli, ["ingest", str(make_jpeg(tmp_path / "next.jpg", seed=7))])

    assert result.exit_code == 0, result.output
    assert f"note: job 1 {ABANDONED}: marked failed" in result.stderr
    assert (job(observer)["status"], job(observer)["error"]) == ("failed", ABANDONED)
    assert job(observer, 2)["status"] == "completed"


def test_a_live_ingest_is_not_taken_for_an_abandoned_one(
    db_url, semsql_env, observer, no_stages, tmp_path: Path, slow_url
) -> None:
    url, asked = slow_url
    folder = photos(tmp_path / "photos", FIRST_BATCH + 20)
    reading = stuck_on_the_slow_url(db_url, observer, folder, url, asked)
    try:
        result = CliRunner().invoke(cli, ["jobs", "1", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["status"] == "running"
    finally:
        reading.terminate()
        reading.communicate(timeout=60)


def test_roles_that_cannot_see_other_sessions_fail_only_jobs_that_are_gone(conn, login_as) -> None:
    from semsql.ingest import create_job, fail_abandoned_jobs

    live = create_job(conn, "default", {})  # this connection's backend, alive
    gone = conn.execute(
        "INSERT INTO semsql.jobs (collection, status, backend_pid, backend_start)"
        " VALUES ('default', 'running', 2147483647, now()) RETURNING id"
    ).fetchone()[0]
    conn.commit()
    analyst = login_as("semsql_analyst")
    assert fail_abandoned_jobs(analyst) == []  # may not update jobs: no error either
    worker = login_as("semsql_worker")  # sees other roles' sessions without backend_start
    assert fail_abandoned_jobs(worker) == [gone]
    statuses = dict(conn.execute("SELECT id, status FROM semsql.jobs").fetchall())
    assert statuses == {live: "pending", gone: "failed"}


def test_a_signal_while_waiting_leaves_the_job_to_the_worker(db_url, observer, tmp_path) -> None:
    process = start_ingest(db_url, str(make_jpeg(tmp_path / "x.jpg")), "--wait")
    wait_until(lambda: job(observer)["ingested_at"] is not None)  # stages on, no worker
    process.terminate()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.splitlines()[-1] == (
        "error: interrupted by SIGTERM: job 1 has read its files and goes on"
        " (`semsql jobs 1` follows it)"
    )
    assert (job(observer)["status"], job(observer)["error"]) == ("running", None)
