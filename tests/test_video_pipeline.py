"""Videos from ingest through the worker: probed with their own errors, frames sampled once and
read by every image stage, facts linked to their frames, all gone with the video."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image

from semsql.cli.main import cli
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.testing_video import Part, write_audio_only, write_video

pytest.importorskip("av")

ASTRONAUT = Image.fromarray(skimage.data.astronaut())
CHELSEA = Image.fromarray(skimage.data.chelsea())
STAGE_OPTIONS = {"tags": {"threshold": 0.0, "max_tags": 5}}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of good and bad videos and one picture."""
    folder = tmp_path_factory.mktemp("library")
    parts = [Part(3, ASTRONAUT), Part(3, CHELSEA), Part(2, None)]
    paths = {
        "video": write_video(folder / "astronaut_then_cat.mp4", parts, size=(640, 480)),
        "webm": write_video(folder / "cat.webm", [Part(2, CHELSEA)], codec="libvpx-vp9"),
        "picture": folder / "astronaut.jpg",
        "empty": folder / "empty.mov",
        "notes": folder / "notes.mp4",
        "truncated": folder / "truncated.mp4",
        "audio": folder / "voice.mp4",
    }
    ASTRONAUT.save(paths["picture"])
    paths["empty"].write_bytes(b"")
    paths["notes"].write_text("shopping list: milk, eggs\n")
    whole = paths["video"].read_bytes()
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    write_audio_only(paths["audio"])
    return paths


def ingest(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def rows(conn: psycopg.Connection, query: str, *params) -> list[tuple]:
    return conn.execute(query, list(params)).fetchall()


def run_worker(url: str, models: dict[str, str | None]) -> None:
    options = WorkerOptions(until_idle=True, poll_interval=0.2, stage_options=STAGE_OPTIONS)
    Worker(url, options, models=models).run()


def test_bad_videos_fail_each_with_its_own_error_and_the_rest_are_stored(
    db, semsql_env, library
) -> None:
    summary = ingest(str(library["video"].parent))
    errors = {Path(e["uri"]).name: e["code"] for e in summary["errors"]}
    assert errors == {
        "empty.mov": "empty",
        "notes.mp4": "not_an_image",
        "truncated.mp4": "truncated",
        "voice.mp4": "no_video_stream",
    }
    assert summary["new"] == 3
    video = rows(
        db,
        """SELECT media_type, duration_ms, mime, width, height, metadata->'video'
           FROM semsql.assets WHERE uri LIKE '%%astronaut_then_cat.mp4'""",
    )
    assert video == [
        (
            "video",
            8000,
            "video/mp4",
            640,
            480,
            {
                "codec": "h264",
                "frame_rate": 25.0,
                "rotation": 0,
                "container": video[0][5]["container"],
            },
        )
    ]
    assert rows(db, "SELECT mime FROM semsql.assets WHERE uri LIKE '%%.webm'") == [("video/webm",)]
    # A video gets the frames stage and the image stages, not the content hash; a picture the
    # other way round.
    stages = dict(
        rows(
            db,
            """SELECT a.media_type, array_agg(t.stage ORDER BY t.stage)
               FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id
               WHERE a.uri NOT LIKE '%%.webm' GROUP BY 1""",
        )
    )
    assert "frames" in stages["video"] and "content" not in stages["video"]
    assert "frames" not in stages["image"] and "content" in stages["image"]


def test_a_video_over_the_duration_limit_fails_alone(db, semsql_env, library) -> None:
    summary = ingest(str(library["video"]), str(library["picture"]), "--max-duration", "5")
    assert [e["code"] for e in summary["errors"]] == ["too_long"]
    assert "over --max-duration 5 s" in summary["errors"][0]["error"]
    assert summary["new"] == 1


def test_every_image_stage_reads_the_frames_and_links_its_facts_to_them(
    db, semsql_env, library, tiny_models, tmp_path, monkeypatch
) -> None:
    ingest(str(library["video"]), str(library["picture"]))
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]
    (video_id,) = rows(db, "SELECT id FROM semsql.assets WHERE media_type = 'video'")[0]

    frames = rows(
        db,
        "SELECT id, at_ms, scene_cut, width, height FROM semsql.frames WHERE asset_id = %s "
        "ORDER BY at_ms",
        video_id,
    )
    # Every 2 s, the cut at 3 s; nothing from the black 6 s to 8 s.
    assert [(at, cut) for _, at, cut, _, _ in frames] == [
        (0, False),
        (2000, False),
        (3000, True),
        (5000, False),
    ]
    assert {(w, h) for *_, w, h in frames} == {(640, 480)}
    frame_at = {frame_id: at for frame_id, at, *_ in frames}

    # A CLIP vector per frame, none for the video itself.
    vectors = rows(
        db,
        "SELECT frame_id, vector_dims(embedding) FROM semsql.frame_vectors WHERE asset_id = %s",
        video_id,
    )
    assert sorted(frame_id for frame_id, _ in vectors) == sorted(frame_at)
    assert rows(
        db,
        "SELECT count(*) FROM semsql.embeddings WHERE asset_id = %s AND space = 'image'",
        video_id,
    ) == [(0,)]

    # The real MTCNN finds the astronaut's face in the frames of her part only.
    faces = rows(
        db,
        """SELECT frame_id, box, embedding IS NOT NULL, emotion IS NOT NULL
           FROM semsql.faces WHERE asset_id = %s""",
        video_id,
    )
    assert faces, "no face found in the video"
    assert {frame_at[frame_id] for frame_id, *_ in faces} <= {0, 2000}
    assert all(vector and emotion for _, _, vector, emotion in faces)
    assert all(0 <= box[0] < box[2] <= 640 and 0 <= box[1] < box[3] <= 480 for _, box, *_ in faces)

    # Captions per frame, gathered onto the video; tags gathered, one per label.
    captions = rows(db, "SELECT caption FROM semsql.frames WHERE asset_id = %s", video_id)
    assert all(caption for (caption,) in captions)
    assert rows(db, "SELECT count(*) FROM semsql.captions WHERE asset_id = %s", video_id) == [(1,)]
    # Objects per frame, each with its box in that frame; the video's labels once each.
    tags = rows(db, "SELECT frame_id, box FROM semsql.tags WHERE asset_id = %s", video_id)
    assert tags and all(frame_id in frame_at for frame_id, _ in tags)
    assert all(len(box) == 4 for _, box in tags)
    (labels,) = rows(db, "SELECT tags FROM semsql.search_documents WHERE asset_id = %s", video_id)[
        0
    ]
    assert labels and len(labels) == len(set(labels))
    assert rows(db, "SELECT count(*) FROM semsql.embeddings WHERE asset_id = %s", video_id) == [
        (1,)
    ]  # the text vector of its document

    # Searches find the video by its best frame and say when that is.
    (picture_id,) = rows(db, "SELECT id FROM semsql.assets WHERE media_type = 'image'")[0]
    hits = rows(
        db,
        "SELECT asset_id, media_type, best_at, image_score FROM semsql.search(like_asset => %s)",
        picture_id,
    )
    assert [(asset, kind) for asset, kind, _, _ in hits] == [(video_id, "video")]
    best_at = hits[0][2]
    assert best_at.total_seconds() * 1000 in frame_at.values()
    best_frame = max(
        rows(
            db,
            """SELECT 1 - (f.embedding <=> e.embedding), fr.at_ms FROM semsql.frame_vectors f
               JOIN semsql.frames fr ON fr.id = f.frame_id
               JOIN semsql.embeddings e ON e.asset_id = %s AND e.space = 'image'""",
            picture_id,
        )
    )
    assert best_at.total_seconds() * 1000 == best_frame[1]
    assert hits[0][3] == pytest.approx(best_frame[0], abs=1e-3)

    # Moments: the frames themselves, several of one video, best first, never short.
    moments_sql = """SELECT m.asset_id, m.at, m.similarity, m.rank
                     FROM semsql.embeddings e,
                          semsql.search_moments(image_embedding => e.embedding::vector,
                                                k => %s, collection => %s) AS m
                     WHERE e.asset_id = %s AND e.space = 'image' ORDER BY m.rank"""
    top = rows(db, moments_sql, 3, None, picture_id)
    assert [(asset, rank) for asset, _, _, rank in top] == [
        (video_id, 1),
        (video_id, 2),
        (video_id, 3),
    ]
    assert top[0][1] == best_at and top[0][2] == pytest.approx(best_frame[0], abs=1e-3)
    assert [similarity for _, _, similarity, _ in top] == sorted(
        (similarity for _, _, similarity, _ in top), reverse=True
    )
    assert len(rows(db, moments_sql, 100, None, picture_id)) == len(frame_at)
    monkeypatch.setenv("SEMSQL_MODEL_CLIP", tiny_models["clip"])
    found_moments = CliRunner().invoke(
        cli, ["search", "--image", str(library["picture"]), "--moments", "-n", "2", "--json"]
    )
    assert found_moments.exit_code == 0, found_moments.output
    assert [(m["asset_id"], m["rank"]) for m in json.loads(found_moments.stdout)] == [
        (video_id, 1), (video_id, 2)
    ]  # fmt: skip
    assert CliRunner().invoke(cli, ["search", "--moments"]).exit_code == 2
    assert rows(db, moments_sql, 5, "elsewhere", picture_id) == []
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="one of them"):
        db.execute("SELECT * FROM semsql.search_moments()")
    db.rollback()

    # More like the video: by what its frames show on the whole.
    like_video = rows(
        db, "SELECT asset_id, image_score FROM semsql.search(like_asset => %s)", video_id
    )
    assert [asset for asset, _ in like_video] == [picture_id]
    assert like_video[0][1] is not None

    # The media type and a video's duration are exact filters, with or without a query.
    def found(**filters: str) -> list[int]:
        named = ", ".join(f"{name} => %({name})s" for name in filters)
        statement = f"SELECT asset_id FROM semsql.search(like_asset => %(like)s, {named})"
        return [r[0] for r in db.execute(statement, {"like": picture_id, **filters})]

    assert found(media_type="video") == [video_id]
    by_vector_alone = """SELECT s.asset_id FROM semsql.embeddings e,
                                semsql.search(image_embedding => e.embedding::vector,
                                              media_type => 'video', k => 2) AS s
                         WHERE e.asset_id = %s AND e.space = 'image'"""
    assert rows(db, by_vector_alone, picture_id) == [(video_id,)]  # once, not once a frame
    # (Here an exact scan answers; through HNSW, the frames alone are grouped by video too.)
    scans = {
        kind: rows(db, "SELECT semsql.nearest_sql('image', 16, NULL, %s)", kind)[0][0]
        for kind in ("image", "video")
    }
    assert "GROUP BY" in scans["video"] and "GROUP BY" not in scans["image"]
    assert found(media_type="image") == []
    assert found(max_duration="10 seconds") == [video_id]
    assert found(min_duration="10 seconds") == []
    everything = "SELECT asset_id FROM semsql.search(media_type => %s)"
    assert [r[0] for r in db.execute(everything, ["video"])] == [video_id]
    assert [r[0] for r in db.execute(everything, ["image"])] == [picture_id]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="media_type takes"):
        db.execute(everything, ["gif"])
    db.rollback()

    # By face: the picture's face is seen in the video's first part.
    faces_found = rows(
        db,
        """SELECT h.asset_id, h.best_at FROM semsql.faces f,
               semsql.assets_with_face(f.embedding::vector, 20, f.embedding_model, 0.0) AS h
           WHERE f.asset_id = %s ORDER BY h.similarity DESC""",
        picture_id,
    )
    moments = {asset: at for asset, at in faces_found}
    assert moments[picture_id] is None
    assert moments[video_id].total_seconds() < 3
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", tiny_models["face_vectors"])
    by_face = CliRunner().invoke(cli, ["search", "--face", str(library["picture"]), "--json"])
    assert by_face.exit_code == 0, by_face.output
    seen = {hit["asset_id"]: hit["best_at"] for hit in json.loads(by_face.stdout)}
    assert seen[picture_id] is None and 0 <= seen[video_id] < 3
    # A person enrolled from the picture is recognised in the video, which a people filter
    # then finds.
    db.execute(
        """SELECT semsql.enrol_person('Eileen Collins', ARRAY[f.embedding::vector],
                                      f.embedding_model)
           FROM semsql.faces f WHERE f.asset_id = %s""",
        [picture_id],
    )
    assert rows(
        db, "SELECT DISTINCT person_id IS NOT NULL FROM semsql.faces WHERE asset_id = %s", video_id
    ) == [(True,)]
    shown_in = rows(db, "SELECT asset_id FROM semsql.search(people => ARRAY['Eileen Collins'])")
    assert sorted(asset for (asset,) in shown_in) == sorted([picture_id, video_id])

    # `semsql show` prints the frame strip; the contact sheet shows a video by its best frame.
    shown = CliRunner().invoke(cli, ["show", str(video_id), "--json"])
    assert shown.exit_code == 0, shown.output
    facts = json.loads(shown.output)
    assert (facts["media_type"], facts["duration_ms"]) == ("video", 8000)
    assert [(f["at_seconds"], f["scene_cut"]) for f in facts["frames"]] == [
        (0.0, False), (2.0, False), (3.0, True), (5.0, False)
    ]  # fmt: skip
    assert sum(f["faces"] for f in facts["frames"]) == len(faces)
    strip = tmp_path / "strip.html"
    text = CliRunner().invoke(cli, ["show", str(video_id), "--html", str(strip)])
    assert text.exit_code == 0 and "0:00:03 cut" in text.output
    assert strip.read_text().count("<img ") == 4
    sheet = tmp_path / "sheet.html"
    found_json = CliRunner().invoke(
        cli, ["search", "--like", str(picture_id), "--html", str(sheet), "--json"]
    )
    assert found_json.exit_code == 0, found_json.output
    assert json.loads(found_json.stdout)[0]["best_at"] == str(best_at)
    assert f"▶ {best_at}" in sheet.read_text()
    assert CliRunner().invoke(cli, ["show", "999999"]).exit_code == 1

    # Deleting the video deletes its frames and every fact on them.
    db.execute("DELETE FROM semsql.assets WHERE id = %s", [video_id])
    for table in ("frames", "frame_vectors", "faces", "tasks", "captions", "tags"):
        assert rows(db, f"SELECT count(*) FROM semsql.{table} WHERE asset_id = %s", video_id) == [
            (0,)
        ], table


def test_copies_of_a_video_group_and_a_shared_black_opening_does_not(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    coffee = Image.fromarray(skimage.data.coffee())
    rocket = Image.fromarray(skimage.data.rocket())
    hubble = Image.fromarray(skimage.data.hubble_deep_field())
    story = [Part(3, ASTRONAUT), Part(3, CHELSEA), Part(3, coffee)]
    videos = {
        "original": write_video(tmp_path / "original.mp4", story),
        "reencoded": write_video(
            tmp_path / "reencoded.webm", story, codec="libvpx-vp9", size=(480, 360)
        ),
        "trimmed": write_video(tmp_path / "trimmed.mp4", story[1:]),
        "rocket": write_video(tmp_path / "rocket.mp4", [Part(2, None), Part(3, rocket)]),
        "hubble": write_video(tmp_path / "hubble.mp4", [Part(2, None), Part(3, hubble)]),
    }
    ingest(*map(str, videos.values()))
    models = {**tiny_models, "caption": None, "tags": None, "emotion": None}
    run_worker(semsql_env, models)
    ids = {name: rows(db, "SELECT id FROM semsql.assets WHERE uri = %s", str(path))[0][0]
           for name, path in videos.items()}  # fmt: skip
    # The tiny random CLIP squeezes distances: copies' frames lie within 0.001 of each other,
    # frames of different pictures 0.014 apart at least (0.05, the default, is for real CLIP).
    groups = rows(
        db,
        """SELECT group_id, array_agg(asset_id ORDER BY asset_id)
           FROM semsql.duplicates(max_distance => 0.005) GROUP BY 1""",
    )
    assert [members for _, members in groups] == [
        sorted([ids["original"], ids["reencoded"], ids["trimmed"]])
    ]  # not rocket and hubble, which share only a black opening (black frames are not sampled)


def test_videos_past_a_batch_share_of_frames_wait_for_the_next_batch(
    db, semsql_env, tmp_path, tiny_models, monkeypatch
) -> None:
    import semsql.embedder.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_FRAMES_IN_FLIGHT", 3)
    parts = [Part(3, ASTRONAUT), Part(3, CHELSEA)]  # 4 frames each
    sizes = [(160, 120), (192, 144), (224, 168)]  # three files, not three copies of one
    paths = [
        write_video(tmp_path / f"clip{n}.mp4", parts, size=size) for n, size in enumerate(sizes)
    ]
    ingest(*map(str, paths))
    models = {name: model for name, model in tiny_models.items() if name in ("frames", "clip")}
    options = WorkerOptions(until_idle=True, poll_interval=0.2, stages=("frames", "clip"))
    worker = Worker(semsql_env, options, models=models)
    worker.run()
    assert rows(
        db,
        "SELECT status, attempts, lost_leases, count(*) FROM semsql.tasks "
        "WHERE stage = 'clip' GROUP BY 1, 2, 3",
    ) == [("done", 0, 0, 3)]
    assert rows(db, "SELECT count(*) FROM semsql.frame_vectors") == [(12,)]
    assert worker.runners["clip"].stats.batches == 3  # one video each
