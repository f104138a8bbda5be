"""The model layer: which model each stage uses, and loading it on a device.

    config = load_model_config()                # {"caption": "Salesforce/...", "tags": None, ...}
    stage = load_stage("caption", config["caption"], device="auto")
    captions = stage.run(images)

Each stage's model is a Hugging Face id or a local folder (a .pt file for face_vectors), set by
SEMSQL_MODEL_<STAGE>; the value `off` (or `none`) turns the stage off, and `on` names its
default. A stage declared off by default (segments) is off unless its setting is given. The
stages, their defaults and loaders are declared in semsql.stages. This package is a library:
the worker daemon (semsql.embedder) and the CLI use it; it uses neither.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload

from semsql import stages as registry
from semsql.stages import model_env_var

from .stages.base import DetectedFace, Emotion, FaceStage, ImageStage, Stage, Tag, TextEncoder
from .stages.errors import ModelLoadError

# torch, transformers and facenet load only with a stage: reading the configuration (the CLI
# does) works without the [models] extra and costs no import time.
if TYPE_CHECKING:
    import torch

    from .stages.caption import CaptionStage
    from .stages.clip import ClipStage
    from .stages.content import ContentHasher
    from .stages.emotion import EmotionStage
    from .stages.face_vectors import FaceVectorStage
    from .stages.faces import FaceDetector
    from .stages.frames import FrameSampler
    from .stages.segments import SegmentStage
    from .stages.tags import TagStage
    from .stages.text import TextEncoderStage

    Device = torch.device | str

__all__ = [
    "DEFAULT_MODELS",
    "STAGES",
    "DetectedFace",
    "Emotion",
    "FaceStage",
    "ImageStage",
    "LoadedStages",
    "ModelLoadError",
    "Stage",
    "Tag",
    "TextEncoder",
    "default_models",
    "load_model_config",
    "load_stage",
    "load_stages",
    "model_env_var",
]

STAGES = registry.NAMES
OFF_VALUES = frozenset({"off", "none"})
ON_VALUE = "on"


# transformers switches weight initialisation off while it loads by patching torch and
# PreTrainedModel process-wide; two threads loading at once can leave it off for good (later
# loads then keep missing weights on the meta device). Loads in one process take turns.
_LOADING = threading.Lock()


def default_models() -> dict[str, str]:
    return {stage.name: stage.model() for stage in registry.STAGES}


DEFAULT_MODELS = default_models()


def load_model_config(env: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """Each stage's model from SEMSQL_MODEL_<STAGE>, else the default; None when turned off.

    An empty value counts as unset: the default, or None for a stage off by default.
    """
    config: dict[str, str | None] = {}
    for spec in registry.STAGES:
        stage = spec.name
        value = env.get(model_env_var(stage), "").strip()
        if not value:
            config[stage] = None if spec.off_by_default else DEFAULT_MODELS[stage]
        elif value.lower() == ON_VALUE:
            config[stage] = DEFAULT_MODELS[stage]
        elif value.lower() in OFF_VALUES:
            config[stage] = None
        else:
            config[stage] = value
    return config


@overload
def load_stage(
    stage: Literal["caption"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> CaptionStage: ...
@overload
def load_stage(
    stage: Literal["tags"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> TagStage: ...
@overload
def load_stage(
    stage: Literal["faces"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> FaceDetector: ...
@overload
def load_stage(
    stage: Literal["face_vectors"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> FaceVectorStage: ...
@overload
def load_stage(
    stage: Literal["emotion"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> EmotionStage: ...
@overload
def load_stage(
    stage: Literal["clip"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> ClipStage: ...
@overload
def load_stage(
    stage: Literal["content"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> ContentHasher: ...
@overload
def load_stage(
    stage: Literal["frames"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> FrameSampler: ...
@overload
def load_stage(
    stage: Literal["text"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> TextEncoderStage: ...
@overload
def load_stage(
    stage: Literal["segments"],
    model: str,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> SegmentStage: ...
@overload
def load_stage(
    stage: str,
    model: str | None,
    device: Device = ...,
    dtype: torch.dtype | None = ...,
    **options: Any,
) -> Any: ...


def load_stage(
    stage: str,
    model: str | None,
    device: Device = "auto",
    dtype: torch.dtype | None = None,
    **options: Any,
) -> Any:
    """Load `model` for `stage` on `device`; None when `model` is None (the stage is off).

    `dtype` defaults to default_dtype(device) (fp16 on CUDA); MTCNN always runs in fp32.
    `options` go to the stage, e.g. threshold=0.5 for tags, max_new_tokens=40 for caption.
    Raises ModelLoadError, whose message says which stage and model, why, and how to fix it.
    """
    declared = registry.stage(stage)  # ValueError for an unknown stage
    if model is None:
        return None
    try:
        from .device import default_dtype, resolve_device
    except ImportError as exc:
        raise ModelLoadError(
            stage,
            model,
            f"torch is not installed ({exc})",
            fix=f"pip install 'semsql[models]', or {model_env_var(stage)}=off",
        ) from exc
    torch_device = resolve_device(device) if isinstance(device, str) else device
    module_name, function_name = declared.loader.split(":")
    try:
        module = importlib.import_module(f"{__package__}.stages.{module_name}")
    except ImportError as exc:
        raise ModelLoadError(
            stage,
            model,
            f"a package it needs is not installed ({exc})",
            fix=f"pip install 'semsql[models]', or {model_env_var(stage)}=off",
        ) from exc
    loader = getattr(module, function_name)
    _quiet_transformers()
    with _LOADING:
        return loader(model, torch_device, dtype or default_dtype(torch_device), **options)


def _quiet_transformers() -> None:
    """No per-load progress bars: they clutter CLI output and the worker's log."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()


@dataclass
class LoadedStages:
    """What load_stages could load; a stage that failed is in `errors`, never fatal."""

    stages: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, ModelLoadError] = field(default_factory=dict)
    off: list[str] = field(default_factory=list)


def load_stages(config: Mapping[str, str | None], device: Device = "auto") -> LoadedStages:
    """Load every configured stage, collecting failures instead of raising them."""
    from .device import resolve_device

    torch_device = resolve_device(device) if isinstance(device, str) else device
    loaded = LoadedStages()
    for stage, model in config.items():
        if model is None:
            loaded.off.append(stage)
            continue
        try:
            loaded.stages[stage] = load_stage(stage, model, torch_device)
        except ModelLoadError as exc:
            loaded.errors[stage] = exc
    return loaded
