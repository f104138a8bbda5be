"""Segments: a semantic segmentation model that AutoModelForSemanticSegmentation loads.

SegFormer, DPT, BEiT, MobileViT (DeepLabV3), UperNet: anything whose output `logits` has one
channel per label over a grid of the image. The logits are resized to a small grid over the
whole upright image (MASK_SIDE cells on its longest side), and every pixel there takes its most
probable label. A label that covers at least `min_share` of that grid is kept, with its share,
the mean probability of its pixels and its mask (semsql.segments: shares and masks agree cell
for cell).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL.Image import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from semsql.segments import Box, Mask, Segment

from .errors import ModelLoadError
from .hub import from_pretrained_checked, load_pretrained
from .images import as_rgb
from .pretrained import PretrainedStage

MIN_SHARE_ENV = "SEMSQL_SEGMENTS_MIN_SHARE"
# 1 %: on ADE20K-style models the labels under that are mostly fringes along the edges of
# larger regions and speckle (SegFormer-b0's mean IoU is 37 %), and on the 64-cell grid they
# are a few dozen cells, too few to draw or to trust as a tag.
DEFAULT_MIN_SHARE = 0.01
MASK_SIDE = 64
"""Cells on the longest side of the stored mask grid (64 x 48 for a 4:3 image: ~3 kB raw)."""
MAX_LABELS = 20


@dataclass(eq=False)
class SegmentStage(PretrainedStage):
    stage = "segments"

    min_share: float = DEFAULT_MIN_SHARE
    mask_side: int = MASK_SIDE
    max_labels: int = MAX_LABELS

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_share < 1.0:
            raise ValueError(f"min_share {self.min_share} is not in [0, 1)")
        if not 8 <= self.mask_side <= 1024:
            raise ValueError(f"mask_side {self.mask_side} is not in [8, 1024]")
        self.labels: dict[int, str] = {
            int(i): str(name) for i, name in self.model.config.id2label.items()
        }

    def run(self, images: Sequence[Image]) -> list[list[Segment]]:
        rgb = [as_rgb(image) for image in images]
        pixels = [self.processor(images=i, return_tensors="pt")["pixel_values"] for i in rgb]
        logits: list[torch.Tensor | None] = [None] * len(rgb)
        # Processors that keep the aspect ratio give images of other sizes: one batch per size.
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, values in enumerate(pixels):
            by_shape[tuple(values.shape)].append(index)
        for indexes in by_shape.values():
            batch = torch.cat([pixels[i] for i in indexes]).to(self.device, self.dtype)
            with torch.inference_mode():
                out = self.model(pixel_values=batch).logits.float()
            for row, index in enumerate(indexes):
                logits[index] = out[row : row + 1]
        results = []
        for found, image in zip(logits, rgb, strict=True):
            assert found is not None  # every index is in one batch
            results.append(self._segments(found, image))
        return results

    def _segments(self, logits: torch.Tensor, image: Image) -> list[Segment]:
        grid = mask_grid(image.width, image.height, self.mask_side)
        resized = torch.nn.functional.interpolate(
            logits, size=grid, mode="bilinear", align_corners=False
        )
        probability, label_map = resized.softmax(dim=1)[0].max(dim=0)
        labels = label_map.cpu().numpy()
        probabilities = probability.cpu().numpy()
        by_name: dict[str, np.ndarray] = {}
        for label_id in np.unique(labels).tolist():
            name = self.labels.get(int(label_id), str(label_id)).strip()
            if name:
                inside = labels == label_id
                by_name[name] = by_name[name] | inside if name in by_name else inside
        cells = labels.size
        segments = [
            Segment(
                name,
                float(inside.sum()) / cells,
                float(probabilities[inside].mean()),
                Mask.encode(inside),
                region_box(inside, image.width, image.height),
            )
            for name, inside in by_name.items()
            if inside.sum() / cells >= self.min_share
        ]
        segments.sort(key=lambda s: (-s.share, s.label))
        return segments[: self.max_labels]


def mask_grid(width: int, height: int, side: int) -> tuple[int, int]:
    """(rows, columns) of the mask grid: `side` cells on the image's longest side."""
    longest = max(width, height)
    return (max(1, round(height * side / longest)), max(1, round(width * side / longest)))


def region_box(inside: np.ndarray, width: int, height: int) -> Box:
    """The box around a region's cells, in pixels of a width x height image."""
    rows = np.flatnonzero(inside.any(axis=1))
    columns = np.flatnonzero(inside.any(axis=0))
    cell_h, cell_w = height / inside.shape[0], width / inside.shape[1]
    return (
        float(columns[0] * cell_w),
        float(rows[0] * cell_h),
        float((columns[-1] + 1) * cell_w),
        float((rows[-1] + 1) * cell_h),
    )


def min_share_setting(model: str, env: dict[str, str] | None = None) -> float:
    """SEMSQL_SEGMENTS_MIN_SHARE, else DEFAULT_MIN_SHARE; a bad value makes the stage
    unavailable with the reason."""
    value = (os.environ if env is None else env).get(MIN_SHARE_ENV, "").strip()
    if not value:
        return DEFAULT_MIN_SHARE
    try:
        share = float(value)
    except ValueError:
        share = float("nan")
    if not 0.0 <= share < 1.0:
        raise ModelLoadError(
            "segments",
            model,
            f"{MIN_SHARE_ENV}={value!r} is not a share of the image in [0, 1)",
            fix=f"set {MIN_SHARE_ENV} to e.g. {DEFAULT_MIN_SHARE} (1 %), or unset it",
        )
    return share


def load_segments(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> SegmentStage:
    options.setdefault("min_share", min_share_setting(model))

    def load(source: str, local_only: bool) -> SegmentStage:
        net = from_pretrained_checked(
            "segments", model, AutoModelForSemanticSegmentation, source, local_only, dtype, device
        )
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        if getattr(processor, "do_center_crop", False):
            # The logits must cover the whole image: they are laid over all of it.
            processor.do_center_crop = False
        return SegmentStage(model, net, processor, device, dtype, **options)

    return load_pretrained("segments", model, load)
