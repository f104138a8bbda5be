"""Images for the models: opened, decoded at reduced size, turned upright, shrunk.

JPEG files decode straight at 1/2, 1/4 or 1/8 scale (Pillow's draft mode) when the model needs
no more pixels, which is most of the cost of a large photo. Boxes found on the result are
scaled back to the upright original with `Decoded.scale`.

The worker reads what ingest vouched for, or nothing: a file only beneath its asset's root (no
link may lead out of it, at the moment it is opened), and bytes whose SHA-256 is the asset's.
The bytes are read once; the hash and the image both come from them. HEIC/HEIF files open
with the heif extra (pillow-heif, registered on first use), already upright.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from semsql import heif
from semsql.fetch import FetchError, TooLarge, fetch
from semsql.probe import sniff
from semsql.safe_open import LeavesRoot, open_beneath
from semsql.sources import path_for_uri, uri_for_path

# Modes that shrink with a proper filter (palette and 1-bit images shrink by nearest pixel): a
# large image is shrunk in them, before RGB triples its memory.
SHRINK_BEFORE_CONVERT = frozenset({"L", "LA", "RGB", "RGBA"})
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30
# A file is read whole (to hash it); ingest's own default limit is 200 MB, and a file swapped
# for something huge must not fill memory before its hash can disagree.
MAX_FILE_BYTES = 1024 * 1024 * 1024
CHANGED = "changed since ingest: run semsql ingest again"
# OSErrors that say the file will not get better by waiting (EINVAL: not a regular file).
PERMANENT_ERRNOS = {
    errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EINVAL,
    errno.ELOOP, errno.ENAMETOOLONG,
}  # fmt: skip


class InputError(Exception):
    """A task's input could not be read; permanent unless waiting may help (network, I/O)."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class Decoded:
    image: Image.Image
    scale: float
    """Pixels of the upright original per pixel of `image` (boxes are stored in the former)."""


def default_root(uri: str) -> str | None:
    """The root of an asset stored before roots were: its file's own folder (None for a URL)."""
    path = path_for_uri(uri)
    return None if path is None else uri_for_path(path.parent)


def load_image(
    uri: str,
    max_side: int,
    *,
    root: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    mode: str = "RGB",
) -> Decoded:
    """Open, decode (reduced where the format allows), turn upright and shrink to max_side;
    the image is RGB, or `mode` (L: grey, which a JPEG decodes faster).

    With `root` (as assets.root stores it) a file is opened only beneath it; with `sha256` (and
    `size`, checked before anything is read) the bytes must be the ones ingested. These fail
    permanently: waiting will not mend them."""
    data = read_verified(uri, root=root, sha256=sha256, size=size)
    if sniff(data)[0] == "heif" and not heif.heif_available():
        raise InputError(f"cannot decode {uri}: {heif.NEEDS_EXTRA}")
    return decode_bytes(data, max_side, mode=mode, name=uri)


def decode_bytes(data: bytes, max_side: int, *, mode: str = "RGB", name: str = "image") -> Decoded:
    """An image's bytes decoded as load_image decodes a file; InputError says why not."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # The box the image shrinks to, not a square: JPEG decodes at the least scale
            # whose result covers the box, so a square one doubled the pixels decoded of a
            # landscape or portrait photo (1152 x 864 at 128: 1/4 scale, not 1/8).
            fit = max_side / max(width, height, 1)
            image.draft(mode, (max(1, round(width * fit)), max(1, round(height * fit))))
            upright = ImageOps.exif_transpose(image)
            if upright.size != image.size and upright.size == (image.height, image.width):
                width, height = height, width
            if upright.mode.startswith("I"):  # shrunk first: _eight_bit copies the pixels
                # reducing_gap None: Pillow's reduce, its first step otherwise, refuses I;16.
                upright.thumbnail(
                    (max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=None
                )
                upright = _eight_bit(upright)
            if upright.mode == "1":  # a byte a pixel, shrunk before it becomes three
                upright = upright.convert("L")
            if upright.mode in SHRINK_BEFORE_CONVERT:
                upright.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            converted = upright.convert(mode)
        converted.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        return Decoded(converted, width / converted.width)
    except OSError as error:  # Pillow: unidentified, truncated or corrupt data
        raise InputError(f"cannot decode {name}: {error}") from error
    except Exception as error:  # Pillow raises ValueError, SyntaxError, DecompressionBombError
        raise InputError(f"cannot decode {name}: {type(error).__name__}: {error}") from error


def read_verified(
    uri: str, *, root: str | None = None, sha256: str | None = None, size: int | None = None
) -> bytes:
    """The file's bytes, read as load_image reads them (beneath `root`, and only if they are
    the `size` and `sha256` ingested); InputError says why not."""
    try:
        data = _read(uri, root, size)
    except LeavesRoot as error:
        raise InputError(f"refused to read {error}") from None
    except OSError as error:
        transient = error.errno not in PERMANENT_ERRNOS  # EIO, ESTALE, ...: may pass
        raise InputError(f"cannot read {uri}: {error}", permanent=not transient) from error
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise InputError(f"{uri} {CHANGED} (its content is not what was ingested)")
    return data


def _eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit (I;16*) or 32-bit integer (I) grayscale image as 8-bit L: Pillow's own
    convert clips every value above 255 to white. An I image whose values fit a byte is kept."""
    pixels = np.asarray(image)
    if image.mode == "I" and pixels.max(initial=0) <= 255:
        return image.convert("L")
    return Image.fromarray(
        ((np.clip(pixels, 0, 65535).astype(np.uint32) + 128) // 257).astype(np.uint8), "L"
    )


def _read(uri: str, root: str | None, size: int | None) -> bytes:
    path = path_for_uri(uri)
    if path is None:
        return _download(uri, size)
    if root is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    else:
        folder = path_for_uri(root)
        if folder is None:
            raise InputError(f"refused to read {uri}: its root {root} is not a folder")
        fd = open_beneath(folder, path)
    with open(fd, "rb") as file:
        found = os.fstat(fd).st_size
        if size is not None and found != size:
            raise InputError(f"{uri} {CHANGED} (it has {found} bytes, not {size})")
        # read(n) allocates n bytes first: ask for what the file holds, and one more
        data = file.read(min(found, MAX_FILE_BYTES) + 1)
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{uri} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _download(url: str, size: int | None) -> bytes:
    try:
        data = fetch(url, max_bytes=size or MAX_DOWNLOAD_BYTES, timeout=DOWNLOAD_TIMEOUT_S)
    except TooLarge as error:
        if size is not None:
            raise InputError(f"{url} {CHANGED} (it is larger than {size} bytes)") from None
        raise InputError(str(error)) from error
    except FetchError as error:  # its message names the URL
        raise InputError(str(error), permanent=not error.transient) from error
    if size is not None and len(data) != size:
        raise InputError(f"{url} {CHANGED} (it has {len(data)} bytes, not {size})")
    return data
