"""`semsql people ...` with the real MTCNN and a random-weight InceptionResnetV1.

Random weights still give each face crop a deterministic vector, so a person enrolled from a
photo is found in that photo. Faces are stored as the worker stores them: the box first, the
vector in a later UPDATE that the recognition trigger sees.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
from click.testing import CliRunner
from fix_models import build_face_vectors_model
from matplotlib import cbook
from PIL import Image

from semsql import database
from semsql.cli.main import cli
from semsql.people import FaceReader, face_reader


@pytest.fixture(scope="session")
def face_vectors_pt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_face_vectors_model(tmp_path_factory.mktemp("people") / "face_vectors.pt"))


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    hopper = folder / "hopper.jpg"
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), hopper)
    astronaut = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(astronaut)
    cat = folder / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(cat)
    # Both faces side by side, the astronaut's on the left and larger.
    left, right = Image.open(astronaut), Image.open(hopper).convert("RGB").resize((192, 225))
    pair = Image.new("RGB", (left.width + right.width, left.height))
    pair.paste(left, (0, 0))
    pair.paste(right, (left.width, 0))
    pair.save(folder / "pair.png")
    return {"hopper": hopper, "astronaut": astronaut, "cat": cat, "pair": folder / "pair.png"}


@pytest.fixture
def env(semsql_env: str, face_vectors_pt: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", face_vectors_pt)
    monkeypatch.setenv("SEMSQL_DEVICE", "cpu")
    monkeypatch.delenv("SEMSQL_FACE_MATCH_THRESHOLD", raising=False)
    return semsql_env


@pytest.fixture(scope="session")
def reader(face_vectors_pt: str) -> FaceReader:
    return face_reader(face_vectors_pt, "cpu")  # the CLI's reader too


def semsql(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(cli, ["people", *args])
    if ok:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 1, result.output
    return result.output


def store_like_the_worker(db_url: str, reader: FaceReader, *images: Path) -> dict[Path, int]:
    """An asset per image, with its faces written as the worker's two stages write them."""
    assets = {}
    with database.connect(db_url) as conn:
        for number, image in enumerate(images):
            asset_id = conn.execute(
                "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
                [str(image), f"{number:064x}"],
            ).fetchone()[0]
            for face in reader.faces(image):
                face_id = conn.execute(
                    "INSERT INTO semsql.faces (asset_id, box, confidence, detector) "
                    "VALUES (%s, %s, %s, 'mtcnn') RETURNING id",
                    [asset_id, list(face.box), face.confidence],
                ).fetchone()[0]
                conn.execute(
                    "UPDATE semsql.faces SET embedding = %s, embedding_model = %s WHERE id = %s",
                    [face.vector, reader.model_name, face_id],
                )
            assets[image] = asset_id
        conn.commit()
    return assets


def test_enrol_from_one_photo_then_find_that_photo(env, reader, photos) -> None:
    assets = store_like_the_worker(
        env, reader, photos["hopper"], photos["astronaut"], photos["cat"]
    )
    # Random weights map every face to nearly one vector (the astronaut is 0.99998 like Grace
    # Hopper), so the operating point sits just below a perfect match.
    semsql("threshold", "0.99999")

    out = semsql("add", "Grace Hopper", str(photos["hopper"]), "--kind", "celebrity")
    assert out.strip() == "Grace Hopper: 1 reference face(s) added, 1 stored face(s) recognised"

    listed = json.loads(semsql("list", "--json"))
    assert [(p["name"], p["kind"], p["faces"], p["assets"]) for p in listed] == [
        ("Grace Hopper", "celebrity", 1, 1)
    ]
    shown = json.loads(semsql("show", "grace hopper", "--json"))
    assert [(a["asset_id"], a["source"]) for a in shown["appearances"]] == [
        (assets[photos["hopper"]], "recognised")
    ]
    assert shown["appearances"][0]["confidence"] == pytest.approx(1.0, abs=1e-4)

    hits = json.loads(semsql("find-face", str(photos["hopper"]), "--json"))
    assert [(hit["asset_id"], hit["person"]) for hit in hits] == [
        (assets[photos["hopper"]], "Grace Hopper")
    ]
    assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-6)
    searched = CliRunner().invoke(cli, ["search", "--face", str(photos["hopper"]), "--json"])
    assert json.loads(searched.stdout) == hits
    mixed = CliRunner().invoke(cli, ["search", "--face", str(photos["hopper"]), "--tag", "x"])
    assert mixed.exit_code == 2 and "--face searches by the face alone" in mixed.output
    everyone = semsql("find-face", str(photos["hopper"]), "--min-similarity", "0")
    assert [line.split()[1] for line in everyone.splitlines()] == [
        str(photos["hopper"]),
        str(photos["astronaut"]),
    ]


def test_the_worker_recognises_an_enrolled_person_in_new_images(
    env, face_vectors_pt, photos
) -> None:
    from semsql.embedder.worker import Worker, WorkerOptions

    semsql("threshold", "0.99999")  # see above: random weights
    semsql("add", "Grace Hopper", str(photos["hopper"]))
    ingest = CliRunner().invoke(cli, ["ingest", str(photos["hopper"]), str(photos["astronaut"])])
    assert ingest.exit_code == 0, ingest.output
    models = {"faces": "mtcnn", "face_vectors": face_vectors_pt}
    options = WorkerOptions(
        stages=tuple(models), until_idle=True, poll_interval=0.2, answer_queries=False, device="cpu"
    )
    Worker(env, options, models=models).run()

    with database.connect(env) as conn:
        seen = conn.execute(
            """SELECT a.uri, p.name, f.match_confidence FROM semsql.faces f
               JOIN semsql.assets a ON a.id = f.asset_id
               LEFT JOIN semsql.people p ON p.id = f.person_id ORDER BY a.uri"""
        ).fetchall()
    assert [(uri, name) for uri, name, _ in seen] == [
        (str(photos["astronaut"]), None),
        (str(photos["hopper"]), "Grace Hopper"),
    ]
    assert seen[1][2] == pytest.approx(1.0, abs=1e-6)  # the worker's vector is the enrolled one
    hits = json.loads(semsql("find-face", str(photos["hopper"]), "--json"))
    assert [hit["uri"] for hit in hits] == [str(photos["hopper"])]


def test_an_image_with_no_face_or_several_is_refused_clearly(env, reader, photos) -> None:
    assert "cat.png: no face found" in semsql("add", "Felix", str(photos["cat"]), ok=False)
    several = semsql("add", "Ada", str(photos["pair"]), ok=False)
    assert "2 faces found" in several and "--pick" in several
    assert "not one of the 2 faces" in semsql(
        "add", "Ada", str(photos["pair"]), "--pick", "3", ok=False
    )

    semsql("add", "Astronaut", str(photos["pair"]), "--pick", "largest")
    semsql("add", "Grace Hopper", str(photos["pair"]), "--pick", "2")
    astronaut_alone = reader.face(photos["astronaut"]).vector
    with database.connect(env) as conn:
        nearest = conn.execute(
            """SELECT p.name FROM semsql.person_faces pf JOIN semsql.people p ON p.id = pf.person_id
               ORDER BY pf.embedding <=> %s LIMIT 1""",
            [astronaut_alone],
        ).fetchone()[0]
    assert nearest == "Astronaut"


def test_a_missing_face_model_is_a_clear_error(env, photos, monkeypatch) -> None:
    monkeypatch.setenv("SEMSQL_MODEL_FACE_VECTORS", "/nowhere/facenet.pt")
    out = semsql("add", "Grace Hopper", str(photos["hopper"]), ok=False)
    assert "face_vectors model '/nowhere/facenet.pt' could not be loaded" in out
    assert "SEMSQL_MODEL_FACE_VECTORS" in out


def test_enrol_a_folder_per_person(env, reader, photos, tmp_path) -> None:
    assets = store_like_the_worker(env, reader, photos["hopper"])
    semsql("threshold", "0.99999")
    for name, image in (("Grace Hopper", "hopper"), ("Astronaut", "astronaut"), ("Felix", "cat")):
        (tmp_path / name).mkdir()
        shutil.copy(photos[image], tmp_path / name / photos[image].name)
    (tmp_path / "Grace Hopper" / "notes.txt").write_text("not an image")

    done = {d["name"]: d for d in json.loads(semsql("enrol-folder", str(tmp_path), "--json"))}
    assert (done["Grace Hopper"]["references_added"], done["Grace Hopper"]["faces_matched"]) == (
        1,
        1,
    )
    assert done["Astronaut"]["references_added"] == 1
    assert done["Felix"]["references_added"] == 0
    assert "no face found" in next(iter(done["Felix"]["skipped"].values()))
    names = [p["name"] for p in json.loads(semsql("list", "--json"))]
    assert names == ["Astronaut", "Grace Hopper"]
    with database.connect(env) as conn:
        found = conn.execute("SELECT semsql.assets_with_people('{Grace Hopper}')").fetchall()
    assert found == [(assets[photos["hopper"]],)]


def test_rename_merge_remove_and_threshold(env, reader, photos) -> None:
    store_like_the_worker(env, reader, photos["hopper"])
    semsql("add", "Grace", str(photos["hopper"]))
    semsql("add", "Amazing Grace", "--face", str(_first_face_id(env)))
    assert "no person named" in semsql("rename", "Gracie", "G", ok=False)
    assert "exists already" in semsql("rename", "Grace", "amazing grace", ok=False)
    assert "1 faces moved" in semsql("merge", "Amazing Grace", "Grace")
    semsql("rename", "Grace", "Grace Hopper")
    assert semsql("threshold").strip() == "0.4"
    assert "0 faces changed person" in semsql("threshold", "0.9")
    assert "1 faces unlinked" in semsql("remove", "Grace Hopper", "--yes")
    assert json.loads(semsql("list", "--json")) == []


def _first_face_id(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT min(id) FROM semsql.faces").fetchone()[0]


def test_clusters_name_and_split(env) -> None:
    def near(axis: int, other: int) -> np.ndarray:
        vector = np.zeros(512, dtype=np.float32)
        vector[axis], vector[other] = 0.9, np.sqrt(1 - 0.81)
        return vector

    with database.connect(env) as conn:
        asset = conn.execute(
            "INSERT INTO semsql.assets (uri, sha256) VALUES ('/party.jpg', repeat('e', 64)) "
            "RETURNING id"
        ).fetchone()[0]
        for axis, others in ((1, (10, 11, 12)), (2, (20, 21))):
            for other in others:
                conn.execute(
                    "INSERT INTO semsql.faces (asset_id, box, detector, embedding, "
                    "embedding_model) VALUES (%s, '{0,0,9,9}', 'mtcnn', %s, 'm')",
                    [asset, near(axis, other)],
                )
        conn.commit()

    clusters = json.loads(semsql("clusters", "--json"))
    assert [c["faces"] for c in clusters] == [3, 2]
    big, small = clusters[0]["cluster_id"], clusters[1]["cluster_id"]
    assert f"cluster {big}: 3 faces in 1 assets" in semsql("clusters")
    out = semsql("split-cluster", str(small), "--face", str(clusters[1]["face_ids"][0]))
    assert out.startswith(f"cluster {small} split into {small}, ")
    assert f"cluster {big} is Aunt May: 3 faces" in semsql("name-cluster", str(big), "Aunt May")
    assert [p["faces"] for p in json.loads(semsql("list", "--json"))] == [3]
    assert "no face cluster" in semsql("name-cluster", str(big), "x", ok=False)
    assert len(json.loads(semsql("clusters", "--refresh", "--json"))) == 1


def test_help_shows_worked_examples() -> None:
    for command in ([], ["add"], ["enrol-folder"], ["clusters"], ["find-face"], ["threshold"]):
        assert "Example" in semsql(*command, "--help")
