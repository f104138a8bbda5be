"""Faces: MTCNN face detection from facenet-pytorch (its weights ship inside the package)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL.Image import Image

from semsql.stages import stage

from .base import DetectedFace
from .errors import ModelLoadError
from .images import as_rgb, clamp_box

SHIPPED_WEIGHTS = stage("faces").default_model  # in the facenet-pytorch package


class FaceDetector:
    stage = "faces"

    def __init__(
        self,
        model_name: str,
        mtcnn: Any,
        min_confidence: float = 0.9,
        max_side: int | None = 1600,
    ) -> None:
        self.model_name = model_name
        self.mtcnn = mtcnn
        self.min_confidence = min_confidence
        self.max_side = max_side

    def run(self, images: Sequence[Image]) -> list[list[DetectedFace]]:
        if not images:
            return []
        originals = [as_rgb(image) for image in images]
        scaled = [self._downscaled(image) for image in originals]
        # MTCNN's pyramid starts at min_face_size: a smaller image holds no face it can find,
        # and facenet-pytorch raises on it (an empty torch.cat) instead of finding none.
        searchable = [i for i, image in enumerate(scaled) if min(image.size) >= self.min_side]
        detections = self._detect_all([scaled[i] for i in searchable])
        found = dict(zip(searchable, detections, strict=True))
        return [
            self._faces(original, small, *found[i]) if i in found else []
            for i, (original, small) in enumerate(zip(originals, scaled, strict=True))
        ]

    @property
    def min_side(self) -> int:
        return int(self.mtcnn.min_face_size)

    def _detect_all(self, images: list[Image]) -> list[tuple[Any, Any, Any]]:
        if not images:
            return []
        if len({image.size for image in images}) == 1:
            boxes, probs, points = self._detect(images)
            return list(zip(boxes, probs, points, strict=True))
        # MTCNN batches only images of one size
        return [tuple(part[0] for part in self._detect([image])) for image in images]

    def _detect(self, images: list[Image]) -> tuple[Any, Any, Any]:
        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(images, landmarks=True)
        return boxes, probs, points

    def _downscaled(self, image: Image) -> Image:
        # MTCNN's image pyramid grows with the pixel count; faces smaller than
        # min_face_size * side / max_side pixels are lost by this.
        if self.max_side is None or max(image.size) <= self.max_side:
            return image
        factor = self.max_side / max(image.size)
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return image.resize(size)

    def _faces(
        self, original: Image, small: Image, boxes: Any, probs: Any, points: Any
    ) -> list[DetectedFace]:
        if boxes is None:
            return []
        scale = np.array([original.width / small.width, original.height / small.height])
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.tile(scale, 2)
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2) * scale
        return [
            DetectedFace(
                box=clamp_box(box, original.width, original.height),
                confidence=float(prob),
                landmarks=tuple((float(x), float(y)) for x, y in landmarks),
            )
            for box, prob, landmarks in zip(boxes, probs, points, strict=True)
            if prob >= self.min_confidence
        ]


def load_faces(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> FaceDetector:
    if model.lower() != SHIPPED_WEIGHTS:
        raise ModelLoadError(
            "faces",
            model,
            "the only face detector supported is MTCNN",
            fix="set SEMSQL_MODEL_FACES=mtcnn or off",
        )
    # MTCNN stays in fp32 whatever the device: it is small, and its thresholds were tuned in fp32.
    mtcnn = MTCNN(keep_all=True, device=device).eval()
    return FaceDetector(model, mtcnn, **options)
