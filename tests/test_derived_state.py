"""What is derived from an asset's facts (search document, document text, its hash) is kept on
one path: fact triggers only mark assets stale, one deferred rebuild per transaction builds it
all, and the text task is queued again only when the text's hash differs from its vector's."""

from __future__ import annotations

import hashlib
import threading
import time

import psycopg
import pytest

from semsql import database, migrate

FACT_TABLES = ("captions", "tags", "faces", "asset_people", "people")
IMMEDIATE = "SET CONSTRAINTS semsql.search_documents_stale_refresh IMMEDIATE"
DERIVED = """SELECT asset_id, collection, uri, taken_at, tags, emotions, people, document::text,
                    caption, labels, people_names, text_sha256"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def new_asset(conn: psycopg.Connection, name: str) -> int:
    return conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
        [f"/{name}.jpg", sha(name)],
    ).fetchone()[0]


def document(conn: psycopg.Connection, asset_id: int) -> str:
    return conn.execute("SELECT semsql.asset_document(%s)", [asset_id]).fetchone()[0]


def text_task(conn: psycopg.Connection, asset_id: int) -> tuple:
    return conn.execute(
        "SELECT status, attempts, rerun FROM semsql.tasks WHERE asset_id = %s AND stage = 'text'",
        [asset_id],
    ).fetchone()


def embedded(conn: psycopg.Connection, asset_id: int) -> None:
    """As the worker leaves an asset: every task done (once), the text vector of its document."""
    conn.execute(
        "UPDATE semsql.tasks SET status = 'done', attempts = 1, finished_at = now() "
        "WHERE asset_id = %s",
        [asset_id],
    )
    conn.execute("SELECT semsql.settle_assets(%s)", [[asset_id]])  # ready
    text = document(conn, asset_id)
    conn.execute("DELETE FROM semsql.embeddings WHERE asset_id = %s AND space = 'text'", [asset_id])
    if text:
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding, input_sha256)
               VALUES (%s, 'text', 'm', '[1,0,0]', %s)""",
            [asset_id, sha(text)],
        )
    conn.commit()


def test_a_write_to_a_fact_table_takes_one_path(conn) -> None:
    """Every trigger on a fact table only marks assets stale, except recognition, which sets a
    fact of face rows (their person) and so flows into the same marks: recognising the face
    being written, and a reference taken from a face following that face's new vector."""
    rows = conn.execute(
        """SELECT c.relname, t.tgname, p.proname
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
           WHERE c.relnamespace = 'semsql'::regnamespace AND c.relname = ANY (%s)
             AND NOT t.tgisinternal
           ORDER BY t.tgname""",
        [list(FACT_TABLES)],
    ).fetchall()
    marks = {table: 0 for table in FACT_TABLES}
    others = {table: [] for table in FACT_TABLES}
    for table, name, function in rows:
        if function == "mark_stale":
            marks[table] += 1
        else:
            others[table].append((name, function))
    assert marks == {"captions": 4, "tags": 4, "faces": 4, "asset_people": 4, "people": 1}
    assert others == {
        "captions": [],
        "tags": [],
        "faces": [
            ("faces_follow_reference", "follow_face_reference"),
            ("faces_recognise", "recognise_face"),
        ],
        "asset_people": [],
        "people": [],
    }
    # Nothing that a fact write fires queues tasks but the rebuild at commit.
    queueing = conn.execute(
        """SELECT p.proname FROM pg_proc p
           WHERE p.pronamespace = 'semsql'::regnamespace AND p.prorettype = 'trigger'::regtype
             AND p.prosrc ~ 'requeue_tasks'"""
    ).fetchall()
    assert queueing == []
    deferred = conn.execute(
        """SELECT c.relname, t.tgname, p.proname
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgdeferrable AND NOT t.tgisinternal
             AND c.relnamespace = 'semsql'::regnamespace"""
    ).fetchall()
    assert deferred == [
        ("search_documents_stale", "search_documents_stale_refresh", "rebuild_stale_assets")
    ]  # fmt: skip


def test_one_face_write_marks_once_and_rebuilds_once(conn) -> None:
    if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
        pytest.skip("track_functions needs a superuser")
    asset = new_asset(conn, "one")
    conn.commit()
    embedded(conn, asset)
    conn.execute("SET LOCAL track_functions = 'all'")
    conn.execute(
        """INSERT INTO semsql.faces (asset_id, box, detector, emotion)
           VALUES (%s, '{0,0,9,9}', 'mtcnn', 'happy'), (%s, '{9,9,19,19}', 'mtcnn', 'sad')""",
        [asset, asset],
    )
    conn.execute(IMMEDIATE)
    calls = dict(
        conn.execute(
            """SELECT p.proname, pg_stat_get_xact_function_calls(p.oid) FROM pg_proc p
               WHERE p.pronamespace = 'semsql'::regnamespace
                 AND pg_stat_get_xact_function_calls(p.oid) > 0"""
        ).fetchall()
    )
    conn.rollback()
    assert calls.pop("recognise_face") == 2  # per row: it sets the face's person
    assert calls == {
        "mark_stale": 1,
        "mark_assets_stale": 1,
        "rebuild_stale_assets": 1,
        "rebuild_marked_assets": 1,
        "rebuild_assets": 1,
        "derived_state": 1,
        "requeue_tasks": 1,  # the text changed: "Emotions: happy, sad."
        "asset_name_words": 1,  # the words of its file name
        "name_words": 1,
        "notify": 1,
        "assets_before_change": 1,  # the asset is pending again
    }


def test_a_batch_of_fact_writes_gives_what_a_rebuild_from_scratch_gives(conn) -> None:
    beach, snow, empty = (new_asset(conn, name) for name in ("beach", "snow", "empty"))
    conn.commit()
    ana = conn.execute("INSERT INTO semsql.people (name) VALUES ('Ana') RETURNING id").fetchone()[0]
    bo = conn.execute("INSERT INTO semsql.people (name) VALUES ('Bo') RETURNING id").fetchone()[0]
    conn.execute(
        """INSERT INTO semsql.captions (asset_id, source, text)
           VALUES (%(b)s, 'user', 'Ana at the beach.'), (%(b)s, 'blip', ' a dog on sand '),
                  (%(s)s, 'blip', 'children in snow')""",
        {"b": beach, "s": snow},
    )
    conn.execute(
        """INSERT INTO semsql.tags (asset_id, label, confidence, source)
           VALUES (%(b)s, 'dog', 0.7, 'detr'), (%(b)s, 'dog', 0.9, 'detr'),
                  (%(b)s, 'sand', NULL, 'user'), (%(b)s, 'kite', 0.5, 'detr'),
                  (%(s)s, 'sled', 0.8, 'detr')""",
        {"b": beach, "s": snow},
    )
    conn.execute(
        """INSERT INTO semsql.faces (asset_id, box, detector, emotion, person_id)
           VALUES (%(b)s, '{0,0,9,9}', 'mtcnn', 'happy', NULL),
                  (%(b)s, '{9,9,19,19}', 'mtcnn', 'happy', NULL),
                  (%(b)s, '{20,20,29,29}', 'mtcnn', 'calm', %(bo)s),
                  (%(s)s, '{0,0,9,9}', 'mtcnn', NULL, NULL)""",
        {"b": beach, "s": snow, "bo": bo},
    )
    conn.execute(
        "INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (%s, %s, 'user')",
        [beach, ana],
    )
    # More statements on the same rows, in the same transaction.
    conn.execute("DELETE FROM semsql.tags WHERE label = 'kite'")
    conn.execute("UPDATE semsql.faces SET emotion = 'sad' WHERE asset_id = %s", [snow])
    conn.execute("UPDATE semsql.people SET name = 'Bo Lind' WHERE id = %s", [bo])
    conn.execute(
        "UPDATE semsql.assets SET collection = 'trips', taken_at = '2020-07-01' WHERE id = %s",
        [beach],
    )
    marks = conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone()[0]
    assert marks == 2  # once each, however many statements touched them (empty: at its insert)
    conn.commit()

    ids = [beach, snow, empty]
    stored = conn.execute(
        f"{DERIVED} FROM semsql.search_documents WHERE asset_id = ANY (%s) ORDER BY 1", [ids]
    ).fetchall()
    fresh = conn.execute(f"{DERIVED} FROM semsql.derived_state(%s) ORDER BY 1", [ids]).fetchall()
    assert stored == fresh
    texts = dict(conn.execute("SELECT asset_id, document FROM semsql.asset_documents(%s)", [ids]))
    assert texts == {
        beach: "Ana at the beach. a dog on sand. Tags: sand, dog. Emotions: happy, calm. "
        "People: Ana, Bo Lind. File: beach.",
        snow: "children in snow. Tags: sled. Emotions: sad. File: snow.",
        empty: "File: empty.",
    }
    assert {row[0]: row[-1] for row in stored} == {a: sha(t) for a, t in texts.items()}
    beach_row = stored[0]
    assert beach_row[1:3] == ("trips", "/beach.jpg")
    assert beach_row[4] == ["dog", "sand"]  # tags: one per lower-case label
    assert beach_row[5] == ["calm", "happy"]  # emotions: distinct, lower case
    assert beach_row[8] == "Ana at the beach."  # the user's caption
    assert beach_row[9] == ["sand", "dog"]  # labels: the most confident (stated: 1) first
    assert beach_row[10] == ["Ana", "Bo Lind"]
    # A rebuild from scratch changes nothing, and leaves no marks.
    assert conn.execute("SELECT semsql.refresh_search_documents(%s)", [ids]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone() == (0,)

    # Each kind of write alone, in a transaction of its own, reaches the stored state too
    # (and changes the text, but for the link to a person shown by a face anyway, and metadata
    # other than the title and headline).
    writes = [
        ("UPDATE semsql.faces SET emotion = 'calm' WHERE emotion = 'sad'", [], True),
        ("UPDATE semsql.faces SET person_id = %s WHERE asset_id = %s", [ana, snow], True),
        ("UPDATE semsql.faces SET asset_id = %s WHERE asset_id = %s", [empty, snow], True),
        ("UPDATE semsql.people SET name = 'Ana Lima' WHERE id = %s", [ana], True),
        ("UPDATE semsql.tags SET confidence = 0.1 WHERE label = 'sand'", [], True),
        ("UPDATE semsql.tags SET asset_id = %s WHERE label = 'sled'", [beach], True),
        ("UPDATE semsql.captions SET text = 'kids in snow' WHERE asset_id = %s", [snow], True),
        ("DELETE FROM semsql.captions WHERE source = 'user'", [], True),
        ("UPDATE semsql.asset_people SET person_id = %s", [bo], True),
        ("DELETE FROM semsql.asset_people", [], False),
        (
            "UPDATE semsql.assets SET uri = '/snowy.jpg', collection = 'x' WHERE id = %s",
            [snow],
            True,  # the file name is a word of the text
        ),
        (
            """UPDATE semsql.assets SET metadata = metadata || '{"title": "Sledging"}'
               WHERE id = %s""",
            [snow],
            True,
        ),
        ("""UPDATE semsql.assets SET metadata = metadata || '{"rights": "CC-BY"}'""", [], False),
        ("DELETE FROM semsql.people WHERE id = %s", [bo], True),
        ("DELETE FROM semsql.faces WHERE emotion = 'happy'", [], True),
    ]
    for statement, params, text_changes in writes:
        before = conn.execute(
            "SELECT text_sha256 FROM semsql.search_documents ORDER BY asset_id"
        ).fetchall()
        conn.execute(statement, params)
        conn.commit()
        stored = conn.execute(
            f"{DERIVED} FROM semsql.search_documents WHERE asset_id = ANY (%s) ORDER BY 1", [ids]
        ).fetchall()
        fresh = conn.execute(
            f"{DERIVED} FROM semsql.derived_state(%s) ORDER BY 1", [ids]
        ).fetchall()
        assert stored == fresh, statement
        after = conn.execute(
            "SELECT text_sha256 FROM semsql.search_documents ORDER BY asset_id"
        ).fetchall()
        assert (after != before) == text_changes, statement


def test_the_document_text_is_the_one_the_worker_embeds(conn) -> None:
    asset = new_asset(conn, "text")
    for statement in (
        """INSERT INTO semsql.captions (asset_id, source, text)
           VALUES (%(a)s, 'user', 'Ana at the beach'), (%(a)s, 'blip', 'a dog.')""",
        """INSERT INTO semsql.tags (asset_id, label, confidence, source)
           VALUES (%(a)s, 'dog', 0.9, 'detr'), (%(a)s, 'Beach', NULL, 'user')""",
        """INSERT INTO semsql.faces (asset_id, box, detector, emotion)
           VALUES (%(a)s, '{0,0,9,9}', 'mtcnn', 'happy'), (%(a)s, '{9,9,19,19}', 'mtcnn', 'calm'),
                  (%(a)s, '{1,1,8,8}', 'mtcnn', 'happy')""",
    ):
        conn.execute(statement, {"a": asset})
    conn.commit()
    text = "Ana at the beach. a dog. Tags: Beach, dog. Emotions: happy, calm. File: text."
    assert document(conn, asset) == text
    stored = conn.execute(
        "SELECT text_sha256 FROM semsql.search_documents WHERE asset_id = %s", [asset]
    ).fetchone()
    assert stored == (sha(text),)


def test_the_text_task_is_queued_again_only_when_the_text_changes(conn, db_url) -> None:
    asset = new_asset(conn, "kite")
    conn.execute(
        """INSERT INTO semsql.tags (asset_id, label, confidence, source)
           VALUES (%s, 'kite', 0.9, 'detr')""",
        [asset],
    )
    face = conn.execute(
        """INSERT INTO semsql.faces (asset_id, box, detector, emotion)
           VALUES (%s, '{0,0,9,9}', 'mtcnn', 'happy') RETURNING id""",
        [asset],
    ).fetchone()[0]
    conn.commit()
    embedded(conn, asset)
    assert text_task(conn, asset) == ("done", 1, False)

    # The worker writing the same tags again, a face's vector, a match confidence: the text
    # stays what the vector embeds.
    conn.execute("DELETE FROM semsql.tags WHERE asset_id = %s AND source <> 'user'", [asset])
    conn.execute(
        """INSERT INTO semsql.tags (asset_id, label, confidence, source)
           VALUES (%s, 'kite', 0.9, 'detr')""",
        [asset],
    )
    conn.execute(
        """UPDATE semsql.faces SET embedding = array_fill(0.1, ARRAY[512])::vector,
                  embedding_model = 'facenet' WHERE id = %s""",
        [face],
    )
    conn.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, 'Kite', 'user')", [asset]
    )
    conn.execute("DELETE FROM semsql.tags WHERE asset_id = %s AND source = 'user'", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("done", 1, False)
    assert conn.execute("SELECT status FROM semsql.assets WHERE id = %s", [asset]).fetchone() == (
        "ready",
    )

    # A new tag changes the text: queued again, and the workers are woken.
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN semsql_tasks")
        conn.execute(
            "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, 'field', 'user')",
            [asset],
        )
        assert text_task(conn, asset) == ("done", 1, False)  # at commit
        conn.commit()
        assert next(listener.notifies(timeout=5, stop_after=1)).channel == "semsql_tasks"
    assert text_task(conn, asset) == ("pending", 0, False)
    assert conn.execute("SELECT status FROM semsql.assets WHERE id = %s", [asset]).fetchone() == (
        "pending",
    )

    # A pending task reads the text when it runs: nothing to do for it.
    conn.execute("DELETE FROM semsql.tags WHERE label = 'field'")
    conn.commit()
    assert text_task(conn, asset) == ("pending", 0, False)


def test_a_running_text_task_runs_again_only_when_the_text_changes(conn) -> None:
    asset = new_asset(conn, "running")
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'a kite')",
        [asset],
    )
    conn.commit()
    embedded(conn, asset)
    conn.execute("UPDATE semsql.tasks SET status = 'pending' WHERE asset_id = %s", [asset])
    (task,) = conn.execute("SELECT task_id FROM semsql.claim_tasks('w', 'text', 10)").fetchone()
    conn.commit()
    conn.execute("UPDATE semsql.captions SET text = 'a kite' WHERE asset_id = %s", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("running", 1, False)
    conn.execute("UPDATE semsql.captions SET text = 'a red kite' WHERE asset_id = %s", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("running", 1, True)
    conn.execute("SELECT semsql.complete_tasks('w', %s, 'm')", [[task]])
    conn.commit()
    assert text_task(conn, asset) == ("pending", 0, False)  # it read the old caption


def test_a_failed_text_task_is_retried_when_its_text_changes(conn) -> None:
    asset = new_asset(conn, "failed")
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'a kite')",
        [asset],
    )
    conn.commit()
    conn.execute(
        "UPDATE semsql.tasks SET status = 'failed', attempts = 5 WHERE asset_id = %s", [asset]
    )
    conn.commit()
    conn.execute("UPDATE semsql.captions SET text = 'a kite' WHERE asset_id = %s", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("failed", 5, False)  # the same text would fail again
    conn.execute("UPDATE semsql.captions SET text = 'a red kite' WHERE asset_id = %s", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("pending", 0, False)


def test_an_empty_text_has_no_vector_and_stays_done(conn) -> None:
    asset = new_asset(conn, "--")  # a file name without words
    conn.commit()
    embedded(conn, asset)  # an empty document: no vector
    conn.execute(
        "INSERT INTO semsql.faces (asset_id, box, detector) VALUES (%s, '{0,0,9,9}', 'mtcnn')",
        [asset],
    )
    conn.commit()
    assert document(conn, asset) == ""
    assert text_task(conn, asset) == ("done", 1, False)
    # A vector left from when it had a text: queued again, so that the worker removes it.
    conn.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding, input_sha256)
           VALUES (%s, 'text', 'm', '[1,0,0]', %s)""",
        [asset, sha("a kite.")],
    )
    conn.commit()
    conn.execute("DELETE FROM semsql.faces WHERE asset_id = %s", [asset])
    conn.commit()
    assert text_task(conn, asset) == ("pending", 0, False)


def test_deleting_an_asset_leaves_no_stale_rows(conn) -> None:
    asset = new_asset(conn, "gone")
    for statement in (
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%(a)s, 'kite', 'user')",
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%(a)s, 'user', 'a kite')",
        """INSERT INTO semsql.faces (asset_id, box, detector, emotion)
           VALUES (%(a)s, '{0,0,9,9}', 'mtcnn', 'happy')""",
    ):
        conn.execute(statement, {"a": asset})
    conn.commit()
    conn.execute("DELETE FROM semsql.assets WHERE id = %s", [asset])
    assert conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone() == (1,)
    conn.commit()
    assert conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM semsql.search_documents WHERE asset_id = %s", [asset]
    ).fetchone() == (0,)


def test_a_document_has_its_assets_media_type_after_a_change_of_it(conn) -> None:
    asset = new_asset(conn, "clip")
    conn.commit()

    def documented() -> str:
        return conn.execute(
            "SELECT media_type FROM semsql.search_documents WHERE asset_id = %s", [asset]
        ).fetchone()[0]

    assert documented() == "image"
    for media_type in ("video", "image"):
        conn.execute("UPDATE semsql.assets SET media_type = %s WHERE id = %s", [media_type, asset])
        conn.commit()
        assert documented() == media_type


def test_the_worker_role_rebuilds_and_queues_at_commit(conn, login_as) -> None:
    asset = new_asset(conn, "worker")
    conn.commit()
    embedded(conn, asset)
    worker = login_as("semsql_worker")
    with worker.transaction():
        worker.execute(
            """INSERT INTO semsql.tags (asset_id, label, confidence, source)
               VALUES (%s, 'kite', 0.9, 'detr')""",
            [asset],
        )
        worker.execute(
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'a kite')",
            [asset],
        )
    assert document(conn, asset) == "a kite. Tags: kite. File: worker."
    assert conn.execute(
        "SELECT caption, labels, text_sha256 FROM semsql.search_documents WHERE asset_id = %s",
        [asset],
    ).fetchone() == ("a kite", ["kite"], sha("a kite. Tags: kite. File: worker."))
    assert text_task(conn, asset) == ("pending", 0, False)


def test_init_fills_the_text_hash_of_existing_documents_and_queues_nothing(db_url) -> None:
    with database.connect(db_url, autocommit=True) as conn:
        asset = new_asset(conn, "old")
        conn.execute(
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', 'a kite')",
            [asset],
        )
        conn.execute("UPDATE semsql.tasks SET status = 'done', attempts = 1")
        conn.execute("UPDATE semsql.search_documents SET text_sha256 = NULL")  # as before 0010
        migrate.init(conn)
        assert conn.execute(
            "SELECT text_sha256 FROM semsql.search_documents WHERE asset_id = %s", [asset]
        ).fetchone() == (sha("a kite. File: old."),)
        assert text_task(conn, asset) == ("done", 1, False)


def _finish_caption(conn: psycopg.Connection, asset_id: int, caption: str) -> None:
    """As a worker does: claim the asset's caption task, write its caption, complete the task,
    all in one transaction."""
    conn.execute(
        """UPDATE semsql.tasks SET status = 'running', leased_by = 'w', attempts = 0,
                  lease_expires_at = now() + interval '1 minute'
           WHERE asset_id = %s AND stage = 'caption'""",
        [asset_id],
    )
    conn.commit()
    (task_id,) = conn.execute(
        "SELECT id FROM semsql.tasks WHERE asset_id = %s AND stage = 'caption'", [asset_id]
    ).fetchone()
    conn.execute("DELETE FROM semsql.captions WHERE asset_id = %s AND source <> 'user'", [asset_id])
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'm', %s)",
        [asset_id, caption],
    )
    conn.execute("SELECT semsql.complete_tasks('w', %s, 'm')", [[task_id]])
    conn.commit()


def test_a_stage_the_document_reads_queues_text_only_when_its_result_changes_the_text(
    conn,
) -> None:
    """complete_tasks leaves document-reading stages to the rebuild: a caption that changes the
    text queues the text task; the same caption written again (a rerun) does not."""
    asset_id = new_asset(conn, "rerun")
    conn.commit()
    _finish_caption(conn, asset_id, "a red bicycle")
    embedded(conn, asset_id)
    assert text_task(conn, asset_id)[0] == "done"

    _finish_caption(conn, asset_id, "a red bicycle")
    assert text_task(conn, asset_id)[0] == "done"

    _finish_caption(conn, asset_id, "a blue bicycle")
    assert text_task(conn, asset_id)[0] == "pending"


def test_finishing_a_caption_and_the_text_of_one_asset_at_once_does_not_deadlock(
    conn, db_url
) -> None:
    """Two workers finish tasks of one asset together: the caption's (which changes the text)
    and the text's. Both commit; the text, which read the old caption, runs again. (With the
    rebuild only at commit, the caption's transaction took the settle mutex first and the text
    task's row last, and the text's transaction the other way round: a deadlock.)"""
    asset = new_asset(conn, "together")
    conn.commit()
    embedded(conn, asset)
    conn.execute("UPDATE semsql.tasks SET status = 'pending' WHERE asset_id = %s", [asset])
    (caption_task,) = conn.execute(
        "SELECT task_id FROM semsql.claim_tasks('w1', 'caption', 10)"
    ).fetchone()
    (text_task_id,) = conn.execute(
        "SELECT task_id FROM semsql.claim_tasks('w2', 'text', 10)"
    ).fetchone()
    conn.commit()

    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'blip', 'a kite')",
        [asset],
    )
    conn.execute("SELECT semsql.complete_tasks('w1', %s, 'm')", [[caption_task]])
    worker, errors = in_thread(
        db_url, ("SELECT semsql.complete_tasks('w2', %s, 'm')", [[text_task_id]])
    )
    time.sleep(0.5)  # the text's transaction is waiting on the caption's now
    conn.commit()
    worker.join(30)
    assert not worker.is_alive() and errors == []
    assert text_task(conn, asset) == ("pending", 0, False)


# Writers racing each other (found by attacking the change). After every commit, each stored
# document is what derived_state gives, and a text vector of an older text has its task due.
CONSISTENCY = """
    SELECT d.asset_id,
           (s.document, s.tags, s.people, s.people_names, s.caption, s.emotions, s.text_sha256)
               IS DISTINCT FROM (d.document, d.tags, d.people, d.people_names, d.caption,
                                 d.emotions, d.text_sha256) AS document_stale,
           e.input_sha256 IS DISTINCT FROM CASE WHEN d.document_text <> '' THEN d.text_sha256 END
               AND NOT (t.status = 'pending' OR (t.status = 'running' AND t.rerun))
               AS vector_stale_and_not_due
    FROM semsql.derived_state(ARRAY(SELECT id FROM semsql.assets)) d
    LEFT JOIN semsql.search_documents s ON s.asset_id = d.asset_id
    LEFT JOIN semsql.embeddings e ON e.asset_id = d.asset_id AND e.space = 'text'
    LEFT JOIN semsql.tasks t ON t.asset_id = d.asset_id AND t.stage = 'text'"""


def inconsistencies(conn: psycopg.Connection) -> list[tuple]:
    rows = conn.execute(CONSISTENCY).fetchall()
    stale = conn.execute("SELECT count(*) FROM semsql.search_documents_stale").fetchone()[0]
    return [row for row in rows if row[1] or row[2]] + ([("marks left", stale)] if stale else [])


def in_thread(url: str, *statements: tuple[str, list]) -> tuple[threading.Thread, list]:
    """Run statements in one transaction on a connection of its own, in a thread; the list
    collects its error, if any."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with database.connect(url) as other:
                other.execute("SET lock_timeout = '20s'")
                for statement, params in statements:
                    other.execute(statement, params)
                other.commit()
        except BaseException as error:  # reported in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _with_text_task(conn: psycopg.Connection, name: str) -> int:
    """An asset tagged 'bus' whose other stages are done and whose text task is pending."""
    asset = new_asset(conn, name)
    conn.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, 'bus', 'user')", [asset]
    )
    conn.execute(
        "UPDATE semsql.tasks SET status = 'done' WHERE asset_id = %s AND stage <> 'text'", [asset]
    )
    conn.commit()
    return asset


def test_an_edit_while_a_text_worker_stores_the_same_asset_neither_deadlocks_nor_is_lost(
    conn, db_url
) -> None:
    asset = _with_text_task(conn, "edit")
    (task,) = conn.execute("SELECT task_id FROM semsql.claim_tasks('w', 'text', 1)").fetchone()
    old_text = document(conn, asset)
    conn.commit()
    worker = database.connect(db_url)
    worker.execute("SELECT semsql.lock_owned_tasks('w', %s)", [[task]])
    edit, errors = in_thread(
        db_url,
        (
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', 'a red bus')",
            [asset],
        ),
    )
    time.sleep(0.5)  # the edit's rebuild waits for the worker's task row
    worker.execute(  # the rest of the store: the vector of the text it read, then complete
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding, input_sha256)
           VALUES (%s, 'text', 'm', '[1,0,0]', %s)""",
        [asset, sha(old_text)],
    )
    worker.execute("SELECT semsql.complete_tasks('w', %s, 'm')", [[task]])
    worker.commit()
    worker.close()
    edit.join(30)
    assert errors == []
    assert text_task(conn, asset)[0] == "pending"  # its vector is of the text before the edit
    assert inconsistencies(conn) == []


def test_a_text_task_cannot_be_claimed_while_a_write_that_changes_its_text_is_in_flight(
    conn, db_url
) -> None:
    asset = _with_text_task(conn, "window")
    writer = database.connect(db_url)
    writer.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', 'a red bus')",
        [asset],
    )
    writer.execute(IMMEDIATE)  # rebuilt now; the commit comes later
    claimed = conn.execute("SELECT task_id FROM semsql.claim_tasks('w', 'text', 1)").fetchall()
    conn.commit()
    assert claimed == []  # it would read the text before the caption
    writer.commit()
    writer.close()
    assert inconsistencies(conn) == []
    (task,) = conn.execute("SELECT task_id FROM semsql.claim_tasks('w', 'text', 1)").fetchone()
    assert conn.execute("SELECT semsql.asset_document(%s)", [asset]).fetchone() == (
        "a red bus. Tags: bus. File: window.",
    )
    conn.commit()
    assert task is not None


def test_a_face_recognised_while_the_text_is_embedded_queues_the_text_again(conn, db_url) -> None:
    """The worker pipeline: a face_vectors store (recognition names the face) rebuilds in
    settle_assets, then waits for the settle mutex; the text task of that asset cannot be taken
    meanwhile, so the text is embedded with the person's name."""
    asset = _with_text_task(conn, "face")
    ann = conn.execute("INSERT INTO semsql.people (name) VALUES ('Ann') RETURNING id").fetchone()[0]
    face = conn.execute(
        "INSERT INTO semsql.faces (asset_id, box, detector) VALUES (%s, '{0,0,1,1}', 'mtcnn') "
        "RETURNING id",
        [asset],
    ).fetchone()[0]
    conn.execute(
        "UPDATE semsql.tasks SET status = 'pending' WHERE asset_id = %s AND stage = 'face_vectors'",
        [asset],
    )
    (face_task,) = conn.execute(
        "SELECT task_id FROM semsql.claim_tasks('fv', 'face_vectors', 1)"
    ).fetchone()
    conn.commit()
    settling = database.connect(db_url)  # another worker, settling its own batch
    settling.execute("SELECT semsql.take_mutex('settle_assets')")
    store, errors = in_thread(
        db_url,
        ("SELECT semsql.lock_owned_tasks('fv', %s)", [[face_task]]),
        (
            "UPDATE semsql.faces SET embedding_model = 'v', person_id = %s, match_confidence = 0.9 "
            "WHERE id = %s",
            [ann, face],
        ),
        ("SELECT semsql.complete_tasks('fv', %s, 'v')", [[face_task]]),
    )
    time.sleep(0.5)  # the store waits for the mutex, its rebuild done
    claimed = conn.execute("SELECT task_id FROM semsql.claim_tasks('tw', 'text', 1)").fetchall()
    conn.commit()
    settling.commit()
    settling.close()
    store.join(30)
    assert errors == [] and claimed == []
    assert "People: Ann." in document(conn, asset)
    assert text_task(conn, asset)[0] == "pending"
    assert inconsistencies(conn) == []


def test_a_rename_and_a_new_link_to_that_person_at_once_give_the_new_name(conn, db_url) -> None:
    asset = new_asset(conn, "rename")
    person = conn.execute("INSERT INTO semsql.people (name) VALUES ('Ann') RETURNING id").fetchone()
    conn.commit()
    rename = database.connect(db_url)
    rename.execute("UPDATE semsql.people SET name = 'Annabel' WHERE id = %s", person)
    link, errors = in_thread(
        db_url,
        (
            "INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (%s, %s, 'user')",
            [asset, person[0]],
        ),
    )
    time.sleep(0.5)  # the link's rebuild waits for the rename
    rename.commit()
    rename.close()
    link.join(30)
    assert errors == []
    names = conn.execute(
        "SELECT people_names FROM semsql.search_documents WHERE asset_id = %s", [asset]
    ).fetchone()
    assert names == (["Annabel"],)
    assert inconsistencies(conn) == []


@pytest.mark.parametrize("table", ["captions", "tags", "faces", "asset_people"])
def test_truncating_a_fact_table_rebuilds_every_document(conn, table: str) -> None:
    asset = new_asset(conn, "truncated")
    person = conn.execute("INSERT INTO semsql.people (name) VALUES ('Bo') RETURNING id").fetchone()
    conn.execute(
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', 'a kite')",
        [asset],
    )
    conn.execute(
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%s, 'kite', 'user')", [asset]
    )
    conn.execute(
        "INSERT INTO semsql.faces (asset_id, box, detector, emotion) "
        "VALUES (%s, '{0,0,1,1}', 'mtcnn', 'happy')",
        [asset],
    )
    conn.execute(
        "INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (%s, %s, 'user')",
        [asset, person[0]],
    )
    conn.commit()
    before = document(conn, asset)
    conn.execute(f"TRUNCATE semsql.{table} CASCADE")  # faces: person_faces refers to them
    conn.commit()
    assert document(conn, asset) != before
    assert inconsistencies(conn) == []


def test_a_write_that_changes_a_pending_texts_input_wakes_the_workers(conn, db_url) -> None:
    """Its rebuild holds the text task until commit, so a worker that tried to claim it then
    skipped it: the commit tells the workers it is due."""
    asset = _with_text_task(conn, "wake")
    with database.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN semsql_tasks")
        conn.execute(
            "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%s, 'user', 'a bus')",
            [asset],
        )
        conn.commit()
        heard = [n.channel for n in listener.notifies(timeout=2.0, stop_after=1)]
    assert heard == ["semsql_tasks"]
    assert text_task(conn, asset)[0] == "pending"
