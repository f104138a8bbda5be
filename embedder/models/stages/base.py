"""What each kind of stage takes and returns: plain Python and numpy, no torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from PIL.Image import Image

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in pixels of the image as given to the stage."""

Point = tuple[float, float]

R = TypeVar("R")


@dataclass(frozen=True)
class Tag:
    label: str
    confidence: float
    box: Box


@dataclass(frozen=True)
class DetectedFace:
    box: Box
    confidence: float
    landmarks: tuple[Point, ...] | None = None
    """Eyes, nose, mouth corners (5 points) when the detector gives them."""


@dataclass(frozen=True)
class Emotion:
    label: str
    score: float
    scores: dict[str, float]
    """Every class of the classifier with its probability; they sum to 1."""


class Stage(Protocol):
    stage: str
    model_name: str
    """The model id or path as configured: recorded as provenance next to every result."""


class ImageStage(Stage, Protocol[R]):
    """Caption, tags, faces, CLIP image vectors: one result per image."""

    def run(self, images: Sequence[Image]) -> list[R]: ...


class FaceStage(Stage, Protocol[R]):
    """Face vectors and emotion: one result per stored face box, per image."""

    def run(self, images: Sequence[Image], boxes: Sequence[Sequence[Box]]) -> list[list[R]]: ...


class TextEncoder(Stage, Protocol):
    dims: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dims), each row of unit length."""
        ...
