"""Images for the models: opened, decoded at reduced size, turned upright, shrunk.

JPEG files decode straight at 1/2, 1/4 or 1/8 scale (Pillow's draft mode) when the model needs
no more pixels, which is most of the cost of a large photo. Boxes found on the result are
scaled back to the upright original with `Decoded.scale`.
"""

from __future__ import annotations

import errno
import io
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from semsql.sources import path_for_uri

# Longest side images are decoded to, per stage: what its model's processor needs, with margin.
MAX_SIDE = {
    "caption": 768,
    "tags": 1333,
    "faces": 1600,
    "face_vectors": 1600,
    "emotion": 1600,
    "clip": 448,
}
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
DOWNLOAD_TIMEOUT_S = 30
# OSErrors that say the file will not get better by waiting.
PERMANENT_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR}


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


def load_image(uri: str, max_side: int) -> Decoded:
    """Open, decode (reduced where the format allows), turn upright and shrink to max_side."""
    try:
        path = path_for_uri(uri)
        source: Any = _download(uri) if path is None else path
        with Image.open(source) as image:
            width, height = image.size
            image.draft("RGB", (max_side, max_side))
            upright = ImageOps.exif_transpose(image)
            rgb = upright.convert("RGB")
        if upright.size != image.size and (upright.width, upright.height) == (
            image.height,
            image.width,
        ):
            width, height = height, width
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        return Decoded(rgb, width / rgb.width)
    except InputError:
        raise
    except OSError as error:
        if error.errno is None:  # Pillow: unidentified, truncated or corrupt data
            raise InputError(f"cannot decode {uri}: {error}") from error
        transient = error.errno not in PERMANENT_ERRNOS  # EIO, ESTALE, ...: may pass
        raise InputError(f"cannot read {uri}: {error}", permanent=not transient) from error
    except Exception as error:  # Pillow raises ValueError, SyntaxError, DecompressionBombError
        raise InputError(f"cannot decode {uri}: {type(error).__name__}: {error}") from error


def _download(url: str) -> io.BytesIO:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise InputError(
            f"cannot download {url}: HTTP {error.code} {error.reason}",
            permanent=error.code in (401, 403, 404, 410),
        ) from error
    except (urllib.error.URLError, TimeoutError) as error:
        raise InputError(f"cannot download {url}: {error}", permanent=False) from error
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise InputError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
    return io.BytesIO(data)
