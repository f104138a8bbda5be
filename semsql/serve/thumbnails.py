"""Thumbnails of stored assets: decoded upright (EXIF orientation applied) the way the worker
decodes them, beneath the asset's root and checked against its SHA-256, then cached as JPEG
files named by content hash and size, so an edited file gets new ones."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from semsql.decode import Decoded, InputError, decode_bytes, default_root, load_image
from semsql.serve.errors import ApiError

SIZES = (128, 256, 512, 1024)
DEFAULT_SIZE = 256


@dataclass(frozen=True)
class VideoFrame:
    """The frame of a video that stands for it (semsql.frames): its time, and how to read its
    JPEG, which is read only when no cached file serves."""

    at_ms: int
    read_jpeg: Callable[[], bytes]


@dataclass(frozen=True)
class StoredImage:
    uri: str
    root: str | None
    sha256: str
    bytes: int | None
    frame: VideoFrame | None = None
    """For a video: the frame shown."""

    @property
    def key(self) -> str:
        """What its cached files are named by: the content, and for a video the frame's time."""
        return self.sha256 if self.frame is None else f"{self.sha256}-at{self.frame.at_ms}"

    def decode(self, max_side: int) -> Decoded:
        """Upright, at most max_side, from the file (as the worker reads it) or the frame."""
        if self.frame is not None:
            return decode_bytes(self.frame.read_jpeg(), max_side, name=f"{self.uri} frame")
        root = self.root if self.root is not None else default_root(self.uri)
        return load_image(self.uri, max_side, root=root, sha256=self.sha256, size=self.bytes)


def thumbnail_size(asked: int | None) -> int:
    """The cached size that serves a request: the least of SIZES at least as large."""
    if asked is None:
        return DEFAULT_SIZE
    if asked < 1 or asked > SIZES[-1]:
        raise ApiError(400, f"size must be from 1 to {SIZES[-1]}, not {asked}")
    return next(size for size in SIZES if size >= asked)


class ThumbnailCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str, size: int) -> Path:
        return self.folder / key[:2] / f"{key}-{size}.jpg"

    def get(self, image: StoredImage, size: int) -> Path:
        """The cached thumbnail's file, made first when there is none."""
        path = self.path(image.key, size)
        if path.exists():
            return path
        try:
            decoded = image.decode(size)
        except InputError as error:
            raise ApiError(404, f"no thumbnail: {error}") from None
        _save_jpeg(decoded.image, path)
        return path


def _save_jpeg(image: Image.Image, path: Path) -> None:
    """Written aside and renamed: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            image.save(out, "JPEG", quality=85)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


FACE_SIDE = 160
FACE_MARGIN = 0.25


def face_crop(cache: ThumbnailCache, image: StoredImage, face_id: int, box: list[float]) -> Path:
    """A square crop around a face (its box plus a margin), cached like a thumbnail."""
    path = cache.folder / image.key[:2] / f"{image.key}-face{face_id}.jpg"
    if path.exists():
        return path
    try:
        decoded = image.decode(1024)
    except InputError as error:
        raise ApiError(404, f"no face crop: {error}") from None
    x0, y0, x1, y1 = (value / decoded.scale for value in box)
    margin = FACE_MARGIN * max(x1 - x0, y1 - y0)
    crop = decoded.image.crop(
        (round(x0 - margin), round(y0 - margin), round(x1 + margin), round(y1 + margin))
    )
    crop.thumbnail((FACE_SIDE, FACE_SIDE))
    _save_jpeg(crop, path)
    return path
