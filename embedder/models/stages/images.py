"""Small image helpers shared by the stages."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from PIL.Image import Image

from .base import Box

T = TypeVar("T")


def as_rgb(image: Image) -> Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def clamp_box(box: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    )


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def unit_rows(vectors: torch.Tensor) -> np.ndarray:
    """L2-normalise each row in float32 and hand it over as numpy."""
    vectors = torch.nn.functional.normalize(vectors.float(), p=2, dim=-1)
    return vectors.cpu().numpy().astype(np.float32, copy=False)


def check_boxes(images: Sequence[Image], boxes: Sequence[Sequence[Box]]) -> None:
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} lists of face boxes")
    for image_boxes in boxes:
        for box in image_boxes:
            if not all(math.isfinite(float(v)) for v in box):
                raise ValueError(f"face box {tuple(box)} is not finite: x0, y0, x1, y1 in pixels")


def per_image(vectors: np.ndarray, boxes: Sequence[Sequence[Box]]) -> list[list[np.ndarray]]:
    """The rows of `vectors`, one per face box in order, given back as one list per image."""
    out: list[list[np.ndarray]] = []
    start = 0
    for image_boxes in boxes:
        out.append(list(vectors[start : start + len(image_boxes)]))
        start += len(image_boxes)
    return out
