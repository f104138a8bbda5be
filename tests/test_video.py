"""Probing and frame sampling on videos encoded here from the sample pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from semsql.testing_video import Part, write_audio_only, write_video
from semsql.video import Sampling, VideoError, probe_video, sample_frames

ASTRONAUT = Image.fromarray(skimage.data.astronaut())
CHELSEA = Image.fromarray(skimage.data.chelsea())


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    parts = [Part(3, ASTRONAUT), Part(3, CHELSEA), Part(2, None)]
    return {
        "h264": write_video(folder / "parts.mp4", parts),
        "vp9": write_video(folder / "parts.webm", parts, codec="libvpx-vp9"),
        "variable": write_video(
            folder / "variable.mp4", [Part(2, None), *parts[:2]], variable_rate=True
        ),
        "streaming": write_video(folder / "streaming.mp4", parts, index_first=True),
    }


@pytest.mark.parametrize("kind", ["h264", "vp9"])
def test_probe_reads_the_container(videos: dict[str, Path], kind: str) -> None:
    info = probe_video(videos[kind])
    assert info.duration == pytest.approx(8.0, abs=0.05)
    assert info.frame_rate == pytest.approx(25.0)
    assert info.codec == {"h264": "h264", "vp9": "vp9"}[kind]
    assert (info.width, info.height, info.rotation) == (320, 240, 0)


@pytest.mark.parametrize("kind", ["h264", "vp9"])
def test_a_frame_every_two_seconds_and_at_the_cut_and_none_of_the_black(
    videos: dict[str, Path], kind: str
) -> None:
    frames = sample_frames(videos[kind])
    assert [(f.at_ms, f.scene_cut) for f in frames] == [
        (0, False),
        (2000, False),
        (3000, True),  # astronaut -> cat
        (5000, False),
    ]  # 6 s to 8 s is black: nothing
    assert all(f.image.mode == "RGB" and f.image.size == (320, 240) for f in frames)
    assert looks_like(frames[0].image, ASTRONAUT) and looks_like(frames[2].image, CHELSEA)


def test_timestamps_are_read_not_computed_from_the_frame_rate(videos: dict[str, Path]) -> None:
    # Frames 40 ms and 120 ms apart: frame index x average rate lands elsewhere.
    frames = sample_frames(videos["variable"])
    # The black opening ends at tick 156 of 1/75 s (2.08 s): the first picture frame.
    assert frames[0].at_ms == 2080 and frames[0].scene_cut
    assert [f.at_ms for f in frames] == [2080, 4160, 5120, 7200]
    assert looks_like(frames[2].image, CHELSEA)


def test_repeated_frames_are_dropped(tmp_path: Path) -> None:
    still = write_video(tmp_path / "still.mp4", [Part(6, ASTRONAUT)], still=True)
    every_frame = sample_frames(still, Sampling(every=0.5, repeat=0.0))
    without_repeats = sample_frames(still, Sampling(every=0.5))
    assert len(every_frame) == 12 and len(without_repeats) == 1


def test_a_long_video_is_sampled_evenly_up_to_the_cap(videos: dict[str, Path]) -> None:
    frames = sample_frames(videos["h264"], Sampling(every=0.1, max_frames=4, scene_cut=2.0))
    assert [f.at_ms for f in frames] == [0, 2000, 4000]  # 8 s / 4 = one every 2 s; black at 6


@pytest.mark.parametrize("kind", ["h264", "vp9", "streaming"])
def test_samples_far_apart_seek_to_each_and_skip_black(videos: dict[str, Path], kind: str) -> None:
    frames = sample_frames(videos[kind], Sampling(every=3, seek_above=2))
    assert [(f.at_ms, f.scene_cut) for f in frames] == [(0, False), (3000, False)]  # 6 s: black
    assert looks_like(frames[0].image, ASTRONAUT) and looks_like(frames[1].image, CHELSEA)


def test_seeking_in_a_variable_rate_video(videos: dict[str, Path]) -> None:
    frames = sample_frames(videos["variable"], Sampling(every=2, seek_above=1))
    # Due at 0 (black until 2.08 s: nothing within the second after), 2, 4, 6 and 8 s.
    assert [f.at_ms for f in frames] == [2080, 4000, 6080, 8000]


def test_kept_frames_are_scaled_down(videos: dict[str, Path]) -> None:
    frames = sample_frames(videos["h264"], Sampling(max_side=160))
    assert {f.image.size for f in frames} == {(160, 120)}


def test_a_video_over_the_duration_limit(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match="over --max-duration 5 s") as caught:
        probe_video(videos["h264"], max_duration=5)
    assert caught.value.code == "too_long"


def test_frames_over_the_pixel_limit(videos: dict[str, Path]) -> None:
    with pytest.raises(VideoError, match="320x240 are over 10000 pixels") as caught:
        probe_video(videos["h264"], max_pixels=10_000)
    assert caught.value.code == "too_many_pixels"


def test_bad_videos_each_have_their_own_error(videos: dict[str, Path], tmp_path: Path) -> None:
    whole = videos["h264"].read_bytes()
    streaming = videos["streaming"].read_bytes()
    (tmp_path / "notes.mp4").write_text("shopping list: milk, eggs\n")
    cases = {
        "empty": b"",
        "not_a_video": (tmp_path / "notes.mp4").read_bytes(),
        "truncated": whole[: len(whole) // 2],  # the index (moov) at the end is gone
        "no_video_stream": write_audio_only(tmp_path / "voice.m4a").read_bytes(),
    }
    for code, data in cases.items():
        with pytest.raises(VideoError) as caught:
            probe_video(data)
        assert caught.value.code == code, caught.value
    # Index first: the container opens, the last second's frames are missing.
    with pytest.raises(VideoError, match=r"near the end|frames stop") as caught:
        probe_video(streaming[: len(streaming) * 2 // 3])
    assert caught.value.code == "truncated"
    assert probe_video(streaming).duration == pytest.approx(8.0, abs=0.05)


def test_a_file_path_and_its_bytes_probe_alike(videos: dict[str, Path]) -> None:
    assert probe_video(videos["vp9"]) == probe_video(videos["vp9"].read_bytes())


def looks_like(frame: Image.Image, picture: Image.Image) -> bool:
    """The frame shows `picture` rather than the other sample (mean colour distance)."""

    def colour(image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((8, 8))).astype(float)

    others = [ASTRONAUT, CHELSEA]
    distances = {id(p): np.abs(colour(frame) - colour(p)).mean() for p in others}
    return min(distances, key=lambda key: distances[key]) == id(picture)
