"""semsql/stages.py is the one declaration of the stages: the database, the model settings and
the worker's command line all follow it."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from click.testing import CliRunner

from semsql import migrate
from semsql import stages as registry
from semsql.cli.main import cli
from semsql.embedder.models import load_model_config


def stage_rows(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        """SELECT name, position, depends_on, description, reads, vector_space
           FROM semsql.stages ORDER BY position"""
    ).fetchall()


def declared() -> list[tuple[object, ...]]:
    return [
        (s.name, position, list(s.depends_on), s.description, s.reads.value, s.vector_space)
        for position, s in enumerate(registry.STAGES, start=1)
    ]


def test_init_writes_the_declared_stages(conn: psycopg.Connection) -> None:
    assert stage_rows(conn) == declared()


def test_sql_finds_the_stage_of_each_vector_space(conn: psycopg.Connection) -> None:
    for space, spec in registry.SPACES.items():
        found = conn.execute("SELECT semsql.vector_space_stage(%s)", [space]).fetchone()
        assert found == (spec.name,)
    assert conn.execute("SELECT semsql.vector_space_stage('audio')").fetchone() == (None,)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one of image, text"):
        conn.execute("SELECT semsql.check_query_text('audio', 'x')")


def test_init_restores_the_declaration_and_keeps_what_the_admin_disabled(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false WHERE name = 'caption'")
        conn.execute("UPDATE semsql.stages SET position = position + 100, description = 'x'")
        conn.execute(
            """INSERT INTO semsql.stages (name, position, description, vector_space)
               VALUES ('retired', 50, 'a stage of an older release', 'old')"""
        )
        migrate.init(conn)
        assert stage_rows(conn)[: len(registry.STAGES)] == declared()
        enabled = dict(conn.execute("SELECT name, enabled FROM semsql.stages").fetchall())
        assert enabled.pop("caption") is False
        assert enabled.pop("retired") is False  # kept (its tasks may exist), gets no new tasks
        assert enabled == {
            s.name: not s.off_by_default for s in registry.STAGES if s.name != "caption"
        }
        position, space = conn.execute(
            "SELECT position, vector_space FROM semsql.stages WHERE name = 'retired'"
        ).fetchone()
        assert position > len(registry.STAGES) and space is None


def test_every_stage_has_a_model_setting_with_its_default() -> None:
    config = load_model_config({})
    assert config == {s.name: None if s.off_by_default else s.model() for s in registry.STAGES}
    on = load_model_config({s.env_var: "on" for s in registry.STAGES})
    assert on == {s.name: s.model() for s in registry.STAGES}
    off = load_model_config({s.env_var: "off" for s in registry.STAGES})
    assert set(off) == set(registry.NAMES) and not any(off.values())


def test_the_worker_offers_the_declared_stages_and_spaces() -> None:
    help_text = CliRunner().invoke(cli, ["worker", "--help"], terminal_width=200).output
    assert ", ".join(registry.NAMES) in " ".join(help_text.split())
    result = CliRunner().invoke(cli, ["worker", "--tasks", "caption,sound"])
    assert result.exit_code != 0
    assert "unknown stage(s) sound" in result.output


def test_an_unknown_stage_or_space_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown stage 'sound': one of caption, tags"):
        registry.stage("sound")
    with pytest.raises(ValueError, match="unknown vector space 'audio': one of image, text"):
        registry.space_stage("audio")
    with pytest.raises(ValueError, match="the caption stage reads no image"):
        _ = registry.Stage("caption", "", registry.Reads.DOCUMENT, "m", "m:f", "w").image_side


def test_a_release_may_give_a_vector_space_to_a_renamed_stage(db_url: str) -> None:
    renamed = [
        dataclasses.replace(s, name="document_text") if s.name == "text" else s
        for s in registry.STAGES
    ]
    with psycopg.connect(db_url, autocommit=True) as conn:
        registry.write_rows(conn, renamed)
        assert conn.execute("SELECT semsql.vector_space_stage('text')").fetchone() == (
            "document_text",
        )
        migrate.init(conn)
        assert stage_rows(conn)[: len(registry.STAGES)] == declared()


def test_a_stage_an_older_init_retired_is_enabled_again_and_places_stay(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO semsql.stages (name, position, description) VALUES ('ocr', 50, 'by hand')"
        )
        registry.write_rows(
            conn, [s for s in registry.STAGES if s.name != "clip"]
        )  # an older release
        enabled = dict(conn.execute("SELECT name, enabled FROM semsql.stages").fetchall())
        assert enabled["clip"] is False and enabled["ocr"] is False
        migrate.init(conn)
        positions = conn.execute(
            "SELECT name, position, enabled FROM semsql.stages ORDER BY position"
        ).fetchall()
        assert ("clip", registry.NAMES.index("clip") + 1, True) in positions
        assert positions[-1] == ("ocr", len(registry.STAGES) + 1, False)
        migrate.init(conn)
        again = conn.execute(
            "SELECT name, position, enabled FROM semsql.stages ORDER BY position"
        ).fetchall()
        assert again == positions


def test_an_init_with_nothing_to_change_does_not_wait_for_queueing_transactions(
    db_url: str,
) -> None:
    with (
        psycopg.connect(db_url) as queueing,
        psycopg.connect(db_url, autocommit=True) as conn,
    ):
        # What inserting a task holds until commit: its foreign key's lock on the stage rows.
        queueing.execute("SELECT FROM semsql.stages FOR KEY SHARE")
        conn.execute("SET lock_timeout = '3s'")
        migrate.init(conn)
        assert stage_rows(conn) == declared()
