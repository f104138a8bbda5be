"""A video's sampled frames, as the worker stored them (semsql.frames): for pages and the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg


@dataclass(frozen=True)
class Frame:
    id: int
    at: timedelta
    scene_cut: bool
    width: int
    height: int
    caption: str | None
    faces: int
    jpeg: bytes


def asset_frames(conn: psycopg.Connection, asset_id: int) -> list[Frame]:
    """The video's frames in time order, with their captions and how many faces each shows."""
    rows = conn.execute(
        """SELECT f.id, f.at_ms, f.scene_cut, f.width, f.height, f.caption,
                  (SELECT count(*) FROM semsql.faces x WHERE x.frame_id = f.id), f.jpeg
           FROM semsql.frames f WHERE f.asset_id = %s ORDER BY f.at_ms""",
        [asset_id],
    ).fetchall()
    return [
        Frame(frame_id, timedelta(milliseconds=at), cut, width, height, caption, faces, bytes(jpeg))
        for frame_id, at, cut, width, height, caption, faces, jpeg in rows
    ]


def moment_jpegs(
    conn: psycopg.Connection, moments: Sequence[tuple[int, timedelta | None]]
) -> dict[int, tuple[bytes, timedelta]]:
    """For (video asset id, moment) pairs: the JPEG of the frame at that moment (or the first
    frame, for none) and its time. Images and videos without frames are left out."""
    if not moments:
        return {}
    rows = conn.execute(
        """SELECT m.asset_id, f.jpeg, f.at_ms
           FROM unnest(%s::bigint[], %s::integer[]) AS m(asset_id, at_ms)
           JOIN semsql.frames f ON f.id = semsql.moment_frame(m.asset_id, m.at_ms)""",
        [
            [asset_id for asset_id, _ in moments],
            [None if at is None else round(at.total_seconds() * 1000) for _, at in moments],
        ],
    ).fetchall()
    return {asset_id: (bytes(jpeg), timedelta(milliseconds=at)) for asset_id, jpeg, at in rows}
