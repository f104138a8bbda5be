"""Recognition at library scale: every face matched against every enrolled person, in SQL;
and the face-vector models' throughput from MTCNN boxes.

Synthetic face vectors in a real semsql schema, once per face-vector model (--models):
  facenet  unit 512-d, one centre per identity, per-face noise so that a face's similarity to
           its own person's references spreads across 0.4 .. 0.8, strangers near 0.15; the
           default thresholds (0.4 / 0.5)
  dlib     unit 128-d zero-padded to 512, as the dlib backend stores them (model `dlib`, its
           thresholds 0.92 / 0.93): own person 0.90 .. 0.98, strangers near 0.80, as dlib's
           real descriptors of the sample faces
Assets whose text tasks are done (so that recognition re-queues them, as it would in a
library), faces with the HNSW index, reference vectors for the enrolled people.

  load          COPY assets, faces (HNSW built after), references (not part of the target)
  match all     semsql.match_faces(): every face against every reference, each reference
                walking the faces HNSW index out to the threshold (what a threshold change
                or a bulk enrolment runs)
  match all fwd the other direction, as match_faces(ids) does for a few faces: each face
                looks up its nearest reference (LATERAL ... LIMIT 1, person_faces HNSW)
  people filter semsql.assets_with_people(3 names); people summary: the people_summary view
  assets with face  semsql.assets_with_face(a face vector, 50)
  enrol one     semsql.enrol_person(...) of one new person with two photos' vectors
  new faces     the worker's writes (INSERT box, then UPDATE embedding): the trigger recognises
  clusters      semsql.refresh_face_clusters() over the faces that match nobody

Face vectors (--vectors N faces, 0: skipped), on --threads CPU threads: the face_vectors stage
as the worker runs it, from each image file and its stored MTCNN boxes (decoded at the
stage's size, boxes scaled) to the stored vectors, 16 images a call; dlib (real weights) beside
the vggface2 architecture (InceptionResnetV1, random weights: the same cost as the real ones).
--calibrate prints the similarities of the dlib vectors of the sample faces and their copies
(how migration 0012's dlib thresholds were chosen) and stops.

    python bench/people.py [--faces 100000] [--people 1000] [--models facenet,dlib]
                           [--vectors 256] [--threads 2] [--out bench/results/people.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway
embedded server. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from PIL import Image
from scratch import bench_database

from semsql import database

DIMS = 512
DATABASE = "semsql_bench_people"


@dataclass(frozen=True)
class VectorModel:
    name: str
    """As stored in faces.embedding_model: its thresholds are semsql.face_match_threshold's."""
    dims: int
    """The vectors' own dimensions; zero-padded to the columns' 512."""
    shared: float
    """Weight of the direction all faces share (how alike strangers are)."""
    spread: tuple[float, float]
    """Range of a face's noise norm (how far it is from its identity's centre)."""


VECTOR_MODELS = {
    # cosine to the centre 0.89 .. 0.64, to another sample 0.8 .. 0.4; strangers ~0.15
    "facenet": VectorModel("bench-facenet", 512, 0.4, (0.5, 1.2)),
    # cosine to another sample of the person 0.98 .. 0.90; strangers ~0.80 (dlib's real range)
    "dlib": VectorModel("dlib", 128, 2.2, (0.14, 0.33)),
}


class Library:
    """Identities 0 .. people-1 are enrolled; the rest are strangers."""

    def __init__(
        self,
        faces: int,
        people: int,
        strangers: int,
        known_share: float,
        seed: int,
        model: VectorModel = VECTOR_MODELS["facenet"],
    ):
        self.rng = np.random.default_rng(seed)
        self.model = model
        shared = self._unit(self.rng.standard_normal(model.dims))
        self.centres = self._unit(
            model.shared * shared
            + self._unit(self.rng.standard_normal((people + strangers, model.dims)))
        )
        known = self.rng.random(faces) < known_share
        self.identity = np.where(
            known,
            self.rng.integers(0, people, faces),
            self.rng.integers(people, people + strangers, faces),
        )
        self.people = people
        self.vectors = self.samples(self.identity)

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def samples(self, identity: np.ndarray) -> np.ndarray:
        dims = self.model.dims
        spread = self.rng.uniform(*self.model.spread, (len(identity), 1))
        noise = self.rng.standard_normal((len(identity), dims)) / np.sqrt(dims)
        own = self._unit(self.centres[identity] + spread * noise)
        padded = np.zeros((len(identity), DIMS), dtype=np.float32)
        padded[:, :dims] = own
        return padded


def load(conn: psycopg.Connection, lib: Library, assets: int, refs_per_person: int) -> None:
    with conn.cursor().copy("COPY semsql.assets (uri, sha256) FROM STDIN") as copy:
        for i in range(assets):
            copy.write_row((f"/bench/img_{i:07d}.jpg", f"{i:064x}"))
    conn.execute("UPDATE semsql.tasks SET status = 'done', finished_at = now()")
    conn.execute("UPDATE semsql.assets SET status = 'ready'")
    first = conn.execute("SELECT min(id) FROM semsql.assets").fetchone()[0]
    conn.execute("DROP INDEX semsql.faces_embedding")
    with conn.cursor().copy(
        "COPY semsql.faces (asset_id, box, confidence, detector, embedding, embedding_model) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["bigint", "real[]", "real", "text", "vector", "text"])
        for i, vector in enumerate(lib.vectors):
            copy.write_row(
                (first + i % assets, [0, 0, 80, 80], 0.99, "mtcnn", vector, lib.model.name)
            )
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(
        "CREATE INDEX faces_embedding ON semsql.faces USING hnsw (embedding vector_cosine_ops)"
    )
    conn.execute(
        "INSERT INTO semsql.people (name) SELECT 'person ' || i FROM generate_series(0, %s) i",
        [lib.people - 1],
    )
    enrolled = np.repeat(np.arange(lib.people), refs_per_person)
    first_person = conn.execute("SELECT min(id) FROM semsql.people").fetchone()[0]
    with conn.cursor().copy(
        "COPY semsql.person_faces (person_id, embedding, model) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["bigint", "vector", "text"])
        for identity, vector in zip(enrolled, lib.samples(enrolled), strict=True):
            copy.write_row((first_person + int(identity), vector, lib.model.name))
    conn.execute("VACUUM ANALYZE semsql.faces")
    conn.execute("VACUUM ANALYZE semsql.person_faces")


def accuracy(conn: psycopg.Connection, lib: Library) -> dict[str, float]:
    rows = conn.execute(
        """SELECT f.id - (SELECT min(id) FROM semsql.faces),
                  coalesce(p.id - (SELECT min(id) FROM semsql.people), -1)
           FROM semsql.faces f LEFT JOIN semsql.people p ON p.id = f.person_id
           WHERE f.embedding_model = %s ORDER BY f.id""",
        [lib.model.name],
    ).fetchall()
    got = np.full(len(lib.identity), -1)
    for index, person in rows:
        if index < len(got):
            got[index] = person
    known = lib.identity < lib.people
    return {
        "known_recognised": round(float(np.mean(got[known] == lib.identity[known])), 4),
        "known_wrong_person": round(
            float(np.mean((got[known] >= 0) & (got[known] != lib.identity[known]))), 4
        ),
        "strangers_recognised": round(float(np.mean(got[~known] >= 0)), 4),
    }


def reset_matches(conn: psycopg.Connection) -> None:
    conn.execute("SET session_replication_role = replica")  # no triggers: not part of the bench
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE status <> 'done'")
    conn.execute("SET session_replication_role = origin")
    conn.execute("VACUUM ANALYZE semsql.faces")


def timed(rows: list[dict], step: str, run: Callable[[], Any], **extra: Any) -> Any:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    rows.append({"step": step, "seconds": round(seconds, 3), **extra})
    print(f"  {step:<16} {seconds:>9.2f} s", flush=True)
    return result


def scalar(conn: psycopg.Connection, query: str, params: list | None = None) -> Any:
    return conn.execute(query, params).fetchone()[0]


def run_bench(url: str, args: argparse.Namespace, model: VectorModel) -> tuple[list[dict], dict]:
    lib = Library(args.faces, args.people, args.strangers, args.known_share, args.seed, model)
    rows: list[dict] = []
    quality: dict[str, dict] = {}
    with database.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        timed(
            rows,
            "load",
            lambda: load(conn, lib, args.assets, args.refs_per_person),
            faces=args.faces,
            references=args.people * args.refs_per_person,
        )

        moved = timed(rows, "match all", lambda: scalar(conn, "SELECT semsql.match_faces()"))
        rows[-1]["faces_changed"] = moved
        rows[-1]["text_tasks_requeued"] = scalar(
            conn, "SELECT count(*) FROM semsql.tasks WHERE stage = 'text' AND status = 'pending'"
        )
        quality["match all"] = accuracy(conn, lib)

        reset_matches(conn)
        moved = timed(
            rows,
            "match all fwd",
            lambda: scalar(conn, "SELECT semsql.match_faces(array_agg(id)) FROM semsql.faces"),
        )
        rows[-1]["faces_changed"] = moved
        quality["match all fwd"] = accuracy(conn, lib)

        names = [f"person {i}" for i in range(3)]
        found = timed(
            rows,
            "people filter",
            lambda: scalar(
                conn, ("SELECT count(*) FROM semsql.assets_with_people(%s, false)"), [names]
            ),
        )
        rows[-1]["assets"] = found
        timed(
            rows,
            "people summary",
            lambda: scalar(conn, "SELECT sum(faces + assets) FROM semsql.people_summary"),
        )
        found = timed(
            rows,
            "assets with face",
            lambda: scalar(
                conn, ("SELECT count(*) FROM semsql.assets_with_face(%s, 50)"), [lib.vectors[0]]
            ),
        )
        rows[-1]["assets"] = found

        stranger = int(lib.identity[lib.identity >= lib.people][0])
        photos = lib.samples(np.array([stranger, stranger]))
        result = timed(
            rows,
            "enrol one",
            lambda: conn.execute(
                "SELECT * FROM semsql.enrol_person('new person', %s::vector[], %s)",
                [list(photos), model.name],
            ).fetchone(),
        )
        rows[-1]["faces_matched"] = result[2]
        rows[-1]["faces_of_that_stranger"] = int(np.sum(lib.identity == stranger))

        new = lib.samples(lib.rng.integers(0, args.people, args.new_faces))
        first_asset = scalar(conn, "SELECT min(id) FROM semsql.assets")

        def write_like_the_worker() -> None:
            with conn.transaction():
                ids = [
                    scalar(
                        conn,
                        "INSERT INTO semsql.faces (asset_id, box, detector) VALUES "
                        "(%s, '{0,0,9,9}', 'mtcnn') RETURNING id",
                        [first_asset + i],
                    )
                    for i in range(len(new))
                ]
                conn.execute(
                    """UPDATE semsql.faces f SET embedding = r.e, embedding_model = %s
                       FROM unnest(%s::bigint[], %s::vector[]) AS r(id, e) WHERE f.id = r.id""",
                    [model.name, ids, list(new)],
                )

        timed(rows, "new faces", write_like_the_worker, faces=args.new_faces)
        if args.clusters:
            made = timed(
                rows, "clusters", lambda: scalar(conn, "SELECT semsql.refresh_face_clusters()")
            )
            rows[-1]["clusters"] = made
            rows[-1]["unknown_faces"] = scalar(
                conn, "SELECT count(*) FROM semsql.faces WHERE person_id IS NULL"
            )
    return rows, quality


def sample_faces(folder: Path) -> dict[str, Path]:
    """The sample photos with a face (skimage, matplotlib) and changed copies of the astronaut."""
    import shutil

    import skimage.data
    from matplotlib import cbook
    from PIL import ImageEnhance, ImageOps

    astronaut = Image.fromarray(skimage.data.astronaut())
    images = {
        "astronaut": astronaut,
        "astronaut flipped": ImageOps.mirror(astronaut),
        "astronaut cropped": astronaut.crop((100, 0, 400, 300)),
        "astronaut brighter": ImageEnhance.Brightness(astronaut).enhance(1.5),
        "astronaut all three": ImageEnhance.Brightness(
            ImageOps.mirror(astronaut).crop((50, 0, 400, 350))
        ).enhance(1.4),
        "astronaut smaller": astronaut.resize((256, 256)),
        "cameraman": Image.fromarray(skimage.data.camera()),
        "motorcyclist": Image.open(Path(skimage.data_dir) / "motorcycle_left.png"),
    }
    paths = {}
    for name, image in images.items():
        paths[name] = folder / f"{name.replace(' ', '_')}.png"
        image.convert("RGB").save(paths[name])
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    paths["grace hopper"] = folder / "grace_hopper.jpg"
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), paths["grace hopper"])
    paths["grace hopper darker"] = folder / "grace_hopper_darker.png"
    ImageEnhance.Brightness(hopper.convert("RGB")).enhance(0.7).save(paths["grace hopper darker"])
    return paths


def stored_boxes(detector: Any, path: Path) -> list[list[float]]:
    """The boxes the faces stage stores for a file: found at its size, in original pixels."""
    from semsql.decode import load_image
    from semsql.stages import stage

    decoded = load_image(str(path), stage("faces").image_side)
    return [[v * decoded.scale for v in face.box] for face in detector.run([decoded.image])[0]]


def bench_face_vectors(args: argparse.Namespace) -> list[dict]:
    """faces/s of each face-vector model from image files and stored boxes, as the worker's
    FaceRunner feeds it (decode at the stage's size, boxes scaled, 16 images a call)."""
    import tempfile

    import torch
    from facenet_pytorch import InceptionResnetV1

    from semsql.decode import load_image
    from semsql.embedder.models import load_stage
    from semsql.embedder.models.stages.face_vectors import FaceVectorStage
    from semsql.stages import stage

    torch.set_num_threads(args.threads)
    detector = load_stage("faces", "mtcnn", "cpu")
    models: dict[str, Any] = {"dlib": load_stage("face_vectors", "dlib", "cpu")}
    net = InceptionResnetV1(pretrained=None, classify=False).eval()
    models["vggface2 architecture"] = FaceVectorStage(
        "random", net, torch.device("cpu"), torch.float32
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        photos = [p for p in sample_faces(Path(folder)).values()]
        boxed = [(p, stored_boxes(detector, p)) for p in photos]
        boxed = [(p, b) for p, b in boxed if b]
        per_image = [len(b) for _, b in boxed]
        work = [boxed[i % len(boxed)] for i in range(args.vectors * len(boxed) // sum(per_image))]
        faces = sum(len(b) for _, b in work)
        side = stage("face_vectors").image_side
        for name, model in models.items():

            def run_all(model: Any = model) -> None:
                for start in range(0, len(work), 16):
                    decoded = [load_image(str(p), side) for p, _ in work[start : start + 16]]
                    model.run(
                        [d.image for d in decoded],
                        [
                            [[v / d.scale for v in box] for box in boxes]
                            for d, (_, boxes) in zip(decoded, work[start : start + 16], strict=True)
                        ],
                    )

            run_all()  # warm-up: first calls allocate
            started = time.perf_counter()
            run_all()
            seconds = time.perf_counter() - started
            rows.append(
                {
                    "model": name,
                    "faces": faces,
                    "seconds": round(seconds, 3),
                    "faces_per_s": round(faces / seconds, 1),
                    "threads": args.threads,
                }
            )
            print(f"  face vectors {name:<22} {faces / seconds:>7.1f} faces/s", flush=True)
    return rows


def calibrate() -> None:
    """Cosine similarities of the dlib vectors of the sample faces (their MTCNN boxes)."""
    import tempfile

    from semsql.embedder.models import load_stage

    detector = load_stage("faces", "mtcnn", "cpu")
    vectors = load_stage("face_vectors", "dlib", "cpu")
    with tempfile.TemporaryDirectory() as folder:
        names, found = [], []
        for name, path in sample_faces(Path(folder)).items():
            image = Image.open(path).convert("RGB")
            boxes = [face.box for face in detector.run([image])[0]]
            for number, vector in enumerate(vectors.run([image], [boxes])[0]):
                names.append(name if number == 0 else f"{name} #{number + 1}")
                found.append(vector)
    similarity = np.array(found) @ np.array(found).T
    person = [name.split()[0] for name in names]
    same = [similarity[i, j] for i in range(len(names)) for j in range(i) if person[i] == person[j]]
    other = [
        similarity[i, j] for i in range(len(names)) for j in range(i) if person[i] != person[j]
    ]
    width = max(len(name) for name in names)
    for i, name in enumerate(names):
        print(f"{name:<{width}} " + " ".join(f"{v:5.3f}" for v in similarity[i]))
    print(f"same person: {min(same):.3f} .. {max(same):.3f} ({len(same)} pairs)")
    print(f"other people: {min(other):.3f} .. {max(other):.3f} ({len(other)} pairs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--refs-per-person", type=int, default=2)
    parser.add_argument("--strangers", type=int, default=10_000, help="unenrolled identities")
    parser.add_argument("--known-share", type=float, default=0.6)
    parser.add_argument("--assets", type=int, default=40_000)
    parser.add_argument("--new-faces", type=int, default=1000)
    parser.add_argument("--no-clusters", dest="clusters", action="store_false")
    parser.add_argument("--models", default="facenet,dlib", help="of: " + ",".join(VECTOR_MODELS))
    parser.add_argument("--vectors", type=int, default=256, help="faces to embed (0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for --vectors")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/people.json"))
    args = parser.parse_args()
    if args.calibrate:
        calibrate()
        return

    rows: dict[str, list[dict]] = {}
    quality: dict[str, dict[str, dict]] = {}
    for name in [m for m in args.models.split(",") if m]:
        with bench_database(DATABASE) as url:
            print(
                f"{name}: {args.faces} faces, {args.people} people x {args.refs_per_person} "
                f"references, {os.cpu_count()} cores"
            )
            rows[name], quality[name] = run_bench(url, args, VECTOR_MODELS[name])
    vectors = bench_face_vectors(args) if args.vectors else []

    names = list(rows)
    print(f"{'step':<16} " + " ".join(f"{n + ' s':>10}" for n in names) + "  details")
    steps = [row["step"] for row in rows[names[0]]] if names else []
    for number, step in enumerate(steps):
        cells = " ".join(f"{rows[n][number]['seconds']:>10.2f}" for n in names)
        details = "; ".join(
            f"{n}: "
            + ", ".join(
                f"{k} {v}" for k, v in rows[n][number].items() if k not in ("step", "seconds")
            )
            for n in names
        )
        print(f"{step:<16} {cells}  {details}")
    for name in names:
        for step, numbers in quality[name].items():
            print(f"{name} {step}: {numbers}")
    for row in vectors:
        print(
            f"face vectors {row['model']:<22} {row['faces_per_s']:>7.1f} faces/s "
            f"({row['faces']} faces, {row['threads']} threads)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "faces": args.faces,
                "people": args.people,
                "refs_per_person": args.refs_per_person,
                "strangers": args.strangers,
                "known_share": args.known_share,
                "assets": args.assets,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "results": rows,
                "accuracy": quality,
                "face_vectors": vectors,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
