"""Saving each stage's configured model into one folder that prepares an offline machine.

    for saved in download(Path("/models")):
        print(saved.status, saved.setting_value)
    write_settings(Path("/models"))      # /models/semsql-models.env, the settings that load them

Transformers models are saved with save_pretrained (model and processor or tokenizer) as
`DIR/<stage>`, FaceNet weights copied as `DIR/face_vectors.pt`; packaged and built-in ones
(the content hash) need nothing.
"""

from __future__ import annotations

import gc
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from semsql import stages as registry

from . import load_model_config
from .inventory import DLIB, disk_size, locate, require_model_libraries
from .stages.errors import ModelLoadError

FACE_VECTORS_FILE = "face_vectors.pt"
SETTINGS_FILE = "semsql-models.env"
# What a sentence-transformers folder adds to the transformer's own files; the text stage
# reads 1_Pooling/config.json and sentence_bert_config.json (its max_seq_length).
SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)


@dataclass(frozen=True)
class Saved:
    """What `download` did with a stage's model."""

    stage: str
    model: str | None
    status: Literal["saved", "packaged", "builtin", "off", "failed"]
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
        if locate(name, model).kind == "builtin":
            yield Saved(name, model, "builtin")
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
