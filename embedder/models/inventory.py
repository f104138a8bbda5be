"""Each stage's configured model: where it loads from, whether it is here, its size on disk;
and loading it to check it (saving copies for an offline machine: offline_copy.py).

    for found in locate_all():           # no model is loaded, no torch is imported
        print(found.stage, found.model, found.path, found.present, found.size_bytes)
    for result in check(["caption"]):    # loads through load_stage on CPU
        print(result.status, result.reason, result.fix)

Where a model loads from follows the loaders' own rules: a local folder (or a .pt file for
face_vectors); a Hugging Face id in huggingface_hub's cache (HF_HUB_CACHE, else HF_HOME/hub,
the revision refs/main names); facenet-pytorch's torch-hub checkpoint for the released FaceNet
weights (vggface2); the facenet-pytorch package for MTCNN; face_recognition_models for dlib;
the content hash is semsql's own code.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from semsql import stages as registry
from semsql.people import FACENET_WEIGHTS

from . import load_model_config
from .stages.errors import ModelLoadError

Kind = Literal["off", "builtin", "folder", "file", "hub", "packaged", "download", "unsupported"]

MTCNN = "mtcnn"
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")  # facenet_pytorch/data/
DLIB = "dlib"
DLIB_PACKAGE = "face_recognition_models"
DLIB_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})  # huggingface_hub's


@dataclass(frozen=True)
class Location:
    """Where a stage's configured model loads from, found without loading it."""

    stage: str
    setting: str
    """Its SEMSQL_MODEL_<STAGE> variable."""
    configured: bool
    """True when that variable chose the model, False for the default."""
    model: str | None
    """The model as configured; None when the stage is off."""
    kind: Kind
    path: str | None
    """The folder or file it loads from (for a hub id: its cache snapshot, or where it would be)."""
    present: bool
    """Loadable here without network."""
    size_bytes: int | None
    note: str
    """Where it comes from, in words."""
    fix: str | None = None
    """How to make a missing model present."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Checked:
    """What loading a stage's model on CPU gave."""

    stage: str
    model: str | None
    status: Literal["ok", "failed", "off"]
    seconds: float | None = None
    dims: int | None = None
    reason: str | None = None
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- where each model is -------------------------------------------------------------------


def locate_all(
    stages: Iterable[str] = registry.NAMES, env: Mapping[str, str] = os.environ
) -> list[Location]:
    config = load_model_config(env)
    return [
        locate(name, config[name], configured=bool(env.get(registry.model_env_var(name), "")))
        for name in stages
    ]


def locate(stage: str, model: str | None, configured: bool = False) -> Location:
    """Where `model` for `stage` loads from; None for `model` is a stage turned off."""
    setting = registry.model_env_var(stage)
    registry.stage(stage)  # ValueError for an unknown stage
    if model is None:
        return Location(stage, setting, configured, None, "off", None, False, None, "turned off")
    if stage == "faces":
        found = _locate_mtcnn(model)
    elif stage == "face_vectors":
        found = _locate_face_vectors(model)
    elif stage in ("content", "frames"):
        found = _locate_builtin(stage, model)
    else:
        found = _locate_pretrained(stage, model)
    kind, path, present, note, fix = found
    size = disk_size(Path(path)) if present and path is not None else None
    return Location(stage, setting, configured, model, kind, path, present, size, note, fix)


Found = tuple[Kind, str | None, bool, str, str | None]
"""kind, path, present, note, fix."""


def _locate_mtcnn(model: str) -> Found:
    if model.strip().lower() != MTCNN:
        return ("unsupported", None, False, "the only face detector is MTCNN", _off_or(MTCNN))
    folder = package_folder("facenet_pytorch")
    if folder is None:
        return ("packaged", None, False, "ships in facenet-pytorch, which is not installed", _PIP)
    data = folder / "data"
    present = all((data / name).is_file() for name in MTCNN_FILES)
    return ("packaged", str(data), present, "ships in the facenet-pytorch package", None)


def _locate_builtin(stage: str, model: str) -> Found:
    """The content hash and the frame sampler: semsql's own code, no weights."""
    name = registry.stage(stage).default_model
    if model.strip().lower() != name:
        return (
            "unsupported",
            None,
            False,
            f"the only {stage} model is {name}",
            _off_or(name, stage),
        )
    if stage == "frames" and importlib.util.find_spec("av") is None:
        return (
            "builtin",
            None,
            False,
            "needs PyAV, the video extra",
            "pip install 'semsql[video]'",
        )
    return ("builtin", None, True, "computed by semsql itself, no weights", None)


def _locate_face_vectors(model: str) -> Found:
    name = model.strip().lower()
    if name == DLIB:
        folder = package_folder(DLIB_PACKAGE)
        if folder is None:
            fix = "pip install face-recognition-models (in semsql[models])"
            return ("packaged", None, False, f"ships in {DLIB_PACKAGE}, not installed", fix)
        present = all((folder / "models" / file).is_file() for file in DLIB_FILES)
        return ("packaged", str(folder / "models"), present, f"ships in {DLIB_PACKAGE}", None)
    if name in FACENET_WEIGHTS:
        checkpoint = torch_hub_checkpoints() / FACENET_WEIGHTS[name]
        if checkpoint.is_file():
            return ("download", str(checkpoint), True, "facenet-pytorch's download", None)
        fix = (
            f"copy {FACENET_WEIGHTS[name]} to {checkpoint}, or `semsql models download` where "
            f"github.com is reachable, or {_off_or(DLIB, 'face_vectors')}"
        )
        return ("download", str(checkpoint), False, "not downloaded yet (from github.com)", fix)
    path = Path(model).expanduser()
    if path.is_file():
        return ("file", str(path), True, "a local state_dict file", None)
    released = ", ".join(FACENET_WEIGHTS)
    fix = f"give an InceptionResnetV1 state_dict .pt file, {DLIB} or one of {released}"
    return ("file", str(path), False, "not a file", fix)


def _locate_pretrained(stage: str, model: str) -> Found:
    declared = registry.stage(stage)
    path = Path(model).expanduser()
    if path.exists() or _looks_like_path(model):
        packaged = declared.packaged_model is not None and model == declared.model()
        kind: Kind = "packaged" if packaged else "folder"
        note = f"ships in the {declared.packaged_model} package" if packaged else "a local folder"
        if not path.is_dir():
            return (kind, str(path), False, "no such folder", _save_pretrained_fix(stage))
        if not _has_weights(path):
            missing = "a folder without config.json or weights"
            return (kind, str(path), False, missing, _save_pretrained_fix(stage))
        return (kind, str(path), True, note, None)
    cache = hub_cache()
    snapshot = cached_snapshot(cache, model)
    if snapshot is not None and _has_weights(snapshot):
        return ("hub", str(snapshot), True, "in the Hugging Face cache", None)
    where = f"not in the Hugging Face cache ({cache})"
    if snapshot is not None:
        where = f"only partly in the Hugging Face cache ({snapshot}: no config.json or weights)"
    if hub_offline():
        where += "; HF_HUB_OFFLINE is set"
    else:
        where += "; fetched from the hub on first use where it is reachable"
    fix = (
        f"`semsql models download --to DIR {stage}` on a machine with network, copy DIR here "
        f"and set {registry.model_env_var(stage)}=DIR/{stage}; or "
        f"{registry.model_env_var(stage)}=off"
    )
    return ("hub", str(snapshot) if snapshot else None, False, where, fix)


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(
        any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS
    )


def _save_pretrained_fix(stage: str) -> str:
    setting = registry.model_env_var(stage)
    return f"set {setting} to a folder made with `save_pretrained`, or {setting}=off"


_PIP = "pip install 'semsql[models]'"


def _off_or(value: str, stage: str = "faces") -> str:
    setting = registry.model_env_var(stage)
    return f"set {setting}={value} (or off)"


def _looks_like_path(model: str) -> bool:
    """The loaders' rule (embedder/models/stages/hub.py): such a name is a folder, never an id."""
    return model.startswith(("/", "./", "../", "~", ".\\")) or Path(model).is_absolute()


def hub_cache() -> Path:
    """huggingface_hub's cache folder: its constants where it is imported already (what the
    loaders of this process use), else the same rules over the environment."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        return Path(constants.HF_HUB_CACHE)
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    home = os.path.expandvars(os.path.expanduser(home))
    legacy = os.environ.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(os.environ.get("HF_HUB_CACHE", legacy))))


def hub_offline() -> bool:
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        return bool(constants.HF_HUB_OFFLINE)
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in TRUE_VALUES


def cached_snapshot(cache: Path, repo_id: str) -> Path | None:
    """The snapshot folder of `repo_id`'s main revision in a huggingface_hub cache, if any."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    ref = repo / "refs" / "main"
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def torch_hub_checkpoints() -> Path:
    """Where facenet-pytorch keeps its downloaded weights (its get_torch_home rule)."""
    default = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    return Path(os.path.expanduser(os.environ.get("TORCH_HOME", default))) / "checkpoints"


def package_folder(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def disk_size(path: Path) -> int:
    """Bytes of a file, or of the files under a folder (each file once, links followed: a
    Hugging Face snapshot links its files to blobs)."""
    if path.is_file():
        return path.stat().st_size
    seen: set[tuple[int, int]] = set()
    total = 0
    for file in path.rglob("*"):
        try:
            stat = file.stat()
        except OSError:
            continue
        if file.is_file() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_size
    return total


# --- loading each model -------------------------------------------------------------------


def require_model_libraries() -> None:
    """ModuleNotFoundError naming torch (or transformers) on a base install, before any work."""
    importlib.import_module("torch")
    importlib.import_module("transformers")


def check(
    stages: Iterable[str] = registry.NAMES, env: Mapping[str, str] = os.environ
) -> Iterator[Checked]:
    """Load each stage's configured model on CPU through load_stage, one at a time."""
    require_model_libraries()
    from . import load_stage

    config = load_model_config(env)
    for name in stages:
        model = config[name]
        if model is None:
            yield Checked(name, None, "off")
            continue
        started = time.monotonic()
        try:
            loaded = load_stage(name, model, "cpu")
        except ModelLoadError as error:
            yield Checked(name, model, "failed", reason=error.reason, fix=error.fix)
            continue
        seconds = time.monotonic() - started
        dims = getattr(loaded, "dims", None)
        del loaded
        gc.collect()
        yield Checked(name, model, "ok", seconds, dims if isinstance(dims, int) else None)
