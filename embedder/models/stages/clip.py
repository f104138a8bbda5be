"""CLIP: image vectors for the library, and text vectors for queries, from one CLIPModel."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL.Image import Image
from transformers import AutoProcessor, CLIPModel

from .hub import from_pretrained_checked, load_config, load_pretrained, require_model_type
from .images import as_rgb, unit_rows
from .pretrained import PretrainedStage


@dataclass(eq=False)
class ClipStage(PretrainedStage):
    stage = "clip"

    def __post_init__(self) -> None:
        self.dims: int = self.model.config.projection_dim
        self.max_tokens: int = self.model.config.text_config.max_position_embeddings

    def run(self, images: Sequence[Image]) -> list[np.ndarray]:
        return list(self.encode_images(images))

    def encode_images(self, images: Sequence[Image]) -> np.ndarray:
        """float32 (len(images), dims), unit rows."""
        if not images:
            return np.zeros((0, self.dims), dtype=np.float32)
        inputs = self.processor(images=[as_rgb(image) for image in images], return_tensors="pt")
        with torch.inference_mode():
            features = self.model.get_image_features(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype)
            )
        return unit_rows(_pooled(features))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dims), unit rows, comparable with encode_images by dot product."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        inputs = self.processor.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        with torch.inference_mode():
            features = self.model.get_text_features(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device),
            )
        return unit_rows(_pooled(features))


def _pooled(features: Any) -> torch.Tensor:
    # transformers 5 returns an output whose pooler_output is the projected vector; 4.x a tensor.
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def load_clip(model: str, device: torch.device, dtype: torch.dtype, **options: Any) -> ClipStage:
    def load(source: str, local_only: bool) -> ClipStage:
        config = load_config(source, local_only)
        require_model_type("clip", model, config, {"clip"}, "a CLIP model")
        net = from_pretrained_checked("clip", model, CLIPModel, source, local_only, dtype, device)
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        return ClipStage(model, net, processor, device, dtype, **options)

    return load_pretrained("clip", model, load)
