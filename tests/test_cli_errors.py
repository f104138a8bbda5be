"""User errors on the command line are one line on stderr with exit status 1 (click's usage
errors keep click's exit status 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from semsql.cli.errors import UserError, as_user_error
from semsql.cli.main import cli


def fails(*args: str) -> str:
    """The one line that a failing command printed on stderr (exit status 1, no traceback)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def misused(*args: str) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result


def add_asset(conn: psycopg.Connection, name: str = "a") -> int:
    asset_id = conn.execute(
        "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, repeat('a', 64)) RETURNING id",
        [f"/{name}.jpg"],
    ).fetchone()[0]
    conn.commit()
    return asset_id


# Errors that the SQL functions raise, with their hints ----------------------------------------


def test_like_an_unknown_asset(semsql_env) -> None:
    assert fails("search", "--like", "-5") == "error: no asset has id -5"


def test_like_an_asset_without_vectors_shows_the_hint(semsql_env, conn) -> None:
    asset_id = add_asset(conn)
    assert fails("search", "--like", str(asset_id)) == (
        f"error: asset {asset_id} has no vectors yet "
        "(hint: `semsql worker` embeds it; semsql.tasks shows its progress)"
    )


def test_unknown_people_and_clusters(semsql_env) -> None:
    hint = "(hint: semsql.people_summary lists the people)"
    assert fails("people", "show", "nobody") == f'error: no person named "nobody" {hint}'
    assert fails("people", "remove", "nobody", "--yes").startswith("error: no person named")
    assert fails("people", "name-cluster", "7", "x").startswith("error: no face cluster 7")
    assert fails("people", "add", "X", "--face", "5").startswith("error: no stored face")


def test_a_database_error_is_a_user_error_and_a_bug_is_not(conn) -> None:
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("SELECT * FROM semsql.search(k => 0)")
    conn.rollback()
    assert isinstance(as_user_error(refused.value), UserError)
    with pytest.raises(psycopg.Error) as bug:
        conn.execute("SELECT no_such_column FROM semsql.assets")
    conn.rollback()
    assert as_user_error(bug.value) is None  # a traceback, as it should


# Other commands ----------------------------------------------------------------------------------


def test_unknown_job(semsql_env) -> None:
    assert fails("jobs", "999") == "error: no job 999"
    misused("jobs", "--limit", "-1")


def test_bad_dates_filters_and_numbers_are_usage_errors(semsql_env) -> None:
    assert "'2020-13-01' does not match" in misused("search", "--after", "2020-13-01").stderr
    assert "not JSON" in misused("search", "--metadata", "{bad").stderr
    assert "give a JSON object" in misused("search", "--metadata", "[1]").stderr
    misused("search", "-n", "0")
    misused("people", "find-face", __file__, "--min-similarity", "nan")
    misused("people", "clusters", "--min-similarity", "nan")
    misused("people", "show", "x", "--limit", "0")
    misused("worker", "--tasks", "bogus")


def test_a_file_that_cannot_be_written(semsql_env, conn, tmp_path: Path) -> None:
    sheet = tmp_path / "no" / "such" / "folder" / "sheet.html"
    assert fails("search", "--html", str(sheet)) == f"error: No such file or directory: {sheet}"


def test_a_query_image_that_is_no_image(semsql_env, tmp_path: Path, monkeypatch) -> None:
    from fix_models import build_clip_model

    monkeypatch.setenv("SEMSQL_MODEL_CLIP", str(build_clip_model(tmp_path / "clip")))
    notes = tmp_path / "notes.jpg"
    notes.write_text("no image here")
    line = fails("search", "--image", str(notes))
    assert line.startswith(f"error: cannot embed {notes}: cannot read {notes} as an image: ")


def test_the_database_cannot_be_reached(monkeypatch) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    line = fails("status")
    assert line.startswith("error: cannot connect to the database: ")
    assert line.endswith("(check SEMSQL_DATABASE_URL, or unset it to use the embedded server)")
    assert fails("db", "start") == "error: SEMSQL_DATABASE_URL is set: nothing to start"
