"""Upgrading the previous landed release with today's `semsql init` gives exactly the schema of a
fresh install, and keeps the data.

The previous release's migrations/ and sql/ are kept in tests/data/release_<commit>/ as they
were at that commit (`git archive <commit> sql migrations`); refresh them when a release lands.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from catalog import CATALOG, catalog
from psycopg import sql

from semsql import database, migrate, stages

PREVIOUS_RELEASE = Path(__file__).parent / "data" / "release_1fcfe85"
NEW_STAGES: tuple[str, ...] = ("frames",)
"""The stages this release adds: the upgrade queues them for every stored asset of their media
types (frames: videos, which the data below has none of)."""
RERUN_STAGES = ("content",)
"""The stages whose results this release computes anew: their done tasks are pending again
(0024: content hashes are stored in their canonical orientation)."""
PREVIOUS_STAGES = [s for s in stages.STAGES if s.name not in NEW_STAGES]


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
        stages.write_rows(conn, PREVIOUS_STAGES)  # as the previous release's init wrote them
        add_data(conn)
        before = contents(conn)
        report = migrate.init(conn)
        released = [f.name for f in migrate.migration_files(PREVIOUS_RELEASE / "migrations")]
        since = [f.name for f in migrate.migration_files() if f.name not in released]
        assert report.applied == since and report.already_applied == len(released)
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
    assert without_new_work(kept(before, after)) == without_new_work(before)
    assert new_tasks(after) == [
        (a, stage, "pending")
        for a in (1, 2)
        for stage in NEW_STAGES
        if "image" in stages.stage(stage).media_types
    ]
    assert rerun_tasks(before) == [(a, stage, "done") for a in (1, 2) for stage in RERUN_STAGES]
    assert rerun_tasks(after) == [(a, stage, "pending") for a in (1, 2) for stage in RERUN_STAGES]
    assert hits == [(1,), (2,)]


def without_new_work(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The rows less the tasks of the new stages and of those run again."""
    changed = NEW_STAGES + RERUN_STAGES
    return {**rows, "tasks": [t for t in rows["tasks"] if t["stage"] not in changed]}


def new_tasks(rows: dict[str, list[dict]]) -> list[tuple[int, str, str]]:
    return tasks_of(rows, NEW_STAGES)


def rerun_tasks(rows: dict[str, list[dict]]) -> list[tuple[int, str, str]]:
    return tasks_of(rows, RERUN_STAGES)


def tasks_of(rows: dict[str, list[dict]], stages: tuple[str, ...]) -> list[tuple[int, str, str]]:
    return sorted(
        (t["asset_id"], t["stage"], t["status"]) for t in rows["tasks"] if t["stage"] in stages
    )
