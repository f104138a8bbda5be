"""The traced text encoder that answers embed_text: the same vectors as the eager model, and
the eager model wherever tracing fails or gives other vectors."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fix_models import minilm_folder
from transformers import AutoTokenizer

from semsql.embedder.models.stages.text import TextEncoderStage
from semsql.embedder.models.stages.text_queries import query_encoder

TEXTS = [
    "a",
    "a dog playing in the snow",
    "Grace Hopper in uniform, 1984, at the Pentagon",
    "word " * 400,  # truncated at max_seq_length
]


def test_traced_minilm_gives_the_eager_vectors(text_encoder) -> None:
    encode = query_encoder(text_encoder)
    assert encode != text_encoder.encode  # traced, not the fallback
    for texts in ([text] for text in TEXTS):
        np.testing.assert_allclose(encode(texts), text_encoder.encode(texts), atol=1e-5)
    # Batched with padding, in more than one chunk of max_batch.
    many = [f"{text} {n}" for n in range(3) for text in TEXTS]
    chunked = TextEncoderStage(
        text_encoder.model_name, text_encoder.model, text_encoder.tokenizer,
        text_encoder.device, text_encoder.dtype, text_encoder.max_tokens, max_batch=5,
    )  # fmt: skip
    np.testing.assert_allclose(query_encoder(chunked)(many), text_encoder.encode(many), atol=1e-5)
    assert encode([]).shape == (0, 384)


class ShapeDependent(torch.nn.Module):
    """A text model whose output depends on a Python branch on the input's length: a trace
    keeps the branch it took, so the traced copy is wrong for other lengths."""

    def __init__(self, dims: int = 8, vocabulary: int = 40_000, untraceable: bool = False):
        super().__init__()
        self.config = SimpleNamespace(hidden_size=dims)
        self.embeddings = torch.nn.Embedding(vocabulary, dims)
        self.untraceable = untraceable

    def forward(self, input_ids, attention_mask, token_type_ids=None, return_dict=True):
        hidden = self.embeddings(input_ids)
        if input_ids.shape[1] > 4:
            hidden = -hidden
        if self.untraceable and torch.jit.is_tracing():
            raise RuntimeError("this model cannot be traced")
        return SimpleNamespace(last_hidden_state=hidden) if return_dict else (hidden,)


@pytest.mark.parametrize(
    ("untraceable", "says"), [(False, "traced gives other vectors"), (True, "could not be traced")]
)
def test_a_model_tracing_gets_wrong_runs_eagerly(untraceable, says, caplog) -> None:
    torch.manual_seed(0)
    stage = TextEncoderStage(
        "shape-dependent", ShapeDependent(untraceable=untraceable).eval(),
        AutoTokenizer.from_pretrained(minilm_folder()), torch.device("cpu"), torch.float32, 64,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        encode = query_encoder(stage)
    assert encode == stage.encode
    assert any(
        says in r.getMessage() and "shape-dependent" in r.getMessage() for r in caplog.records
    )


def test_other_devices_and_dtypes_run_eagerly(text_encoder) -> None:
    half = TextEncoderStage(
        text_encoder.model_name, text_encoder.model, text_encoder.tokenizer,
        text_encoder.device, torch.float16, text_encoder.max_tokens,
    )  # fmt: skip
    assert query_encoder(half) == half.encode
