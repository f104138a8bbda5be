"""`semsql serve`'s guard: loopback only without a token, the token as a bearer header or a
login cookie, CSRF on every request that changes data, and the serve extra's message."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_support import only_stages, serving, settings_for

from semsql.cli.main import cli
from semsql.serve.settings import SettingsError, check_bind

TOKEN = "correct-horse-battery-staple"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_any_address_but_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(SettingsError, match="without a token"):
        check_bind(host, None)
    check_bind(host, TOKEN)
    for loopback in ("127.0.0.1", "::1", "localhost"):
        check_bind(loopback, None)


def test_the_command_refuses_an_open_address_and_a_short_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SEMSQL_SERVE_TOKEN", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without a token" in result.output
    assert "SEMSQL_SERVE_TOKEN" in result.output
    monkeypatch.setenv("SEMSQL_SERVE_TOKEN", "short")
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and "at least 16 characters" in result.output


def test_without_the_serve_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 1
    assert "pip install 'semsql[serve]'" in result.output and "uvicorn" in result.output


@pytest.fixture
def guarded(db_url: str, tmp_path: Path):
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path, token=TOKEN)) as client:
        yield client


def test_a_token_server_answers_only_with_the_token(guarded) -> None:
    refused = guarded.get("/api/search", params={"tag": "x"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = guarded.get("/api/search", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    right = guarded.get("/api/search", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200, right.text
    assert guarded.get("/static/app.js").status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_people_log_in_with_the_token_and_then_need_the_csrf_token(guarded) -> None:
    page = guarded.get("/people?x=1", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fpeople%3Fx%3D1"
    failed = guarded.post("/login", data={"token": "guess", "next": "/people"})
    assert failed.status_code == 401 and "wrong token" in failed.text
    logged = guarded.post(
        "/login", data={"token": TOKEN, "next": "https://evil.example/"}, follow_redirects=False
    )
    assert logged.status_code == 303 and logged.headers["location"] == "/"
    assert TOKEN not in logged.headers["set-cookie"]
    assert "httponly" in logged.headers["set-cookie"].lower()
    page = guarded.get("/people")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text)
    assert csrf is not None
    body = {"asset_ids": [999]}
    assert guarded.post("/api/duplicates/delete", json=body).status_code == 403
    wrong = {"X-CSRF-Token": "0" * 64}
    assert guarded.post("/api/duplicates/delete", json=body, headers=wrong).status_code == 403
    done = guarded.post(
        "/api/duplicates/delete", json=body, headers={"X-CSRF-Token": csrf.group(1)}
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"deleted": []}


def test_on_loopback_a_browser_needs_the_csrf_token_and_a_script_does_not(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        body = {"asset_ids": [999]}
        # What a page of another site makes a browser send: refused.
        cross = client.post(
            "/api/duplicates/delete", json=body, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]["message"]
        same_site = {"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}
        assert (
            client.post("/api/duplicates/delete", json=body, headers=same_site).status_code == 403
        )
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/jobs").text)
        assert csrf is not None
        with_token = {**same_site, "X-CSRF-Token": csrf.group(1)}
        assert (
            client.post("/api/duplicates/delete", json=body, headers=with_token).status_code == 200
        )
        # curl and scripts send no Origin, no Sec-Fetch-* and no cookie.
        assert client.post("/api/duplicates/delete", json=body).status_code == 200


def test_in_the_base_install_the_command_says_which_extra(tmp_path: Path) -> None:
    import os
    import subprocess

    from test_base_install import BLOCKER, blocked_modules

    blocked = blocked_modules()
    assert {"fastapi", "uvicorn", "jinja2", "psycopg_pool"} <= blocked
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked)))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SEMSQL_HOME": str(tmp_path / "home")}
    script = Path(sys.executable).with_name("semsql")
    done = subprocess.run(
        [str(script), "serve"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    assert "pip install 'semsql[serve]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_token_only_loopback_names_are_answered(db_url: str, tmp_path: Path) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        # DNS rebinding: evil.example resolved to 127.0.0.1 is same-origin to its own page.
        rebound = {"host": "evil.example:8000", "origin": "http://evil.example:8000"}
        assert client.get("/api/people", headers=rebound).status_code == 403
        assert client.post("/api/duplicates/delete", headers=rebound).status_code == 403
        for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000"):
            assert client.get("/api/people", headers={"host": host}).status_code == 200
