"""A video's frames between the frames stage and the image stages.

The frames stage decodes a video once (semsql.video.sample_frames, which keeps each frame as
a JPEG) and stores those in semsql.frames; every image stage then reads those JPEGs, never the
video, and writes its results per frame (writers.write_frame_*).
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
class StoredFrame:
    id: int
    jpeg: bytes


class FrameResults(list[tuple[int, Any]]):
    """An image stage's results on a video: (frame id, (output, scale)) for each frame read."""


def sample(
    uri: str, sampler: Any, *, root: str | None, sha256: str | None, size: int | None
) -> list[SampledFrame]:
    """The video's frames worth reading, read only as the worker reads any file (beneath its
    root, the bytes ingested); InputError says why not."""
    data = read_verified(uri, root=root, sha256=sha256, size=size)
    try:
        frames: list[SampledFrame] = sampler.sample(data)
        return frames
    except VideoError as error:
        raise InputError(f"cannot sample the frames of {uri}: {error}") from None
    except Exception as error:  # PyAV's surprises are this video's error, not the batch's
        detail = f"{type(error).__name__}: {error}"
        raise InputError(f"cannot sample the frames of {uri}: {detail}") from error


def of_videos(
    conn: psycopg.Connection, tasks: Sequence[Task], per_video: int | None
) -> dict[int, list[StoredFrame]]:
    """For the tasks' assets that are videos: their frames in time order (`per_video` of them
    spread over the video, or all), possibly none. Only the JPEGs of those are read."""
    rows = conn.execute(
        """SELECT a.id, f.id
           FROM semsql.assets a LEFT JOIN semsql.frames f ON f.asset_id = a.id
           WHERE a.id = ANY (%s) AND a.media_type = 'video'
           ORDER BY a.id, f.at_ms""",
        [[task.asset_id for task in tasks]],
    ).fetchall()
    chosen: dict[int, list[int]] = {}
    for asset_id, frame_id in rows:
        chosen.setdefault(asset_id, [])
        if frame_id is not None:
            chosen[asset_id].append(frame_id)
    if per_video is not None:
        chosen = {asset: spread(ids, per_video) for asset, ids in chosen.items()}
    found = jpegs(conn, [frame_id for ids in chosen.values() for frame_id in ids])
    return {
        asset: [StoredFrame(frame_id, found[frame_id]) for frame_id in ids if frame_id in found]
        for asset, ids in chosen.items()
    }


def spread(frames: list[int], count: int) -> list[int]:
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
