"""The duplicates page keeps any copy of a group, or deletes any one: the per-copy forms post
the right asset ids to /api/duplicates/delete, which deletes asset rows only (the files stay),
as the editor role; the analyst role is refused."""

from __future__ import annotations

import re
from pathlib import Path

from serve_support import only_stages, serving, settings_for
from test_duplicate_review import add_asset, register

from semsql import database

HTML = {"Accept": "text/html"}


def a_group(db_url: str, folder: Path) -> list[int]:
    """Three copies with one image vector (by meaning: one group), files on disk; the
    largest (the second) is the suggested copy to keep."""
    only_stages(db_url, ())
    sizes = [(800, 600), (1600, 1200), (400, 300)]
    with database.connect(db_url) as conn:
        ids = []
        for n, size in enumerate(sizes):
            path = folder / f"copy{n}.jpg"
            path.write_bytes(b"not read by this test")
            ids.append(add_asset(conn, str(path), [1.0, 0.0, 0.0], size=size))
        register(conn)
    return ids


def forms(page: str) -> dict[str, list[str]]:
    """Each per-copy form's class -> the asset ids it would delete, in page order."""
    found: dict[str, list[str]] = {}
    for kind, ids in re.findall(r'class="api-form ([a-z-]+)"[^>]*data-ids="([0-9,]*)"', page):
        found.setdefault(kind, []).append(ids)
    return found


def test_keep_any_copy_or_delete_any_one(db_url: str, tmp_path: Path) -> None:
    ids = a_group(db_url, tmp_path)
    with serving(settings_for(db_url, tmp_path)) as client:
        groups = client.get("/api/duplicates", params={"by": "semantic"}).json()
        assert [c["asset_id"] for c in groups[0]["copies"]] == [ids[1], ids[0], ids[2]]
        page = client.get("/duplicates?by=semantic", headers=HTML)
        assert page.status_code == 200
        offered = forms(page.text)
        listed = [ids[1], ids[0], ids[2]]
        assert offered["delete-copy"] == [str(i) for i in listed]
        assert offered["keep-copy"] == [
            ",".join(str(o) for o in listed if o != kept) for kept in listed
        ]
        assert offered["keep-best"] == [f"{ids[0]},{ids[2]}"]
        # Keep the first copy (not the suggested one): its form deletes the other two.
        keep_first = offered["keep-copy"][1]
        wanted = [int(i) for i in keep_first.split(",")]
        done = client.post("/api/duplicates/delete", json={"asset_ids": wanted})
        assert done.status_code == 200, done.text
        assert sorted(d["asset_id"] for d in done.json()["deleted"]) == sorted([ids[1], ids[2]])
        assert client.get(f"/api/assets/{ids[0]}").status_code == 200
        for gone in (ids[1], ids[2]):
            assert client.get(f"/api/assets/{gone}").status_code == 404
        assert all((tmp_path / f"copy{n}.jpg").exists() for n in range(3))
        assert client.get("/api/duplicates", params={"by": "semantic"}).json() == []
        bad = client.post("/api/duplicates/delete", json={"asset_ids": []})
        assert bad.status_code == 400


def test_the_analyst_role_cannot_delete_duplicates(db_url: str, tmp_path: Path) -> None:
    ids = a_group(db_url, tmp_path)
    settings = settings_for(db_url, tmp_path, writer_role="semsql_analyst")
    with serving(settings) as client:
        refused = client.post("/api/duplicates/delete", json={"asset_ids": [ids[0]]})
        assert refused.status_code == 403, refused.text
        assert client.get(f"/api/assets/{ids[0]}").status_code == 200
