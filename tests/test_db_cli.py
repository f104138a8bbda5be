"""`semsql db ...` and `semsql init` against an embedded server in a folder of the test's own."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from semsql import migrate
from semsql.cli.main import cli


@pytest.fixture
def semsql_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="semsql-home-"))
    monkeypatch.delenv("SEMSQL_DATABASE_URL", raising=False)
    monkeypatch.setenv("SEMSQL_HOME", str(home))
    yield home
    CliRunner().invoke(cli, ["db", "stop"])
    shutil.rmtree(home, ignore_errors=True)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_embedded_server_lifecycle(semsql_home: Path) -> None:
    assert json.loads(run("db", "status", "--json"))["running"] is False

    url = run("db", "url").strip()
    assert url.startswith("postgresql://semsql:") and "@127.0.0.1:" in url
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "semsql"

    status = json.loads(run("db", "status", "--json"))
    assert status["running"] is True and status["port"] == int(url.rsplit(":", 1)[1].split("/")[0])
    assert run("db", "url").strip() == url  # reused, not restarted

    names = [f.name for f in migrate.migration_files()]
    assert f"applied {len(names)} migration(s): {', '.join(names)}" in run("init")
    assert json.loads(run("init", "--json"))["applied"] == []

    assert run("db", "stop").strip() == "stopped"
    assert json.loads(run("db", "status", "--json"))["running"] is False
    assert run("db", "stop").strip() == "not running"


def test_init_reports_what_it_applied(semsql_env: str) -> None:
    report = json.loads(run("init", "--json"))
    assert report == {
        "applied": [],
        "already_applied": len(migrate.migration_files()),
        "definitions": len(migrate.definition_files()),
    }


def test_a_wrong_database_url_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    result = CliRunner().invoke(cli, ["jobs"])
    assert result.exit_code == 1
    assert "cannot connect to the database" in result.output
    assert "SEMSQL_DATABASE_URL" in result.output


def test_commands_ask_for_init_on_an_empty_database(fresh_database, monkeypatch) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", fresh_database("semsql_test_empty"))
    result = CliRunner().invoke(cli, ["jobs"])
    assert result.exit_code == 1 and "run `semsql init`" in result.output
