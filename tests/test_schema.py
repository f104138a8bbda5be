"""The migrations build the intended schema, and `semsql init` is idempotent."""

from __future__ import annotations

import psycopg
import pytest
from catalog import catalog

from semsql import migrate
from semsql.stages import STAGES


def test_migrations_build_the_intended_tables(conn: psycopg.Connection) -> None:
    columns = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'semsql'"
    ):
        columns.setdefault(table, set()).add(column)
    expected = {
        "assets": {
            "id",
            "uri",
            "sha256",
            "collection",
            "mime",
            "width",
            "height",
            "bytes",
            "taken_at",
            "metadata",
            "status",
            "error",
            "created_at",
            "updated_at",
        },
        "jobs": {
            "id",
            "status",
            "new_count",
            "updated_count",
            "skipped_count",
            "failed_count",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        },
        "job_items": {"job_id", "uri", "outcome", "asset_id", "error_code", "error"},
        "captions": {"asset_id", "source", "text"},
        "tags": {"asset_id", "label", "confidence", "box", "source"},
        "faces": {
            "asset_id",
            "box",
            "confidence",
            "embedding",
            "emotion",
            "emotion_scores",
            "person_id",
            "match_confidence",
        },
        "people": {"id", "name", "kind"},
        "asset_people": {"asset_id", "person_id", "source"},
        "embeddings": {"asset_id", "space", "model", "embedding"},
        "tasks": {
            "asset_id",
            "stage",
            "status",
            "attempts",
            "last_error",
            "next_attempt_at",
            "lease_expires_at",
        },
        "stages": {"name", "enabled", "depends_on"},
    }
    for table, wanted in expected.items():
        assert wanted <= columns.get(table, set()), table
    every_function_pins_search_path = conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE pronamespace = 'semsql'::regnamespace
             AND NOT coalesce(proconfig::text LIKE '%search_path=%', false)"""
    ).fetchall()
    assert every_function_pins_search_path == []
    uncommented = conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p
           WHERE pronamespace = 'semsql'::regnamespace AND obj_description(p.oid) IS NULL"""
    ).fetchall()
    assert uncommented == []


def test_second_init_changes_nothing(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        before = catalog(conn)
        report = migrate.init(conn)
        assert report.applied == []
        assert catalog(conn) == before


def test_an_edited_migration_is_refused(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.schema_migrations SET checksum = 'x'")
        with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
            migrate.init(conn)


def test_deleting_an_asset_removes_everything_that_hangs_from_it(conn) -> None:
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES ('/a.jpg', repeat('a', 64)) RETURNING id"
    ).fetchone()[0]
    person_id = conn.execute(
        "INSERT INTO semsql.people (name) VALUES ('Grace Hopper') RETURNING id"
    ).fetchone()[0]
    statements = [
        "INSERT INTO semsql.captions (asset_id, source, text) VALUES (%(a)s, 'user', 'x')",
        "INSERT INTO semsql.tags (asset_id, label, source) VALUES (%(a)s, 'cat', 'user')",
        """INSERT INTO semsql.faces (asset_id, box, detector, embedding, person_id)
           VALUES (%(a)s, '{0,0,1,1}', 'mtcnn', array_fill(0.1, ARRAY[512])::vector, %(p)s)""",
        "INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (%(a)s, %(p)s, 'u')",
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
           VALUES (%(a)s, 'text', 'm', '[1,2,3]')""",
        """INSERT INTO semsql.content_hashes (asset_id, view, turn, hash, model)
           VALUES (%(a)s, 'full', 0, repeat('01', 128)::bit(256), 'phash256')""",
        """INSERT INTO semsql.segments (asset_id, label, share, score, mask_width, mask_height,
                                       mask_rle, model)
           VALUES (%(a)s, 'sky', 0.5, 0.9, 2, 1, '{1,1}', 'm')""",
    ]
    for statement in statements:
        conn.execute(statement, {"a": asset_id, "p": person_id})
    assert conn.execute(
        "SELECT count(*) FROM semsql.tasks WHERE asset_id = %s", [asset_id]
    ).fetchone()[0] == len([s for s in STAGES if not s.off_by_default and "image" in s.media_types])
    conn.execute("DELETE FROM semsql.assets WHERE id = %s", [asset_id])
    tables = ("captions", "tags", "faces", "asset_people", "embeddings", "content_hashes")
    tables += ("segments", "tasks")
    for table in tables:
        left = conn.execute(f"SELECT count(*) FROM semsql.{table}").fetchone()[0]
        assert left == 0, table
    assert conn.execute("SELECT count(*) FROM semsql.people").fetchone()[0] == 1
