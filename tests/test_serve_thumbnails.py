"""Cached thumbnails of videos: the frame's JPEG is read from the database only to make one.
A cached thumbnail (or face crop) is served without reading the frame at all."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from serve_support import jpeg, only_stages, serving, settings_for

from semsql.serve import facts


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        yield client


@pytest.fixture
def frame_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the frames whose JPEG the server reads (facts.frame_jpeg, called through)."""
    reads: list[int] = []
    read = facts.frame_jpeg

    def counted(conn: psycopg.Connection, frame_id: int) -> bytes:
        reads.append(frame_id)
        return read(conn, frame_id)

    monkeypatch.setattr(facts, "frame_jpeg", counted)
    return reads


def a_video(db_url: str) -> tuple[int, int, int]:
    """A video with one blue frame at 2 s and a face in it: (asset, frame, face) ids."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        (video,) = conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms)
               VALUES ('/v/clip.mp4', repeat('f', 64), 'video', 5000) RETURNING id"""
        ).fetchone()
        (frame,) = conn.execute(
            """INSERT INTO semsql.frames (asset_id, at_ms, width, height, jpeg, model)
               VALUES (%s, 2000, 64, 48, %s, 'sampler') RETURNING id""",
            [video, jpeg(Image.new("RGB", (64, 48), (0, 0, 200)))],
        ).fetchone()
        (face,) = conn.execute(
            """INSERT INTO semsql.faces (asset_id, frame_id, box, detector)
               VALUES (%s, %s, '{8,8,40,40}', 'mtcnn') RETURNING id""",
            [video, frame],
        ).fetchone()
    return video, frame, face


def blue(answer) -> bool:
    assert answer.status_code == 200, answer.text
    with Image.open(io.BytesIO(answer.content)) as image:
        red, _, blue = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
    return blue > 150 > red


def test_a_cached_video_thumbnail_reads_no_frame(client, db_url: str, frame_reads) -> None:
    video, frame, _ = a_video(db_url)
    made = client.get(f"/api/assets/{video}/thumbnail", params={"size": 128})
    assert blue(made) and frame_reads == [frame]
    again = client.get(f"/api/assets/{video}/thumbnail", params={"size": 128, "at": 1.5})
    assert again.content == made.content and frame_reads == [frame]
    tag = made.headers["etag"]
    unchanged = client.get(
        f"/api/assets/{video}/thumbnail?size=128", headers={"if-none-match": tag}
    )
    assert unchanged.status_code == 304 and frame_reads == [frame]
    # Another size is made from the frame: read once more.
    assert blue(client.get(f"/api/assets/{video}/thumbnail", params={"size": 512}))
    assert frame_reads == [frame, frame]
    # What the cache holds is served even when the frame's JPEG could not be decoded now.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.frames SET jpeg = 'not a jpeg' WHERE id = %s", [frame])
    assert client.get(f"/api/assets/{video}/thumbnail?size=128").content == made.content
    assert frame_reads == [frame, frame]
    refused = client.get(f"/api/assets/{video}/thumbnail", params={"size": 1024})
    assert refused.status_code == 404 and "no thumbnail" in refused.json()["error"]["message"]


def test_a_cached_face_crop_of_a_video_reads_no_frame(client, db_url: str, frame_reads) -> None:
    _, frame, face = a_video(db_url)
    made = client.get(f"/api/faces/{face}/crop")
    assert blue(made) and frame_reads == [frame]
    assert client.get(f"/api/faces/{face}/crop").content == made.content
    assert frame_reads == [frame]


def test_a_video_without_frames_has_no_thumbnail(client, db_url: str, frame_reads) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        (video,) = conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms)
               VALUES ('/v/empty.mp4', repeat('0', 64), 'video', 5000) RETURNING id"""
        ).fetchone()
    answer = client.get(f"/api/assets/{video}/thumbnail")
    assert answer.status_code == 404 and "no frames sampled" in answer.json()["error"]["message"]
    assert frame_reads == []
