"""`semsql models list | check | download` against tiny local models (tests/fix_models.py), the
packaged MiniLM and MTCNN, and a Hugging Face cache laid out as huggingface_hub lays it out.

No model hub is reached: a hub id that is not cached meets an endpoint on loopback port 9
(discard), which refuses at once on any machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result
from fix_models import minilm_folder
from huggingface_hub import constants as hub_constants
from PIL import Image
from test_base_install import BLOCKER, blocked_modules

from semsql.cli.main import cli
from semsql.embedder.models import inventory, load_stage
from semsql.stages import NAMES

CPU = torch.device("cpu")
HUB_ID = "semsql-tests/tiny-clip"
UNREACHABLE = "http://127.0.0.1:9"
NO_SUCH_MODEL = "semsql-tests/no-such-model"
SETTINGS = [f"SEMSQL_MODEL_{name.upper()}" for name in NAMES]


def as_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """`folder`'s files as huggingface_hub caches a download of `repo_id`: blobs named by
    hash, a snapshot of links to them, and refs/main naming the snapshot. Its snapshot."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for file in sorted(path for path in folder.rglob("*") if path.is_file()):
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def sourced(settings_file: Path, **env: str) -> dict[str, str]:
    """The SEMSQL_MODEL_* variables after `. settings_file` in a POSIX shell."""
    script = f". {shlex.quote(str(settings_file))} && env"
    done = subprocess.run(
        ["sh", "-c", script],
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    )
    pairs = (line.partition("=") for line in done.stdout.splitlines())
    return {name: value for name, _, value in pairs if name.startswith("SEMSQL_MODEL_")}


def files_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting, raising=False)


@pytest.fixture
def tiny_env(
    tiny_models: dict[str, str], clean_settings: None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """SEMSQL_MODEL_* naming the tiny local models; faces and text keep their packaged
    defaults."""
    for name in ("caption", "tags", "emotion", "clip", "face_vectors"):
        monkeypatch.setenv(f"SEMSQL_MODEL_{name.upper()}", tiny_models[name])
    return tiny_models


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(hub_constants, "ENDPOINT", UNREACHABLE)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, ["models", *args])


def by_stage(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["stage"]: row for row in rows}


# --- list ------------------------------------------------------------------------------------

LIST_WITHOUT_TORCH = """if True:
    import sys
    from click.testing import CliRunner
    from semsql.cli.main import cli
    result = CliRunner().invoke(cli, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    libraries = ("torch", "transformers", "huggingface_hub")
    loaded = sorted(name for name in libraries if name in sys.modules)
    print(result.output)
    print("loaded:", loaded)
"""


def test_list_says_where_each_model_is_without_loading_any(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf"
    snapshot = as_hub_cache(hf_home / "hub", HUB_ID, Path(tiny_models["clip"]))
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS} | {
        "HF_HOME": str(hf_home),
        "SEMSQL_MODEL_CAPTION": NO_SUCH_MODEL,
        "SEMSQL_MODEL_TAGS": "off",
        "SEMSQL_MODEL_EMOTION": tiny_models["emotion"],
        "SEMSQL_MODEL_CLIP": HUB_ID,
        "SEMSQL_MODEL_FACE_VECTORS": tiny_models["face_vectors"],
    }
    done = subprocess.run(
        [sys.executable, "-c", LIST_WITHOUT_TORCH],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    output, loaded = done.stdout.rsplit("loaded:", 1)
    assert loaded.strip() == "[]"  # nothing loaded a model library
    rows = by_stage(json.loads(output))
    assert list(rows) == list(NAMES)

    caption = rows["caption"]
    assert (caption["kind"], caption["present"], caption["configured"]) == ("hub", False, True)
    assert str(hf_home / "hub") in caption["note"]
    assert "semsql models download" in caption["fix"]
    assert "SEMSQL_MODEL_CAPTION=off" in caption["fix"]

    assert rows["tags"] | {"note": None} == {
        "stage": "tags",
        "setting": "SEMSQL_MODEL_TAGS",
        "configured": True,
        "model": None,
        "kind": "off",
        "path": None,
        "present": False,
        "size_bytes": None,
        "note": None,
        "fix": None,
    }

    clip = rows["clip"]
    assert (clip["kind"], clip["path"], clip["present"]) == ("hub", str(snapshot), True)
    assert clip["size_bytes"] == files_size(Path(tiny_models["clip"]))

    emotion = rows["emotion"]
    assert (emotion["kind"], emotion["present"]) == ("folder", True)
    assert emotion["size_bytes"] == files_size(Path(tiny_models["emotion"]))

    vectors = rows["face_vectors"]
    assert (vectors["kind"], vectors["present"]) == ("file", True)
    assert vectors["size_bytes"] == Path(tiny_models["face_vectors"]).stat().st_size

    faces = rows["faces"]
    assert (faces["model"], faces["kind"], faces["present"]) == ("mtcnn", "packaged", True)
    assert faces["path"].endswith("facenet_pytorch/data") and faces["size_bytes"] > 0

    text = rows["text"]
    assert (text["kind"], text["present"], text["configured"]) == ("packaged", True, False)
    assert text["path"] == str(minilm_folder())
    assert text["size_bytes"] == files_size(minilm_folder())


def test_list_in_words(tiny_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEMSQL_MODEL_TAGS", "off")
    monkeypatch.setenv("SEMSQL_MODEL_CAPTION", "/no/such/blip")
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["caption", "missing", "/no/such/blip"]
    assert "no such folder" in lines[1]
    assert "fix: set SEMSQL_MODEL_CAPTION to a folder made with `save_pretrained`" in lines[2]
    assert "tags          off       (SEMSQL_MODEL_TAGS=off)" in lines
    assert [line.split()[:2] for line in lines if not line.startswith(" ")] == [
        ["caption", "missing"],
        ["tags", "off"],
        ["faces", "here"],
        ["face_vectors", "here"],
        ["emotion", "here"],
        ["clip", "here"],
        ["content", "here"],
        ["text", "here"],
        ["segments", "off"],
        ["frames", "here"],
    ]
    assert "segments      off       (off by default; SEMSQL_MODEL_SEGMENTS=on)" in lines


def test_list_with_the_hub_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    found = inventory.locate("emotion", NO_SUCH_MODEL)
    assert not found.present
    assert f"not in the Hugging Face cache ({tmp_path})" in found.note
    assert "HF_HUB_OFFLINE is set" in found.note


def test_a_partly_cached_model_is_not_present(
    tiny_clip_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    snapshot = as_hub_cache(tmp_path, HUB_ID, Path(tiny_clip_model))
    (snapshot / "model.safetensors").unlink()  # an interrupted download
    found = inventory.locate("clip", HUB_ID)
    assert (found.present, found.path, found.size_bytes) == (False, str(snapshot), None)
    assert "only partly in the Hugging Face cache" in found.note
    (tmp_path / "folder").mkdir()
    shutil.copyfile(snapshot / "config.json", tmp_path / "folder" / "config.json")
    folder = inventory.locate("clip", str(tmp_path / "folder"))
    assert (folder.kind, folder.present) == ("folder", False)
    assert folder.note == "a folder without config.json or weights"


def test_list_finds_facenet_and_dlib_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    missing = inventory.locate("face_vectors", "vggface2")
    checkpoint = tmp_path / "torch" / "checkpoints" / "20180402-114759-vggface2.pt"
    assert (missing.kind, missing.path, missing.present) == ("download", str(checkpoint), False)
    assert f"to {checkpoint}" in (missing.fix or "")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    downloaded = inventory.locate("face_vectors", "vggface2")
    assert (downloaded.present, downloaded.size_bytes) == (True, 7)

    # The dlib backend's weights are two files of the face_recognition_models package.
    package = tmp_path / "site" / "face_recognition_models"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name, size in zip(inventory.DLIB_FILES, (3, 5), strict=True):
        (package / "models" / name).write_bytes(b"x" * size)
    (package / "models" / "unused.dat").write_bytes(b"x" * 100)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    dlib = inventory.locate("face_vectors", "dlib")
    assert (dlib.kind, dlib.path, dlib.present) == ("packaged", str(package / "models"), True)
    (package / "models" / inventory.DLIB_FILES[0]).unlink()
    assert not inventory.locate("face_vectors", "dlib").present


# --- check ------------------------------------------------------------------------------------


def test_check_loads_every_model(
    tiny_env: dict[str, str], tiny_segments_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMSQL_MODEL_TAGS", "off")
    monkeypatch.setenv("SEMSQL_MODEL_SEGMENTS", tiny_segments_model)  # off by default
    result = invoke("check", "--json")
    assert result.exit_code == 0, result.output
    rows = by_stage(json.loads(result.output))
    assert list(rows) == list(NAMES)
    assert {stage: row["status"] for stage, row in rows.items()} == {
        **dict.fromkeys(NAMES, "ok"),
        "tags": "off",
    }
    assert {stage: row["dims"] for stage, row in rows.items() if row["dims"]} == {
        "clip": 16,
        "text": 384,
        "face_vectors": 512,
    }
    assert all(row["seconds"] >= 0 for row in rows.values() if row["status"] == "ok")
    assert rows["caption"]["model"] == tiny_env["caption"]


def test_check_reports_an_unreachable_hub_id_with_its_fix(
    clean_settings: None, unreachable_hub: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMSQL_MODEL_CAPTION", NO_SUCH_MODEL)
    result = invoke("check", "caption", "text")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(f"caption       failed    {NO_SUCH_MODEL}: ")
    assert f"the hub {UNREACHABLE} is unreachable" in lines[0]
    assert lines[1].strip().startswith("fix: set SEMSQL_MODEL_CAPTION to a local folder")
    assert "SEMSQL_MODEL_CAPTION=off" in lines[1]
    assert lines[2].startswith("text          ok        ")
    assert lines[-1] == "error: 1 model(s) could not be loaded: caption"


def test_check_refuses_an_unknown_stage() -> None:
    result = invoke("check", "captions")
    assert result.exit_code == 2
    assert "'captions' is not one of 'caption'" in result.output


# --- download ---------------------------------------------------------------------------------


@pytest.fixture
def hub_copy_of_clip(
    tiny_clip_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The tiny CLIP as HUB_ID in a Hugging Face cache of its own, the hub offline."""
    cache = tmp_path / "hub-cache"
    as_hub_cache(cache, HUB_ID, Path(tiny_clip_model))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("SEMSQL_MODEL_CLIP", HUB_ID)
    yield cache


def test_download_saves_every_model_for_an_offline_machine(
    tiny_env: dict[str, str],
    hub_copy_of_clip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The local models are copies that go away before the saved folder is checked.
    local = tmp_path / "local"
    for name in ("caption", "tags", "emotion"):
        shutil.copytree(tiny_env[name], local / name)
        monkeypatch.setenv(f"SEMSQL_MODEL_{name.upper()}", str(local / name))
    shutil.copyfile(tiny_env["face_vectors"], local / "vectors.pt")
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", str(local / "vectors.pt"))
    target = tmp_path / "models"

    result = CliRunner().invoke(cli, ["models", "download", "--to", str(target)])
    assert result.exit_code == 0, result.output
    exports = {
        f"SEMSQL_MODEL_{name.upper()}": str(target / name)
        for name in ("caption", "tags", "emotion", "clip", "text")
    } | {"SEMSQL_MODEL_FACE_VECTORS": str(target / "face_vectors.pt")}
    lines = [f"export {setting}={path}" for setting, path in exports.items()]
    assert sorted(result.stdout.splitlines()) == sorted(lines)
    # The settings file gives the same settings, and others once the folder has moved.
    settings_file = target / "semsql-models.env"
    assert sourced(settings_file) == exports
    moved = {setting: path.replace(str(target), "/else/where") for setting, path in exports.items()}
    assert sourced(settings_file, SEMSQL_MODELS_DIR="/else/where") == moved
    assert "faces         packaged  mtcnn: ships in a package, nothing to save" in result.stderr
    assert "content       builtin   phash256: semsql's own code, nothing to save" in result.stderr
    assert sorted(path.name for path in target.iterdir()) == sorted(
        ["caption", "tags", "emotion", "clip", "text", "face_vectors.pt", "semsql-models.env"]
    )
    # sentence-transformers' own files come along: the saved MiniLM cuts texts where it did.
    assert (target / "text" / "1_Pooling" / "config.json").is_file()
    assert load_stage("text", str(target / "text"), CPU).max_tokens == 256

    # The saved models compute what the originals compute.
    image = Image.new("RGB", (40, 30), (200, 120, 40))
    original_clip, saved_clip = (
        load_stage("clip", model, CPU) for model in (HUB_ID, exports["SEMSQL_MODEL_CLIP"])
    )
    np.testing.assert_array_equal(original_clip.run([image])[0], saved_clip.run([image])[0])
    texts = ["a cat on a mat", "snow " * 400]
    original_text = load_stage("text", str(minilm_folder()), CPU)
    saved_text = load_stage("text", exports["SEMSQL_MODEL_TEXT"], CPU)
    np.testing.assert_allclose(original_text.encode(texts), saved_text.encode(texts), atol=1e-6)

    # The offline machine: the sources gone, no hub (offline), only the printed settings.
    shutil.rmtree(local)
    shutil.rmtree(hub_copy_of_clip)
    for setting, path in exports.items():
        monkeypatch.setenv(setting, path)
    check = invoke("check", "--json")
    assert check.exit_code == 0, check.output
    rows = by_stage(json.loads(check.stdout))
    assert {stage: row["status"] for stage, row in rows.items()} == {
        **dict.fromkeys(NAMES, "ok"),
        "segments": "off",  # off by default: nothing to save
    }
    assert rows["clip"]["model"] == str(target / "clip")


def test_download_goes_on_after_a_model_it_cannot_fetch(
    clean_settings: None, unreachable_hub: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMSQL_MODEL_CAPTION", NO_SUCH_MODEL)
    target = tmp_path / "models"
    result = CliRunner().invoke(
        cli, ["models", "download", "--to", str(target), "caption", "faces", "text"]
    )
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [f"export SEMSQL_MODEL_TEXT={target / 'text'}"]
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"caption       failed    {NO_SUCH_MODEL}: ")
    assert "is unreachable" in errors[0]
    assert "fix: set SEMSQL_MODEL_CAPTION to a local folder" in errors[1]
    assert errors[-1] == "error: 1 model(s) could not be saved: caption"
    assert not (target / "caption").exists()
    assert sorted(path.name for path in target.iterdir()) == ["semsql-models.env", "text"]
    saved_text = {"SEMSQL_MODEL_TEXT": str(target / "text")}
    assert sourced(target / "semsql-models.env") == saved_text

    # A later download into the folder keeps what the file says of the earlier copies.
    again = CliRunner().invoke(cli, ["models", "download", "--to", str(target), "faces"])
    assert again.exit_code == 0, again.output
    assert again.stdout == ""
    assert sourced(target / "semsql-models.env") == saved_text


def test_download_replaces_an_older_copy(
    clean_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / 'my "models" $HOME `x`'  # words the shell must be told literally
    (target / "text").mkdir(parents=True)
    (target / "text" / "stale.bin").write_bytes(b"old")
    result = CliRunner().invoke(cli, ["models", "download", "--to", str(target), "text", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    [export] = report["settings"]
    script = tmp_path / "printed.sh"
    script.write_text(export + "\n")
    assert sourced(script) == {"SEMSQL_MODEL_TEXT": str(target / "text")}
    assert sourced(target / "semsql-models.env") == {"SEMSQL_MODEL_TEXT": str(target / "text")}
    [saved] = report["stages"]
    assert (saved["status"], saved["path"]) == ("saved", str(target / "text"))
    assert saved["size_bytes"] == files_size(target / "text")
    assert not (target / "text" / "stale.bin").exists()
    assert sorted(path.name for path in target.iterdir()) == ["semsql-models.env", "text"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target / "text" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


# --- the base install ---------------------------------------------------------------------------


def test_without_the_models_extra(tmp_path: Path) -> None:
    """list works; check and download say what to install."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked_modules())))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS}
    env |= {"PYTHONPATH": path, "HF_HOME": str(tmp_path / "hf")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "semsql", "models", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    listed = run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = by_stage(json.loads(listed.stdout))
    # Without the extra neither the packaged MiniLM nor facenet-pytorch's MTCNN is there.
    assert rows["text"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (rows["text"]["kind"], rows["text"]["present"]) == ("hub", False)
    assert rows["faces"]["note"] == "ships in facenet-pytorch, which is not installed"
    assert rows["faces"]["fix"] == "pip install 'semsql[models]'"
    needs = "error: this needs the models' libraries (torch is not installed): "
    needs += "pip install 'semsql[models]'"
    for args in (["check"], ["download", "--to", str(tmp_path / "models")]):
        done = run(*args)
        assert done.returncode == 1
        assert done.stderr.splitlines() == [needs]
    assert not (tmp_path / "models").exists()
