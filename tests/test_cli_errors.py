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
    assert fails("search", "--like", "99999") == "error: no asset has id 99999"


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


# Over-long texts, devices, deep JSON, numbers out of range, bad settings ------------------------

LONG_QUERY_ERROR = (
    "error: the query text is 20000 characters long; a query text has at most 10000"
    " (hint: a text model reads a few hundred words: pass the part that matters)"
)


@pytest.mark.parametrize("embed", ["worker", "local", "auto"])
def test_an_over_long_query_text_is_one_line(semsql_env, embed: str) -> None:
    """SQLSTATE class 54 (program_limit_exceeded) is the caller's; local embedding is not
    even tried."""
    assert fails("search", "a" * 20_000, "--embed", embed) == LONG_QUERY_ERROR
    assert fails("search", "snow", "--exclude", "a" * 20_000, "--embed", embed) == (
        LONG_QUERY_ERROR
    )


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("bogus", "error: unknown device 'bogus': use auto, cpu, cuda, cuda:N or mps"),
        ("cuda:7", "error: device 'cuda:7' asked for, but "),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(
    semsql_env, conn, monkeypatch, device: str, message: str
) -> None:
    import torch
    from fix_models import minilm_folder

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.setenv("SEMSQL_MODEL_TEXT", str(minilm_folder()))
    conn.execute("INSERT INTO semsql.vector_spaces (space, model, dims) VALUES ('text', 'm', 384)")
    conn.commit()
    line = fails("search", "snow", "--embed", "local", "--device", device)
    assert line.startswith(message), line


def test_metadata_filters_that_python_cannot_read_are_usage_errors(semsql_env) -> None:
    deep = "[" * 5000 + "]" * 5000
    assert "nested too deeply" in misused("search", "--metadata", deep).stderr
    nested = '{"a": ' * 40 + "1" + "}" * 40
    assert "nested deeper than 32 levels" in misused("search", "--metadata", nested).stderr
    digits = '{"n": ' + "1" * 5000 + "}"
    assert "Exceeds the limit (4300 digits)" in misused("search", "--metadata", digits).stderr


HUGE = "99999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ("worker", "--batch-size", HUGE, "--once"),
        ("worker", "--max-attempts", "99999999999", "--once"),
        ("worker", "--lease", "99999999999", "--once"),
        ("worker", "--bulk-index-at", HUGE, "--once"),
        ("worker", "--decode-threads", "100000", "--once"),
        ("people", "add", "Ana", "--face", HUGE),
        ("people", "add", "Ana", "--face", "0"),
        ("people", "clusters", "--min-size", "99999999999"),
        ("people", "show", "Ana", "--limit", HUGE),
        ("people", "name-cluster", HUGE, "X"),
        ("people", "split-cluster", HUGE),
        ("people", "split-cluster", "1", "--face", HUGE),
        ("search", "--tag", "x", "--offset", "99999999999"),
        ("search", "--tag", "x", "--offset", "1000000001"),
        ("search", "--like", "99999999999999999999999"),
        ("search", "--like", "0"),
        ("jobs", HUGE),
        ("jobs", "--limit", HUGE),
        ("status", "--failed", HUGE),
        ("ingest", "x.jpg", "--max-file-size", "1e23"),
        ("ingest", "x.jpg", "--max-file-size", "99999999999999999999999"),
        ("ingest", "x.jpg", "--max-pixels", HUGE),
    ],
)
def test_integers_out_of_range_are_usage_errors(semsql_env, args: tuple[str, ...]) -> None:
    result = misused(*args)
    assert "Invalid value" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("worker", "--poll-interval", "nan", "--once"),
        ("worker", "--poll-interval", "inf", "--once"),
        ("ingest", "x.jpg", "--wait", "--timeout", "nan"),
        ("ingest", "x.jpg", "--wait", "--timeout", "inf"),
        ("search", "--tag", "x", "--min-score", "nan"),
        ("search", "--tag", "x", "--min-score", "-inf"),
        ("search", "--tag", "x", "--min-score", "1e400"),
        ("search", "--tag", "x", "--relative-cut", "nan"),
        ("people", "threshold", "nan"),
    ],
)
def test_floats_that_are_not_finite_are_usage_errors(semsql_env, args: tuple[str, ...]) -> None:
    result = misused(*args)
    assert (
        "is not a number" in result.stderr
        or "is not a finite number" in result.stderr
        or ("is not in the range" in result.stderr)
    ), result.stderr


def test_float_settings_from_the_environment_are_checked_too(semsql_env, monkeypatch) -> None:
    monkeypatch.setenv("SEMSQL_WORKER_POLL_INTERVAL", "nan")
    assert "'nan' is not a number" in misused("worker", "--once").stderr


@pytest.mark.parametrize("tasks", ["", ",,,", " , "])
def test_worker_with_no_stages_is_a_usage_error(semsql_env, tasks: str) -> None:
    result = misused("worker", "--tasks", tasks, "--once")
    assert "give at least one stage: all, or some of caption, tags, faces" in result.stderr


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("not a url", 'missing "=" after "not" in connection info string'),
        ("postgresql://%zz@/x", "invalid percent-encoded token"),
    ],
)
def test_a_database_url_that_is_no_url_is_one_line(monkeypatch, url: str, detail: str) -> None:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", url)
    for command in (("status",), ("search", "x"), ("db", "psql")):
        line = fails(*command)
        assert line.startswith("error: SEMSQL_DATABASE_URL is not a connection string: ")
        assert detail in line


def test_a_port_that_is_no_number_is_one_line(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SEMSQL_DATABASE_URL", raising=False)
    monkeypatch.setenv("SEMSQL_HOME", str(tmp_path / "home"))
    for port in ("abc", "0", "70000"):
        monkeypatch.setenv("SEMSQL_PORT", port)
        message = f"error: SEMSQL_PORT must be a port number from 1 to 65535, not {port!r}"
        for command in (("status",), ("db", "url"), ("db", "start")):
            assert fails(*command) == message
    assert not (tmp_path / "home").exists()  # refused before any server was set up


@pytest.mark.parametrize(
    ("collection", "message"),
    [
        ("", "a collection needs a name: it is empty"),
        ("   ", "a collection needs a name: it is empty"),
        ("c" * 5000, "the name is 5,000 characters long; at most 200 fit"),
        ("a\x01b", "the name holds the control character '\\x01' at character 2"),
        ("tab\there", "the name holds the control character '\\t' at character 4"),
        ("\U0001f600" * 180, "the name is 720 bytes of UTF-8; at most 700 fit"),
    ],
)
def test_a_collection_name_is_checked_up_front(
    semsql_env, conn, monkeypatch, tmp_path: Path, collection: str, message: str
) -> None:
    from corpus import make_jpeg

    photo = make_jpeg(tmp_path / "a.jpg")
    assert message in misused("ingest", str(photo), "--collection", collection).stderr
    if collection.strip():  # click takes an empty variable for an unset one
        monkeypatch.setenv("SEMSQL_COLLECTION", collection)
        assert message in misused("ingest", str(photo)).stderr
    assert conn.execute("SELECT count(*) FROM semsql.jobs").fetchone()[0] == 0  # no job made
