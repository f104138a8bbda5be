"""A traced copy of the text encoder for semsql.embed_text's short query texts.

A query is one short text, and on CPU the eager transformer spends a third of its time in
Python dispatch: MiniLM traced with TorchScript and frozen (its weights folded into the graph)
takes 11 ms at the median for a query instead of 15. The copy is made once and checked against
the eager model on texts of several lengths, alone and batched with padding; where tracing
fails or the two disagree, the eager model answers, and the worker's log says why.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .text import TextEncoderStage, mean_pooled

log = logging.getLogger(__name__)

# Short, medium, longer than max_seq_length, and the three batched (padded) together.
CHECK_TEXTS = ("a", "a photo of a dog", "children playing in the snow " * 100)
# The traced vectors must point the same way as the eager ones (float32 rounding only).
LEAST_COSINE = 0.9999


class _MeanPooled(torch.nn.Module):
    """The transformer and the mean pooling under the attention mask, as one traceable call."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens: torch.Tensor = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=False
        )[0]
        return mean_pooled(tokens, attention_mask)


class _TracedTextEncoder(TextEncoderStage):
    """The stage, its tokenizing, batching and normalising, with the traced forward pass."""

    def __init__(self, stage: TextEncoderStage, traced: torch.jit.ScriptModule) -> None:
        super().__init__(
            stage.model_name, stage.model, stage.tokenizer, stage.device, stage.dtype,
            stage.max_tokens, stage.max_batch,
        )  # fmt: skip
        self.traced = traced

    def pooled(self, inputs: Any) -> torch.Tensor:
        result: torch.Tensor = self.traced(inputs["input_ids"], inputs["attention_mask"])
        return result


def query_encoder(stage: TextEncoderStage) -> Callable[[Sequence[str]], np.ndarray]:
    """`stage.encode`, or the same on a traced copy of its model where that is faster and
    gives the same vectors (CPU, float32)."""
    if stage.device.type != "cpu" or stage.dtype != torch.float32:
        return stage.encode
    try:
        traced = _TracedTextEncoder(stage, _trace(stage))
        batches = [[text] for text in CHECK_TEXTS] + [list(CHECK_TEXTS)]
        worst = min(
            float((traced.encode(batch) * stage.encode(batch)).sum(axis=1).min())
            for batch in batches
        )
    except Exception as error:  # any model tracing cannot follow: the eager one answers
        log.warning("text queries: %s could not be traced, so it runs eagerly (%s: %s)",
                    stage.model_name, type(error).__name__, error)  # fmt: skip
        return stage.encode
    if worst < LEAST_COSINE:
        log.warning("text queries: %s traced gives other vectors (cosine %.6f), so it runs "
                    "eagerly", stage.model_name, worst)  # fmt: skip
        return stage.encode
    return traced.encode


def _trace(stage: TextEncoderStage) -> torch.jit.ScriptModule:
    example = stage.tokenize([CHECK_TEXTS[1]])
    with torch.inference_mode(), warnings.catch_warnings():
        # Tracing warns of shape-dependent branches (the check below is what tells) and of the
        # deprecations it meets walking the model, TorchScript's own too (torch 2.14; a torch
        # without it makes the eager model answer).
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(
            _MeanPooled(stage.model).eval(),
            (example["input_ids"], example["attention_mask"]),
            check_trace=False,
        )
        frozen: torch.jit.ScriptModule = torch.jit.freeze(traced.eval())
    return frozen
