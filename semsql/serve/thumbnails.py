"""Thumbnails of stored assets: decoded upright (EXIF orientation applied) the way the worker
decodes them, beneath the asset's root and checked against its SHA-256, then cached as JPEG
files named by content hash and size, so an edited file gets new ones."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from semsql.decode import InputError, default_root, load_image
from semsql.serve.errors import ApiError

SIZES = (128, 256, 512, 1024)
DEFAULT_SIZE = 256


@dataclass(frozen=True)
class StoredImage:
    uri: str
    root: str | None
    sha256: str
    bytes: int | None


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

    def path(self, sha256: str, size: int) -> Path:
        return self.folder / sha256[:2] / f"{sha256}-{size}.jpg"

    def get(self, image: StoredImage, size: int) -> Path:
        """The cached thumbnail's file, made first when there is none."""
        path = self.path(image.sha256, size)
        if path.exists():
            return path
        root = image.root if image.root is not None else default_root(image.uri)
        try:
            decoded = load_image(image.uri, size, root=root, sha256=image.sha256, size=image.bytes)
        except InputError as error:
            raise ApiError(404, f"no thumbnail: {error}") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a reader never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                decoded.image.save(out, "JPEG", quality=85)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


FACE_SIDE = 160
FACE_MARGIN = 0.25


def face_crop(cache: ThumbnailCache, image: StoredImage, face_id: int, box: list[float]) -> Path:
    """A square crop around a face (its box plus a margin), cached like a thumbnail."""
    path = cache.folder / image.sha256[:2] / f"{image.sha256}-face{face_id}.jpg"
    if path.exists():
        return path
    root = image.root if image.root is not None else default_root(image.uri)
    try:
        decoded = load_image(image.uri, 1024, root=root, sha256=image.sha256, size=image.bytes)
    except InputError as error:
        raise ApiError(404, f"no face crop: {error}") from None
    x0, y0, x1, y1 = (value / decoded.scale for value in box)
    margin = FACE_MARGIN * max(x1 - x0, y1 - y0)
    crop = decoded.image.crop(
        (round(x0 - margin), round(y0 - margin), round(x1 + margin), round(y1 + margin))
    )
    crop.thumbnail((FACE_SIDE, FACE_SIDE))
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            crop.save(out, "JPEG", quality=85)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
