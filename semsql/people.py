"""People from photos: enrol known faces, and find the assets that show a face.

    reader = face_reader()                      # MTCNN + the configured face-vector model
    enrol(conn, reader, "Grace Hopper", [Path("hopper.jpg")])
    hits = find_face(conn, reader, Path("someone.jpg"))

Images are decoded, faces found and their vectors made exactly as the worker does it, so a
face enrolled from a photo in the library matches that photo's stored face at distance ~0.
Everything else (recognition, rematching, clusters) is SQL in sql/045_people.sql.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import class_row

from semsql.database import fetch_value
from semsql.decode import Decoded, InputError, load_image
from semsql.sources import IMAGE_EXTENSIONS, path_for_uri, uri_for_path
from semsql.stages import stage

Box = tuple[float, float, float, float]
PICK_LARGEST = "largest"


class FaceInputError(ValueError):
    """An image gave no usable face: unreadable, no face, or several and no choice."""


class NoFaceError(FaceInputError):
    pass


class SeveralFacesError(FaceInputError):
    def __init__(self, message: str, faces: Sequence[FoundFace]) -> None:
        super().__init__(message)
        self.faces = list(faces)


@dataclass(frozen=True)
class FoundFace:
    box: Box
    """x0, y0, x1, y1 in pixels of the upright original image, as the worker stores boxes."""
    confidence: float
    vector: np.ndarray = field(repr=False)

    @property
    def area(self) -> float:
        return max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0)

    def describe(self) -> str:
        x0, y0, x1, y1 = (round(v) for v in self.box)
        return f"{x1 - x0}x{y1 - y0} px at ({x0}, {y0})"


class FaceReader:
    """MTCNN and the face-vector model (SEMSQL_MODEL_FACE_VECTORS), loaded once."""

    def __init__(self, face_vectors_model: str, device: str = "auto") -> None:
        from semsql.embedder.models import load_stage

        self.detector = load_stage("faces", stage("faces").model(), device)
        self.vectors = load_stage("face_vectors", face_vectors_model, device)
        self.model_name: str = self.vectors.model_name

    def faces(self, path: Path) -> list[FoundFace]:
        """Every face in an image, left to right."""
        uri = uri_for_path(path.resolve())
        for_faces = _decoded(uri, stage("faces").image_side)
        detected = self.detector.run([for_faces.image])[0]
        boxes = [_as_stored(face.box, for_faces.scale) for face in detected]
        # The worker's face-vector stage decodes the image again and scales the stored boxes
        # down to it: the same crop, so the same vector.
        for_vectors = (
            for_faces
            if stage("face_vectors").image_side == stage("faces").image_side
            else _decoded(uri, stage("face_vectors").image_side)
        )
        scaled = [_scaled(box, 1 / for_vectors.scale) for box in boxes]
        vectors = self.vectors.run([for_vectors.image], [scaled])[0]
        found = [
            FoundFace(box, face.confidence, np.asarray(vector, dtype=np.float32))
            for box, face, vector in zip(boxes, detected, vectors, strict=True)
        ]
        return sorted(found, key=lambda face: (face.box[0], face.box[1]))

    def face(self, path: Path, pick: str | None = None) -> FoundFace:
        return choose_face(path, self.faces(path), pick)


def _decoded(uri: str, max_side: int) -> Decoded:
    try:
        return load_image(uri, max_side)
    except InputError as error:
        raise FaceInputError(str(error)) from None


def _scaled(box: Sequence[float], factor: float) -> Box:
    x0, y0, x1, y1 = (float(v) * factor for v in box)
    return (x0, y0, x1, y1)


def _as_stored(box: Sequence[float], scale: float) -> Box:
    """A box as the worker stores it: in original pixels, to 0.01, in a real (float32) column."""
    x0, y0, x1, y1 = (float(np.float32(round(float(v) * scale, 2))) for v in box)
    return (x0, y0, x1, y1)


FACENET_WEIGHTS = {
    "vggface2": "20180402-114759-vggface2.pt",
    "casia-webface": "20180408-102900-casia-webface.pt",
}
"""facenet-pytorch's released InceptionResnetV1 weights, by the name SEMSQL_MODEL_FACE_VECTORS
gives them, and the file each is downloaded as."""


def stored_model_name(model: str) -> str:
    """A face_vectors setting as the name its vectors are stored under, one per model however it
    is written: `dlib` and the released FaceNet names in lower case, a .pt file as its resolved
    path (a relative path or a link to it is the same model). Faces stored under another name
    are embedded again when a worker starts."""
    name = model.strip().lower()
    if name == "dlib" or name in FACENET_WEIGHTS:
        return name
    return str(Path(model).expanduser().resolve())


def configured_face_model() -> str | None:
    """The worker's face-vector model (SEMSQL_MODEL_FACE_VECTORS, else the default) as stored
    in faces.embedding_model, without loading it; None when face vectors are off."""
    from semsql.embedder.models import load_model_config

    model = load_model_config()["face_vectors"]
    return None if model is None else stored_model_name(model)


def face_reader(model: str | None = None, device: str | None = None) -> FaceReader:
    """A reader, loaded once per process: by default the worker's face-vector model and device
    (SEMSQL_MODEL_FACE_VECTORS, SEMSQL_DEVICE), whose vectors are the ones stored."""
    from semsql.embedder.models import ModelLoadError, load_model_config

    model = model or load_model_config()["face_vectors"]
    if model is None:
        raise ModelLoadError(
            "face_vectors", "off", "face vectors are turned off, so faces cannot be compared"
        )
    return _cached_reader(model, device or os.environ.get("SEMSQL_DEVICE", "auto"))


@functools.lru_cache(maxsize=2)
def _cached_reader(model: str, device: str) -> FaceReader:
    return FaceReader(model, device)


def choose_face(path: Path, faces: Sequence[FoundFace], pick: str | None) -> FoundFace:
    """The one face, or the one `pick` names: "largest" or N (1 = leftmost)."""
    if not faces:
        raise NoFaceError(f"{path}: no face found")
    if pick is None:
        if len(faces) == 1:
            return faces[0]
        listed = "; ".join(f"{i}: {face.describe()}" for i, face in enumerate(faces, 1))
        raise SeveralFacesError(
            f"{path}: {len(faces)} faces found ({listed}); choose one with --pick N "
            "(1 = leftmost) or --pick largest",
            faces,
        )
    if pick == PICK_LARGEST:
        return max(faces, key=lambda face: face.area)
    if not pick.isdigit() or not 1 <= int(pick) <= len(faces):
        raise FaceInputError(
            f"{path}: --pick {pick} is not one of the {len(faces)} faces found "
            f"(1 .. {len(faces)}, left to right, or largest)"
        )
    return faces[int(pick) - 1]


@dataclass(frozen=True)
class Enrolment:
    name: str
    person_id: int
    references_added: int
    faces_matched: int
    images: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    """image -> why it gave no reference (enrol_folder only)."""


def enrol(
    conn: psycopg.Connection,
    reader: FaceReader,
    name: str,
    images: Sequence[Path],
    *,
    kind: str | None = None,
    pick: str | None = None,
) -> Enrolment:
    """Enrols `name` with the face in each image; raises FaceInputError for an image without one."""
    faces = [(path, reader.face(path, pick)) for path in images]
    return store_references(conn, reader.model_name, name, faces, kind)


def store_references(
    conn: psycopg.Connection,
    model: str,
    name: str,
    faces: Sequence[tuple[Path, FoundFace]],
    kind: str | None = None,
    skipped: dict[str, str] | None = None,
) -> Enrolment:
    """Enrols `name` with these faces (from these images) as reference vectors of `model`."""
    row = conn.execute(
        """SELECT person_id, references_added, faces_matched
           FROM semsql.enrol_person(%s, %b::vector[], %s, %s, %s::real[], %s)""",
        [
            name,
            [face.vector for _, face in faces],
            model,
            [uri_for_path(path.resolve()) for path, _ in faces],
            [list(face.box) for _, face in faces],
            kind,
        ],
    ).fetchone()
    assert row is not None
    return Enrolment(name, row[0], row[1], row[2], [str(p) for p, _ in faces], skipped or {})


def person_folders(root: Path) -> Iterator[tuple[str, list[Path]]]:
    """(name, images) for each sub-folder of root, e.g. people/Grace Hopper/*.jpg."""
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        yield folder.name, images


def enrol_folder(
    conn: psycopg.Connection,
    reader: FaceReader,
    root: Path,
    *,
    kind: str | None = None,
    pick: str | None = None,
) -> Iterator[Enrolment]:
    """Enrols one person per sub-folder (its name), committing after each person.

    An image without a usable face is skipped and reported in Enrolment.skipped; a folder
    none of whose images has one enrols nobody (references_added 0, person_id -1).
    """
    for name, images in person_folders(root):
        faces: list[tuple[Path, FoundFace]] = []
        skipped: dict[str, str] = {}
        for path in images:
            try:
                faces.append((path, reader.face(path, pick)))
            except FaceInputError as error:
                skipped[str(path)] = str(error)
        if not faces:
            yield Enrolment(name, -1, 0, 0, [], skipped)
            continue
        enrolment = store_references(conn, reader.model_name, name, faces, kind, skipped)
        conn.commit()
        yield enrolment


@dataclass(frozen=True)
class FaceHit:
    asset_id: int
    uri: str
    face_id: int
    box: list[float]
    similarity: float
    person_id: int | None
    person: str | None
    best_at: timedelta | None = None
    """For a video: when the face is seen (the time of its frame)."""

    def as_dict(self) -> dict[str, Any]:
        found = dict(self.__dict__)
        found["best_at"] = None if self.best_at is None else self.best_at.total_seconds()
        return found


def find_face(
    conn: psycopg.Connection,
    reader: FaceReader,
    image: Path,
    *,
    k: int = 20,
    pick: str | None = None,
    min_similarity: float | None = None,
) -> list[FaceHit]:
    """Assets showing the face in `image`, best first (similarity default: the match threshold)."""
    face = reader.face(image, pick)
    return assets_with_face(
        conn, face.vector, reader.model_name, k=k, min_similarity=min_similarity
    )


def assets_with_face(
    conn: psycopg.Connection,
    vector: np.ndarray,
    model: str,
    *,
    k: int = 20,
    min_similarity: float | None = None,
) -> list[FaceHit]:
    cursor = conn.cursor(row_factory=class_row(FaceHit))
    return cursor.execute(
        """SELECT asset_id, uri, face_id, box, similarity, person_id, person, best_at
           FROM semsql.assets_with_face(%b, %s, %s, %s)""",
        [vector, k, model, min_similarity],
    ).fetchall()


def face_query_vector(image: Path, pick: str | None = None) -> tuple[np.ndarray, str]:
    """The face vector of the face in an image and its model: for `semsql search --face`."""
    reader = face_reader()
    return reader.face(image, pick).vector, reader.model_name


@dataclass(frozen=True)
class RefreshedReferences:
    model: str
    refreshed: int
    """Reference vectors of another model made again from their enrolment photo."""
    faces_matched: int
    waiting: int
    """References taken from stored faces: they follow their face when it is re-embedded."""
    left: dict[str, str] = field(default_factory=dict)
    """person (reference id) -> why it could not be made again; enrol that person again."""


def refresh_references(conn: psycopg.Connection, reader: FaceReader) -> RefreshedReferences:
    """Makes the reference vectors of other face-vector models again with the reader's model,
    from the photo each was enrolled from (the face nearest its recorded box), after a switch
    of SEMSQL_MODEL_FACE_VECTORS. References taken from stored faces are left to follow them."""
    rows = conn.execute(
        """SELECT pf.id, p.name, pf.source_uri, pf.box, pf.face_id IS NOT NULL
           FROM semsql.person_faces pf JOIN semsql.people p ON p.id = pf.person_id
           WHERE pf.model <> %s ORDER BY pf.id""",
        [reader.model_name],
    ).fetchall()
    made: list[tuple[int, np.ndarray]] = []
    left: dict[str, str] = {}
    waiting = 0
    for reference_id, name, uri, box, from_face in rows:
        if from_face:
            waiting += 1
            continue
        label = f"{name} (reference {reference_id})"
        path = path_for_uri(uri) if uri else None
        if path is None or box is None:
            left[label] = "enrolled from a vector without a local photo: enrol this person again"
            continue
        try:
            faces = reader.faces(path)
        except FaceInputError as error:
            left[label] = str(error)
            continue
        nearest = max(faces, key=lambda face: _overlap(face.box, box), default=None)
        if nearest is None or _overlap(nearest.box, box) < 0.5:
            left[label] = f"{path}: no face where it was enrolled from"
            continue
        made.append((reference_id, nearest.vector))
    matched = 0
    if made:
        matched = fetch_value(
            conn,
            """WITH changed AS (
                   UPDATE semsql.person_faces pf SET embedding = r.embedding, model = %s
                   FROM unnest(%s::bigint[], %b::vector[]) AS r(id, embedding)
                   WHERE pf.id = r.id RETURNING pf.id)
               SELECT semsql.match_references(array_agg(id)) FROM changed""",
            [reader.model_name, [i for i, _ in made], [v for _, v in made]],
        )
    return RefreshedReferences(reader.model_name, len(made), matched or 0, waiting, left)


def _overlap(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
