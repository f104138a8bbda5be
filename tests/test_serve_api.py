"""The HTTP API of `semsql serve` against the real database and a real worker with the tiny
models: upload -> job -> completed -> searchable, and each error's status."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from corpus import make_xmp_packet
from PIL import Image
from serve_support import (
    astronaut_jpeg,
    coloured_png,
    jpeg,
    live_server,
    only_stages,
    running_worker,
    serving,
    settings_for,
    wait_for,
)

from semsql.serve import async_search


def finished(client, job_id: int) -> dict:
    def done() -> dict | None:
        job = client.get(f"/api/jobs/{job_id}").json()
        return job if job["status"] in ("completed", "failed") else None

    return wait_for(done)


def test_an_upload_becomes_a_job_that_completes_and_is_searchable(
    db_url: str, tmp_path: Path, tiny_models: dict[str, str]
) -> None:
    with running_worker(db_url, tiny_models), serving(settings_for(db_url, tmp_path)) as client:
        answer = client.post(
            "/api/assets",
            files=[
                ("files", ("astronaut.jpg", astronaut_jpeg(), "image/jpeg")),
                ("files", ("notes.jpg", b"this is no image at all", "image/jpeg")),
            ],
            data={"caption": "an astronaut in a white spacesuit", "tags": "nasa, space"},
        )
        other = client.post(
            "/api/assets",
            files={"files": ("red.png", coloured_png((200, 30, 30)), "image/png")},
            data={"caption": "a plain red square", "tags": "space"},
        )
        assert finished(client, other.json()["job_id"])["status"] == "completed"
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        job = finished(client, job_id)
        assert job["status"] == "completed", job
        assert (job["new_count"], job["failed_count"]) == (1, 1)
        assert [error["code"] for error in job["errors"]] == ["not_an_image"]
        assert {asset["status"] for asset in job["assets"]} == {"ready"}
        assert any(job_id == listed["id"] for listed in client.get("/api/jobs").json())

        found = client.get("/api/search", params={"query": "astronaut spacesuit", "k": 5})
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]
        assert hits[0]["uri"].endswith("/astronaut.jpg")
        assert "keyword" in hits[0]["matched_by"]
        unmatched = {"query": "astronaut spacesuit", "tag": "no such tag"}
        assert client.get("/api/search", params=unmatched).json()["hits"] == []
        tagged = client.get("/api/search", params=[("tag", "nasa"), ("tag", "space")]).json()
        assert len(tagged["hits"]) == 2
        both = [("tag", "nasa"), ("tag", "space"), ("tags_match", "all")]
        assert len(client.get("/api/search", params=both).json()["hits"]) == 1

        asset_id = hits[0]["asset_id"]
        facts = client.get(f"/api/assets/{asset_id}").json()
        assert facts["caption"] == "an astronaut in a white spacesuit"
        stated = {tag["label"] for tag in facts["tags"] if tag["source"] == "user"}
        assert stated == {"nasa", "space"}
        assert facts["faces"] and len(facts["faces"][0]["box"]) == 4  # MTCNN found her face
        assert [job["id"] for job in facts["jobs"]] == [job_id]
        assert set(facts["similar"]) == {"semantic", "content"}


def test_uploaded_files_stay_in_the_media_folder_with_safe_names(
    db_url: str, tmp_path: Path
) -> None:
    settings = settings_for(db_url, tmp_path)
    only_stages(db_url, ())
    with serving(settings) as client:
        names = ["../../escape.png", "..\\..\\win.png", "/etc/passwd.png", ".hidden.png", "ü ñ.png"]
        files = [("files", (name, coloured_png((9 * i, 40, 90)), "image/png"))
                 for i, name in enumerate(names)]  # fmt: skip
        job_id = client.post("/api/assets", files=files).json()["job_id"]
        job = finished(client, job_id)
    stored = sorted(Path(item["uri"]) for item in job["assets"])
    assert len(stored) == len(names)
    for path in stored:
        assert path.resolve().is_relative_to(settings.media_dir)
        assert path.parent.parent == settings.media_dir / "uploads"
    assert sorted(path.name for path in stored) == sorted(
        ["escape.png", "win.png", "passwd.png", "hidden.png", "u_n.png"]
    )
    assert not (tmp_path / "escape.png").exists()


def test_a_thumbnail_is_upright_and_cached(db_url: str, tmp_path: Path) -> None:
    image = Image.new("RGB", (60, 40), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: turn 90 degrees clockwise to view
    data = jpeg(image, exif=exif)
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        job_id = client.post("/api/assets", files=[("files", ("turned.jpg", data, "image/jpeg"))])
        job = finished(client, job_id.json()["job_id"])
        asset_id = job["assets"][0]["asset_id"]
        first = client.get(f"/api/assets/{asset_id}/thumbnail", params={"size": 100})
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(first.content)).size == (40, 60)
        cached = list((tmp_path / "thumbnails").rglob("*-128.jpg"))
        assert len(cached) == 1
        again = client.get(f"/api/assets/{asset_id}/thumbnail", params={"size": 128})
        assert again.content == first.content
        assert client.get(f"/api/assets/{asset_id}/thumbnail?size=5000").status_code == 400


def test_similar_to_an_uploaded_image_by_content(db_url: str, tmp_path: Path) -> None:
    with serving(settings_for(db_url, tmp_path)) as client:
        only_stages(db_url, ("content",))
        original = astronaut_jpeg()
        job = client.post("/api/assets", files=[("files", ("a.jpg", original, "image/jpeg"))])
        job_id = job.json()["job_id"]
        from semsql.embedder.worker import Worker, WorkerOptions

        Worker(db_url, WorkerOptions(stages=("content",), until_idle=True)).run()
        assert finished(client, job_id)["status"] == "completed"
        smaller = Image.open(io.BytesIO(original)).resize((256, 256))
        found = client.post(
            "/api/search/image",
            files={"file": ("copy.jpg", jpeg(smaller), "image/jpeg")},
            data={"by": "content"},
        )
        assert found.status_code == 200, found.text
        hits = found.json()["hits"]
        assert [hit["matched_by"] for hit in hits] == ["content"]
        assert hits[0]["uri"].endswith("/a.jpg")


@pytest.fixture
def client(db_url: str, tmp_path: Path):
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path, max_upload_bytes=200_000, max_files=3)) as client:
        yield client


@pytest.mark.parametrize(
    "params",
    [
        {"k": 0},
        {"k": "many"},
        {"offset": -1},
        {"order": "random"},
        {"metadata": "{not json"},
        {"metadata": "[1, 2]"},
        {"taken_after": "yesterday"},
        {"min_score": "nan"},
        {"image_weight": -1},
        {"tags_match": "some"},
        {"media_type": "gif"},
        {"min_duration": -1},
    ],
)
def test_bad_search_parameters_are_400(client, params: dict) -> None:
    answer = client.get("/api/search", params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["status"] == 400 and error["message"]


def test_media_type_and_duration_filter_the_search(client, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms)
               VALUES ('/v/clip.mp4', repeat('c', 64), 'video', 12000),
                      ('/v/photo.jpg', repeat('d', 64), 'image', NULL)"""
        )
    uris = {
        query: [hit["uri"] for hit in client.get(f"/api/search?{query}").json()["hits"]]
        for query in ("media_type=video", "media_type=image", "min_duration=20", "max_duration=20")
    }
    assert uris == {
        "media_type=video": ["/v/clip.mp4"],
        "media_type=image": ["/v/photo.jpg"],
        "min_duration=20": [],
        "max_duration=20": ["/v/clip.mp4"],
    }


def test_a_video_is_shown_by_its_frames(client, db_url: str) -> None:
    def jpeg(colour: tuple[int, int, int]) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(buffer, "JPEG")
        return buffer.getvalue()

    with psycopg.connect(db_url, autocommit=True) as conn:
        (video_id,) = conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms)
               VALUES ('/v/clip.mp4', repeat('e', 64), 'video', 8000) RETURNING id"""
        ).fetchone()
        assert client.get(f"/api/assets/{video_id}/thumbnail").status_code == 404  # none yet
        frames = [(0, (200, 0, 0)), (4000, (0, 0, 200))]
        frame_ids = [
            conn.execute(
                """INSERT INTO semsql.frames (asset_id, at_ms, width, height, jpeg, model)
                   VALUES (%s, %s, 64, 48, %s, 'sampler') RETURNING id""",
                [video_id, at, jpeg(colour)],
            ).fetchone()[0]
            for at, colour in frames
        ]
        conn.execute(
            """INSERT INTO semsql.faces (asset_id, frame_id, box, detector)
               VALUES (%s, %s, '{8,8,40,40}', 'mtcnn')""",
            [video_id, frame_ids[1]],
        )
        (face_id,) = conn.execute(
            "SELECT id FROM semsql.faces WHERE asset_id = %s", [video_id]
        ).fetchone()

    def colour(path: str) -> tuple[int, ...]:
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        with Image.open(io.BytesIO(answer.content)) as image:
            return image.convert("RGB").getpixel((image.width // 2, image.height // 2))

    first, later = (
        colour(f"/api/assets/{video_id}/thumbnail"),
        colour(f"/api/assets/{video_id}/thumbnail?at=3.5"),
    )
    assert first[0] > 150 > first[2] and later[2] > 150 > later[0]  # red at 0 s, blue at 4 s
    assert colour(f"/api/faces/{face_id}/crop")[2] > 150  # cropped from the blue frame
    page = client.get("/?media_type=video")
    assert page.status_code == 200 and "▶ video" in page.text
    shown = client.get(f"/assets/{video_id}")
    assert shown.status_code == 200
    assert shown.text.count(f"/api/assets/{video_id}/thumbnail?size=256&amp;at=") == 2
    assert "▶ 0:00:04 · 1 face(s)" in shown.text and f"face {face_id} at 4.0 s" in shown.text
    assert 'class="face-box"' not in shown.text  # the face is in a frame, not the first one


def test_unknown_things_are_404(client) -> None:
    for path in ("/api/assets/999", "/api/jobs/999", "/api/assets/999/thumbnail",
                 "/api/faces/999/crop", "/api/nothing"):  # fmt: skip
        answer = client.get(path)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"]["message"]
    like = client.get("/api/search", params={"like_asset": 999})
    assert like.status_code == 404 and "no asset has id 999" in like.json()["error"]["message"]


def test_too_large_uploads_are_413_and_store_nothing(client, tmp_path: Path) -> None:
    big = b"\xff\xd8\xff\xe0" + b"0" * 300_000
    answer = client.post("/api/assets", files=[("files", ("big.jpg", big, "image/jpeg"))])
    assert answer.status_code == 413 and "limit" in answer.json()["error"]["message"]
    many = [("files", (f"{n}.png", coloured_png((n, n, n)), "image/png")) for n in range(4)]
    answer = client.post("/api/assets", files=many)
    assert answer.status_code == 413 and "4 files" in answer.json()["error"]["message"]
    assert not list((tmp_path / "media").rglob("*.*"))
    assert client.get("/api/jobs").json() == []


def test_a_file_over_the_size_limit_is_413_and_leaves_nothing_in_the_media_folder(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path, max_file_bytes=50_000)) as client:
        files = [
            ("files", ("small.png", coloured_png((1, 2, 3)), "image/png")),
            ("files", ("big.jpg", b"\xff\xd8\xff\xe0" + b"0" * 80_000, "image/jpeg")),
            ("files", ("after.png", coloured_png((4, 5, 6)), "image/png")),
        ]
        answer = client.post("/api/assets", files=files)
        assert answer.status_code == 413, answer.text
        assert "big.jpg is over the 50,000-byte limit" in answer.json()["error"]["message"]
        assert not list((tmp_path / "media").rglob("*.*"))  # small.png, written first, too
        assert client.get("/api/jobs").json() == []
        with psycopg.connect(db_url) as conn:  # nor its asset, which the stream stored first
            assert conn.execute("SELECT count(*) FROM semsql.assets").fetchone() == (0,)
        assert client.post("/api/assets", files=files[:1]).status_code == 202  # still serving


def test_one_bad_part_fails_alone_and_facts_may_follow_the_files(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        files = [
            ("files", ("a.png", coloured_png((10, 20, 30)), "image/png")),
            ("files", ("broken.jpg", b"\xff\xd8\xff\xe0 cut short", "image/jpeg")),
            ("files", ("a.png", coloured_png((30, 20, 10)), "image/png")),
        ]
        # curl -F sends the fields in the order given: here after the files
        body, content_type = multipart(files, {"caption": "two squares", "tags": "red; blue"})
        answer = client.post("/api/assets", content=body, headers={"content-type": content_type})
        assert answer.status_code == 202, answer.text
        job = finished(client, answer.json()["job_id"])
        assert (job["new_count"], job["failed_count"]) == (2, 1)
        assert [error["code"] for error in job["errors"]] == ["corrupt"]
        stored = sorted(Path(asset["uri"]).name for asset in job["assets"])
        assert stored == ["a-1.png", "a.png"]
        facts = client.get(f"/api/assets/{job['assets'][0]['asset_id']}").json()
        assert facts["caption"] == "two squares"
        assert {tag["label"] for tag in facts["tags"]} >= {"red", "blue"}


def test_a_sidecar_uploaded_after_its_image_is_read_with_it(db_url: str, tmp_path: Path) -> None:
    """The image is probed as soon as it is stored, before its sidecar has arrived: the
    sidecar still reaches the asset (as `semsql ingest` reads a folder), and is no asset."""
    only_stages(db_url, ())
    xmp = make_xmp_packet(description="low tide at dawn", keywords=["harbour"])
    with serving(settings_for(db_url, tmp_path)) as client:
        files = [
            ("files", ("beach.png", coloured_png((90, 120, 200)), "image/png")),
            ("files", ("beach.xmp", xmp.encode(), "application/rdf+xml")),
        ]
        job = finished(client, client.post("/api/assets", files=files).json()["job_id"])
        assert (job["new_count"], job["skipped_count"], job["failed_count"]) == (1, 1, 0), job
        assert job["skipped_reasons"] == {"sidecar": 1}
        facts = client.get(f"/api/assets/{job['assets'][0]['asset_id']}").json()
    assert facts["caption"] == "low tide at dawn"
    assert "harbour" in {tag["label"] for tag in facts["tags"]}


def test_an_upload_is_ingested_as_its_body_arrives(db_url: str, tmp_path: Path) -> None:
    """With its fields before its files, an upload's files are stored while the rest of the
    body is still on its way: its job started before the last file was sent. Another upload
    meanwhile is not held up behind it."""
    only_stages(db_url, ())
    boundary = "semsqlslowboundary"

    def part(headers: str, data: bytes) -> bytes:
        return f"--{boundary}\r\nContent-Disposition: form-data; {headers}\r\n\r\n".encode() + (
            data + b"\r\n"
        )

    def database_now() -> datetime:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT clock_timestamp()").fetchone()[0]

    first = part('name="tags"', b"harbour") + part(
        'name="files"; filename="first.png"', coloured_png((10, 20, 30))
    )
    last = part('name="files"; filename="last.png"', coloured_png((30, 20, 10)))
    last += f"--{boundary}--\r\n".encode()
    sent_last: list[datetime] = []
    meanwhile: list[httpx.Response] = []

    def slow_body(base: str) -> Iterator[bytes]:
        yield first
        time.sleep(1.0)  # the first file is stored, probed and ingested meanwhile
        other = ("files", ("other.png", coloured_png((5, 5, 5)), "image/png"))
        meanwhile.append(httpx.post(f"{base}/api/assets", files=[other], timeout=60))
        sent_last.append(database_now())
        yield last

    headers = {"content-type": f"multipart/form-data; boundary={boundary}",
               "content-length": str(len(first) + len(last))}  # fmt: skip
    with live_server(settings_for(db_url, tmp_path)) as base:
        answer = httpx.post(
            f"{base}/api/assets", content=slow_body(base), headers=headers, timeout=60
        )
        assert answer.status_code == 202, answer.text
        assert meanwhile[0].status_code == 202, meanwhile[0].text  # before the first's end
        job_id, other_id = answer.json()["job_id"], meanwhile[0].json()["job_id"]
        with httpx.Client(base_url=base) as client:
            other = finished(client, other_id)
    assert (other["status"], other["new_count"]) == ("completed", 1)
    with psycopg.connect(db_url) as conn:
        started, ingested, new = conn.execute(
            "SELECT started_at, ingested_at, new_count FROM semsql.jobs WHERE id = %s", [job_id]
        ).fetchone()
        tags = conn.execute("SELECT count(*) FROM semsql.tags WHERE label = 'harbour'").fetchone()
    assert new == 2 and tags == (2,)
    assert started < sent_last[0] < ingested


def multipart(files: list, fields: dict[str, str]) -> tuple[bytes, str]:
    """A multipart body with the files first, then the fields (as curl -F files=@.. -F k=v)."""
    boundary = "semsqltestboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"'
        f"\r\nContent-Type: {kind}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, (filename, data, kind) in files
    ] + [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_malformed_upload_is_400_and_leaves_nothing(client, tmp_path: Path) -> None:
    body, content_type = multipart([("files", ("a.png", coloured_png((1, 1, 1)), "image/png"))], {})
    cut = body[: len(body) // 2]
    answer = client.post("/api/assets", content=cut, headers={"content-type": content_type})
    assert answer.status_code == 400 and "malformed" in answer.json()["error"]["message"]
    plain = client.post("/api/assets", content=b"x", headers={"content-type": "text/plain"})
    assert plain.status_code == 400 and "multipart/form-data" in plain.json()["error"]["message"]
    assert not list((tmp_path / "media").rglob("*.*"))
    assert client.get("/api/jobs").json() == []


def test_a_decompression_bomb_is_413_for_a_search_and_a_failed_file_for_an_upload(
    db_url: str, tmp_path: Path
) -> None:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path, max_pixels=10_000)) as client:
        bomb = coloured_png((1, 2, 3), (200, 200))
        found = client.post("/api/search/image", files={"file": ("b.png", bomb, "image/png")})
        assert found.status_code == 413, found.text
        job = client.post("/api/assets", files=[("files", ("b.png", bomb, "image/png"))])
        assert job.status_code == 202
        done = finished(client, job.json()["job_id"])
        assert [error["code"] for error in done["errors"]] == ["decompression_bomb"]


def test_what_is_no_image_is_415(client) -> None:
    text = [("files", ("notes.jpg", b"just some words, no picture", "image/jpeg"))]
    answer = client.post("/api/assets", files=text)
    assert answer.status_code == 415, answer.text
    assert "not an image" in answer.json()["error"]["message"]
    found = client.post("/api/search/image", files={"file": ("x.png", b"words", "image/png")})
    assert found.status_code == 415
    assert client.get("/api/jobs").json() == []


def test_a_text_query_without_a_worker_is_503(db_url: str, client) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT semsql.register_vector_space('text', 'some-model', 384)")
    answer = client.get("/api/search", params={"query": "children in snow"})
    assert answer.status_code == 503, answer.text
    assert "semsql worker" in answer.json()["error"]["message"]
    partial = client.get("/api/search", params={"query": "children in snow", "partial": "true"})
    assert partial.status_code == 200
    assert any("leaves out the text signal" in notice for notice in partial.json()["notices"])
    assert client.get("/api/search", params={"tag": "snow"}).status_code == 200


def test_reads_act_as_the_analyst_and_writes_as_the_editor(db_url: str, tmp_path: Path) -> None:
    with serving(settings_for(db_url, tmp_path)) as client:
        database = client.app.state.context.database
        with database.reader() as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("semsql_analyst",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM semsql.assets")
        with database.writer() as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("semsql_editor",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE semsql.stages SET enabled = false")
            conn.rollback()


def test_openapi_documents_the_api(client) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/api/assets", "/api/search", "/api/jobs/{job_id}", "/api/search/image"} <= set(
        schema["paths"]
    )
    parameters = {p["name"] for p in schema["paths"]["/api/search"]["get"]["parameters"]}
    wanted = {"query", "article", "tag", "exclude", "k", "offset", "order", "image_weight"}
    assert wanted <= parameters
    upload = schema["paths"]["/api/assets"]["post"]["requestBody"]["content"]
    fields = upload["multipart/form-data"]["schema"]["properties"]
    assert set(fields) == {"files", "caption", "tags", "people", "collection"}


def test_errors_never_show_a_traceback(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(async_search, "statement", broken)  # GET /api/search's
    with serving(settings_for(db_url, tmp_path), raise_server_exceptions=False) as client:
        answer = client.get("/api/search", params={"tag": "x"})
    assert answer.status_code == 500
    assert "secret" not in answer.text and "Traceback" not in answer.text


def test_a_search_the_database_cannot_run_is_500_and_logged(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> bytes:
        return b"SELECT * FROM semsql.no_such_relation"  # 42P01: a bug, not the caller's

    monkeypatch.setattr(async_search, "statement", broken)
    with serving(settings_for(db_url, tmp_path), raise_server_exceptions=False) as client:
        answer = client.get("/api/search", params={"tag": "x"})
        not_allowed = client.post("/api/search", params={"tag": "x"})  # FastAPI's routing
    assert answer.status_code == 500 and answer.json()["error"]["status"] == 500
    assert "no_such_relation" not in answer.text
    assert "GET /api/search failed" in caplog.text and "no_such_relation" in caplog.text
    assert not_allowed.status_code == 405


def test_every_page_renders_and_a_bad_page_url_is_an_html_error(client) -> None:
    html = {"Accept": "text/html"}
    for path in ("/", "/?query=snow&tag=x&order=newest", "/people", "/duplicates", "/jobs"):
        answer = client.get(path, headers=html)
        assert answer.status_code == 200, (path, answer.text)
        assert answer.headers["content-type"].startswith("text/html")
        assert 'name="csrf-token"' in answer.text
    bad = client.get("/?k=0", headers=html)
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/html")
    assert "k:" in bad.text
    missing = client.get("/assets/999", headers=html)
    assert missing.status_code == 404 and "no asset has id 999" in missing.text


def test_failed_tasks_are_retried_through_the_api(db_url: str, client) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = true WHERE name = 'content'")
    job = client.post(
        "/api/assets", files=[("files", ("a.png", coloured_png((1, 2, 3)), "image/png"))]
    )
    assert job.status_code == 202
    with psycopg.connect(db_url, autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM semsql.tasks").fetchone()[0])
        conn.execute("UPDATE semsql.tasks SET status = 'failed', last_error = 'disk on fire'")
    page = client.get("/jobs", headers={"Accept": "text/html"})
    assert "disk on fire" in page.text
    assert client.post("/api/tasks/retry", json={}).json() == {"queued": 1}
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT status FROM semsql.tasks").fetchall() == [("pending",)]
