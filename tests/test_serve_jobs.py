"""The jobs page's failed tasks, grouped by stage and reason (semsql.failure_reason: the error
without what changes from file to file), each with its own retry (POST /api/tasks/retry-reason,
through semsql.requeue_tasks) of exactly the tasks it shows, as the editor role only."""

from __future__ import annotations

import html
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


REASONS = [
    (
        "cannot decode /media/up/IMG_0001.JPG: cannot identify image file '/media/up/IMG_0001.JPG'",
        "cannot decode <path>: cannot identify image file '…'",
    ),
    (
        "https://example.org/a/7.jpg changed since it was ingested (it has 123 bytes, not 4567)",
        "<uri> changed since it was ingested (it has N bytes, not N)",
    ),
    (
        "clip model ViT-B-32 failed: RuntimeError: shape [1, 3] at 0x7f3a2b9c10  (h264, -22)",
        "clip model ViT-B-32 failed: RuntimeError: shape [N, N] at 0x… (h264, N)",
    ),
    ("C:\\photos\\a.jpg is larger than 52428800 bytes", "<path> is larger than N bytes"),
    (f"sha256 {'3f' * 32} is not {'0a' * 32}", "sha256 <hex> is not <hex>"),
    ('faces: the database refused the result: value "1e400" is out of range for type real',
     'faces: the database refused the result: value "…" is out of range for type real'),
    ("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)",
     "CUDA out of memory. Tried to allocate N MiB (GPU N; N GiB total capacity)"),
]  # fmt: skip


def test_a_failure_reason_leaves_out_what_changes_from_file_to_file(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for error, reason in REASONS:
            found = conn.execute(
                "SELECT semsql.failure_reason(%(e)s),"
                " semsql.failure_reason(semsql.failure_reason(%(e)s))",
                {"e": error},
            ).fetchone()
            assert found == (reason, reason), error  # and the reason of a reason is itself
        assert conn.execute("SELECT semsql.failure_reason(NULL)").fetchone() == (None,)


def fail_tasks(db_url: str, errors: dict[int, str], ago: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for asset_id, error in errors.items():
            conn.execute(
                """UPDATE semsql.tasks SET status = 'failed', last_error = %s,
                          finished_at = now() - %s::interval WHERE asset_id = %s""",
                [error, ago, asset_id],
            )
        conn.execute("SELECT semsql.refresh_asset_status(%s)", [list(errors)])


def test_near_identical_failures_are_one_group_retried_as_shown(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        ids = [i for group in failed_uploads(client, db_url).values() for i in group]
        name = "cannot decode /media/{0}.png: cannot identify image file '/media/{0}.png'"
        fail_tasks(db_url, {ids[0]: name.format(0), ids[1]: name.format(1)}, "1 minute")
        fail_tasks(db_url, {ids[2]: "CUDA out of memory (GPU 0; 15.78 GiB)"}, "1 minute")
        groups = client.get("/api/tasks/failed").json()
        reason = "cannot decode <path>: cannot identify image file '…'"
        assert [(g["reason"], g["tasks"], g["errors"]) for g in groups] == [
            (reason, 2, 2),
            ("CUDA out of memory (GPU N; N GiB)", 1, 1),
        ]
        shown = groups[0]
        assert sorted(shown["asset_ids"]) == ids[:2] and shown["error"] in {
            name.format(0),
            name.format(1),
        }
        page = client.get("/jobs", headers={"Accept": "text/html"}).text
        assert page.count('class="api-form retry-reason"') == 2
        assert "2 texts, the latest: cannot decode /media/" in page
        form = re.search(r'name="error" value="([^"]*)"><input type="hidden" '
                         r'name="failed_until" value="([^"]+)"', page)  # fmt: skip
        assert form is not None and html.unescape(form.group(1)) == reason
        # A third file fails for the same reason after the page was shown: not retried by it.
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE asset_id = %s", [ids[2]])
        fail_tasks(db_url, {ids[2]: name.format(2)}, "0 seconds")
        body = {"stage": "content", "error": reason, "failed_until": form.group(2)}
        answer = client.post("/api/tasks/retry-reason", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["queued"] == 2
        now = states(db_url)
        assert [now[i][0] for i in ids] == ["pending", "pending", "failed"]
        # An error text of the group stands for its reason, as the reason does.
        answer = client.post(
            "/api/tasks/retry-reason", json={"stage": "content", "error": name.format(7)}
        )
        assert answer.status_code == 200 and answer.json()["queued"] == 1
        assert states(db_url)[ids[2]][0] == "pending"
        bad = client.post(
            "/api/tasks/retry-reason", json={"stage": "content", "failed_until": "yesterday"}
        )
        assert bad.status_code == 400
