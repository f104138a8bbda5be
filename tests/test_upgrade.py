"""Upgrading the previous landed release with today's `semsql init` gives exactly the schema of a
fresh install, and keeps the data.

The previous release's migrations/ and sql/ are kept in tests/data/release_<commit>/ as they
were at that commit (`git archive <commit> sql migrations`); refresh them when a release lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from semsql import database, migrate

PREVIOUS_RELEASE = Path(__file__).parent / "data" / "release_a30091e"

# The whole catalog of schema semsql, each part as sorted rows.
CATALOG = {
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               a.attidentity, pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)
        FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'semsql'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "relations": """
        SELECT relname, relkind, relacl::text, obj_description(oid, 'pg_class')
        FROM pg_class WHERE relnamespace = 'semsql'::regnamespace""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'semsql'::regnamespace""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'semsql'",
    "views": """
        SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        WHERE c.relnamespace = 'semsql'::regnamespace AND c.relkind IN ('v', 'm')""",
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_function_result(p.oid), md5(p.prosrc),
               p.proconfig::text, p.prosecdef, p.provolatile, p.proisstrict, p.proacl::text,
               obj_description(p.oid, 'pg_proc')
        FROM pg_proc p WHERE p.pronamespace = 'semsql'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled
        FROM pg_trigger WHERE tgrelid::regclass::text LIKE 'semsql.%' AND NOT tgisinternal""",
    "types": """
        SELECT t.typname, t.typtype, format_type(t.oid, NULL) FROM pg_type t
        WHERE t.typnamespace = 'semsql'::regnamespace""",
    "schema": """
        SELECT nspacl::text, obj_description(oid, 'pg_namespace') FROM pg_namespace
        WHERE nspname = 'semsql'""",
    "migrations": "SELECT name, checksum FROM semsql.schema_migrations",
    "settings": """
        SELECT 'stage', row_to_json(s)::text FROM semsql.stages s
        UNION ALL SELECT 'mutex', name FROM semsql.mutexes""",
}


def catalog(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    # embed_text's login is named after its database: the grants to it are compared by kind.
    (login,) = conn.execute("SELECT role_name FROM semsql.loopback_login").fetchone()

    def same_login(value: object) -> object:
        return value.replace(login, "<embed login>") if isinstance(value, str) else value

    return {
        part: sorted((tuple(map(same_login, row)) for row in conn.execute(q)), key=repr)
        for part, q in CATALOG.items()
    }


@pytest.fixture
def fresh_database(server_url: str) -> Iterator[str]:
    made = []

    def create(name: str) -> str:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_conninfo(server_url, dbname=name)

    yield create
    with psycopg.connect(server_url, autocommit=True) as admin:
        for name in made:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def add_data(conn: psycopg.Connection) -> None:
    """A little of everything, written as the previous release's ingest and worker wrote it."""
    conn.execute(
        """
        INSERT INTO semsql.jobs (collection) VALUES ('default');
        INSERT INTO semsql.assets (uri, sha256, job_id, taken_at, metadata)
        VALUES ('/lib/beach.jpg', repeat('a', 64), 1, '2020-07-01', '{"camera": "Canon"}'),
               ('/lib/snow.jpg', repeat('b', 64), 1, '2021-01-02', '{}');
        INSERT INTO semsql.captions (asset_id, source, text)
        VALUES (1, 'user', 'Ana at the beach'), (2, 'blip', 'children playing in snow');
        INSERT INTO semsql.tags (asset_id, label, confidence, source)
        VALUES (1, 'beach', NULL, 'user'), (2, 'snow', 0.9, 'detr');
        INSERT INTO semsql.people (name) VALUES ('Ana Lima');
        INSERT INTO semsql.asset_people (asset_id, person_id, source) VALUES (1, 1, 'user');
        INSERT INTO semsql.faces (asset_id, box, detector, embedding, embedding_model, emotion)
        VALUES (1, '{0,0,10,10}', 'mtcnn', array_fill(0.1, ARRAY[512])::vector, 'facenet', 'happy');
        UPDATE semsql.tasks SET status = 'done', attempts = 1, finished_at = now()
        WHERE stage <> 'text';
        UPDATE semsql.tasks SET status = 'failed', attempts = 5, last_error = 'gave up'
        WHERE stage = 'text' AND asset_id = 2;
        """
    )
    conn.execute("SELECT semsql.register_vector_space('text', 'minilm', 3)")
    conn.execute(
        """INSERT INTO semsql.embeddings (asset_id, space, model, embedding, input_sha256)
           VALUES (1, 'text', 'minilm', '[1,0,0]', repeat('c', 64)),
                  (2, 'text', 'minilm', '[0,1,0]', repeat('d', 64))"""
    )


DATA_TABLES = (
    "jobs",
    "assets",
    "captions",
    "tags",
    "people",
    "asset_people",
    "faces",
    "embeddings",
    "tasks",
    "vector_spaces",
)


def contents(conn: psycopg.Connection) -> dict[str, list[dict]]:
    """Every row of the tables that hold data, as column -> value (text)."""
    return {
        table: [
            row[0]
            for row in conn.execute(
                sql.SQL("SELECT to_jsonb(t) FROM semsql.{} t ORDER BY to_jsonb(t)::text").format(
                    sql.Identifier(table)
                )
            )
        ]
        for table in DATA_TABLES
    }


def kept(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The rows after the upgrade, cut to the columns the previous release had."""
    return {
        table: [{k: row[k] for k in before[table][0]} for row in rows] if before[table] else rows
        for table, rows in after.items()
    }


def test_the_previous_release_upgrades_to_exactly_a_fresh_install_and_keeps_its_data(
    fresh_database,
) -> None:
    old_url = fresh_database("semsql_test_upgraded")
    with database.connect(old_url, autocommit=True) as conn:
        migrate.init(
            conn,
            migrations=PREVIOUS_RELEASE / "migrations",
            definitions=PREVIOUS_RELEASE / "sql",
        )
        add_data(conn)
        before = contents(conn)
        report = migrate.init(conn)
        assert report.applied and report.already_applied == len(
            migrate.migration_files(PREVIOUS_RELEASE / "migrations")
        )
        upgraded = catalog(conn)
        after = contents(conn)
        hits = conn.execute(
            "SELECT asset_id FROM semsql.search(query_embedding => '[1,0.1,0]', k => 2)"
        ).fetchall()
    with database.connect(fresh_database("semsql_test_fresh"), autocommit=True) as conn:
        migrate.init(conn)
        add_data(conn)  # the same data: the HNSW index of a registered space is in the catalog
        fresh = catalog(conn)

    for part in CATALOG:
        assert upgraded[part] == fresh[part], part
    assert all(before.values())
    assert kept(before, after) == before
    assert hits == [(1,), (2,)]
