"""Is this file an image we can use, and what is it? Hash, decode cheaply, read metadata.

The image is really decoded, so truncated and corrupt files are caught at ingest rather than
by the worker, but JPEGs decode at 1/8 scale (libjpeg's DCT scaling): every byte of the scan
is still read and entropy-decoded, at a fraction of the cost.

HEIC/HEIF opens with the heif extra (pillow-heif, registered on first use; libheif applies the
file's rotation, so the pixels are upright and EXIF says orientation 1). Without the extra such
a file is skipped (ProbeSkipped) with the reason and how to install it, never failed; so is a
file of a format or variant that cannot be decoded here (a video, a TIFF variant Pillow cannot
read): failures are files that are broken, unsafe or unreadable.
Local files are probed with their XMP sidecars (semsql.sidecars).
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from semsql import heif
from semsql.metadata import pillow_warnings_silenced, read_metadata
from semsql.safe_open import LeavesRoot, NotRegularFile, OverLimit, read_beneath
from semsql.sidecars import Sidecar, read_sidecars
from semsql.sources import VIDEO

DEFAULT_MAX_BYTES = 200 * 1024**2
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own hard limit (2 * Image.MAX_IMAGE_PIXELS)
# Two hours: a feature film. Past 4 minutes frames are sampled by seeking to keyframes (120 at
# most), so a long video costs little model time, but it is still read whole to be hashed.
DEFAULT_MAX_DURATION = 2 * 3600.0

# Raster formats a photo library holds. Pillow's other plugins (EPS, PDF, MPEG, TGA, ...)
# either cannot decode without external tools or accept almost any bytes as their format.
_IMAGE_FORMATS = (
    "JPEG",
    "MPO",
    "PNG",
    "GIF",
    "WEBP",
    "TIFF",
    "BMP",
    "AVIF",
    "JPEG2000",
    "ICO",
    "PSD",
    "PPM",
    "QOI",
    "HEIF",  # with the heif extra
)
# Cameras write MPO (JPEG plus depth or preview frames); every consumer reads it as JPEG.
_MIME_OVERRIDES = {"MPO": "image/jpeg"}


@dataclass(frozen=True, slots=True)
class Probe:
    sha256: str
    bytes: int
    mime: str
    width: int  # stored pixels, before EXIF orientation (see metadata["orientation"])
    height: int
    metadata: dict[str, Any]
    taken_at: datetime | None
    description: str | None
    keywords: tuple[str, ...]
    persons: tuple[str, ...]
    title: str | None = None
    media_type: str = "image"
    duration_ms: int | None = None  # a video's


class ProbeSkipped(Exception):
    """A file that is not ingested here, for a stated reason (e.g. HEIC without the heif extra):
    counted as skipped, not failed. `reason` is what skips are counted by; `message` is for
    people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ProbeError(Exception):
    """Why a file cannot be ingested. `code` is stable and machine-readable; `message` is for
    people."""

    CODES = frozenset(
        {
            "empty",
            "too_large",
            "not_an_image",
            "unsupported",
            "truncated",
            "corrupt",
            "decompression_bomb",
            "unreadable",
            "outside_root",
            # videos (semsql.video)
            "no_video_stream",
            "undecodable",
            "too_long",
        }
    )

    def __init__(self, code: str, message: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown probe error code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def probe_file(
    path: Path,
    *,
    root: Path | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_duration: float | None = None,
) -> Probe:
    """Probe the file at `path`; with a `root`, only if it lies beneath it when opened."""
    try:
        data = read_beneath(path, root, max_bytes)
    except LeavesRoot as error:
        raise ProbeError("outside_root", str(error)) from None
    except NotRegularFile:
        raise ProbeError("unreadable", f"{path} is not a regular file") from None
    except OverLimit as error:  # its size, or what was read where it grew meanwhile
        raise ProbeError("too_large", _too_large_message(error.size, max_bytes)) from None
    except OSError as error:
        raise ProbeError("unreadable", f"cannot read {path}: {error.strerror or error}") from error
    return probe_bytes(
        data,
        max_pixels=max_pixels,
        max_duration=max_duration,
        sidecars=read_sidecars(path, root),
    )


def probe_bytes(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_duration: float | None = None,
    sidecars: Sequence[Sidecar] = (),
) -> Probe:
    if not data:
        raise ProbeError("empty", "file is 0 bytes")
    kind, name = sniff(data)
    if kind == "video":
        return _probe_video(data, name, max_pixels, max_duration)
    if kind == "heif" and not heif.heif_available():
        raise ProbeSkipped(heif.SKIP_REASON, heif.NEEDS_EXTRA)

    with pillow_warnings_silenced(), _open(data, kind, name, max_pixels) as im:
        width, height = im.size
        image_format = im.format or "image"
        if width <= 0 or height <= 0:
            raise ProbeError("corrupt", f"corrupt {image_format}: the header says {width}x{height}")
        if width * height > max_pixels:
            raise ProbeError("decompression_bomb", _bomb_message(width, height, max_pixels))
        _decode(im, image_format)
        found = read_metadata(im, sidecars)

    return Probe(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        mime=_mime(image_format, data),
        width=width,
        height=height,
        metadata=found.metadata,
        taken_at=found.taken_at,
        description=found.description,
        keywords=found.keywords,
        persons=found.persons,
        title=found.title,
    )


# VideoError codes that are not ProbeError's own.
_VIDEO_CODES = {"not_a_video": "corrupt", "too_many_pixels": "decompression_bomb"}
_VIDEO_MIMES = {
    "ISO BMFF/mp4": "video/mp4",
    "ISO BMFF/QuickTime mov": "video/quicktime",
    "QuickTime mov": "video/quicktime",
    "AVI": "video/x-msvideo",
}
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1"})


def _probe_video(data: bytes, name: str, max_pixels: int, max_duration: float | None) -> Probe:
    """A video, from its container and two decoded frames (semsql.video.probe_video)."""
    from semsql import video

    if not video.video_available():
        raise ProbeSkipped(VIDEO, f"{name} video: {video.NEEDS_EXTRA}")
    try:
        info = video.probe_video(
            data, max_duration=max_duration, max_pixels=min(max_pixels, video.MAX_FRAME_PIXELS)
        )
    except video.VideoError as error:
        raise ProbeError(_VIDEO_CODES.get(error.code, error.code), error.message) from None
    mime = _VIDEO_MIMES.get(name)
    if mime is None:  # Matroska: WebM when its codec is one WebM allows
        mime = "video/webm" if info.codec in _WEBM_CODECS else "video/x-matroska"
    facts = {
        "codec": info.codec,
        "frame_rate": round(info.frame_rate, 3) if info.frame_rate else None,
        "rotation": info.rotation,
        "container": info.container,
    }
    return Probe(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        mime=mime,
        width=info.width,
        height=info.height,
        metadata={"video": facts},
        taken_at=info.created_at,
        description=None,
        keywords=(),
        persons=(),
        media_type="video",
        duration_ms=round(info.duration * 1000),
    )


def _open(data: bytes, kind: str | None, name: str, max_pixels: int) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_available_formats())
    except Image.DecompressionBombError as error:
        raise ProbeError(
            "decompression_bomb", _pillow_bomb_message(data, error, max_pixels)
        ) from error
    except UnidentifiedImageError as error:
        if kind in ("image", "heif"):
            reason = _why_unopenable(data, name)
            if reason and _UNSUPPORTED_VARIANT.search(reason):
                message = f"this {name} variant is not supported ({reason})"
                raise ProbeSkipped(f"unsupported {name} variant", message) from error
            raise ProbeError("corrupt", f"corrupt {name}: the header cannot be parsed") from error
        if kind == "unsupported":
            message = f"{name} images are not supported yet"
            raise ProbeSkipped(f"unsupported format {name}", message) from error
        guess = f" (looks like {name})" if name else ""
        raise ProbeError("not_an_image", f"not an image{guess}") from error
    except Exception as error:
        label = name if kind in ("image", "heif") else "image"
        raise ProbeError("corrupt", f"corrupt {label}: {error}") from error


_UNSUPPORTED_VARIANT = re.compile(r"unknown pixel mode|not supported|unsupported", re.IGNORECASE)


def _why_unopenable(data: bytes, image_format: str) -> str | None:
    """Pillow's own reason for refusing a file that has its format's magic bytes (Image.open
    only says "cannot identify"): ask that format's plugin directly. Only on failures."""
    plugin = Image.OPEN.get(image_format)
    if plugin is None:
        return None
    factory, _accept = plugin
    try:
        factory(io.BytesIO(data), "").close()
    except Exception as error:
        return str(error)
    return None


def _decode(im: Image.Image, image_format: str) -> None:
    if isinstance(im, JpegImagePlugin.JpegImageFile):
        width, height = im.size
        im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    try:
        im.load()
    except Image.DecompressionBombError as error:
        raise ProbeError("decompression_bomb", f"decompression bomb: {error}") from error
    except EOFError as error:
        detail = str(error) or "unexpected end of file"
        raise ProbeError("truncated", f"truncated {image_format}: {detail}") from error
    except OSError as error:
        message = str(error)
        if "truncated" in message.lower():
            raise ProbeError("truncated", f"truncated {image_format}: {message}") from error
        if "not available" in message:  # "decoder jpeg2k not available" and the like
            reason = f"unsupported {image_format} variant"
            raise ProbeSkipped(reason, f"{image_format}: {message}") from error
        raise ProbeError("corrupt", f"corrupt {image_format}: {message}") from error
    except Exception as error:
        detail = str(error) or type(error).__name__
        if "end of file" in detail.lower():  # libheif's ValueError for a HEIC cut short
            raise ProbeError("truncated", f"truncated {image_format}: {detail}") from error
        raise ProbeError("corrupt", f"corrupt {image_format}: {detail}") from error


@cache
def _available_formats() -> tuple[str, ...]:
    Image.init()
    heif.heif_available()
    return tuple(name for name in _IMAGE_FORMATS if name in Image.OPEN)


def _mime(image_format: str, data: bytes) -> str:
    if image_format == "HEIF":
        return "image/heic" if data[8:12] in heif.HEIC_BRANDS else "image/heif"
    return (
        _MIME_OVERRIDES.get(image_format)
        or Image.MIME.get(image_format)
        or f"image/x-{image_format.lower()}"
    )


# --- what the first bytes say ---------------------------------------------------------------

_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"qoif", "QOI"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
)
_UNSUPPORTED_MAGIC = (
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL"),
)
_OTHER_MAGIC = (
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"OggS", "Ogg audio/video"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x93NUMPY", "a NumPy array"),
)
_BMP_HEADER_SIZES = {struct.pack("<I", size) for size in (12, 16, 40, 52, 56, 64, 108, 124)}
_AVIF_BRANDS = {b"avif", b"avis"}
_QUICKTIME_BRANDS = {b"qt  "}
_BOX_TYPES_WITHOUT_FTYP = {b"moov", b"mdat", b"free", b"wide", b"skip"}
_TEXT_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")


_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")  # Windows Media (.wmv, .asf)


def sniff(data: bytes) -> tuple[str | None, str]:
    """What the first bytes suggest: ("image" | "heif" | "unsupported" | "video" | "other" |
    None, a name for messages). Pillow decides what is an image; this only explains failures
    (and says when a file needs the heif extra)."""
    head = data[:1024]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "image", "AVIF"
        if brand in heif.HEIF_BRANDS:
            return "heif", "HEIC/HEIF"
        if brand in _QUICKTIME_BRANDS:
            return "video", "ISO BMFF/QuickTime mov"
        return "video", "ISO BMFF/mp4"
    if head[4:8] in _BOX_TYPES_WITHOUT_FTYP:
        return "video", "QuickTime mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "Matroska/WebM"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image", "WEBP"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head.startswith(_ASF_GUID):
        return "video", "ASF/WMV"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "video", "MPEG program stream"
    # A transport stream: a sync byte every 188 bytes (192 in Blu-ray's .m2ts, after a 4-byte
    # time code).
    for packet, offset in ((188, 0), (192, 4)):
        if len(head) >= 2 * packet + offset + 1 and all(
            head[offset + n * packet] == 0x47 for n in range(3)
        ):
            return "video", "MPEG transport stream"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "other", "WAV audio"
    # "BM" alone is too weak (text can start with it): require a known DIB header size.
    if head.startswith(b"BM") and head[14:18] in _BMP_HEADER_SIZES:
        return "image", "BMP"
    for table, kind in ((_IMAGE_MAGIC, "image"), (_UNSUPPORTED_MAGIC, "unsupported")):
        for magic, name in table:
            if head.startswith(magic):
                return kind, name
    for magic, name in _OTHER_MAGIC:
        if head.startswith(magic):
            return "other", name
    return _sniff_text(head)


def _sniff_text(head: bytes) -> tuple[str | None, str]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not merely a character cut at the 1 KB boundary
            return None, ""
        text = head[: error.start].decode("utf-8")
    if _TEXT_CONTROL.search(head) or not text.strip():
        return None, ""
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if "<svg" in lowered:
        return "other", "SVG vector graphics; only raster images are supported"
    if lowered.startswith(("<!doctype html", "<html")):
        return "other", "HTML"
    if lowered.startswith("<"):
        return "other", "XML"
    return "other", "text"


# --- messages -------------------------------------------------------------------------------


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    if unit == "bytes":
        return f"{size} bytes"
    return f"{value:.1f}".removesuffix(".0") + f" {unit}"


def _human_pixels(pixels: int) -> str:
    if pixels >= 1_000_000_000:
        return f"{pixels / 1e9:.1f}".removesuffix(".0") + " gigapixels"
    if pixels >= 1_000_000:
        return f"{pixels // 1_000_000} megapixels"
    return f"{pixels} pixels"


def _too_large_message(size: int, max_bytes: int) -> str:
    return (
        f"file is {_human_bytes(size)}, over the {_human_bytes(max_bytes)} limit"
        " (SEMSQL_MAX_FILE_BYTES)"
    )


def _bomb_message(width: int, height: int, max_pixels: int) -> str:
    return (
        f"decompression bomb: {width}x{height} = {_human_pixels(width * height)} exceeds the"
        f" limit of {_human_pixels(max_pixels)} (SEMSQL_MAX_PIXELS)"
    )


def _pillow_bomb_message(data: bytes, error: Exception, max_pixels: int) -> str:
    """Pillow refuses images over its hard limit while opening, before we see the size; the
    PNG header is easy to read back for a precise message, other formats get Pillow's count."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        size = f"{width}x{height} = {_human_pixels(width * height)}"
    else:
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = _human_pixels(int(found.group(1))) if found else "the image"
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if max_pixels <= pillow_limit:
        limit = f"the limit of {_human_pixels(max_pixels)} (SEMSQL_MAX_PIXELS)"
    else:
        limit = (
            f"Pillow's limit of {_human_pixels(pillow_limit)} (SEMSQL_MAX_PIXELS cannot raise it)"
        )
    return f"decompression bomb: {size} exceeds {limit}"
