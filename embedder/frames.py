"""A video's frames between the frames stage and the image stages.

The frames stage decodes a video once (semsql.video.sample_frames) and stores each frame kept
as a JPEG in semsql.frames; every image stage then reads those JPEGs, never the video, and
writes its results per frame (writers.write_frame_*).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from semsql.decode import InputError, read_verified
from semsql.video import SampledFrame, VideoError

from .queue import Task


@dataclass(frozen=True)
class FrameRow:
    """A sampled frame as the frames stage stores it."""

    at_ms: int
    scene_cut: bool
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True)
class StoredFrame:
    id: int
    jpeg: bytes


class FrameResults(list[tuple[int, Any]]):
    """An image stage's results on a video: (frame id, (output, scale)) for each frame read."""


def sample(
    uri: str, sampler: Any, *, root: str | None, sha256: str | None, size: int | None
) -> list[FrameRow]:
    """The video's frames worth reading, read only as the worker reads any file (beneath its
    root, the bytes ingested); InputError says why not."""
    data = read_verified(uri, root=root, sha256=sha256, size=size)
    try:
        frames: list[SampledFrame] = sampler.sample(data)
    except VideoError as error:
        raise InputError(f"cannot sample the frames of {uri}: {error}") from None
    except Exception as error:  # PyAV's surprises are this video's error, not the batch's
        detail = f"{type(error).__name__}: {error}"
        raise InputError(f"cannot sample the frames of {uri}: {detail}") from error
    return [_row(frame) for frame in frames]


def _row(frame: SampledFrame) -> FrameRow:
    width, height = frame.size
    return FrameRow(frame.at_ms, frame.scene_cut, width, height, frame.jpeg)


def of_videos(
    conn: psycopg.Connection, tasks: Sequence[Task], per_video: int | None
) -> dict[int, list[StoredFrame]]:
    """For the tasks' assets that are videos: their frames in time order (`per_video` of them
    spread over the video, or all), possibly none."""
    rows = conn.execute(
        """SELECT a.id, f.id, f.jpeg
           FROM semsql.assets a LEFT JOIN semsql.frames f ON f.asset_id = a.id
           WHERE a.id = ANY (%s) AND a.media_type = 'video'
           ORDER BY a.id, f.at_ms""",
        [[task.asset_id for task in tasks]],
    ).fetchall()
    videos: dict[int, list[StoredFrame]] = {}
    for asset_id, frame_id, jpeg in rows:
        found = videos.setdefault(asset_id, [])
        if frame_id is not None:
            found.append(StoredFrame(frame_id, bytes(jpeg)))
    if per_video is not None:
        videos = {asset: spread(frames, per_video) for asset, frames in videos.items()}
    return videos


def spread(frames: list[StoredFrame], count: int) -> list[StoredFrame]:
    """`count` of the frames, first and last included, evenly apart."""
    if len(frames) <= count:
        return frames
    if count == 1:
        return frames[:1]
    return [frames[round(i * (len(frames) - 1) / (count - 1))] for i in range(count)]


def jpegs(conn: psycopg.Connection, frame_ids: Sequence[int]) -> dict[int, bytes]:
    if not frame_ids:
        return {}
    rows = conn.execute(
        "SELECT id, jpeg FROM semsql.frames WHERE id = ANY (%s)", [list(frame_ids)]
    ).fetchall()
    return {frame_id: bytes(jpeg) for frame_id, jpeg in rows}
