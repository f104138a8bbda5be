"""The people page's edits through the API, against the real database: merge two people or two
clusters, "not this person", the match threshold. Each runs as the editor role, needs the
page's CSRF token from a browser and the token on a token server, and is refused to the
analyst role."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from serve_support import only_stages, serving, settings_for
from test_people import axis, enrol, match_of, mix, new_asset, write_face

from semsql import database

TOKEN = "correct-horse-battery-staple"
HTML = {"Accept": "text/html"}


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    only_stages(db_url, ())
    with database.connect(db_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def client(db: psycopg.Connection, db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with serving(settings_for(db_url, tmp_path)) as client:
        yield client


def two_people(db: psycopg.Connection) -> int:
    """Ana (axis 0) and Bea (axis 1) enrolled, and a face 0.8 like Ana and 0.6 like Bea."""
    enrol(db, "Ana", axis(0))
    enrol(db, "Bea", axis(1))
    return write_face(db, new_asset(db, "party.jpg"), mix(0, 1, 0.8))


def two_clusters(db: psycopg.Connection) -> list[int]:
    asset = new_asset(db, "crowd.jpg")
    for person, others in ((10, 20), (11, 30)):
        for i in range(2):
            write_face(db, asset, mix(person, others + i, 0.85))
    assert db.execute("SELECT semsql.refresh_face_clusters()").fetchone() == (2,)
    return [row[0] for row in db.execute("SELECT id FROM semsql.face_clusters ORDER BY id")]


def test_not_this_person_unlinks_a_face_for_good(db, client) -> None:
    face = two_people(db)
    assert match_of(db, face)[0] == "Ana"
    answer = client.post(f"/api/faces/{face}/not-person")
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert (said["face_id"], said["rejected"], said["person"]) == (face, "Ana", "Bea")
    assert said["match_confidence"] == pytest.approx(0.6, abs=1e-3)
    # Matching everything again, as a new threshold does, keeps the rejection.
    db.execute("SELECT semsql.match_faces()")
    assert match_of(db, face)[0] == "Bea"
    again = client.post(f"/api/faces/{face}/not-person").json()
    assert (again["rejected"], again["person"], again["match_confidence"]) == ("Bea", None, None)
    db.execute("SELECT semsql.match_faces()")
    assert match_of(db, face) == (None, None)
    unlinked = client.post(f"/api/faces/{face}/not-person")
    assert unlinked.status_code == 409 and "not linked" in unlinked.json()["error"]["message"]
    assert client.post("/api/faces/999999/not-person").status_code == 404
    assert client.post("/api/faces/0/not-person").status_code == 400


def test_rejections_are_listed_and_undone(db, client) -> None:
    face = two_people(db)
    ana = db.execute("SELECT id FROM semsql.people WHERE name = 'Ana'").fetchone()[0]
    assert client.get("/api/people/rejections").json() == []
    client.post(f"/api/faces/{face}/not-person")  # now Bea's, and not Ana's
    listed = client.get("/api/people/rejections").json()
    assert [(r["face_id"], r["person_id"], r["rejected"], r["person"]) for r in listed] == [
        (face, ana, "Ana", "Bea")
    ]
    page = client.get("/people", headers=HTML).text
    undo = f'data-action="/api/faces/{face}/not-person/{ana}"'
    assert f'id="rejections-{ana}"' in page and undo in page and "now Bea" in page
    answer = client.delete(f"/api/faces/{face}/not-person/{ana}")
    assert answer.status_code == 200, answer.text
    said = answer.json()
    assert (said["face_id"], said["restored"], said["person"]) == (face, "Ana", "Ana")
    assert said["match_confidence"] == pytest.approx(0.8, abs=1e-3)  # as matching gives it
    assert match_of(db, face)[0] == "Ana"
    assert client.get("/api/people/rejections").json() == []
    assert undo not in client.get("/people", headers=HTML).text
    again = client.delete(f"/api/faces/{face}/not-person/{ana}")
    assert again.status_code == 404 and "not said not to be" in again.json()["error"]["message"]
    assert client.delete(f"/api/faces/{face}/not-person/0").status_code == 400


def test_merge_two_people(db, client) -> None:
    face = two_people(db)
    client.post(f"/api/faces/{face}/not-person")  # now Bea's, and not Ana's
    answer = client.post("/api/people/merge", json={"person": "Bea", "into": "Ana"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"person": "Bea", "into": "Ana", "faces_moved": 1}
    names = [person["name"] for person in client.get("/api/people").json()["people"]]
    assert names == ["Ana"]
    # It was said not to be Ana: merged into Ana, it looks again and matches nobody.
    assert match_of(db, face) == (None, None)
    missing = client.post("/api/people/merge", json={"person": "Nobody", "into": "Ana"})
    assert missing.status_code == 404 and "no person named" in missing.json()["error"]["message"]
    same = client.post("/api/people/merge", json={"person": "ana", "into": "Ana"})
    assert same.status_code == 400 and "same person" in same.json()["error"]["message"]
    assert client.post("/api/people/merge", json={"person": "", "into": "Ana"}).status_code == 400


def test_merge_two_clusters(db, client) -> None:
    first, second = two_clusters(db)
    answer = client.post(f"/api/clusters/{first}/merge", json={"into": second})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cluster_id": second, "merged": first, "faces_moved": 2}
    clusters = client.get("/api/people").json()["clusters"]
    assert [(c["cluster_id"], c["faces"]) for c in clusters] == [(second, 4)]
    gone = client.post(f"/api/clusters/{first}/merge", json={"into": second})
    assert gone.status_code == 404 and "no face cluster" in gone.json()["error"]["message"]
    itself = client.post(f"/api/clusters/{second}/merge", json={"into": second})
    assert itself.status_code == 400
    assert client.post(f"/api/clusters/{second}/merge", json={"into": 0}).status_code == 400
    assert client.post(f"/api/clusters/{second}/merge", json={}).status_code == 400


def test_the_match_threshold_is_shown_and_set(db, client) -> None:
    face = two_people(db)
    assert client.get("/api/people/threshold").json() == {
        "match_threshold": 0.4,
        "model_thresholds": [{"model": "dlib", "match_threshold": 0.92}],
    }
    assert client.get("/api/people").json()["match_threshold"] == 0.4
    page = client.get("/people", headers=HTML).text
    assert re.search(r'id="match-threshold"[^>]*value="0.4"', page)
    answer = client.post("/api/people/threshold", json={"threshold": 0.85})
    assert answer.status_code == 200, answer.text
    assert answer.json()["match_threshold"] == 0.85
    assert answer.json()["faces_changed"] == 1
    assert match_of(db, face) == (None, None)  # 0.8 like Ana: below the threshold now
    per_model = client.post("/api/people/threshold", json={"threshold": 0.9, "model": "dlib"})
    assert per_model.json()["model_thresholds"] == [{"model": "dlib", "match_threshold": 0.9}]
    for bad in ({"threshold": 1.5}, {"threshold": -0.1}, {}, {"threshold": "high"}):
        refused = client.post("/api/people/threshold", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
    assert client.get("/api/people/threshold").json()["match_threshold"] == 0.85


def test_the_people_page_offers_each_edit(db, client) -> None:
    face = two_people(db)
    clusters = two_clusters(db)
    page = client.get("/people", headers=HTML)
    assert page.status_code == 200
    assert f'data-action="/api/faces/{face}/not-person"' in page.text
    assert 'data-action="/api/people/merge"' in page.text
    for cluster in clusters:
        assert f'data-action="/api/clusters/{cluster}/merge"' in page.text
    assert 'data-action="/api/people/threshold"' in page.text
    asset = db.execute("SELECT asset_id FROM semsql.faces WHERE id = %s", [face]).fetchone()[0]
    shown = client.get(f"/assets/{asset}", headers=HTML).text
    assert f'data-action="/api/faces/{face}/not-person"' in shown and "not Ana" in shown


EDITS = [
    ("POST", "/api/people/merge", {"person": "Bea", "into": "Ana"}),
    ("POST", "/api/faces/{face}/not-person", {}),
    ("DELETE", "/api/faces/{rejected}/not-person/{ana}", None),
    ("POST", "/api/clusters/{cluster}/merge", {"into": "{other}"}),
    ("POST", "/api/people/threshold", {"threshold": 0.5}),
]


def _edits(db: psycopg.Connection) -> list[tuple[str, str, dict | None]]:
    face = two_people(db)
    rejected = write_face(db, new_asset(db, "team.jpg"), mix(0, 2, 0.9))
    db.execute("SELECT semsql.reject_face_person(%s)", [rejected])  # not Ana
    ana = db.execute("SELECT id FROM semsql.people WHERE name = 'Ana'").fetchone()[0]
    cluster, other = two_clusters(db)
    made = []
    for method, path, body in EDITS:
        path = path.format(face=face, rejected=rejected, ana=ana, cluster=cluster)
        given = (
            None if body is None else {k: (other if v == "{other}" else v) for k, v in body.items()}
        )
        made.append((method, path, given))
    return made


def test_edits_need_the_token_and_the_csrf_token(db, db_url: str, tmp_path: Path) -> None:
    edits = _edits(db)
    with serving(settings_for(db_url, tmp_path, token=TOKEN)) as client:
        for method, path, body in edits:
            assert client.request(method, path, json=body).status_code == 401, path
        client.post("/login", data={"token": TOKEN})
        csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/people").text)
        assert csrf is not None
        for method, path, body in edits:
            assert client.request(method, path, json=body).status_code == 403, path
            wrong = {"X-CSRF-Token": "0" * 64}
            assert client.request(method, path, json=body, headers=wrong).status_code == 403
        unchanged = client.get("/api/people").json()
        assert len(unchanged["people"]) == 2 and len(unchanged["clusters"]) == 2
        assert unchanged["match_threshold"] == 0.4
        assert len(client.get("/api/people/rejections").json()) == 1
        for method, path, body in edits:
            csrf_header = {"X-CSRF-Token": csrf.group(1)}
            done = client.request(method, path, json=body, headers=csrf_header)
            assert done.status_code == 200, (path, done.text)


def test_the_analyst_role_cannot_make_these_edits(db, db_url: str, tmp_path: Path) -> None:
    edits = _edits(db)
    settings = settings_for(db_url, tmp_path, writer_role="semsql_analyst")
    with serving(settings) as client:
        for method, path, body in edits:
            refused = client.request(method, path, json=body)
            assert refused.status_code == 403, (path, refused.text)
        unchanged = client.get("/api/people").json()
        assert len(unchanged["people"]) == 2 and len(unchanged["clusters"]) == 2
        assert unchanged["match_threshold"] == 0.4
        assert len(client.get("/api/people/rejections").json()) == 1


def test_openapi_documents_the_new_edits(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/api/people/merge", "post"),
        ("/api/clusters/{cluster_id}/merge", "post"),
        ("/api/faces/{face_id}/not-person", "post"),
        ("/api/faces/{face_id}/not-person/{person_id}", "delete"),
        ("/api/people/rejections", "get"),
        ("/api/people/threshold", "get"),
        ("/api/people/threshold", "post"),
        ("/api/tasks/failed", "get"),
        ("/api/tasks/retry-reason", "post"),
        ("/api/search/facets", "get"),
    ]:
        assert method in paths.get(path, {}), (path, method)
        assert paths[path][method]["summary"]
    facets = {p["name"] for p in paths["/api/search/facets"]["get"]["parameters"]}
    assert {"query", "tag", "person", "collection", "partial"} <= facets
