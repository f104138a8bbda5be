"""Caption: BLIP image captioning (Salesforce/blip-image-captioning-base)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL.Image import Image
from transformers import AutoProcessor, BlipForConditionalGeneration

from .hub import from_pretrained_checked, load_config, load_pretrained, require_model_type
from .images import as_rgb
from .pretrained import PretrainedStage


@dataclass(eq=False)
class CaptionStage(PretrainedStage):
    stage = "caption"

    max_new_tokens: int = 30
    num_beams: int = 1

    def run(self, images: Sequence[Image]) -> list[str]:
        if not images:
            return []
        inputs = self.processor(images=[as_rgb(image) for image in images], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            token_ids = self.model.generate(
                pixel_values=pixel_values,
                max_new_tokens=self.max_new_tokens,
                num_beams=self.num_beams,
                do_sample=False,
            )
        texts = self.processor.batch_decode(token_ids, skip_special_tokens=True)
        return [text.strip() for text in texts]


def load_caption(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> CaptionStage:
    def load(source: str, local_only: bool) -> CaptionStage:
        config = load_config(source, local_only)
        require_model_type("caption", model, config, {"blip"}, "a BLIP captioning model")
        net = from_pretrained_checked(
            "caption", model, BlipForConditionalGeneration, source, local_only, dtype, device
        )
        processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
        return CaptionStage(model, net, processor, device, dtype, **options)

    return load_pretrained("caption", model, load)
