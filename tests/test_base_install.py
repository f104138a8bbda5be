"""`pip install .` without extras gives a working `semsql`: the CLI, search and the library run
with only what pyproject.toml's base dependencies bring; torch and transformers are not needed.

The test's own environment has every extra installed, so each command here runs in a child
Python whose imports of any other installed distribution fail, as if it were not installed.
.ci/base_install.sh checks a real `pip install .` in a fresh virtualenv.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = """\
import sys

BLOCKED = {blocked!r}


class Hiding:
    \"\"\"Finds what its finder finds, except the modules that the base install lacks.\"\"\"

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return find_spec(name, path, target) if find_spec else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure() -> set[str]:
    """The distributions that `pip install .` brings: the base dependencies in pyproject.toml
    and, from the installed metadata, theirs (with the extras asked for)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(text) for text in project["dependencies"]]
    found: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        requirement = wanted.pop()
        key = (canonical(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(key[0])
        try:
            requires = metadata.distribution(requirement.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # a dependency of another platform or Python
        for text in requires:
            child = Requirement(text)
            extras = ["", *sorted(requirement.extras)]
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                wanted.append(child)
    return found


def blocked_modules() -> set[str]:
    """Top-level modules of the installed distributions that the base install lacks."""
    closure = base_closure() | {"semsql"}
    return {
        module
        for module, dists in metadata.packages_distributions().items()
        if not any(canonical(dist) in closure for dist in dists)
    }


@pytest.fixture(scope="module")
def blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose sitecustomize.py makes the modules outside the base install unimportable."""
    folder = tmp_path_factory.mktemp("base-install")
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(blocked_modules())))
    return folder


@pytest.fixture
def base_env(blocker: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of the test (with semsql_env's database, when used) for a child Python
    of the base install; SEMSQL_HOME is the test's own, should a command start a server."""
    path = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "SEMSQL_HOME": str(tmp_path / "home")}


def run(base_env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=base_env, capture_output=True, text=True, timeout=120)


def test_the_models_libraries_are_not_in_the_base_install(base_env) -> None:
    blocked = blocked_modules()
    assert {"torch", "transformers", "facenet_pytorch"} <= blocked
    assert "numpy" not in blocked and "psycopg" not in blocked
    torch = run(base_env, sys.executable, "-c", "import torch")
    assert torch.stderr.splitlines()[-1] == "ModuleNotFoundError: No module named 'torch'"


def test_every_command_shows_its_help(base_env) -> None:
    script = Path(sys.executable).with_name("semsql")
    for command in ([str(script)], [sys.executable, "-m", "semsql"]):
        shown = run(base_env, *command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("Usage: semsql [OPTIONS] COMMAND")
    # Every subcommand, in one child: importing each command's module is what could fail.
    code = """if True:
        import click
        from click.testing import CliRunner
        from semsql.cli.main import cli

        def paths(group, prefix):
            for name, command in group.commands.items():
                yield [*prefix, name]
                if isinstance(command, click.Group):
                    yield from paths(command, [*prefix, name])

        for path in paths(cli, []):
            result = CliRunner().invoke(cli, [*path, "--help"])
            assert result.exit_code == 0, (path, result.output, result.exception)
            print(" ".join(path))
    """
    shown = run(base_env, sys.executable, "-c", code)
    assert shown.returncode == 0, shown.stderr
    assert {"search", "ingest", "people find-face", "db url"} <= set(shown.stdout.splitlines())


def test_search_runs_without_the_models(semsql_env, conn, base_env) -> None:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    ids = [
        conn.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, repeat(%s, 64)) RETURNING id",
            [f"/{name}.jpg", digit],
        ).fetchone()[0]
        for name, digit in (("snow", "a"), ("beach", "b"))
    ]
    for asset_id, vector in zip(ids, ("[1,0,0]", "[0.8,0.6,0]"), strict=True):
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
               VALUES (%s, 'text', 'm', %s)""",
            [asset_id, vector],
        )
    conn.execute("SELECT semsql.register_vector_space('text', 'm', 3)")
    conn.commit()

    like = run(base_env, sys.executable, "-m", "semsql", "search", "--like", str(ids[0]), "--json")
    assert like.returncode == 0, like.stderr
    assert [hit["asset_id"] for hit in json.loads(like.stdout)] == [ids[1]]

    code = """if True:
        from semsql import database
        from semsql.search import SearchRequest, run_search
        with database.connect() as conn:
            hits, _ = run_search(conn, SearchRequest(query_embedding=[0.9, 0.5, 0.0], k=2))
        print([hit.uri for hit in hits])
    """
    by_vector = run(base_env, sys.executable, "-c", code)
    assert by_vector.returncode == 0, by_vector.stderr
    assert by_vector.stdout.strip() == "['/beach.jpg', '/snow.jpg']"

    # A query text: this machine cannot embed it, so the server is asked (and no worker answers).
    text = run(base_env, sys.executable, "-m", "semsql", "search", "snow", "--json")
    assert text.returncode == 0, text.stderr
    assert "the text signal is left to the server" in text.stderr
    assert "pip install 'semsql[models]'" in text.stderr


def test_the_worker_says_it_needs_the_models(semsql_env, base_env) -> None:
    worker = run(base_env, sys.executable, "-m", "semsql", "worker", "--once")
    assert worker.returncode == 1
    assert worker.stderr.splitlines()[-1] == (
        "error: this needs the models' libraries (torch is not installed): "
        "pip install 'semsql[models]'"
    )
