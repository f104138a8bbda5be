"""Tags: an object detector that transformers' AutoModelForObjectDetection loads.

DETR, Conditional DETR, RT-DETR, YOLOS: anything whose image processor has
`post_process_object_detection(outputs, threshold, target_sizes)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL.Image import Image
from transformers import AutoImageProcessor, AutoModelForObjectDetection

from .base import Tag
from .errors import ModelLoadError
from .hub import from_pretrained_checked, load_pretrained
from .images import as_rgb, clamp_box
from .pretrained import PretrainedStage

# COCO checkpoints keep placeholder classes for ids the dataset skipped.
PLACEHOLDER_LABELS = frozenset({"N/A", ""})


@dataclass(eq=False)
class TagStage(PretrainedStage):
    stage = "tags"

    threshold: float = 0.7
    max_tags: int = 20

    def __post_init__(self) -> None:
        self.labels: dict[int, str] = dict(self.model.config.id2label)

    def run(self, images: Sequence[Image]) -> list[list[Tag]]:
        if not images:
            return []
        rgb = [as_rgb(image) for image in images]
        inputs = self.processor(images=rgb, return_tensors="pt")
        inputs = {
            name: value.to(self.device, self.dtype if value.is_floating_point() else None)
            for name, value in inputs.items()
        }
        with torch.inference_mode():
            outputs = self.model(**inputs)
        # Post-process in fp32: softmax and box scaling in fp16 lose pixels on large images.
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        detections = self.processor.post_process_object_detection(
            outputs,
            threshold=self.threshold,
            target_sizes=[(image.height, image.width) for image in rgb],
        )
        return [self._tags(found, image) for found, image in zip(detections, rgb, strict=True)]

    def _tags(self, found: dict[str, torch.Tensor], image: Image) -> list[Tag]:
        tags = []
        for score, label, box in zip(
            found["scores"].tolist(), found["labels"].tolist(), found["boxes"].tolist(), strict=True
        ):
            name = self.labels.get(int(label), str(label))
            if name in PLACEHOLDER_LABELS:
                continue
            tags.append(Tag(name, float(score), clamp_box(box, image.width, image.height)))
        tags.sort(key=lambda tag: tag.confidence, reverse=True)
        return tags[: self.max_tags]


def load_tags(model: str, device: torch.device, dtype: torch.dtype, **options: Any) -> TagStage:
    def load(source: str, local_only: bool) -> TagStage:
        net = from_pretrained_checked(
            "tags", model, AutoModelForObjectDetection, source, local_only, dtype, device
        )
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=local_only)
        if not hasattr(processor, "post_process_object_detection"):
            raise ModelLoadError(
                "tags", model, f"{type(processor).__name__} has no object-detection post-processing"
            )
        return TagStage(model, net, processor, device, dtype, **options)

    return load_pretrained("tags", model, load)
