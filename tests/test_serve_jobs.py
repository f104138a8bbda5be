"""The jobs page's failed tasks, grouped by stage and reason, each with its own retry
(POST /api/tasks/retry-reason, through semsql.requeue_tasks), as the editor role only."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from serve_support import coloured_png, only_stages, serving, settings_for, wait_for

TOKEN = "correct-horse-battery-staple"
DISK, MEMORY = "disk on fire", "out of memory"


def failed_uploads(client, db_url: str) -> dict[str, list[int]]:
    """Three uploaded images whose content tasks failed: two for one reason, one for another."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = true WHERE name = 'content'")
        files = [("files", (f"{n}.png", coloured_png((n, 9, 9)), "image/png")) for n in range(3)]
        assert client.post("/api/assets", files=files).status_code == 202
        count = "SELECT count(*) FROM semsql.tasks WHERE stage = 'content'"
        wait_for(lambda: conn.execute(count).fetchone()[0] == 3)
        ids = [r[0] for r in conn.execute("SELECT asset_id FROM semsql.tasks ORDER BY asset_id")]
        for asset_id, error in zip(ids, (DISK, DISK, MEMORY), strict=True):
            conn.execute(
                "UPDATE semsql.tasks SET status = 'failed', last_error = %s WHERE asset_id = %s",
                [error, asset_id],
            )
        conn.execute("SELECT semsql.refresh_asset_status(%s)", [ids])
    return {DISK: ids[:2], MEMORY: ids[2:]}


def states(db_url: str) -> dict[int, tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT t.asset_id, t.status, a.status FROM semsql.tasks t"
            " JOIN semsql.assets a ON a.id = t.asset_id"
        )
        return {asset_id: (task, asset) for asset_id, task, asset in rows}


def test_failed_tasks_are_grouped_by_reason_and_retried_per_reason(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        ids = failed_uploads(client, db_url)
        groups = client.get("/api/tasks/failed").json()
        assert [(g["stage"], g["error"], g["tasks"]) for g in groups] == [
            ("content", DISK, 2),
            ("content", MEMORY, 1),
        ]
        assert sorted(groups[0]["asset_ids"]) == ids[DISK]
        page = client.get("/jobs", headers={"Accept": "text/html"}).text
        assert page.count('class="api-form retry-reason"') == 2
        assert f'name="error" value="{DISK}"' in page and "Retry these 2" in page

        answer = client.post("/api/tasks/retry-reason", json={"stage": "content", "error": DISK})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"stage": "content", "error": DISK, "queued": 2}
        now = states(db_url)
        assert {now[i] for i in ids[DISK]} == {("pending", "pending")}
        assert now[ids[MEMORY][0]] == ("failed", "failed")
        remaining = client.get("/api/tasks/failed").json()
        assert [(g["error"], g["tasks"]) for g in remaining] == [(MEMORY, 1)]

        again = client.post("/api/tasks/retry-reason", json={"stage": "content", "error": DISK})
        assert again.status_code == 404 and "retried already" in again.json()["error"]["message"]
        unknown = client.post("/api/tasks/retry-reason", json={"stage": "nope", "error": DISK})
        assert unknown.status_code == 400 and "no stage" in unknown.json()["error"]["message"]
        assert client.post("/api/tasks/retry-reason", json={"error": DISK}).status_code == 400
        no_error = client.post("/api/tasks/retry-reason", json={"stage": "content"})
        assert no_error.status_code == 404  # no task failed without an error
        assert states(db_url)[ids[MEMORY][0]] == ("failed", "failed")


def test_a_retry_needs_the_token_the_csrf_token_and_the_editor_role(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    body = {"stage": "content", "error": DISK}
    with serving(settings_for(db_url, tmp_path)) as client:
        ids = failed_uploads(client, db_url)
    with serving(settings_for(db_url, tmp_path, writer_role="semsql_analyst")) as client:
        refused = client.post("/api/tasks/retry-reason", json=body)
        assert refused.status_code == 403, refused.text
        assert client.post("/api/tasks/retry", json={}).status_code == 403
    assert {states(db_url)[i] for i in ids[DISK]} == {("failed", "failed")}
    with serving(settings_for(db_url, tmp_path, token=TOKEN)) as client:
        assert client.post("/api/tasks/retry-reason", json=body).status_code == 401
        client.post("/login", data={"token": TOKEN})
        assert client.post("/api/tasks/retry-reason", json=body).status_code == 403
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/jobs").text)
        assert csrf is not None
        done = client.post(
            "/api/tasks/retry-reason", json=body, headers={"X-CSRF-Token": csrf.group(1)}
        )
        assert done.status_code == 200 and done.json()["queued"] == 2
