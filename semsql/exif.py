"""EXIF and GPS tags, reduced to plain JSON-safe values, camera and coordinates."""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

from PIL import ExifTags, Image

# --- EXIF -----------------------------------------------------------------------------------

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
# Offsets, binary blobs and structural TIFF arrays: meaningless or huge once out of the file.
_SKIPPED_EXIF_TAGS = frozenset(
    {
        0x0111,  # StripOffsets
        0x0117,  # StripByteCounts
        0x0140,  # ColorMap
        0x0144,  # TileOffsets
        0x0145,  # TileByteCounts
        0x014A,  # SubIFDs
        0x0201,  # JpegIFOffset
        0x0202,  # JpegIFByteCount
        0x02BC,  # XMLPacket (read as XMP)
        0x83BB,  # IPTC-NAA (read as IPTC)
        0x8649,  # Photoshop image resources
        0x8769,  # Exif IFD pointer
        0x8773,  # ICC profile
        0x8825,  # GPS IFD pointer
        0x927C,  # MakerNote
        0xA005,  # Interoperability IFD pointer
        0xC4A5,  # PrintImageMatching
    }
)
_WINDOWS_XP_TAGS = frozenset({0x9C9B, 0x9C9C, 0x9C9D, 0x9C9E, 0x9C9F})
_USER_COMMENT = 0x9286
_MAX_EXIF_ARRAY = 32


def read_exif(im: Image.Image) -> dict[str, Any]:
    """IFD0, the Exif IFD and the GPS IFD as {tag name: plain value}."""
    exif = im.getexif()
    result: dict[str, Any] = {}
    for ifd, names in ((exif, ExifTags.TAGS), (exif.get_ifd(_EXIF_IFD), ExifTags.TAGS)):
        for tag, value in ifd.items():
            name = names.get(tag)
            if name is not None and tag not in _SKIPPED_EXIF_TAGS:
                plain = _plain_exif_value(tag, value)
                if plain is not None:
                    result[name] = plain
    for tag, value in exif.get_ifd(_GPS_IFD).items():
        name = ExifTags.GPSTAGS.get(tag)
        plain = _plain_exif_value(tag, value)
        if name is not None and plain is not None:
            result[name] = plain
    return result


def _plain_exif_value(tag: int, value: Any) -> Any:
    if isinstance(value, bytes):
        return _plain_exif_bytes(tag, value)
    if isinstance(value, str):
        return value.replace("\x00", "").strip() or None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, tuple | list) and 0 < len(value) <= _MAX_EXIF_ARRAY:
        items = [_plain_exif_value(tag, item) for item in value]
        return items if None not in items else None
    return None


def _plain_exif_bytes(tag: int, raw: bytes) -> str | int | None:
    if tag in _WINDOWS_XP_TAGS:
        return raw.decode("utf-16-le", "replace").replace("\x00", "").strip() or None
    if tag == _USER_COMMENT:
        return _user_comment(raw)
    text = raw.rstrip(b"\x00").strip()
    if 0 < len(text) <= 256 and all(0x20 <= byte < 0x7F for byte in text):
        return text.decode("ascii")  # e.g. ExifVersion b"0232"
    if len(raw) == 1:
        return raw[0]  # BYTE tags such as GPSAltitudeRef or FileSource
    return None


def _user_comment(raw: bytes) -> str | None:
    charset, body = raw[:8], raw[8:]
    if charset.startswith(b"UNICODE"):
        # The byte order is the TIFF header's, which Pillow does not expose; ASCII-range text
        # has its zero bytes first in big-endian.
        big_endian = body[:1] == b"\x00"
        text = body.decode("utf-16-be" if big_endian else "utf-16-le", "replace")
    elif charset.startswith((b"ASCII", b"\x00\x00\x00\x00\x00\x00\x00\x00")):
        text = body.decode("utf-8", "replace")
    else:
        return None  # JIS or unknown charsets
    return text.replace("\x00", "").strip() or None


def orientation_of(exif: dict[str, Any]) -> int | None:
    orientation = exif.get("Orientation")
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None


def camera_of(exif: dict[str, Any], xmp: dict[str, Any]) -> dict[str, str]:
    candidates = {
        "make": (exif.get("Make"), xmp.get("tiff:Make")),
        "model": (exif.get("Model"), xmp.get("tiff:Model")),
        "lens": (exif.get("LensModel"), xmp.get("exifEX:LensModel"), xmp.get("aux:Lens")),
    }
    camera = {}
    for key, values in candidates.items():
        value = next((v.strip() for v in values if isinstance(v, str) and v.strip()), None)
        if value:
            camera[key] = value
    return camera


# --- GPS ------------------------------------------------------------------------------------


def gps_of(exif: dict[str, Any], xmp: dict[str, Any]) -> dict[str, float]:
    lat = _exif_coordinate(exif.get("GPSLatitude"), exif.get("GPSLatitudeRef"), "S")
    lon = _exif_coordinate(exif.get("GPSLongitude"), exif.get("GPSLongitudeRef"), "W")
    if lat is None or lon is None:
        lat = _xmp_coordinate(xmp.get("exif:GPSLatitude"))
        lon = _xmp_coordinate(xmp.get("exif:GPSLongitude"))
    # Exactly (0, 0) is what many cameras write when they have no fix.
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return {}
    if lat == 0 and lon == 0:
        return {}
    gps = {"lat": round(lat, 7), "lon": round(lon, 7)}
    altitude = exif.get("GPSAltitude")
    if isinstance(altitude, int | float):
        below_sea_level = exif.get("GPSAltitudeRef") in (1, "1")
        gps["alt"] = -float(altitude) if below_sea_level else float(altitude)
    return gps


def _exif_coordinate(value: Any, ref: Any, negative_ref: str) -> float | None:
    parts = value if isinstance(value, list) else [value]
    if not 1 <= len(parts) <= 3 or not all(isinstance(p, int | float) for p in parts):
        return None
    degrees = float(sum(part / 60**i for i, part in enumerate(parts)))
    negative = isinstance(ref, str) and ref.strip().upper() == negative_ref
    return -degrees if negative else degrees


_XMP_COORDINATE = re.compile(r"^(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)(?:,(\d+(?:\.\d+)?))?([NSEW])$")


def _xmp_coordinate(value: Any) -> float | None:
    """XMP GPS coordinates: "DDD,MM,SSk" or "DDD,MM.mmk" (k is N, S, E or W)."""
    match = _XMP_COORDINATE.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    degrees, minutes, seconds, ref = match.groups()
    number = float(degrees) + float(minutes) / 60 + float(seconds or 0) / 3600
    return -number if ref in "SW" else number
