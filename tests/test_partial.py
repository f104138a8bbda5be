"""Partial enrichment is not failure: a stage whose model is missing is reported once as not
available, its tasks wait (not failed), assets are ready with the stages they have and jobs
complete; a worker that loads the model later fills the stage in, with no --retry-failed.
An asset whose own file is bad still fails."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import skimage.data
from click.testing import CliRunner, Result
from PIL import Image

from semsql import database, migrate
from semsql.cli.main import cli
from semsql.embedder.models import load_model_config
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.stages import model_env_var

STAGES = ("caption", "faces", "clip", "text")
PREVIOUS_RELEASE = Path(__file__).parent / "data" / "release_1fcfe85"
LOAD_ERROR = (
    "caption model '/gone' could not be loaded: folder /gone does not exist. Fix: set "
    "SEMSQL_MODEL_CAPTION to a local folder made with `save_pretrained` (model and processor), "
    "or SEMSQL_MODEL_CAPTION=off."
)


def rows(conn: psycopg.Connection, query: str, *params: object) -> list[tuple]:
    return conn.execute(query, list(params)).fetchall()


def tasks_by_uri(conn: psycopg.Connection) -> dict[tuple[str, str], str]:
    """(file name, stage) -> task status."""
    return {
        (Path(uri).name, stage): status
        for uri, stage, status in rows(
            conn,
            """SELECT a.uri, t.stage, t.status
               FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id""",
        )
    }


def asset_statuses(conn: psycopg.Connection) -> dict[str, str]:
    return {
        Path(uri).name: status
        for uri, status in rows(conn, "SELECT uri, status FROM semsql.assets")
    }


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def set_models(monkeypatch: pytest.MonkeyPatch, models: dict[str, str]) -> None:
    for stage, model in models.items():
        monkeypatch.setenv(model_env_var(stage), model)


def test_a_missing_model_is_reported_once_and_the_next_worker_fills_its_stage(
    db, semsql_env, tmp_path, tiny_models, monkeypatch
) -> None:
    db.execute("UPDATE semsql.stages SET enabled = name = ANY (%s)", [list(STAGES)])
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(photos / "astronaut.png")
    Image.fromarray(skimage.data.chelsea()).save(photos / "chelsea.png")
    Image.new("RGB", (64, 48), "blue").save(photos / "changed.png")
    (photos / "poison.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG " * 50)

    first = invoke(
        "ingest", *(str(photos / n) for n in ("astronaut.png", "changed.png", "poison.jpg"))
    )
    assert first.exit_code == 1  # the poison: the job item failed, the others are stored
    assert rows(db, "SELECT outcome FROM semsql.job_items WHERE uri LIKE '%%poison.jpg'") == [
        ("failed",)
    ]
    Image.new("RGB", (64, 48), "red").save(photos / "changed.png")  # its own file goes bad

    missing = str(tmp_path / "no-caption-model")
    set_models(monkeypatch, {**tiny_models, "caption": missing})
    broken = Worker(semsql_env, WorkerOptions(poll_interval=0.2), models=load_model_config())
    thread = threading.Thread(target=broken.run, daemon=True)
    thread.start()
    try:
        assert broken.ready.wait(120)
        assert "caption" in broken.unavailable and "caption" not in broken.served

        # --wait returns once only the unavailable stage is left, and says so.
        waited = invoke("ingest", str(photos / "chelsea.png"), "--wait", "--timeout", "300")
        assert waited.exit_code == 0, waited.output
        assert "job 2 completed: 1 new" in waited.stdout
        assert "note: the caption tasks of job 2 wait for a model that is not available" in (
            waited.stderr
        )
        # Job 1 completes too, once its last available tasks are through.
        completed = "SELECT bool_and(status = 'completed') FROM semsql.jobs"
        wait_until(lambda: rows(db, completed) == [(True,)])
        assert rows(db, "SELECT id, status FROM semsql.jobs ORDER BY id") == [
            (1, "completed"),
            (2, "completed"),
        ]
        tasks = tasks_by_uri(db)
        assert {key: s for key, s in tasks.items() if key[1] == "caption"} == {
            (name, "caption"): "waiting" for name in ("astronaut.png", "chelsea.png", "changed.png")
        }
        assert {key for key, s in tasks.items() if s == "failed"} == {
            ("changed.png", "faces"),
            ("changed.png", "clip"),
        }
        assert asset_statuses(db) == {
            "astronaut.png": "ready",
            "chelsea.png": "ready",
            "changed.png": "failed",
        }

        # Status: the stage once, with why and how to fix it; no failure on every asset.
        text = invoke("status").output
        assert text.count("caption: model not available") == 1, text
        line = next(line for line in text.splitlines() if "caption: model not available" in line)
        assert missing in line and "(fix: set SEMSQL_MODEL_CAPTION" in line
        assert "assets: 2 ready, 0 pending, 1 failed" in text
        assert "2 failed task(s)" in text
        report = json.loads(invoke("status", "--json").output)
        (unavailable,) = report["unavailable_stages"]
        assert unavailable["stage"] == "caption" and unavailable["waiting_tasks"] == 3
        assert missing in unavailable["reason"] and "SEMSQL_MODEL_CAPTION" in unavailable["fix"]
        assert report["assets"] == {"ready": 2, "failed": 1}
        by_stage = {row["stage"]: row for row in report["stages"] if row["enabled"]}
        assert (by_stage["caption"]["failed"], by_stage["caption"]["waiting"]) == (0, 3)
        assert {task["stage"] for task in report["failed"]} == {"faces", "clip"}
    finally:
        broken.stop()
        thread.join(60)
    assert rows(db, "SELECT count(*) FROM semsql.unavailable_stages") == [(1,)]  # it stays said

    # The model arrives: a plain worker fills the stage in, without --retry-failed.
    set_models(monkeypatch, tiny_models)
    Worker(
        semsql_env, WorkerOptions(until_idle=True, poll_interval=0.2), models=load_model_config()
    ).run()
    tasks = tasks_by_uri(db)
    assert {key for key, s in tasks.items() if s != "done"} == {
        ("changed.png", "faces"),
        ("changed.png", "clip"),
        ("changed.png", "caption"),  # its own file is still bad
    }
    assert tasks[("changed.png", "caption")] == "failed"
    assert asset_statuses(db) == {
        "astronaut.png": "ready",
        "chelsea.png": "ready",
        "changed.png": "failed",
    }
    assert rows(db, "SELECT count(*) FROM semsql.unavailable_stages") == [(0,)]
    captions = dict(
        rows(
            db,
            """SELECT a.uri, d.caption FROM semsql.search_documents d
               JOIN semsql.assets a ON a.id = d.asset_id WHERE d.caption IS NOT NULL""",
        )
    )
    assert {Path(uri).name for uri in captions} == {"astronaut.png", "chelsea.png"}
    assert rows(db, "SELECT DISTINCT source FROM semsql.captions") == [(tiny_models["caption"],)]
    # The text vector embeds the document with the new caption.
    stale = rows(
        db,
        """SELECT a.uri FROM semsql.embeddings e JOIN semsql.assets a ON a.id = e.asset_id
           WHERE e.space = 'text'
             AND e.input_sha256 <> encode(sha256(convert_to(semsql.asset_document(a.id),
                                                            'UTF8')), 'hex')""",
    )
    assert stale == []
    assert "model not available" not in invoke("status").output


# -- SQL: reports, registrations, and databases an older release left -------------------------


def add_assets(conn: psycopg.Connection, count: int) -> list[int]:
    return [
        conn.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
            [f"/lib/{n}.jpg", hashlib.sha256(str(n).encode()).hexdigest()],
        ).fetchone()[0]
        for n in range(count)
    ]


def report(conn: psycopg.Connection, worker: str = "offline") -> int:
    return conn.execute(
        "SELECT semsql.report_unavailable_stage(%s, 'caption', 'no weights', 'copy them')",
        [worker],
    ).fetchone()[0]


def register(conn: psycopg.Connection, name: str, stages: list[str]) -> None:
    conn.execute(
        "SELECT semsql.register_worker(%s, 'here', 1, 'cpu', %s, '{}', '{}')", [name, stages]
    )


def test_a_report_parks_the_stage_and_a_registration_takes_it_back(db, db_url) -> None:
    db.execute("UPDATE semsql.stages SET enabled = name IN ('caption', 'faces')")
    a, b = add_assets(db, 2)
    db.execute("UPDATE semsql.tasks SET status = 'done' WHERE stage = 'faces'")
    db.execute(
        "UPDATE semsql.tasks SET status = 'failed', last_error = 'cannot decode' "
        "WHERE stage = 'faces' AND asset_id = %s",
        [b],
    )
    db.execute("SELECT semsql.refresh_asset_status(ARRAY[%s, %s]::bigint[])", [a, b])
    assert dict(rows(db, "SELECT id, status FROM semsql.assets")) == {a: "pending", b: "failed"}

    assert report(db) == 2
    assert report(db) == 0  # said already, nothing left to park
    assert dict(rows(db, "SELECT stage, status FROM semsql.tasks WHERE asset_id = %s", a)) == {
        "caption": "waiting",
        "faces": "done",
    }
    assert dict(rows(db, "SELECT id, status FROM semsql.assets")) == {a: "ready", b: "failed"}
    assert rows(db, "SELECT stage, reason, fix, reported_by FROM semsql.unavailable_stages") == [
        ("caption", "no weights", "copy them", "offline")
    ]

    with database.connect(db_url, autocommit=True) as other:
        register(other, "with-weights", ["caption"])  # it stays registered while this is open
        assert rows(db, "SELECT count(*) FROM semsql.unavailable_stages") == [(0,)]
        assert rows(db, "SELECT DISTINCT status FROM semsql.tasks WHERE stage = 'caption'") == [
            ("pending",)
        ]
        # Going on while the model runs; the failed one stays failed.
        assert dict(rows(db, "SELECT id, status FROM semsql.assets")) == {
            a: "pending",
            b: "pending",
        }
        # A worker without the model leaves the stage to the one that runs it.
        assert report(db) == 0
        assert rows(db, "SELECT count(*) FROM semsql.unavailable_stages") == [(0,)]
        assert rows(db, "SELECT DISTINCT status FROM semsql.tasks WHERE stage = 'caption'") == [
            ("pending",)
        ]


def test_an_unknown_stage_is_refused(db) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown stage nope"):
        db.execute("SELECT semsql.report_unavailable_stage('w', 'nope', 'r', NULL)")


def test_tasks_an_older_release_failed_for_a_missing_model_are_recovered(
    fresh_database,
) -> None:
    """Upgraded from the previous release, whose worker failed every task of a stage whose
    model did not load: the first worker with the model runs them; one without makes them
    wait. A task that failed for its own input stays failed."""
    url = fresh_database("semsql_test_partial_upgrade")
    with database.connect(url, autocommit=True) as conn:
        migrate.init(
            conn,
            migrations=PREVIOUS_RELEASE / "migrations",
            definitions=PREVIOUS_RELEASE / "sql",
        )
        conn.execute("UPDATE semsql.stages SET enabled = name IN ('caption', 'faces')")
        a, b, c = add_assets(conn, 3)
        conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE stage = 'faces'")
        conn.execute(
            "UPDATE semsql.tasks SET status = 'failed', attempts = 1, last_error = %s "
            "WHERE stage = 'caption' AND asset_id IN (%s, %s)",
            [LOAD_ERROR, a, b],
        )
        conn.execute(
            "UPDATE semsql.tasks SET status = 'failed', attempts = 1, last_error = 'cannot "
            "decode /lib/2.jpg' WHERE stage = 'caption' AND asset_id = %s",
            [c],
        )
        conn.execute("UPDATE semsql.assets SET status = 'failed'")
        migrate.init(conn)
        # The upgrade queued the stages this release adds; they are not what this is about.
        conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE stage = 'content'")

        assert report(conn) == 2  # still offline here: they wait, their assets are ready
        assert dict(rows(conn, "SELECT id, status FROM semsql.assets")) == {
            a: "ready",
            b: "ready",
            c: "failed",
        }
        # One of them as the older release left it, the other waiting: both are run now.
        conn.execute(
            "UPDATE semsql.tasks SET status = 'failed', last_error = %s "
            "WHERE asset_id = %s AND stage = 'caption'",
            [LOAD_ERROR, b],
        )
        with database.connect(url, autocommit=True) as other:
            register(other, "with-weights", ["caption"])
            assert dict(
                rows(conn, "SELECT asset_id, status FROM semsql.tasks WHERE stage = 'caption'")
            ) == {a: "pending", b: "pending", c: "failed"}
            assert rows(
                conn,
                "SELECT last_error FROM semsql.tasks WHERE asset_id = %s AND stage = 'caption'",
                b,
            ) == [(None,)]
