"""`semsql ingest` exits 1 when a file failed (0 when every file was stored or skipped), and
`--wait` waits neither for a worker that is not there nor past its --timeout."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner, Result
from corpus import make_jpeg

from semsql import database
from semsql.cli.main import cli


def ingest(*args: str) -> Result:
    return CliRunner().invoke(cli, ["ingest", *args])


def test_ingest_exits_1_when_a_file_failed(semsql_env, tmp_path: Path) -> None:
    good = make_jpeg(tmp_path / "good.jpg")
    stored = ingest(str(good), "--json")
    assert stored.exit_code == 0, stored.output
    again = ingest(str(good), "--json")  # skipped: still a success
    assert again.exit_code == 0 and json.loads(again.stdout)["skipped"] == 1

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"no JPEG at all")
    result = ingest(str(good), str(broken), str(tmp_path / "missing.jpg"), "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)  # the summary is printed all the same
    assert (summary["skipped"], summary["failed"]) == (1, 2)


def test_timeout_goes_with_wait(semsql_env) -> None:
    result = ingest("x.jpg", "--timeout", "5")
    assert result.exit_code == 2 and "--timeout goes with --wait" in result.stderr


def test_ingest_wait_says_when_no_worker_runs(semsql_env, tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "photo.jpg")
    started = time.monotonic()
    result = ingest(str(photo), "--wait")
    assert time.monotonic() - started < 30
    assert result.exit_code == 1
    assert "note: no running `semsql worker` takes the " in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: no `semsql worker` is running the caption, ")
    assert "`semsql jobs " in last and "0 of " in last
    assert "job 1 running: 1 new" in result.stdout  # stored all the same


def test_ingest_wait_gives_up_after_its_timeout(semsql_env, db_url, tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "photo.jpg")
    with database.connect(db_url, autocommit=True) as worker:
        # A live worker (its connection stays open) that takes every stage, but works on nothing.
        worker.execute(
            """SELECT semsql.register_worker('idle', 'here', 1, 'cpu',
                                             ARRAY(SELECT name FROM semsql.stages), '{}', '{}')"""
        )
        started = time.monotonic()
        result = ingest(str(photo), "--wait", "--timeout", "1.5", "--json")
        waited = time.monotonic() - started
    assert result.exit_code == 1
    assert 1.5 <= waited < 10
    assert json.loads(result.stdout)["status"] == "running"
    assert result.stderr.splitlines()[-1].startswith("error: job 1 is not enriched after 1.5 s")
