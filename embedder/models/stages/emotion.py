"""Emotion: a facial-expression classifier (trpakov/vit-face-expression) on face crops."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL.Image import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification

from .base import Box, Emotion
from .hub import from_pretrained_checked, load_pretrained
from .images import as_rgb, check_boxes, chunks
from .pretrained import PretrainedStage


@dataclass(eq=False)
class EmotionStage(PretrainedStage):
    stage = "emotion"

    max_batch: int = 64

    def __post_init__(self) -> None:
        config = self.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]

    def run(self, images: Sequence[Image], boxes: Sequence[Sequence[Box]]) -> list[list[Emotion]]:
        check_boxes(images, boxes)
        crops = [
            crop_face(as_rgb(image), box)
            for image, image_boxes in zip(images, boxes, strict=True)
            for box in image_boxes
        ]
        emotions = [
            emotion for batch in chunks(crops, self.max_batch) for emotion in self._classify(batch)
        ]
        out: list[list[Emotion]] = []
        start = 0
        for image_boxes in boxes:
            out.append(emotions[start : start + len(image_boxes)])
            start += len(image_boxes)
        return out

    def _classify(self, crops: Sequence[Image]) -> list[Emotion]:
        inputs = self.processor(images=list(crops), return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype)
            ).logits
        probabilities = logits.float().softmax(dim=-1).cpu().tolist()
        emotions = []
        for row in probabilities:
            scores = dict(zip(self.labels, row, strict=True))
            best = max(scores, key=scores.__getitem__)
            emotions.append(Emotion(best, scores[best], scores))
        return emotions


def crop_face(image: Image, box: Box) -> Image:
    """The box's pixels, at least one pixel wide and high, inside the image."""
    x0 = min(max(math.floor(box[0]), 0), image.width - 1)
    y0 = min(max(math.floor(box[1]), 0), image.height - 1)
    x1 = max(min(math.ceil(box[2]), image.width), x0 + 1)
    y1 = max(min(math.ceil(box[3]), image.height), y0 + 1)
    return image.crop((x0, y0, x1, y1))


def load_emotion(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> EmotionStage:
    def load(source: str, local_only: bool) -> EmotionStage:
        net = from_pretrained_checked(
            "emotion", model, AutoModelForImageClassification, source, local_only, dtype, device
        )
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        return EmotionStage(model, net, processor, device, dtype, **options)

    return load_pretrained("emotion", model, load)
