"""Load a transformers model from a local folder or a Hugging Face id, failing fast and clearly.

A hub id is tried in the local Hugging Face cache first (no network). Only on a cache miss is the
hub contacted, after one short reachability probe: on a closed network `from_pretrained` would
otherwise retry for ~25 s per file before giving up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch
from huggingface_hub import constants, get_session
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from transformers import AutoConfig, PretrainedConfig

from semsql.stages import model_env_var

from .errors import ModelLoadError

T = TypeVar("T")
Loader = Callable[[str, bool], T]

HUB_PROBE_TIMEOUT_S = 5.0
# A checkpoint that leaves more than this share of the architecture's weights at random
# initialisation is the wrong checkpoint (transformers would only log it).
MAX_MISSING_WEIGHT_SHARE = 0.5


def load_pretrained(stage: str, model: str, load: Loader[T]) -> T:
    """Call `load(source, local_files_only)` for `model`, a folder or a hub id.

    Every failure comes out as a ModelLoadError naming the stage, the model and the reason.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(stage, model, f"{path} is a file, not a folder with config.json")
        return _translating(stage, model, lambda: load(str(path), True))
    if _looks_like_path(model):
        raise ModelLoadError(stage, model, f"folder {path} does not exist")

    try:
        return load(model, True)
    except ModelLoadError:
        raise
    except OSError:
        pass  # not (fully) in the local cache: try the hub below
    except Exception as exc:
        raise _as_load_error(stage, model, exc) from exc

    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            stage, model, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        )
    unreachable = hub_unreachable_reason()
    if unreachable:
        env_var = model_env_var(stage)
        raise ModelLoadError(
            stage,
            model,
            f"there is no local folder of that name, it is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and the hub {constants.ENDPOINT} is unreachable "
            f"({unreachable})",
            fix=(
                f"set {env_var} to a local folder made with `save_pretrained` (model and "
                f"processor; `semsql models download` makes one where the hub is reachable), "
                f"or fill the cache there (`hf download {model}`), or {env_var}=off"
            ),
        )
    return _translating(stage, model, lambda: load(model, False))


def hub_unreachable_reason(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers one HEAD request within `timeout_s`, else why not."""
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
    except Exception as exc:  # any transport failure means "unreachable"
        return f"{type(exc).__name__}: {exc}"
    return None


def load_config(source: str, local_only: bool) -> PretrainedConfig:
    config: PretrainedConfig = AutoConfig.from_pretrained(source, local_files_only=local_only)
    return config


def require_model_type(
    stage: str, model: str, config: PretrainedConfig, allowed: Iterable[str], wanted: str
) -> None:
    """Refuse a folder that holds some other kind of model before loading its weights."""
    if config.model_type not in set(allowed):
        raise ModelLoadError(
            stage, model, f"wrong architecture: it is a {config.model_type!r} model, not {wanted}"
        )


def from_pretrained_checked(
    stage: str,
    model: str,
    model_class: Any,
    source: str,
    local_only: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.nn.Module:
    """`model_class.from_pretrained` on `device` in eval mode, refusing checkpoints that mostly
    miss weights."""
    net, info = model_class.from_pretrained(
        source, local_files_only=local_only, dtype=dtype, output_loading_info=True
    )
    missing = len(info.get("missing_keys", ()))
    total = len(net.state_dict())
    if total and missing / total > MAX_MISSING_WEIGHT_SHARE:
        raise ModelLoadError(
            stage,
            model,
            f"wrong checkpoint: {missing} of {total} weights of {type(net).__name__} "
            "are missing from it",
        )
    module: torch.nn.Module = net
    return module.to(device).eval()


def _translating(stage: str, model: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except ModelLoadError:
        raise
    except Exception as exc:
        raise _as_load_error(stage, model, exc) from exc


def _as_load_error(stage: str, model: str, exc: Exception) -> ModelLoadError:
    detail = _first_line(exc)
    if isinstance(exc, ImportError):
        env_var = model_env_var(stage)
        return ModelLoadError(
            stage,
            model,
            f"it needs a Python package that is not installed ({detail})",
            fix=f"install that package, or set {env_var} to a model that does not need it, "
            f"or {env_var}=off",
        )
    if isinstance(exc, GatedRepoError):
        reason = f"the hub repository is gated: log in and accept its terms ({detail})"
    elif isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError):
        reason = f"no such model on the Hugging Face hub ({detail})"
    elif isinstance(exc, OSError):
        reason = f"missing or unreadable files ({detail})"
    else:
        reason = f"wrong architecture or corrupt files ({type(exc).__name__}: {detail})"
    return ModelLoadError(stage, model, reason)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\")) or Path(model).is_absolute()
