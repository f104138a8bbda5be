"""Hostile videos, from ingest through the worker to SQL: files that lie about what they are,
headers that promise more than the data holds, streams a sampler does not expect, a worker that
is killed or finds its file changed, and an analyst who reads (and shadows) the frame tables.

Tests that show a problem of today are xfail(strict=True), each with the reason; the others
show what holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from PIL import Image

from semsql.cli.main import cli
from semsql.embedder import frames as video_frames
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.probe import ProbeError, probe_bytes
from semsql.stages import model_env_var
from semsql.testing_video import Part, write_audio_only, write_video
from semsql.video import sample_frames

av = pytest.importorskip("av")

ASTRONAUT = Image.fromarray(skimage.data.astronaut())
CHELSEA = Image.fromarray(skimage.data.chelsea())
COFFEE = Image.fromarray(skimage.data.coffee())
ROCKET = Image.fromarray(skimage.data.rocket())
STAGE_OPTIONS = {"tags": {"threshold": 0.0, "max_tags": 5}}


# -- helpers ------------------------------------------------------------------------------------


def ingest(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["ingest", *args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


def rows(conn: psycopg.Connection, query: str, *params) -> list[tuple]:
    return conn.execute(query, list(params)).fetchall()


def only_stages(conn: psycopg.Connection, *names: str) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = (name = ANY (%s))", [list(names)])


def run_worker(url: str, models: dict[str, str | None], **options) -> None:
    options.setdefault("stage_options", STAGE_OPTIONS)
    Worker(url, WorkerOptions(until_idle=True, poll_interval=0.2, **options), models=models).run()


def asset_id(conn: psycopg.Connection, name: str) -> int:
    found = rows(conn, "SELECT id FROM semsql.assets WHERE uri LIKE %s", f"%/{name}")
    assert len(found) == 1, (name, found)
    return found[0][0]


def task_states(conn: psycopg.Connection, asset: int) -> dict[str, tuple[str, str | None]]:
    found = rows(
        conn, "SELECT stage, status, last_error FROM semsql.tasks WHERE asset_id = %s", asset
    )
    return {stage: (status, error) for stage, status, error in found}


def frame_times(conn: psycopg.Connection, asset: int) -> list[int]:
    found = rows(conn, "SELECT at_ms FROM semsql.frames WHERE asset_id = %s ORDER BY at_ms", asset)
    return [at for (at,) in found]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in time: {condition}")
        time.sleep(0.05)


def encode(
    path: Path,
    pictures: Iterator[np.ndarray],
    size: tuple[int, int],
    *,
    codec: str = "libx264",
    fps: int = 25,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    container_format: str | None = None,
) -> Path:
    """Encode RGB arrays (height x width x 3) one frame each."""
    with av.open(str(path), "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        for pixels in pictures:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def panning(picture: Image.Image, size: tuple[int, int], count: int) -> Iterator[np.ndarray]:
    """`count` frames of a slow pan over the picture (each frame a little different)."""
    width, height = size
    big = np.asarray(picture.convert("RGB").resize((width + 32, height + 32)))
    for step in range(count):
        x = abs(step % 64 - 32)
        yield big[x : x + height, x : x + width]


def with_free_box(source: Path, target: Path, tag: bytes) -> Path:
    """A copy of an MP4 with a `free` box appended: other bytes (another SHA-256), same video."""
    payload = tag.ljust(8, b".")[:8]
    target.write_bytes(
        source.read_bytes() + struct.pack(">I", 8 + len(payload)) + b"free" + payload
    )
    return target


def rotate_display(source: Path, target: Path) -> Path:
    """A copy of an MP4 whose track header's display matrix turns the picture 90 degrees
    clockwise, as a phone held upright writes it."""
    data = bytearray(source.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0  # version 0: 32-bit times
    matrix = at + 4 + 4 + 20 + 16  # after the times, track id, duration, layer and volume
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 1 << 30)
    target.write_bytes(bytes(data))
    return target


def two_video_streams(path: Path, first_seconds: float, seconds: float) -> Path:
    """A container with two video streams: a small one of `first_seconds` (a preview track),
    then the main one of `seconds`."""
    with av.open(str(path), "w") as container:
        small = container.add_stream("libx264", rate=25)
        small.width, small.height, small.pix_fmt = 160, 120, "yuv420p"
        main = container.add_stream("libx264", rate=25)
        main.width, main.height, main.pix_fmt = 320, 240, "yuv420p"
        previews = panning(CHELSEA, (160, 120), int(first_seconds * 25))
        for index, pixels in enumerate(panning(ASTRONAUT, (320, 240), int(seconds * 25))):
            pairs = [(main, pixels)]
            preview = next(previews, None)
            if preview is not None:
                pairs.append((small, preview))
            for stream, picture in pairs:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
                frame.pts, frame.time_base = index, Fraction(1, 25)
                for packet in stream.encode(frame):
                    container.mux(packet)
        for stream in (small, main):
            for packet in stream.encode():
                container.mux(packet)
    return path


def worker_process(url: str, models: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SEMSQL_DATABASE_URL": url}
    env.update({model_env_var(stage): model for stage, model in models.items() if model})
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "semsql.cli", "worker", *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


# -- files that lie -----------------------------------------------------------------------------


def test_a_video_and_a_picture_with_each_others_extensions_are_what_their_bytes_are(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip")
    folder = tmp_path / "liars"
    folder.mkdir()
    ASTRONAUT.save(folder / "photo.mp4", "JPEG")
    write_video(tmp_path / "clip.mp4", [Part(3, CHELSEA)]).rename(folder / "clip.jpg")
    summary = ingest(str(folder))
    assert summary["errors"] == [] and summary["new"] == 2
    kinds = dict(rows(db, "SELECT substring(uri from '[^/]*$'), media_type FROM semsql.assets"))
    assert kinds == {"photo.mp4": "image", "clip.jpg": "video"}
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]
    assert frame_times(db, asset_id(db, "clip.jpg")) == [0, 2000]
    assert frame_times(db, asset_id(db, "photo.mp4")) == []


def test_an_animated_gif_is_an_image_of_its_first_frame(db, semsql_env, tmp_path) -> None:
    path = tmp_path / "loop.gif"
    pictures = [ASTRONAUT.resize((64, 64)), CHELSEA.resize((64, 64))]
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=200, loop=0)
    summary = ingest(str(path))
    assert summary["errors"] == [] and summary["new"] == 1
    assert rows(db, "SELECT media_type, mime, duration_ms FROM semsql.assets") == [
        ("image", "image/gif", None)
    ]


@pytest.mark.parametrize(
    ("name", "container_format", "codec"),
    [
        ("camcorder.mts", "mpegts", "mpeg2video"),
        ("broadcast.m2ts", "mpegts", "libx264"),
        ("dvd.mpg", "mpeg", "mpeg1video"),
        ("windows.wmv", "asf", "wmv2"),
    ],
)
def test_every_video_extension_the_walk_takes_is_probed_as_a_video(
    db, semsql_env, tmp_path, name, container_format, codec
) -> None:
    path = encode(
        tmp_path / name,
        panning(ASTRONAUT, (320, 240), 50),
        (320, 240),
        codec=codec,
        container_format=container_format,
    )
    summary = ingest(str(path))
    assert summary["errors"] == []
    assert rows(db, "SELECT media_type, duration_ms > 0 FROM semsql.assets") == [("video", True)]


def test_an_audio_file_named_mov_and_garbage_after_an_ftyp_header_fail_alone(
    db, semsql_env, tmp_path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    write_audio_only(folder / "voice.mov")
    good = write_video(folder / "good.mp4", [Part(2, CHELSEA)])
    header = good.read_bytes()[:32]
    assert header[4:8] == b"ftyp"
    noise = np.random.default_rng(7).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    (folder / "noise.mp4").write_bytes(header + noise)
    summary = ingest(str(folder))
    errors = {Path(e["uri"]).name: e["code"] for e in summary["errors"]}
    assert errors["voice.mov"] == "no_video_stream"
    assert errors["noise.mp4"] in {"truncated", "corrupt", "undecodable"}
    assert summary["new"] == 1


def test_a_video_over_max_file_size_fails_alone(db, semsql_env, tmp_path) -> None:
    video = write_video(tmp_path / "big.mp4", [Part(2, CHELSEA)], size=(640, 480), grain=True)
    picture = tmp_path / "small.png"
    ASTRONAUT.resize((32, 32)).save(picture)
    limit = str(video.stat().st_size - 1)
    summary = ingest(str(video), str(picture), "--max-file-size", limit)
    assert [e["code"] for e in summary["errors"]] == ["too_large"]
    assert summary["new"] == 1


def test_a_link_to_a_video_outside_the_folder_is_an_error_like_a_link_to_a_picture(
    db, semsql_env, tmp_path
) -> None:
    outside = tmp_path / "outside"
    folder = tmp_path / "library"
    outside.mkdir()
    folder.mkdir()
    write_video(outside / "secret.mp4", [Part(2, CHELSEA)])
    ASTRONAUT.resize((32, 32)).save(outside / "secret.png")
    (folder / "clip.mp4").symlink_to(outside / "secret.mp4")
    (folder / "picture.png").symlink_to(outside / "secret.png")
    summary = ingest(str(folder))
    errors = {Path(e["uri"]).name: e["code"] for e in summary["errors"]}
    assert errors == {"clip.mp4": "outside_root", "picture.png": "outside_root"}


# -- headers that promise more than the data holds ------------------------------------------


def test_a_video_cut_short_or_promising_a_longer_duration_is_truncated(tmp_path) -> None:
    whole = write_video(tmp_path / "whole.mp4", [Part(6, ASTRONAUT)], index_first=True)
    data = whole.read_bytes()
    with pytest.raises(ProbeError) as cut:
        probe_bytes(data[: len(data) // 2])
    assert cut.value.code == "truncated"
    # The movie and media headers say 100 times as long: FFmpeg goes by the sample tables.
    longer = bytearray(data)
    for box in (b"mvhd", b"mdhd"):
        at = longer.find(box)
        assert longer[at + 4] == 0  # version 0: 32-bit duration after 3 fields
        duration = at + 4 + 4 + 4 + 4 + 4
        (value,) = struct.unpack(">I", longer[duration : duration + 4])
        longer[duration : duration + 4] = struct.pack(">I", value * 100)
    assert probe_bytes(bytes(longer)).duration_ms == 6000


def test_a_webm_without_a_duration_still_gets_its_length_and_the_duration_limit(
    tmp_path,
) -> None:
    path = encode(
        tmp_path / "live.webm",
        panning(CHELSEA, (160, 120), 25 * 12),
        (160, 120),
        codec="libvpx",
        options={"live": "1"},
    )
    probe = probe_bytes(path.read_bytes())
    assert probe.duration_ms == pytest.approx(12000, abs=500)
    with pytest.raises(ProbeError) as error:
        probe_bytes(path.read_bytes(), max_duration=5)
    assert error.value.code == "too_long"


def test_a_header_claiming_huge_frames_is_a_decompression_bomb_at_probe(tmp_path) -> None:
    # MJPEG frames whose JPEG header says 16000 x 16000 (over 8K) over a few bytes of data.
    path = encode(
        tmp_path / "bomb.avi",
        panning(ASTRONAUT, (64, 64), 20),
        (64, 64),
        codec="mjpeg",
        pix_fmt="yuvj420p",
    )
    data = bytearray(path.read_bytes())
    for found in re.finditer(b"\xff\xc0", bytes(data)):
        data[found.start() + 5 : found.start() + 9] = struct.pack(">HH", 16000, 16000)
    with pytest.raises(ProbeError) as error:
        probe_bytes(bytes(data))
    assert error.value.code in {"decompression_bomb", "undecodable", "truncated", "corrupt"}


def test_one_corrupt_frame_in_the_middle_costs_that_frame_not_the_video(tmp_path) -> None:
    path = encode(
        tmp_path / "camera.avi",
        panning(ASTRONAUT, (64, 64), 100),
        (64, 64),
        codec="mjpeg",
        pix_fmt="yuvj420p",
    )
    data = bytearray(path.read_bytes())
    headers = [found.start() for found in re.finditer(b"\xff\xc0", bytes(data))]
    middle = headers[len(headers) // 2]
    data[middle + 5 : middle + 9] = struct.pack(">HH", 16000, 16000)
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    assert probe_bytes(bytes(data)).duration_ms == 4000  # ingest takes it
    frames = sample_frames(broken)
    # The damaged packet is the frame at 2000 ms: the one after it is taken instead.
    assert [frame.at_ms for frame in frames] == [0, 2040]


# -- streams the sampler does not expect ----------------------------------------------------


def test_a_video_of_one_frame_gives_one_frame(tmp_path) -> None:
    path = encode(tmp_path / "one.mp4", panning(ASTRONAUT, (320, 240), 1), (320, 240))
    assert probe_bytes(path.read_bytes()).media_type == "video"
    assert [frame.at_ms for frame in sample_frames(path)] == [0]


def test_a_small_black_video_keeps_no_frame(tmp_path) -> None:
    for size in ((96, 72), (320, 240)):
        path = write_video(tmp_path / f"black{size[0]}.mp4", [Part(4, None)], size=size)
        assert sample_frames(path) == [], size


def test_ten_thousand_frames_are_sampled_at_most_120_spread_over_the_video(tmp_path) -> None:
    path = encode(
        tmp_path / "long.mp4",
        (np.roll(pixels, step // 40, axis=1) for step, pixels in
         enumerate(panning(ROCKET, (128, 96), 10_000))),
        (128, 96),
    )  # fmt: skip
    frames = sample_frames(path)
    assert len(frames) <= 120
    assert frames[-1].at_ms > 0.9 * 400_000


def test_a_flickering_video_does_not_spend_the_frame_cap_on_its_flicker(tmp_path) -> None:
    size = (160, 120)
    first = np.asarray(ASTRONAUT.resize(size))
    second = np.asarray(CHELSEA.resize(size))
    path = encode(
        tmp_path / "strobe.mp4", (second if i % 2 else first for i in range(25 * 60)), size
    )
    frames = sample_frames(path)
    # A cut back to a picture kept lately is no new shot: both pictures, and not 120 frames
    # from the first 5 s (the later ones only repeat them).
    assert len(frames) <= 4

    def shows(frame: Image.Image, picture: np.ndarray, other: np.ndarray) -> bool:
        pixels = np.asarray(frame.convert("RGB").resize(size)).astype(float)
        return np.abs(pixels - picture).mean() < np.abs(pixels - other).mean()

    assert any(shows(f.image, first, second) for f in frames)
    assert any(shows(f.image, second, first) for f in frames)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_container_with_a_preview_track_is_probed_by_its_main_video(
    tmp_path, suffix: str
) -> None:
    path = two_video_streams(tmp_path / f"two{suffix}", first_seconds=1, seconds=6)
    probe = probe_bytes(path.read_bytes())
    assert (probe.width, probe.height, probe.duration_ms) == (320, 240, 6000)
    assert {frame.image.size for frame in sample_frames(path)} == {(320, 240)}


def test_a_variable_frame_rate_video_has_its_frames_at_their_own_times(tmp_path) -> None:
    parts = [Part(3, ASTRONAUT), Part(3, CHELSEA)]
    path = write_video(tmp_path / "vfr.mp4", parts, variable_rate=True)
    frames = sample_frames(path)
    times = [frame.at_ms for frame in frames]
    assert times[0] == 0 and 2900 <= next(t for t in times if t >= 2900) <= 3100
    assert times[-1] < 6000


@pytest.mark.slow
def test_sampling_many_large_frames_holds_little_memory(tmp_path) -> None:
    path = encode(tmp_path / "hd.mp4", panning(COFFEE, (1280, 720), 130), (1280, 720))
    # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's (pytest's) size.
    script = f"""
from pathlib import Path
from semsql.video import Sampling, sample_frames
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
before = peak()
frames = sample_frames(Path({str(path)!r}), Sampling(every=0.0, repeat=0.0, max_frames=1000))
print(len(frames), (peak() - before) // 1024)
"""
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    kept, grown_mb = int(output[0]), int(output[1])
    assert kept == 130
    assert grown_mb < 150


# -- rotation, black videos and the worker --------------------------------------------------


def test_a_rotated_video_gives_upright_frames_and_faces_inside_them(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "faces")
    # A phone held upright stores the picture on its side and says to turn it clockwise.
    portrait = ASTRONAUT.crop((120, 0, 360, 320))  # 240 x 320: her face in the top half
    sideways = portrait.rotate(90, expand=True)  # as stored: 320 x 240
    stored = write_video(tmp_path / "stored.mp4", [Part(3, sideways)], size=(320, 240), still=True)
    path = rotate_display(stored, tmp_path / "phone.mp4")
    stored.unlink()
    ingest(str(path))
    assert rows(db, "SELECT width, height, metadata->'video'->>'rotation' FROM semsql.assets") == [
        (320, 240, "90")
    ]
    run_worker(semsql_env, tiny_models)
    video = asset_id(db, "phone.mp4")
    frames = rows(db, "SELECT width, height, jpeg FROM semsql.frames WHERE asset_id = %s", video)
    assert frames and {(w, h) for w, h, _ in frames} == {(240, 320)}
    import io

    seen = np.asarray(Image.open(io.BytesIO(frames[0][2])).convert("L"), np.float32)
    upright = np.asarray(portrait.resize((240, 320)).convert("L"), np.float32)
    flipped = upright[::-1, ::-1]
    assert np.abs(seen - upright).mean() < np.abs(seen - flipped).mean() / 2
    faces = rows(db, "SELECT box FROM semsql.faces WHERE asset_id = %s", video)
    assert faces
    assert all(0 <= b[0] < b[2] <= 240 and 0 <= b[1] < b[3] <= 320 for (b,) in faces)
    assert all((b[1] + b[3]) / 2 < 200 for (b,) in faces)  # her face, high in the frame


def test_an_all_black_video_is_ready_with_no_frames_and_found_by_no_search(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip", "faces", "face_vectors", "caption", "tags", "text")
    black = write_video(tmp_path / "black.mp4", [Part(5, None)])
    one = encode(tmp_path / "one.mp4", panning(ASTRONAUT, (320, 240), 1), (320, 240))
    picture = tmp_path / "astronaut.jpg"
    ASTRONAUT.save(picture)
    summary = ingest(str(black), str(one), str(picture))
    assert summary["errors"] == [] and summary["new"] == 3
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]
    dark = asset_id(db, "black.mp4")
    for table in ("frames", "frame_vectors", "faces", "captions"):
        assert rows(db, f"SELECT count(*) FROM semsql.{table} WHERE asset_id = %s", dark) == [
            (0,)
        ], table
    assert frame_times(db, asset_id(db, "one.mp4")) == [0]
    hits = rows(
        db,
        "SELECT asset_id, image_score FROM semsql.search(like_asset => %s)",
        asset_id(db, "astronaut.jpg"),
    )
    by_look = dict(hits)
    assert by_look[asset_id(db, "one.mp4")] is not None
    assert by_look.get(dark) is None  # no frame: nothing to look like


def test_search_like_a_video_finds_what_looks_like_its_frames(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip")
    video = write_video(tmp_path / "astronaut.mp4", [Part(3, ASTRONAUT)])
    picture = tmp_path / "astronaut.jpg"
    ASTRONAUT.save(picture)
    ingest(str(video), str(picture))
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]
    hits = rows(
        db,
        "SELECT asset_id, image_score FROM semsql.search(like_asset => %s)",
        asset_id(db, "astronaut.mp4"),
    )
    assert [asset for asset, _ in hits] == [asset_id(db, "astronaut.jpg")]
    assert hits[0][1] is not None


def test_a_video_changed_deleted_or_linked_out_after_ingest_fails_alone_and_clearly(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip")
    folder = tmp_path / "library"
    outside = tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    base = write_video(tmp_path / "base.mp4", [Part(3, CHELSEA)])
    names = ["kept.mp4", "changed.mp4", "deleted.mp4", "linked.mp4"]
    for name in names:
        with_free_box(base, folder / name, name.encode())
    picture = folder / "picture.png"
    ASTRONAUT.resize((64, 64)).save(picture)
    summary = ingest(str(folder))
    assert summary["errors"] == [] and summary["new"] == 5
    with_free_box(base, folder / "changed.mp4", b"other")
    (folder / "deleted.mp4").unlink()
    shutil.move(folder / "linked.mp4", outside / "linked.mp4")
    (folder / "linked.mp4").symlink_to(outside / "linked.mp4")  # the same bytes, elsewhere
    run_worker(semsql_env, tiny_models, batch_size=8)
    status = dict(rows(db, "SELECT substring(uri from '[^/]*$'), status FROM semsql.assets"))
    assert status == {
        "kept.mp4": "ready",
        "picture.png": "ready",
        "changed.mp4": "failed",
        "deleted.mp4": "failed",
        "linked.mp4": "failed",
    }
    errors = {name: task_states(db, asset_id(db, name))["frames"] for name in names[1:]}
    assert all(state == "failed" for state, _ in errors.values())
    assert "not what was ingested" in errors["changed.mp4"][1]
    assert "No such file" in errors["deleted.mp4"][1]
    assert "refused to read" in errors["linked.mp4"][1]
    assert frame_times(db, asset_id(db, "kept.mp4")) == [0, 2000]
    for name in names[1:]:
        assert frame_times(db, asset_id(db, name)) == []


def test_a_changed_video_ingested_again_replaces_its_frames_and_their_facts(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip", "faces", "caption", "tags")
    path = tmp_path / "clip.mp4"
    write_video(path, [Part(3, ASTRONAUT)], size=(320, 240))
    ingest(str(path))
    run_worker(semsql_env, tiny_models)
    video = asset_id(db, "clip.mp4")
    old = {
        frame for (frame,) in rows(db, "SELECT id FROM semsql.frames WHERE asset_id = %s", video)
    }
    assert frame_times(db, video) == [0, 2000]
    assert rows(db, "SELECT count(*) > 0 FROM semsql.faces WHERE asset_id = %s", video) == [(True,)]

    write_video(path, [Part(5, CHELSEA)], size=(480, 360))
    summary = ingest(str(path))
    assert summary["updated"] == 1
    assert rows(db, "SELECT duration_ms, width FROM semsql.assets WHERE id = %s", video) == [
        (5000, 480)
    ]
    for table in ("frames", "frame_vectors", "faces", "captions", "tags"):
        assert rows(db, f"SELECT count(*) FROM semsql.{table} WHERE asset_id = %s", video) == [
            (0,)
        ], table
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT status FROM semsql.assets WHERE id = %s", video) == [("ready",)]
    new = rows(db, "SELECT id, width FROM semsql.frames WHERE asset_id = %s", video)
    assert frame_times(db, video) == [0, 2000, 4000]
    assert {width for _, width in new} == {480} and old.isdisjoint(f for f, _ in new)
    vectors = rows(db, "SELECT frame_id FROM semsql.frame_vectors WHERE asset_id = %s", video)
    assert sorted(v for (v,) in vectors) == sorted(f for f, _ in new)
    faces = rows(db, "SELECT frame_id FROM semsql.faces WHERE asset_id = %s", video)
    assert all(frame in {f for f, _ in new} for (frame,) in faces)
    assert rows(db, "SELECT count(*) FROM semsql.captions WHERE asset_id = %s", video) == [(1,)]


def assert_frame_facts_consistent(db: psycopg.Connection) -> None:
    """Every fact found on a frame belongs to that frame's video, once."""
    assert (
        rows(
            db,
            """SELECT v.frame_id FROM semsql.frame_vectors v
           JOIN semsql.frames f ON f.id = v.frame_id WHERE f.asset_id <> v.asset_id""",
        )
        == []
    )
    assert (
        rows(
            db,
            """SELECT x.id FROM semsql.faces x JOIN semsql.frames f ON f.id = x.frame_id
           WHERE f.asset_id <> x.asset_id""",
        )
        == []
    )
    assert (
        rows(
            db,
            """SELECT f.asset_id FROM semsql.frames f LEFT JOIN semsql.frame_vectors v
               ON v.frame_id = f.id
           GROUP BY 1 HAVING count(v.frame_id) <> count(*)""",
        )
        == []
    )
    assert (
        rows(
            db,
            """SELECT asset_id FROM semsql.faces GROUP BY asset_id, frame_id, box
           HAVING count(*) > 1""",
        )
        == []
    )
    assert (
        rows(
            db,
            """SELECT x.asset_id FROM semsql.faces x JOIN semsql.assets a ON a.id = x.asset_id
           WHERE (a.media_type = 'video') <> (x.frame_id IS NOT NULL)""",
        )
        == []
    )


def test_a_batch_mixing_many_videos_and_images_keeps_every_fact_with_its_own_frame(
    db, semsql_env, tmp_path, tiny_models
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    pictures = [ASTRONAUT, CHELSEA, COFFEE, ROCKET]
    expected = {}
    for n in range(6):
        seconds = 1 + n  # 1 to 6 s: 1 to 3 frames each
        parts = [Part(seconds, pictures[n % 4])]
        write_video(folder / f"video{n}.mp4", parts, size=(320 + 16 * n, 240))
        expected[f"video{n}.mp4"] = list(range(0, seconds * 1000, 2000))
        pictures[(n + 1) % 4].resize((200 + n, 150)).save(folder / f"picture{n}.jpg")
    summary = ingest(str(folder))
    assert summary["errors"] == [] and summary["new"] == 12
    run_worker(semsql_env, tiny_models, batch_size=5, decode_threads=2)
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    assert rows(db, "SELECT DISTINCT status FROM semsql.assets") == [("ready",)]
    for name, times in expected.items():
        video = asset_id(db, name)
        assert frame_times(db, video) == times, name
        width = 320 + 16 * int(name[5])
        assert rows(db, "SELECT DISTINCT width FROM semsql.frames WHERE asset_id = %s", video) == [
            (width,)
        ]
    assert_frame_facts_consistent(db)
    assert rows(
        db,
        """SELECT count(*) FROM semsql.embeddings e JOIN semsql.assets a ON a.id = e.asset_id
           WHERE e.space = 'image' AND a.media_type = 'video'""",
    ) == [(0,)]


def test_a_frame_deleted_while_its_faces_are_claimed_does_not_stop_the_worker(
    db, semsql_env, tmp_path, tiny_models, monkeypatch
) -> None:
    only_stages(db, "frames", "faces", "face_vectors")
    ingest(str(write_video(tmp_path / "astronaut.mp4", [Part(3, ASTRONAUT)])))
    run_worker(semsql_env, tiny_models, stages=("frames", "faces"))
    video = asset_id(db, "astronaut.mp4")
    assert rows(db, "SELECT count(*) > 0 FROM semsql.faces WHERE asset_id = %s", video) == [(True,)]
    real_jpegs = video_frames.jpegs

    def resampled_meanwhile(conn, frame_ids):
        # What write_frames does when the frames task runs again, on another connection.
        db.execute("DELETE FROM semsql.frames WHERE asset_id = %s", [video])
        return real_jpegs(conn, frame_ids)

    monkeypatch.setattr(video_frames, "jpegs", resampled_meanwhile)
    run_worker(semsql_env, tiny_models, stages=("face_vectors",))
    assert task_states(db, video)["face_vectors"][0] in {"done", "pending"}


@pytest.mark.slow
def test_a_worker_killed_while_sampling_and_while_reading_frames_leaves_no_duplicates(
    db, db_url, semsql_env, tmp_path, tiny_models
) -> None:
    only_stages(db, "frames", "clip", "faces")
    base = write_video(
        tmp_path / "base.mp4",
        [Part(6, ASTRONAUT), Part(6, CHELSEA)],
        size=(640, 360),
        grain=True,
        preset="ultrafast",
    )
    folder = tmp_path / "library"
    folder.mkdir()
    for n in range(6):
        with_free_box(base, folder / f"clip{n}.mp4", f"c{n}".encode())
    ingest(str(folder))
    args = ("--batch-size", "1", "--poll-interval", "0.2")
    running = "SELECT count(*) > 0 FROM semsql.tasks WHERE status = 'running' AND stage = %s"
    for kill, stage in enumerate(("frames", "clip")):
        process = worker_process(db_url, tiny_models, tmp_path / f"worker{kill}.log", *args)
        try:
            wait_until(lambda stage=stage: db.execute(running, [stage]).fetchone()[0], 180)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            process.kill()
            process.wait()
    run_worker(semsql_env, tiny_models)
    assert rows(db, "SELECT DISTINCT status FROM semsql.tasks") == [("done",)]
    expected = [frame.at_ms for frame in sample_frames(base)]
    assert len(expected) >= 4
    for n in range(6):
        assert frame_times(db, asset_id(db, f"clip{n}.mp4")) == expected
    assert_frame_facts_consistent(db)


# -- SQL: an analyst ----------------------------------------------------------------------------


def test_an_analyst_reads_frames_and_searches_videos_and_shadows_nothing(
    db, semsql_env, tmp_path, tiny_models, login_as
) -> None:
    only_stages(db, "frames", "clip")
    video = write_video(tmp_path / "clip.mp4", [Part(3, ASTRONAUT), Part(3, CHELSEA)])
    picture = tmp_path / "astronaut.jpg"
    ASTRONAUT.save(picture)
    ingest(str(video), str(picture))
    run_worker(semsql_env, tiny_models)
    video_id, picture_id = asset_id(db, "clip.mp4"), asset_id(db, "astronaut.jpg")
    search = """SELECT asset_id, media_type, best_at, image_score
                FROM semsql.search(like_asset => %s)"""
    moment = """SELECT semsql.best_moment(a, e.embedding::halfvec)
                FROM semsql.assets a, semsql.embeddings e
                WHERE a.id = %s AND e.asset_id = %s AND e.space = 'image'"""
    expected_hits = rows(db, search, picture_id)
    expected_moment = rows(db, moment, video_id, picture_id)
    assert [(a, kind) for a, kind, _, _ in expected_hits] == [(video_id, "video")]

    analyst = login_as("semsql_analyst")
    frames = rows(analyst, "SELECT count(*) FROM semsql.frames WHERE asset_id = %s", video_id)
    vectors = rows(analyst, "SELECT count(*) FROM semsql.frame_vectors")
    assert frames == vectors and frames[0][0] >= 3
    assert rows(analyst, search, picture_id) == expected_hits
    assert rows(analyst, moment, video_id, picture_id) == expected_moment
    for statement in (
        "DELETE FROM semsql.frames",
        "UPDATE semsql.frame_vectors SET asset_id = asset_id",
        "INSERT INTO semsql.frames (asset_id, at_ms, width, height, jpeg, model) "
        "SELECT id, 99, 1, 1, '', 'x' FROM semsql.assets LIMIT 1",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(statement)

    # Temporary tables of the same names, holding a frame at 0:00:42 nearest to everything.
    analyst.execute(
        """CREATE TEMP TABLE frames AS
               SELECT id, asset_id, 42000 AS at_ms, scene_cut, width, height, jpeg, model
               FROM semsql.frames;
           CREATE TEMP TABLE frame_vectors AS SELECT * FROM semsql.frame_vectors;
           UPDATE frame_vectors SET embedding = (
               SELECT embedding FROM semsql.embeddings WHERE space = 'image' LIMIT 1);
           CREATE TEMP TABLE embeddings AS SELECT * FROM semsql.embeddings WHERE false;
           CREATE TEMP TABLE assets AS SELECT * FROM semsql.assets WHERE false;"""
    )
    assert rows(analyst, search, picture_id) == expected_hits
    assert rows(analyst, moment, video_id, picture_id) == expected_moment
    analyst.execute("SET search_path = pg_temp, semsql, public")
    assert rows(analyst, search, picture_id) == expected_hits
    assert rows(analyst, moment, video_id, picture_id) == expected_moment
