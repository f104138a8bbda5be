"""Labelled regions of an image as semsql.segments stores them: a share and a run-length mask.

    mask = Mask.encode(label_map == 3)      # a boolean grid, row by row from the top left
    mask.decode()                           # the same grid again
    mask.share                              # the share of its cells inside the region

The runs alternate outside and inside the region, starting outside (the first may be 0), and
sum to width * height, as migrations/0018_segments.sql documents for mask_rle. No torch here:
the worker's writer, the contact sheet and SQL users read the same format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Mask:
    width: int
    height: int
    runs: tuple[int, ...]

    @classmethod
    def encode(cls, inside: np.ndarray) -> Mask:
        """The mask of a (height, width) grid of booleans."""
        if inside.ndim != 2 or inside.size == 0:
            raise ValueError(f"a mask is a non-empty 2-d grid, not of shape {inside.shape}")
        flat = np.ascontiguousarray(inside, dtype=bool).ravel()
        changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        bounds = np.concatenate(([0], changes, [flat.size]))
        runs = np.diff(bounds).tolist()
        if flat[0]:
            runs.insert(0, 0)
        height, width = inside.shape
        return cls(int(width), int(height), tuple(int(r) for r in runs))

    def decode(self) -> np.ndarray:
        """The (height, width) grid of booleans; ValueError when the runs do not fill it."""
        if self.width < 1 or self.height < 1:
            raise ValueError(f"a mask of {self.width} x {self.height} cells has none")
        if any(r < 0 for r in self.runs) or sum(self.runs) != self.width * self.height:
            raise ValueError(
                f"mask runs sum to {sum(self.runs)}, not {self.width} x {self.height} cells"
            )
        values = np.arange(len(self.runs)) % 2 == 1
        return np.repeat(values, self.runs).reshape(self.height, self.width)

    @property
    def cells(self) -> int:
        """How many cells are inside the region."""
        return sum(self.runs[1::2])

    @property
    def share(self) -> float:
        return self.cells / (self.width * self.height)


@dataclass(frozen=True)
class Segment:
    label: str
    share: float
    """The share of the image the label covers (Mask.share of its mask)."""
    score: float
    """The model's mean probability over the pixels it gave this label."""
    mask: Mask
    box: Box | None = None
    """x0, y0, x1, y1 around the region in pixels of the image as given to the stage."""


def stored_segments(conn: psycopg.Connection, asset_ids: Sequence[int]) -> dict[int, list[Segment]]:
    """asset id -> its stored segments, largest first; assets without any are left out."""
    found: dict[int, list[Segment]] = {}
    rows = conn.execute(
        """SELECT asset_id, label, share, score, mask_width, mask_height, mask_rle
           FROM semsql.segments WHERE asset_id = ANY (%s)
           ORDER BY asset_id, share DESC, label""",
        [list(asset_ids)],
    )
    for asset_id, label, share, score, width, height, runs in rows:
        mask = Mask(width, height, tuple(runs))
        found.setdefault(asset_id, []).append(Segment(label, share, score, mask))
    return found
