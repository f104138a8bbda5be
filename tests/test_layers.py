"""The layers import downwards only (README, "Architecture"):

    cli (semsql.cli)  ->  daemon (semsql.embedder)  ->  models (semsql.embedder.models)  ->  core

The core (database, ingest, search, people, ORM, the stage registry, image decoding) never
imports the daemon or the CLI, nor torch at module level (a base install has none), and uses the
model layer only inside the functions that embed a query or a face themselves; the model layer
never imports the daemon or the CLI; the daemon never imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"semsql": "semsql", "cli": "semsql.cli", "embedder": "semsql.embedder"}
LAYERS = ("core", "models", "daemon", "cli")  # each may import those before it
MODEL_LIBRARIES = ("torch", "torchvision", "transformers", "facenet_pytorch", "timm")


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported module, imported at module level) for every import of a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] if not node.module else [base]
        else:
            continue
        found.extend((name, id(node) in top_level) for name in names)
    return found


def _layer(module: str) -> str:
    if module.startswith("semsql.cli") or module == "semsql.__main__":
        return "cli"
    if module.startswith("semsql.embedder.models"):
        return "models"
    if module.startswith("semsql.embedder"):
        return "daemon"
    return "core"


def _is(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_the_layers_below_it(module: str) -> None:
    layer = _layer(module)
    wrong = []
    for name, at_top in _imports(module, MODULES[module]):
        imported = _layer(name) if _is(name, "semsql") else None
        upward = imported is not None and LAYERS.index(imported) > LAYERS.index(layer)
        # The core embeds a query itself where asked (no worker running): inside a function.
        lazy_model_use = layer == "core" and imported == "models" and not at_top
        needs_torch = any(_is(name, lib) for lib in MODEL_LIBRARIES)
        torch_at_import = layer == "core" and at_top and needs_torch
        if (upward and not lazy_model_use) or torch_at_import:
            wrong.append(name)
    assert not wrong, f"{module} ({layer}) imports {', '.join(wrong)}"


def test_the_stage_registry_needs_no_model_library() -> None:
    names = [name for name, _ in _imports("semsql.stages", MODULES["semsql.stages"])]
    assert not [name for name in names if any(_is(name, lib) for lib in MODEL_LIBRARIES)]
    assert not [name for name in names if _is(name, "semsql.embedder")]


def test_the_checker_sees_a_wrong_import(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text("from .embedder.worker import Worker\nimport torch\n")
    assert _imports("semsql.bad", source) == [
        ("semsql.embedder.worker", True),
        ("torch", True),
    ]
