"""Frames: the sampler of semsql.video, run by the worker like a model though it has no weights.
It decodes a video once and picks the frames every image stage then reads (semsql.frames)."""

from __future__ import annotations

from typing import Any

from semsql.stages import stage
from semsql.video import NEEDS_EXTRA, SampledFrame, Sampling, Source, sample_frames, video_available

from .errors import ModelLoadError

SAMPLER_NAME = stage("frames").default_model


class FrameSampler:
    stage = "frames"

    def __init__(self, model_name: str, sampling: Sampling) -> None:
        self.model_name = model_name
        self.sampling = sampling

    def sample(self, source: Source) -> list[SampledFrame]:
        return sample_frames(source, self.sampling)


def load_frames(model: str, device: Any, dtype: Any, **options: Any) -> FrameSampler:
    """options: the fields of semsql.video.Sampling (every, max_frames, ...)."""
    if model.strip().lower() != SAMPLER_NAME:
        raise ModelLoadError(
            "frames",
            model,
            f"the only frame sampler is {SAMPLER_NAME}",
            fix=f"set SEMSQL_MODEL_FRAMES={SAMPLER_NAME} or off",
        )
    if not video_available():
        raise ModelLoadError("frames", model, NEEDS_EXTRA, fix="pip install 'semsql[video]'")
    return FrameSampler(SAMPLER_NAME, Sampling(**options))
