"""Text: sentence vectors from a sentence-transformers model (all-MiniLM-L6-v2), without it.

Same recipe as sentence-transformers for this model: tokenize (truncating at the model's
max_seq_length), run the transformer, mean-pool the token vectors under the attention mask,
L2-normalise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from transformers import AutoModel, AutoTokenizer

from .errors import ModelLoadError
from .hub import from_pretrained_checked, load_config, load_pretrained
from .images import chunks, unit_rows


class TextEncoderStage:
    stage = "text"

    def __init__(
        self,
        model_name: str,
        model: Any,
        tokenizer: Any,
        device: torch.device,
        dtype: torch.dtype,
        max_tokens: int,
        max_batch: int = 256,
    ) -> None:
        self.model_name = model_name
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.max_tokens = max_tokens
        self.max_batch = max_batch
        self.dims: int = model.config.hidden_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        return np.concatenate(
            [self._encode(batch) for batch in chunks(list(texts), self.max_batch)]
        )

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        inputs = self.tokenize(texts).to(self.device)
        with torch.inference_mode():
            return unit_rows(self.pooled(inputs))

    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )

    def pooled(self, inputs: Any) -> torch.Tensor:
        """The tokenized texts' token vectors, mean-pooled under the attention mask (not
        normalised)."""
        return mean_pooled(self.model(**inputs).last_hidden_state, inputs["attention_mask"])


def mean_pooled(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).float()
    return (tokens.float() * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def load_text(
    model: str, device: torch.device, dtype: torch.dtype, **options: Any
) -> TextEncoderStage:
    def load(source: str, local_only: bool) -> TextEncoderStage:
        pooling = _optional_json(source, "1_Pooling/config.json", local_only) or {}
        if pooling and not pooling.get("pooling_mode_mean_tokens", False):
            raise ModelLoadError(
                "text", model, "only mean-pooling sentence-transformers models are supported"
            )
        config = load_config(source, local_only)
        if config.is_encoder_decoder or not isinstance(getattr(config, "hidden_size", None), int):
            reason = f"wrong architecture: a {config.model_type!r} model is not a text encoder"
            raise ModelLoadError("text", model, reason)
        net = from_pretrained_checked("text", model, AutoModel, source, local_only, dtype, device)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        sbert = _optional_json(source, "sentence_bert_config.json", local_only) or {}
        max_tokens = int(sbert.get("max_seq_length") or min(tokenizer.model_max_length, 512))
        return TextEncoderStage(model, net, tokenizer, device, dtype, max_tokens, **options)

    return load_pretrained("text", model, load)


def _optional_json(source: str, filename: str, local_only: bool) -> dict[str, Any] | None:
    folder = Path(source)
    if folder.is_dir():
        path = folder / filename
        return _json_object(path.read_text()) if path.is_file() else None
    try:
        return _json_object(
            Path(hf_hub_download(source, filename, local_files_only=local_only)).read_text()
        )
    except EntryNotFoundError:
        return None


def _json_object(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"a JSON object was expected, not {type(value).__name__}")
    return value
