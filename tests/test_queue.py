"""The work queue: claiming, leases, retries, dependencies, and workers that die or stop.

Queue tests run the real MiniLM `text` stage (and MTCNN `faces` where a table without a
unique key shows duplicates), with every other stage disabled before assets are inserted.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import skimage.data
from fix_models import minilm_folder
from PIL import Image
from psycopg import sql

from semsql import database
from semsql.embedder.queue import Failure, Queue, QueueSettings
from semsql.embedder.worker import Worker, WorkerOptions

MINILM = str(minilm_folder())


# -- helpers ------------------------------------------------------------------------------------


def only_stages(conn: psycopg.Connection, *names: str) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = (name = ANY (%s))", [list(names)])


def add_assets(
    conn: psycopg.Connection,
    folder: Path,
    count: int,
    *,
    start: int = 0,
    image: Image.Image | None = None,
) -> list[int]:
    """`count` assets with real image files (unique content) and a user caption each."""
    ids = []
    for n in range(start, start + count):
        path = folder / f"img{n:04}.png"
        picture = (image or Image.new("RGB", (48, 32), (n % 251, 90, 160))).copy()
        picture.putpixel((0, 0), (n % 256, n // 256 % 256, 7))
        picture.save(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        asset_id = conn.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
            [str(path), digest],
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', %s)",
            [asset_id, f"photo number {n} of a red kite over a field"],
        )
        ids.append(asset_id)
    return ids


def statuses(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM semsql.tasks GROUP BY status"))


def count_completions(conn: psycopg.Connection) -> None:
    """Record every transition of a task to done, and by whom (observation only)."""
    conn.execute(
        """CREATE TABLE public.completions (task_id bigint, worker text);
           CREATE FUNCTION public.note_completion() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               INSERT INTO public.completions VALUES (NEW.id, OLD.leased_by);
               RETURN NULL;
           END $$;
           CREATE TRIGGER note_completion AFTER UPDATE OF status ON semsql.tasks
               FOR EACH ROW WHEN (NEW.status = 'done' AND OLD.status <> 'done')
               EXECUTE FUNCTION public.note_completion();"""
    )


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time: {condition.__doc__ or condition}")
        time.sleep(0.05)


def start_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(60)
    return thread


def text_worker(url: str, **options) -> Worker:
    options.setdefault("stages", ("text",))
    options.setdefault("decode_threads", 1)
    return Worker(url, WorkerOptions(**options), models={"text": MINILM, "faces": "mtcnn"})


def worker_process(url: str, log: Path, *args: str) -> subprocess.Popen:
    """`semsql worker` in a process of its own, its output going to `log`."""
    env = {**os.environ, "SEMSQL_DATABASE_URL": url, "SEMSQL_MODEL_TEXT": MINILM}
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "semsql.cli", "worker", *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


# -- SQL: claiming and leases -------------------------------------------------------------------


def test_claims_skip_tasks_locked_by_another_claim(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 5)
    with database.connect(db_url) as other:  # an open transaction holds its claim's row locks
        first = Queue(other, "w1").claim("text", 3)
        second = Queue(db, "w2").claim("text", 10)
        assert {t.id for t in first}.isdisjoint({t.id for t in second})
        assert len(first) + len(second) == 5


def test_tasks_of_a_closed_connection_are_claimed_again_at_once(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 3)
    lost = database.connect(db_url, autocommit=True)
    claimed = Queue(lost, "dead", QueueSettings()).claim("text", 10)
    assert len(claimed) == 3
    assert Queue(db, "alive").claim("text", 10) == []  # the lease holds while the backend lives
    lost.close()
    wait_until(lambda: len(Queue(db, "alive").claim("text", 10)) == 3)


def test_a_lease_lost_with_its_worker_costs_no_attempt_however_often(db, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 1)
    short = Queue(db, "w", QueueSettings(lease=timedelta(0), max_attempts=2))
    for _ in range(8):  # the lease expires at once: each claim takes it back from a "dead" worker
        assert [t.attempts for t in short.claim("text", 1)] == [0]
    row = db.execute("SELECT status, attempts, lost_leases, last_error FROM semsql.tasks")
    assert row.fetchone() == ("running", 0, 7, None)
    assert short.fail([Failure(short.claim("text", 1)[0].id, "boom", False)]) != {}
    assert db.execute("SELECT status, attempts FROM semsql.tasks").fetchone() == ("pending", 1)


def test_transient_failures_back_off_and_permanent_ones_fail_once(db, tmp_path) -> None:
    only_stages(db, "text")
    a, b = add_assets(db, tmp_path, 2)
    queue = Queue(db, "w")
    tasks = {t.asset_id: t for t in queue.claim("text", 10)}
    outcome = queue.fail(
        [
            Failure(tasks[a].id, "CUDA out of memory", permanent=False),
            Failure(tasks[b].id, "cannot decode", permanent=True),
        ]
    )
    assert outcome == {tasks[a].id: "pending", tasks[b].id: "failed"}
    rows = dict(
        db.execute("""SELECT asset_id, (status, attempts, last_error,
                                     next_attempt_at > now() + interval '4 s')::text
                              FROM semsql.tasks""")
    )
    assert rows[a] == '(pending,1,"CUDA out of memory",t)'
    assert rows[b] == '(failed,1,"cannot decode",f)'
    assert queue.claim("text", 10) == []  # the retry is not due yet
    assert dict(db.execute("SELECT id, status FROM semsql.assets")) == {a: "pending", b: "failed"}
    assert queue.retry_failed(["text"]) == 1
    assert [t.asset_id for t in queue.claim("text", 10)] == [b]


def test_released_tasks_are_pending_again_without_counting_an_attempt(db, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 2)
    queue = Queue(db, "w")
    tasks = queue.claim("text", 10)
    assert queue.release([t.id for t in tasks]) == 2
    assert db.execute("SELECT DISTINCT status, attempts FROM semsql.tasks").fetchall() == [
        ("pending", 0)
    ]


def test_a_worker_cannot_complete_a_task_another_worker_took_back(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 1)
    slow = database.connect(db_url, autocommit=True)
    (task,) = Queue(slow, "slow").claim("text", 1)
    slow.close()
    wait_until(lambda: len(Queue(db, "fast").claim("text", 1)) == 1)
    with database.connect(db_url, autocommit=True) as again:
        assert Queue(again, "slow").complete([task.id], "m") == 0
    assert Queue(db, "fast").complete([task.id], "m") == 1


def test_dependants_wait_for_a_stage_a_live_worker_runs_and_run_again_after_it(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "caption", "text")
    (asset,) = add_assets(db, tmp_path, 1)
    queue = Queue(db, "w")
    assert [t.asset_id for t in queue.claim("text", 1)] == [asset]  # nobody runs caption
    with database.connect(db_url, autocommit=True) as live:
        live.execute("SELECT semsql.register_worker('cap', 'h', 1, 'cpu', '{caption}', '{}', '{}')")
        (caption,) = queue.claim("caption", 1)
        db.execute("INSERT INTO semsql.captions VALUES (%s, 'blip', 'a kite')", [asset])
        queue.complete([caption.id], "blip")
    # text was running while its input changed: it goes back to pending when it finishes
    (text_task_id,) = db.execute("SELECT id FROM semsql.tasks WHERE stage = 'text'").fetchone()
    queue.complete([text_task_id], "minilm")
    assert db.execute("SELECT status FROM semsql.tasks WHERE stage = 'text'").fetchone() == (
        "pending",
    )
    assert db.execute("SELECT status FROM semsql.assets").fetchone() == ("pending",)


def test_assets_turn_ready_and_their_ingest_job_completes(db, tmp_path) -> None:
    only_stages(db, "text")
    job = db.execute(
        "INSERT INTO semsql.jobs (status, ingested_at) VALUES ('running', now()) RETURNING id"
    ).fetchone()[0]
    ids = add_assets(db, tmp_path, 2)
    db.execute("UPDATE semsql.assets SET job_id = %s", [job])
    db.execute(
        """INSERT INTO semsql.job_items (job_id, position, uri, outcome, asset_id)
           SELECT %s, row_number() OVER (), uri, 'new', id FROM semsql.assets""",
        [job],
    )
    queue = Queue(db, "w")
    tasks = queue.claim("text", 10)
    queue.complete([tasks[0].id], "m")
    assert db.execute("SELECT status FROM semsql.jobs").fetchone() == ("running",)
    queue.complete([tasks[1].id], "m")
    assert db.execute("SELECT status FROM semsql.jobs").fetchone() == ("completed",)
    assert dict(db.execute("SELECT id, status FROM semsql.assets")) == dict.fromkeys(ids, "ready")


def test_a_user_tag_queues_the_document_vector_again(db, tmp_path) -> None:
    only_stages(db, "text")
    (asset,) = add_assets(db, tmp_path, 1)
    queue = Queue(db, "w")
    queue.complete([t.id for t in queue.claim("text", 1)], "m")
    assert db.execute("SELECT status FROM semsql.assets").fetchone() == ("ready",)
    db.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, 'kite', 'user')", [asset]
    )
    assert statuses(db) == {"pending": 1}
    (document,) = db.execute("SELECT semsql.asset_document(%s)", [asset]).fetchone()
    # The file's folder follows, a tmp_path name.
    assert document.startswith(
        "photo number 0 of a red kite over a field. Tags: kite. File: img 0000."
    )


# -- vector spaces --------------------------------------------------------------------------------


def test_register_vector_space_builds_one_index_and_refuses_another_model(db, tmp_path) -> None:
    only_stages(db, "text")
    (asset,) = add_assets(db, tmp_path, 1)
    register = "SELECT semsql.register_vector_space('text', %s, %s, %s)"
    assert db.execute(register, ["m1", 3, False]).fetchone()[0] == "registered, index built"
    assert db.execute(register, ["m1", 3, False]).fetchone()[0] == "unchanged"
    db.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
                  VALUES (%s, 'text', 'm1', '[1,0,0]')""",
        [asset],
    )
    indexdef = db.execute(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'embeddings_text_hnsw'"
    ).fetchone()[0]
    assert "hnsw (((embedding)::halfvec(3)) halfvec_cosine_ops) WHERE (space = 'text'" in indexdef
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="holds 1 vectors"):
        db.execute(register, ["m2", 4, False])
    Queue(db, "w").complete([t.id for t in Queue(db, "w").claim("text", 1)], "m1")
    outcome = db.execute(register, ["m2", 4, True]).fetchone()[0]
    assert outcome.startswith("reset: 1 vectors") and outcome.endswith("to build the index")
    assert db.execute(register, ["m2", 4, False]).fetchone()[0] == "unchanged, index built"
    assert db.execute("SELECT count(*) FROM semsql.embeddings").fetchone() == (0,)
    assert statuses(db) == {"pending": 1}
    assert db.execute("SELECT model, dims FROM semsql.vector_spaces").fetchall() == [("m2", 4)]
    assert db.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%%halfvec(4)%%'"
    ).fetchone() == (1,)


def test_an_index_over_half_a_million_vectors_or_more_is_built_denser(db) -> None:
    """At a million vectors pgvector's defaults stop short of 99 % recall (bench/search.py)."""
    options = "SELECT semsql.hnsw_build_options(%s)"
    assert db.execute(options, [499_999]).fetchone()[0] == ""
    assert db.execute(options, [500_000]).fetchone()[0] == " WITH (m = 24, ef_construction = 128)"
    statement = db.execute("SELECT semsql.vector_index_sql('text', 3, true)").fetchone()[0]
    assert statement == (
        "CREATE INDEX CONCURRENTLY embeddings_text_hnsw ON semsql.embeddings USING hnsw "
        "((embedding::halfvec(3)) halfvec_cosine_ops) WHERE space = 'text'"
    )


def index_state(conn: psycopg.Connection) -> tuple:
    """(the text index's oid, whether it is valid, whether the space is marked deferred)"""
    return conn.execute(
        """SELECT i.indexrelid, i.indisvalid, v.index_deferred_since IS NOT NULL
           FROM semsql.vector_spaces v
           LEFT JOIN pg_index i ON i.indexrelid = to_regclass('semsql.embeddings_text_hnsw')
           WHERE v.space = 'text'"""
    ).fetchone()


def add_vectors(conn: psycopg.Connection, asset_ids: list[int]) -> None:
    conn.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
           SELECT id, 'text', 'm1', '[1,0,0]' FROM unnest(%s::bigint[]) AS id""",
        [asset_ids],
    )


def test_the_index_is_dropped_only_for_a_backlog_large_beside_the_space(db, tmp_path) -> None:
    only_stages(db, "text")
    db.execute("SELECT semsql.register_vector_space('text', 'm1', 3)")
    assets = add_assets(db, tmp_path, 60)
    queue = Queue(db, "w")
    queue.complete([t.id for t in queue.claim("text", 48)], "m1")
    add_vectors(db, assets)
    defer = "SELECT semsql.defer_vector_index('text', %s)"
    built = index_state(db)
    assert db.execute(defer, [13]).fetchone() == (False,)  # 12 pending: under the minimum
    assert db.execute(defer, [12]).fetchone() == (False,)  # 60 stored > 4 x 12
    assert index_state(db) == built
    db.execute("DELETE FROM semsql.embeddings WHERE asset_id = ANY (%s)", [assets[:12]])
    assert db.execute(defer, [12]).fetchone() == (True,)  # 48 stored = 4 x 12
    assert index_state(db) == (None, None, True)
    assert db.execute(defer, [12]).fetchone() == (False,)  # deferred already
    outcome = db.execute("SELECT semsql.register_vector_space('text', 'm1', 3)").fetchone()[0]
    assert outcome == "unchanged, index deferred until the backlog is written"
    assert index_state(db) == (None, None, True)
    assert db.execute("SELECT index FROM semsql.vector_index_status").fetchone() == ("deferred",)


def test_a_deferred_index_is_built_once_no_task_is_due_even_after_a_failed_build(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "text")
    db.execute("SELECT semsql.register_vector_space('text', 'm1', 3)")
    add_vectors(db, add_assets(db, tmp_path, 12))
    assert db.execute("SELECT semsql.defer_vector_index('text', 12)").fetchone() == (True,)
    steps = "SELECT semsql.vector_index_build_steps('text')"
    assert db.execute(steps).fetchone() == ([],)  # 12 tasks are due
    queue = Queue(db, "w")
    queue.complete([t.id for t in queue.claim("text", 12)], "m1")
    # A build that failed half way leaves an invalid index of the same name.
    with pytest.raises(psycopg.errors.DivisionByZero):
        db.execute(
            """CREATE INDEX CONCURRENTLY embeddings_text_hnsw ON semsql.embeddings
               ((1 / (asset_id - asset_id)))"""
        )
    assert index_state(db)[1:] == (False, True)
    with database.connect(db_url, autocommit=True) as builder:
        (plan,) = builder.execute(steps).fetchone()
        assert plan[0] == "DROP INDEX CONCURRENTLY IF EXISTS semsql.embeddings_text_hnsw"
        assert plan[1].startswith("SET maintenance_work_mem = ")
        assert plan[2].startswith("CREATE INDEX CONCURRENTLY embeddings_text_hnsw")
        assert db.execute(steps).fetchone() == ([],)  # the first builder holds the lock
        status = "SELECT index FROM semsql.vector_index_status"
        assert db.execute(status).fetchone() == ("building",)
        for step in plan:
            builder.execute(sql.SQL(step))
        assert builder.execute("SELECT semsql.finish_vector_index('text')").fetchone() == (True,)
    oid, valid, deferred = index_state(db)
    assert valid and not deferred
    assert db.execute(status).fetchone() == ("ready",)
    indexdef = db.execute("SELECT pg_get_indexdef(%s)", [oid]).fetchone()[0]
    assert "hnsw (((embedding)::halfvec(3)) halfvec_cosine_ops) WHERE (space = 'text'" in indexdef


def test_a_worker_writes_a_large_backlog_without_the_index_then_builds_it(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 5)
    first = text_worker(db_url, until_idle=True, bulk_index_at=20)
    first.run()
    built = index_state(db)
    assert first.indexes.rebuilt == [] and built[1:] == (True, False)

    add_assets(db, tmp_path, 30, start=5)  # 30 waiting, 5 stored: rebuilding pays
    second = text_worker(db_url, until_idle=True, bulk_index_at=20)
    second.run()
    assert second.indexes.rebuilt == ["text"]
    rebuilt = index_state(db)
    assert rebuilt[0] != built[0] and rebuilt[1:] == (True, False)
    calibrated = "SELECT vectors FROM semsql.search_tuning WHERE space = 'text'"
    assert db.execute(calibrated).fetchone() == (35,)  # measured on the library as it is now
    assert statuses(db) == {"done": 35}

    db.execute("SET enable_seqscan = off")
    nearest = """SELECT asset_id FROM semsql.embeddings WHERE space = 'text'
                 ORDER BY embedding::halfvec(384) <=> (SELECT embedding FROM semsql.embeddings
                                                       ORDER BY asset_id LIMIT 1)
                 LIMIT 35"""
    plan = "\n".join(row[0] for row in db.execute("EXPLAIN " + nearest))
    assert "embeddings_text_hnsw" in plan
    assert len(db.execute(nearest).fetchall()) == 35

    add_assets(db, tmp_path, 10, start=35)  # under the minimum: indexed row by row
    third = text_worker(db_url, until_idle=True, bulk_index_at=20)
    third.run()
    assert third.indexes.rebuilt == [] and index_state(db) == rebuilt


# -- workers: start, notify, reconnect, parallel, kill, stop ------------------------------------


def test_work_queued_while_no_worker_ran_is_done_at_start(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 20)
    worker = text_worker(db_url, once=True, batch_size=8)
    worker.run()
    assert statuses(db) == {"done": 20}
    assert db.execute(
        "SELECT count(*), min(vector_dims(embedding)) FROM semsql.embeddings WHERE space = 'text'"
    ).fetchone() == (20, 384)


def test_new_work_is_picked_up_after_the_listen_connection_is_killed(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    worker = text_worker(db_url, poll_interval=3600)  # only a NOTIFY can wake it in time
    thread = start_thread(worker)
    try:
        add_assets(db, tmp_path, 1)
        wait_until(lambda: statuses(db) == {"done": 1})
        killed = worker.listener.backend_pid
        db.execute("SELECT pg_terminate_backend(%s)", [killed])
        wait_until(lambda: worker.listener.backend_pid not in (None, killed))
        add_assets(db, tmp_path, 1, start=1)
        wait_until(lambda: statuses(db) == {"done": 2})
    finally:
        worker.stop()
        thread.join(30)


def test_the_worker_comes_back_after_the_database_dropped_all_its_connections(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "text")
    worker = text_worker(db_url, poll_interval=3600)
    thread = start_thread(worker)
    try:
        db.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()""")
        add_assets(db, tmp_path, 3)
        wait_until(lambda: statuses(db) == {"done": 3})
        alive = "SELECT alive FROM semsql.worker_status WHERE name = %s"
        wait_until(lambda: db.execute(alive, [worker.name]).fetchone() == (True,))
    finally:
        worker.stop()
        thread.join(30)


def test_a_stage_whose_model_is_off_does_not_hold_back_the_stages_after_it(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "caption", "text")
    add_assets(db, tmp_path, 2)
    Worker(
        db_url,
        WorkerOptions(until_idle=True, poll_interval=0.1),
        models={"caption": None, "text": MINILM},
    ).run()
    # Off counts as not available: its tasks wait, and the assets are ready without them.
    assert dict(db.execute("SELECT stage, status FROM semsql.tasks GROUP BY 1, 2")) == {
        "caption": "waiting",
        "text": "done",
    }
    assert db.execute("SELECT DISTINCT status FROM semsql.assets").fetchall() == [("ready",)]
    assert db.execute("SELECT stage, reason, fix FROM semsql.unavailable_stages").fetchall() == [
        (
            "caption",
            "its model is off (SEMSQL_MODEL_CAPTION=off)",
            "set SEMSQL_MODEL_CAPTION to a model id or a local folder and start `semsql worker`",
        )
    ]
    assert dict(db.execute("SELECT stage, workers FROM semsql.queue_status WHERE enabled")) == {
        "caption": 0,
        "text": 0,
    }


# Slow: 300 tasks through three workers. Two claims never take one task:
# test_claims_skip_tasks_locked_by_another_claim and
# test_a_worker_cannot_complete_a_task_another_worker_took_back.
@pytest.mark.slow
def test_three_workers_in_parallel_process_each_of_300_tasks_once(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    count_completions(db)
    add_assets(db, tmp_path, 300)
    workers = [
        text_worker(db_url, until_idle=True, batch_size=10, poll_interval=0.2) for _ in range(3)
    ]
    threads = [threading.Thread(target=w.run) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert statuses(db) == {"done": 300}
    assert db.execute("SELECT max(attempts) FROM semsql.tasks").fetchone() == (0,)
    per_task = db.execute("SELECT count(*), count(DISTINCT task_id) FROM completions").fetchone()
    assert per_task == (300, 300)
    by_worker = dict(db.execute("SELECT worker, count(*) FROM completions GROUP BY worker"))
    assert set(by_worker) <= {w.name for w in workers} and len(by_worker) >= 2


def test_a_killed_worker_loses_nothing_and_nothing_is_done_twice(db, db_url, tmp_path) -> None:
    only_stages(db, "faces")
    count_completions(db)
    face = Image.fromarray(skimage.data.astronaut()).crop((140, 20, 320, 220))
    add_assets(db, tmp_path, 40, image=face.resize((120, 132)))
    log = tmp_path / "worker.log"
    process = worker_process(
        db_url, log, "--tasks", "faces", "--batch-size", "4", "--poll-interval", "0.2"
    )
    try:
        wait_until(lambda: statuses(db).get("done", 0) >= 4, timeout=120)
        wait_until(lambda: statuses(db).get("running", 0) > 0)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        process.kill()
        process.wait()
    interrupted = statuses(db)
    assert interrupted.get("running", 0) > 0 and interrupted.get("pending", 0) > 0
    Worker(
        db_url,
        WorkerOptions(stages=("faces",), until_idle=True, poll_interval=0.2),
        models={"faces": "mtcnn"},
    ).run()
    assert statuses(db) == {"done": 40}
    assert db.execute("SELECT count(*), count(DISTINCT task_id) FROM completions").fetchone() == (
        40,
        40,
    )
    duplicates = db.execute(
        "SELECT asset_id, box FROM semsql.faces GROUP BY 1, 2 HAVING count(*) > 1"
    ).fetchall()
    assert duplicates == []
    assert db.execute("SELECT count(DISTINCT asset_id) FROM semsql.faces").fetchone() == (40,)


# Slow (about 30 s): four worker processes started and killed. One SIGKILL is
# test_a_killed_worker_loses_nothing_and_nothing_is_done_twice; leases lost again and again,
# in process, test_a_lease_lost_with_its_worker_costs_no_attempt_however_often.
@pytest.mark.slow
def test_a_worker_killed_again_and_again_just_after_claiming_fails_no_task(
    db, db_url, tmp_path
) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 30)
    args = ("--tasks", "text", "--batch-size", "2", "--poll-interval", "0.2", "--max-attempts", "1")
    held_by_a_live_worker = """SELECT count(*) > 0 FROM semsql.tasks t
                               JOIN pg_stat_activity a ON a.pid = t.leased_backend
                               WHERE t.status = 'running'"""
    for kill in range(4):
        process = worker_process(db_url, tmp_path / f"worker{kill}.log", *args)
        try:
            wait_until(lambda: db.execute(held_by_a_live_worker).fetchone()[0], timeout=120)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            process.kill()
            process.wait()
        wait_until(lambda: not db.execute(held_by_a_live_worker).fetchone()[0])
    lost = db.execute("SELECT sum(lost_leases) FROM semsql.tasks").fetchone()[0]
    assert lost >= 3  # each later worker took back what the one before held
    status = db.execute("SELECT lost_leases FROM semsql.queue_status WHERE stage = 'text'")
    assert status.fetchone()[0] > 0
    settings = QueueSettings(max_attempts=1)
    text_worker(db_url, until_idle=True, poll_interval=0.2, queue=settings).run()
    assert statuses(db) == {"done": 30}
    assert db.execute("SELECT max(attempts) FROM semsql.tasks").fetchone() == (0,)


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(db, db_url, tmp_path) -> None:
    only_stages(db, "text")
    add_assets(db, tmp_path, 120)
    log = tmp_path / "worker.log"
    process = worker_process(db_url, log, "--tasks", "text", "--batch-size", "4")
    try:
        wait_until(lambda: statuses(db).get("done", 0) >= 4, timeout=120)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, log.read_text()
    assert "finishing the batch in hand" in log.read_text()
    left = statuses(db)
    assert "running" not in left and left.get("pending", 0) > 0
    assert db.execute("SELECT count(*) FROM semsql.workers").fetchone() == (0,)
    vectors = db.execute("SELECT count(*) FROM semsql.embeddings").fetchone()[0]
    assert vectors == left["done"]


def test_a_full_notify_queue_fails_no_commit_of_semsqls(db, db_url, tmp_path) -> None:
    """Any role can fill the server's NOTIFY queue: LISTEN in a transaction it keeps open, and
    notify until the queue is full. Then every commit that notifies fails; semsql's only hint."""
    pages = int(db.execute("SELECT current_setting('max_notify_queue_pages', true)").fetchone()[0])
    if pages > 1024:
        pytest.skip("this server's NOTIFY queue is too large to fill in a test")
    only_stages(db, "text")
    holder = database.connect(db_url, autocommit=True)
    holder.execute("LISTEN filler")
    holder.autocommit = False
    holder.execute("SELECT 1")  # while its transaction stays open, it reads no notification
    try:
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="too many notifications"):
            for _ in range(pages * 8192 // 7900 + 10):
                db.execute("SELECT pg_notify('filler', repeat('x', 7900))")
        assert db.execute("SELECT pg_notification_queue_usage()").fetchone()[0] > 0.9
        [asset] = add_assets(db, tmp_path, 1)  # queues its task, which notifies
        queue = Queue(db, "w")
        [task] = queue.claim("text", 10)
        assert queue.complete([task.id], "m") == 1
        assert statuses(db) == {"done": 1}
        assert db.execute("SELECT semsql.requeue_tasks(%s, '{text}')", [[asset]]).fetchone() == (1,)
    finally:
        holder.close()


def test_the_heartbeat_goes_on_while_embed_text_answers_are_slow(db, db_url) -> None:
    """A flood of embed_text requests (or one slow model call) must not stop the beat that
    keeps the worker alive and its leases: others would take its tasks while it lives."""
    only_stages(db, "text")
    worker = text_worker(db_url, heartbeat_every=0.5, poll_interval=0.2)
    thread = start_thread(worker)
    beats = "SELECT heartbeat_at FROM semsql.workers WHERE name = %s"
    try:
        with worker.runners["text"].lock:  # the model is busy: answering waits for it
            db.execute(
                """INSERT INTO semsql.query_embeddings (space, text_sha256, text)
                   VALUES ('text', semsql.query_text_digest('slow'), 'slow')"""
            )
            seen = set()
            deadline = time.monotonic() + 10
            while len(seen) < 3 and time.monotonic() < deadline:
                seen.add(db.execute(beats, [worker.name]).fetchone()[0])
                time.sleep(0.1)
            assert len(seen) >= 3
        wait_until(
            lambda: db.execute(
                "SELECT embedding IS NOT NULL FROM semsql.query_embeddings"
            ).fetchone()[0]
        )
    finally:
        worker.stop()
        thread.join(30)
