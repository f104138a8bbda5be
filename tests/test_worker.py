"""The worker's stages end to end, with tiny random models of the real architectures and the
real MTCNN and MiniLM; semsql.embed_text; `semsql status`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from semsql.cli.main import cli
from semsql.decode import InputError, load_image
from semsql.embedder.models import load_stage
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.embedder.writers import upsert_embeddings
from semsql.stages import STAGES

# Random detector weights score every class about alike: keep every box.
STAGE_OPTIONS = {"tags": {"threshold": 0.0, "max_tags": 5}}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pictures")
    paths = {
        "astronaut": folder / "astronaut.png",
        "chelsea": folder / "chelsea.jpg",
        "grace_hopper": folder / "grace_hopper.jpg",
        "poison": folder / "poison.jpg",
    }
    Image.fromarray(skimage.data.astronaut()).save(paths["astronaut"])
    Image.fromarray(skimage.data.chelsea()).save(paths["chelsea"])
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as sample:
        paths["grace_hopper"].write_bytes(sample.read())
    paths["poison"].write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG " * 50)
    return paths


def ingest(paths: list[Path], semsql_env: str) -> None:
    result = CliRunner().invoke(cli, ["ingest", *map(str, paths), "--json"])
    assert result.exit_code == 0, result.output


def run_until_idle(url: str, models: dict[str, str | None], **options) -> Worker:
    options.setdefault("poll_interval", 0.2)
    options.setdefault("stage_options", STAGE_OPTIONS)
    worker = Worker(url, WorkerOptions(until_idle=True, **options), models=models)
    worker.run()
    return worker


def rows(conn: psycopg.Connection, query: str, *params) -> list[tuple]:
    return conn.execute(query, list(params)).fetchall()


def test_every_stage_fills_its_rows_with_provenance(db, semsql_env, pictures, tiny_models) -> None:
    good = [pictures[name] for name in ("astronaut", "chelsea", "grace_hopper")]
    ingest(good, semsql_env)
    run_until_idle(semsql_env, tiny_models)

    uri = {name: str(path) for name, path in pictures.items()}
    ids = dict(rows(db, "SELECT uri, id FROM semsql.assets"))
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    assert dict(rows(db, "SELECT stage, count(*) FROM semsql.tasks GROUP BY stage")) == {
        s.name: 3 for s in STAGES if not s.off_by_default and "image" in s.media_types
    }  # segments: tests/test_segments.py; frames (videos): tests/test_video_pipeline.py
    assert rows(
        db, "SELECT count(*) FROM semsql.tasks WHERE model IS NULL OR finished_at IS NULL"
    ) == [(0,)]
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]

    assert rows(db, "SELECT DISTINCT source FROM semsql.captions") == [(tiny_models["caption"],)]
    assert rows(db, "SELECT count(DISTINCT asset_id) FROM semsql.captions") == [(3,)]
    tags = rows(db, "SELECT DISTINCT source, cardinality(box) FROM semsql.tags")
    assert tags == [(tiny_models["tags"], 4)]

    faces = dict(rows(db, "SELECT asset_id, count(*) FROM semsql.faces GROUP BY asset_id"))
    assert faces.get(ids[uri["astronaut"]], 0) >= 1
    assert faces.get(ids[uri["grace_hopper"]], 0) >= 1
    assert ids[uri["chelsea"]] not in faces
    assert rows(
        db,
        """SELECT DISTINCT detector, embedding_model, vector_dims(embedding),
                              emotion_model, emotion_scores ? emotion
                       FROM semsql.faces""",
    ) == [("mtcnn", tiny_models["face_vectors"], 512, tiny_models["emotion"], True)]
    astronaut_box = rows(
        db, "SELECT box FROM semsql.faces WHERE asset_id = %s", ids[uri["astronaut"]]
    )[0][0]
    assert 150 < astronaut_box[0] < astronaut_box[2] < 300  # pixels of the 512x512 original

    vectors = rows(
        db,
        "SELECT space, model, vector_dims(embedding), count(*) FROM semsql.embeddings "
        "GROUP BY 1, 2, 3 ORDER BY 1",
    )
    assert vectors == [("image", tiny_models["clip"], 16, 3), ("text", tiny_models["text"], 384, 3)]
    assert rows(db, "SELECT space, model, dims FROM semsql.vector_spaces ORDER BY 1") == [
        ("image", tiny_models["clip"], 16),
        ("text", tiny_models["text"], 384),
    ]
    assert rows(
        db, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'embeddings_%%_hnsw'"
    ) == [(2,)]

    # The text vector embeds the asset document, and only again when that document changes.
    document, digest = rows(
        db,
        """SELECT semsql.asset_document(asset_id), input_sha256
                                   FROM semsql.embeddings WHERE space = 'text' AND asset_id = %s""",
        ids[uri["astronaut"]],
    )[0]
    assert document.endswith(".") and "Tags: " in document and "Emotions: " in document
    assert digest == hashlib.sha256(document.encode()).hexdigest()
    jobs = rows(db, "SELECT status FROM semsql.jobs")
    assert jobs == [("completed",)]


def test_a_poison_image_fails_its_tasks_with_the_error_and_the_rest_are_done(
    db, semsql_env, pictures, tiny_models
) -> None:
    db.execute("UPDATE semsql.stages SET enabled = name IN ('faces', 'clip', 'text')")
    paths = [pictures["astronaut"], pictures["chelsea"], pictures["poison"]]
    for path in paths:  # straight into the table: ingest would refuse the poison
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        db.execute("INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s)", [str(path), digest])
    run_until_idle(semsql_env, tiny_models)
    outcome = rows(
        db,
        """SELECT a.uri, t.stage, t.status, t.attempts, t.last_error
                          FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id
                          WHERE t.status <> 'done'""",
    )
    assert sorted(
        (uri, stage, status, attempts) for uri, stage, status, attempts, _ in outcome
    ) == [
        (str(pictures["poison"]), "clip", "failed", 1),
        (str(pictures["poison"]), "faces", "failed", 1),
    ]
    assert all(f"cannot decode {pictures['poison']}" in error for *_, error in outcome)
    assert dict(rows(db, "SELECT uri, status FROM semsql.assets")) == {
        str(pictures["astronaut"]): "ready",
        str(pictures["chelsea"]): "ready",
        str(pictures["poison"]): "failed",
    }
    result = CliRunner().invoke(cli, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {row["stage"]: row["failed"] for row in report["stages"] if row["enabled"]} == {
        "faces": 1,
        "clip": 1,
        "text": 0,
    }
    assert {task["stage"] for task in report["failed"]} == {"faces", "clip"}
    reasons = {(r["stage"], r["tasks"], r["example"]) for r in report["failure_reasons"]}
    assert reasons == {("faces", 1, str(pictures["poison"])), ("clip", 1, str(pictures["poison"]))}
    text = CliRunner().invoke(cli, ["status"]).output
    assert "1 x faces: cannot decode" in text and "poison.jpg" in text
    assert "--retry-failed" in text

    mended = pictures["poison"].parent / "mended.jpg"
    Image.new("RGB", (64, 48), "white").save(mended)
    db.execute(
        "UPDATE semsql.assets SET uri = %s, sha256 = %s WHERE uri = %s",
        [str(mended), hashlib.sha256(mended.read_bytes()).hexdigest(), str(pictures["poison"])],
    )
    run_until_idle(semsql_env, tiny_models, retry_failed=True)
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]


def test_a_model_that_cannot_load_makes_only_its_stage_wait(
    db, semsql_env, pictures, tiny_models
) -> None:
    db.execute("UPDATE semsql.stages SET enabled = name IN ('faces', 'face_vectors', 'emotion')")
    ingest([pictures["grace_hopper"]], semsql_env)
    missing = str(pictures["grace_hopper"].parent / "no-such-weights.pt")
    worker = run_until_idle(semsql_env, {**tiny_models, "face_vectors": missing})
    assert "face_vectors" in worker.unavailable and "face_vectors" not in worker.served
    outcome = {
        stage: (status, error)
        for stage, status, error in rows(db, "SELECT stage, status, last_error FROM semsql.tasks")
    }
    assert outcome == {
        "faces": ("done", None),
        "emotion": ("done", None),
        "face_vectors": ("waiting", None),  # not failed: it waits for a worker with the model
    }
    ((reason, fix),) = rows(
        db, "SELECT reason, fix FROM semsql.unavailable_stages WHERE stage = 'face_vectors'"
    )
    assert missing in reason and "SEMSQL_MODEL_FACE_VECTORS" in fix
    assert rows(db, "SELECT status FROM semsql.assets") == [("ready",)]
    assert rows(
        db,
        "SELECT count(*) > 0, bool_and(emotion IS NOT NULL), bool_and(embedding IS NULL) "
        "FROM semsql.faces",
    ) == [(True, True, True)]


def test_the_worker_reads_only_what_was_ingested(db, semsql_env, tmp_path, tiny_models) -> None:
    """A file swapped for a link out of its folder, and content changed since ingest (on disk
    and at a URL), fail their tasks for good; the worker reads nothing from them."""
    db.execute("UPDATE semsql.stages SET enabled = (name = 'faces')")
    photos, outside, web = tmp_path / "photos", tmp_path / "outside", tmp_path / "web"
    for folder in (photos, outside, web):
        folder.mkdir()
    astronaut = outside / "astronaut.png"  # a face
    Image.fromarray(skimage.data.astronaut()).save(astronaut)
    Image.fromarray(skimage.data.chelsea()).save(photos / "chelsea.jpg")  # no face
    Image.new("RGB", (64, 48), "red").save(photos / "swapped.png")
    Image.new("RGB", (64, 48), "blue").save(photos / "changed.png")
    Image.new("RGB", (64, 48), "green").save(web / "online.png")
    command = [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1", "-d", str(web)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            port = int(server.stdout.readline().split(" port ")[1].split()[0])
            url = f"http://127.0.0.1:{port}/online.png"
            summary = ingest_json(str(photos), url)
            assert (summary["new"], summary["failed"]) == (4, 0)

            (photos / "swapped.png").unlink()
            (photos / "swapped.png").symlink_to(astronaut)
            shutil.copy(astronaut, photos / "changed.png")
            Image.new("RGB", (64, 48), "yellow").save(web / "online.png")
            run_until_idle(semsql_env, tiny_models)
        finally:
            server.terminate()

    outcome = {
        uri: (status, attempts, error)
        for uri, status, attempts, error in rows(
            db,
            """SELECT a.uri, t.status, t.attempts, t.last_error
               FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id""",
        )
    }
    assert outcome[str(photos / "chelsea.jpg")] == ("done", 0, None)
    changed = "changed since ingest: run semsql ingest again"
    for uri in (str(photos / "changed.png"), url):
        status, attempts, error = outcome[uri]
        assert (status, attempts) == ("failed", 1) and error.startswith(f"{uri} {changed} (")
    assert outcome[str(photos / "swapped.png")] == (
        "failed",
        1,
        f"refused to read {photos}/swapped.png: a link leads outside {photos} (to {astronaut})",
    )
    assert rows(db, "SELECT count(*) FROM semsql.faces") == [(0,)]

    # As the message says: ingest again, and the new content is read. The link is refused there.
    again = ingest_json(str(photos))
    assert (again["updated"], [e["code"] for e in again["errors"]]) == (1, ["outside_root"])
    run_until_idle(semsql_env, tiny_models)
    faces = rows(
        db,
        """SELECT a.uri, count(*) FROM semsql.faces f JOIN semsql.assets a ON a.id = f.asset_id
           GROUP BY a.uri""",
    )
    assert [uri for uri, _ in faces] == [str(photos / "changed.png")]


def ingest_json(*paths: str) -> dict:
    """`semsql ingest --json`, which exits 1 when a file failed."""
    result = CliRunner().invoke(cli, ["ingest", *paths, "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# -- semsql.embed_text ----------------------------------------------------------------------------


def test_embed_text_asks_the_running_worker_and_caches_the_answer(
    db, query_worker, tiny_models
) -> None:
    (vector,) = db.execute("SELECT semsql.embed_text('a kite over a field')").fetchone()
    expected = load_stage("text", tiny_models["text"], "cpu").encode(["a kite over a field"])[0]
    np.testing.assert_allclose(vector.to_numpy(), expected, atol=1e-5)
    image_space = db.execute("SELECT semsql.embed_text('a kite', space => 'image')").fetchone()[0]
    assert len(image_space.to_numpy()) == 16
    cached = rows(db, "SELECT space, text, model FROM semsql.query_embeddings ORDER BY space")
    assert cached == [
        ("image", "a kite", tiny_models["clip"]),
        ("text", "a kite over a field", tiny_models["text"]),
    ]
    query_worker.stop()
    # Cached: answered without a worker.
    again = db.execute("SELECT semsql.embed_text('a kite over a field')").fetchone()[0]
    assert again.to_list() == vector.to_list()


def test_embed_text_works_for_an_analyst_and_in_a_repeatable_read_transaction(
    db, db_url, server_url, query_worker
) -> None:
    analyst = f"semsql_analyst_{conninfo_to_dict(db_url)['dbname']}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'analyst'").format(sql.Identifier(analyst)))
    try:
        db.execute(
            sql.SQL("""GRANT USAGE ON SCHEMA semsql TO {0};
                              GRANT EXECUTE ON FUNCTION semsql.embed_text(text, text, interval)
                              TO {0}""").format(sql.Identifier(analyst))
        )
        url = make_conninfo(db_url, user=analyst, password="analyst")
        with psycopg.connect(url) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            (text,) = conn.execute("SELECT semsql.embed_text('children in snow')::text").fetchone()
            assert text.startswith("[")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM semsql.loopback_login")
    finally:
        db.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(analyst)))


def test_embed_text_without_a_worker_fails_at_once_naming_semsql_worker(db) -> None:
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="`semsql worker`"):
        db.execute("SELECT semsql.embed_text('nobody listens')")


def test_a_vector_half_precision_cannot_hold_is_refused_and_nothing_written(conn) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/h', repeat('a', 64)) RETURNING id"
    ).fetchone()[0]
    for bad, reason in (([1.0, 7e4, 0.0], "half precision"), ([np.nan, 0.0, 1.0], "NaN")):
        with pytest.raises(ValueError, match=reason):
            upsert_embeddings(conn, "text", "m", [(asset_id, np.array(bad), "x")])
    upsert_embeddings(conn, "text", "m", [(asset_id, np.array([0.6, 0.8, 0.0]), "x")])
    (stored,) = conn.execute("SELECT embedding FROM semsql.embeddings").fetchone()
    np.testing.assert_allclose(stored.to_numpy(), [0.6, 0.8, 0.0], atol=1e-3)


def test_what_the_worker_reads_must_have_the_ingested_size_and_hash(tmp_path) -> None:
    picture = tmp_path / "p.png"
    Image.new("RGB", (40, 30), "teal").save(picture)
    data = picture.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    root = str(tmp_path)
    assert load_image(str(picture), 64, root=root, sha256=digest, size=len(data)).scale == 1
    with pytest.raises(InputError, match=r"changed since ingest.*\(it has \d+ bytes, not 1\)"):
        load_image(str(picture), 64, root=root, sha256=digest, size=1)
    picture.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other content
    with pytest.raises(InputError, match="its content is not what was ingested") as caught:
        load_image(str(picture), 64, root=root, sha256=digest, size=len(data))
    assert caught.value.permanent
    picture.unlink()
    os.mkfifo(picture)  # not a regular file: no retry will mend it
    with pytest.raises(InputError, match="not a regular file") as caught:
        load_image(str(picture), 64, root=root, sha256=digest, size=len(data))
    assert caught.value.permanent
