"""The README's first command as a new user runs it on a machine without the model hub: sample
images ingested (a few of scikit-image's, with a TIFF variant Pillow cannot read and a text
file, which are skipped), `semsql worker --until-idle` with the default models, then status and
search. Only the models that ship in packages load (MTCNN, MiniLM, the dlib face encoder); the
others are reported once as unavailable, the assets are ready, and search is honest.

Each command runs in its own process, as the user's would, with the hub offline: huggingface_hub
reads HF_HUB_OFFLINE when it is imported, so it cannot be set inside this test process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage

from semsql import database
from semsql.testing import scratch_database

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
SAMPLES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "moon.png")
SKIPPED = ("multipage_rgb.tif", "README.txt")
HUB_STAGES = {"caption", "tags", "emotion", "clip"}  # their default models live on the hub


class FirstRun:
    def __init__(self, url: str, home: Path) -> None:
        self.url = url
        self.env = {
            **os.environ,
            "SEMSQL_DATABASE_URL": url,
            "SEMSQL_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
            "HF_HOME": str(home / "hf"),  # an empty cache: nothing was ever downloaded
            "TORCH_HOME": str(home / "torch"),
        }
        for name in [name for name in self.env if name.startswith("SEMSQL_MODEL_")]:
            del self.env[name]

    def semsql(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "semsql", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def json(self, *args: str) -> object:
        result = self.semsql(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def first_run(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    samples = tmp_path_factory.mktemp("samples")
    for name in SAMPLES + SKIPPED:
        shutil.copy(SKIMAGE_DATA / name, samples / name)
    with scratch_database(server_url, "semsql_test_first_run") as url:
        run = FirstRun(url, tmp_path_factory.mktemp("offline_home"))
        for command in (("init",), ("ingest", str(samples)), ("worker", "--until-idle")):
            result = run.semsql(*command)
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        yield run


def test_the_stages_without_their_model_are_reported_once_and_the_assets_are_ready(
    first_run: FirstRun,
) -> None:
    status = first_run.json("status")
    unavailable = [row["stage"] for row in status["unavailable_stages"]]
    assert sorted(unavailable) == sorted(HUB_STAGES)
    for row in status["unavailable_stages"]:
        assert row["reason"] and row["fix"], row
    with database.connect(first_run.url) as conn:
        statuses = dict(
            conn.execute("SELECT status, count(*) FROM semsql.assets GROUP BY status").fetchall()
        )
        failed_tasks = conn.execute(
            "SELECT count(*) FROM semsql.tasks WHERE status = 'failed'"
        ).fetchone()
    assert statuses == {"ready": len(SAMPLES)}
    assert failed_tasks == (0,)


def test_the_files_it_cannot_read_are_counted_as_skipped_with_their_reason(
    first_run: FirstRun,
) -> None:
    job = first_run.json("jobs", "1")
    assert (job["new_count"], job["failed_count"]) == (len(SAMPLES), 0), job
    assert job["skipped_reasons"] == {"unsupported TIFF variant": 1, "unsupported format .txt": 1}


def test_a_file_name_finds_its_image_by_keyword(first_run: FirstRun) -> None:
    rows = first_run.json("search", "astronaut")
    assert isinstance(rows, list) and rows
    assert Path(rows[0]["uri"]).name == "astronaut.png"
    assert "keyword" in rows[0]["matched_by"]
    assert all(row["matched_by"] for row in rows)


def test_a_query_that_nothing_matches_returns_no_rows(first_run: FirstRun) -> None:
    assert first_run.json("search", "qwxzv blorft") == []
    result = first_run.semsql("search", "qwxzv blorft")
    assert result.returncode == 0 and "no matches" in result.stdout + result.stderr


def test_faces_are_found_and_get_vectors_from_the_packaged_encoder(first_run: FirstRun) -> None:
    with database.connect(first_run.url) as conn:
        models = conn.execute(
            "SELECT f.embedding_model, count(*) FROM semsql.faces f "
            "JOIN semsql.assets a ON a.id = f.asset_id "
            "WHERE a.uri LIKE '%/astronaut.png' GROUP BY 1"
        ).fetchall()
    assert models == [("dlib", 1)], models
