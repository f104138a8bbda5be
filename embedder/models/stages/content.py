"""Content: the perceptual hashes of semsql.content_hash, computed by the worker like a model's
output, though there are no weights (so it runs on every install, offline included)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL.Image import Image

from semsql.content_hash import IndexRow, index_rows
from semsql.stages import stage

from .errors import ModelLoadError

HASH_NAME = stage("content").default_model


class ContentHasher:
    stage = "content"

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def run(self, images: Sequence[Image]) -> list[list[IndexRow]]:
        return [index_rows(image) for image in images]


def load_content(model: str, device: Any, dtype: Any, **options: Any) -> ContentHasher:
    if model.strip().lower() != HASH_NAME:
        raise ModelLoadError(
            "content",
            model,
            f"the only content hash is {HASH_NAME}",
            fix=f"set SEMSQL_MODEL_CONTENT={HASH_NAME} or off",
        )
    return ContentHasher(HASH_NAME)
