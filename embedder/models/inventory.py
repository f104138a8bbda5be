"""Each stage's configured model: where it loads from, whether it is here, its size on disk;
loading it to check it; saving it into one folder that prepares an offline machine.

    for found in locate_all():           # no model is loaded, no torch is imported
        print(found.stage, found.model, found.path, found.present, found.size_bytes)
    for result in check(["caption"]):    # loads through load_stage on CPU
        print(result.status, result.reason, result.fix)
    for saved in download(Path("/models")):
        print(saved.status, saved.setting_value)

Where a model loads from follows the loaders' own rules: a local folder (or a .pt file for
face_vectors); a Hugging Face id in huggingface_hub's cache (HF_HUB_CACHE, else HF_HOME/hub,
the revision refs/main names); facenet-pytorch's torch-hub checkpoint for the released FaceNet
weights (vggface2); the facenet-pytorch package for MTCNN; face_recognition_models for dlib.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from semsql import stages as registry

from . import load_model_config
from .stages.errors import ModelLoadError

Kind = Literal["off", "folder", "file", "hub", "packaged", "download", "unsupported"]

MTCNN = "mtcnn"
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")  # facenet_pytorch/data/
DLIB = "dlib"
DLIB_PACKAGE = "face_recognition_models"
DLIB_FILES = ("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
# facenet-pytorch's released InceptionResnetV1 weights, by the name SEMSQL_MODEL_FACE_VECTORS
# gives them (the same table as embedder/models/stages/face_vectors.py, which imports torch).
FACENET_WEIGHTS = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
FACE_VECTORS_FILE = "face_vectors.pt"
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
# What a sentence-transformers folder adds to the transformer's own files; the text stage
# reads 1_Pooling/config.json and sentence_bert_config.json (its max_seq_length).
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)
SETTINGS_FILE = "semsql-models.env"
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


@dataclass(frozen=True)
class Saved:
    """What `download` did with a stage's model."""

    stage: str
    model: str | None
    status: Literal["saved", "packaged", "off", "failed"]
    path: str | None = None
    """Where it was saved."""
    setting_value: str | None = None
    """The SEMSQL_MODEL_<STAGE> value that loads the saved copy."""
    size_bytes: int | None = None
    seconds: float | None = None
    reason: str | None = None
    fix: str | None = None

    @property
    def setting(self) -> str:
        return registry.model_env_var(self.stage)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "setting": self.setting}


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


# --- saving each model for an offline machine ---------------------------------------------------


Progress = Callable[[str], None]


def download(
    to: Path,
    stages: Iterable[str] = registry.NAMES,
    env: Mapping[str, str] = os.environ,
    progress: Progress | None = None,
) -> Iterator[Saved]:
    """Save each stage's configured model under `to` (fetching it where it must be), one at a
    time: transformers models with save_pretrained (model and processor or tokenizer) into
    `to/<stage>`, FaceNet weights as `to/face_vectors.pt`. Packaged ones need nothing."""
    require_model_libraries()
    say = progress or (lambda line: None)
    to = to.expanduser().resolve()
    to.mkdir(parents=True, exist_ok=True)
    config = load_model_config(env)
    for name in stages:
        model = config[name]
        if model is None:
            yield Saved(name, None, "off")
            continue
        started = time.monotonic()
        try:
            saved = _save(name, model, to, say)
        except ModelLoadError as error:
            yield Saved(name, model, "failed", reason=error.reason, fix=error.fix)
            continue
        except OSError as error:  # the folder it writes to: full, read-only, ...
            reason = f"cannot write its copy under {to} ({error})"
            yield Saved(name, model, "failed", reason=reason, fix="free space or choose --to")
            continue
        finally:
            gc.collect()
        if saved is None:
            yield Saved(name, model, "packaged")
            continue
        seconds = time.monotonic() - started
        yield Saved(name, model, "saved", str(saved), str(saved), disk_size(saved), seconds)


def _save(stage: str, model: str, to: Path, say: Progress) -> Path | None:
    """The saved file or folder; None for a model that ships in a package."""
    if stage == "faces" or (stage == "face_vectors" and model.strip().lower() == DLIB):
        found = locate(stage, model)
        if not found.present:
            raise ModelLoadError(stage, model, found.note, fix=found.fix)
        return None
    from . import load_stage

    say(f"{stage}: loading {model}")
    loaded = load_stage(stage, model, "cpu")  # fetches it where it is not here yet
    if stage == "face_vectors":
        source = locate(stage, model)
        if source.path is None or not source.present:  # not found where it was loaded from
            raise ModelLoadError(stage, model, f"its weights file is not at {source.path}")
        target = to / saved_name(stage)
        say(f"{stage}: copying {source.path} to {target}")
        _replace(target, lambda partial: shutil.copyfile(source.path or "", partial))
        return target
    target = to / saved_name(stage)
    say(f"{stage}: saving to {target}")
    _replace(target, lambda partial: _save_pretrained(stage, model, loaded, partial))
    return target


def _save_pretrained(stage: str, model: str, loaded: Any, folder: Path) -> None:
    loaded.model.save_pretrained(folder)
    for part in ("processor", "tokenizer"):
        if hasattr(loaded, part):
            getattr(loaded, part).save_pretrained(folder)
    source = locate(stage, model)
    if source.path is not None and source.present:
        for name in SENTENCE_TRANSFORMERS_FILES:
            extra = Path(source.path) / name
            if extra.is_file():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(extra, folder / name)


def _replace(target: Path, write: Callable[[Path], object]) -> None:
    """Write into a partial path beside `target`, then put it in place of any older copy: an
    interrupted download leaves the older copy whole."""
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    try:
        write(partial)
        _usual_modes(partial)
        old = target.with_name(f".{target.name}.old")
        _remove(old)
        if target.exists():
            target.rename(old)
        partial.rename(target)
        _remove(old)
    finally:
        _remove(partial)


def _usual_modes(path: Path) -> None:
    """The modes a new file would have (safetensors writes its files 0600): a worker run by
    another user of the machine that the folder is copied to can read them."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def export_lines(results: Iterable[Saved]) -> list[str]:
    """Shell lines setting SEMSQL_MODEL_<STAGE> to each saved copy."""
    return [
        f"export {saved.setting}={shlex.quote(saved.setting_value)}"
        for saved in results
        if saved.setting_value is not None
    ]


def write_settings(to: Path) -> Path:
    """`to/semsql-models.env`: the settings for every model saved in `to` (by this download or
    an earlier one), under SEMSQL_MODELS_DIR (by default `to`), so that a copy of the folder
    elsewhere loads with `SEMSQL_MODELS_DIR=/its/path . /its/path/semsql-models.env`."""
    folder = to.expanduser().resolve()
    lines = [
        "# semsql models saved by `semsql models download`. Load with",
        f"#   . {_one_line(shlex.quote(str(folder / SETTINGS_FILE)))}",
        "# or, where the folder was copied to another path,",
        f"#   SEMSQL_MODELS_DIR=/that/path . /that/path/{SETTINGS_FILE}",
        f'SEMSQL_MODELS_DIR="${{SEMSQL_MODELS_DIR:-{_double_quoted(str(folder))}}}"',
    ]
    for stage in registry.NAMES:
        name = saved_name(stage)
        if (folder / name).exists():
            setting = registry.model_env_var(stage)
            lines.append(f'export {setting}="$SEMSQL_MODELS_DIR/{_double_quoted(name)}"')
    path = folder / SETTINGS_FILE
    # A new file put in place of the old one: never written through a link that is there.
    descriptor, partial = tempfile.mkstemp(dir=folder, prefix=f".{SETTINGS_FILE}.")
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write("\n".join(lines) + "\n")
        _usual_modes(Path(partial))
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return path


def _one_line(text: str) -> str:
    """`text` for a shell comment: a line break in it would end the comment and the rest of
    the name would run as commands when the file is sourced."""
    return text.replace("\n", "?").replace("\r", "?")


def saved_name(stage: str) -> str:
    """The name of a stage's saved copy in a download folder."""
    return FACE_VECTORS_FILE if stage == "face_vectors" else stage


def _double_quoted(text: str) -> str:
    """`text` for the inside of a double-quoted shell word."""
    return "".join("\\" + char if char in '"$`\\' else char for char in text)
