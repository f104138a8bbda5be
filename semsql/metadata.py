"""What an image file says about itself: EXIF, IPTC and XMP, reduced to searchable facts.

`read_metadata` never raises for malformed metadata: a section that cannot be read is
recorded in `metadata["metadata_errors"]` and the other sections still count. Everything in
`metadata` survives `json.dumps` and Postgres jsonb (see `json_safe`).
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from PIL import ExifTags, Image, IptcImagePlugin


@dataclass(frozen=True, slots=True)
class Metadata:
    metadata: dict[str, Any]
    taken_at: datetime | None
    description: str | None
    keywords: tuple[str, ...]
    persons: tuple[str, ...]


def read_metadata(im: Image.Image) -> Metadata:
    errors: list[str] = []
    with pillow_warnings_silenced():
        exif = _guarded(errors, "exif", lambda: read_exif(im)) or {}
        iptc = _guarded(errors, "iptc", lambda: read_iptc(im)) or {}
        xmp = _guarded(errors, "xmp", lambda: read_xmp(im)) or Xmp()

    metadata: dict[str, Any] = {
        "exif": exif,
        "camera": _camera(exif, xmp.properties),
        "gps": _guarded(errors, "gps", lambda: _gps(exif, xmp.properties)) or {},
        "orientation": _orientation(exif),
        "iptc": iptc,
        "xmp": xmp.properties,
        "metadata_errors": errors,
    }
    metadata = json_safe({key: value for key, value in metadata.items() if value})
    return Metadata(
        metadata=metadata,
        taken_at=_taken_at(exif, iptc, xmp.properties),
        description=_description(exif, iptc, xmp.properties),
        keywords=unique_stripped([*_as_list(iptc.get("Keywords")), *xmp.keywords]),
        persons=unique_stripped(xmp.persons),
    )


_silenced_lock = threading.Lock()
_silenced_depth = 0
_silenced_context: warnings.catch_warnings[None] | None = None


@contextmanager
def pillow_warnings_silenced() -> Iterator[None]:
    """Ignore Pillow's warnings (DecompressionBombWarning: our own pixel limit decides;
    "Corrupt EXIF data": the damaged tag is skipped anyway) so that none escapes to callers
    running with warnings as errors.

    warnings.catch_warnings swaps process-wide state, so overlapping uses from several
    threads would restore each other's filters out of order (Python < 3.14). Ingest probes
    in a thread pool: the first thread in installs the filter, the last one out removes it.
    """
    global _silenced_context, _silenced_depth
    with _silenced_lock:
        if _silenced_depth == 0:
            _silenced_context = warnings.catch_warnings()
            _silenced_context.__enter__()
            warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
            warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
        _silenced_depth += 1
    try:
        yield
    finally:
        with _silenced_lock:
            _silenced_depth -= 1
            if _silenced_depth == 0 and _silenced_context is not None:
                _silenced_context.__exit__(None, None, None)
                _silenced_context = None


def _guarded(errors: list[str], section: str, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except Exception as error:
        errors.append(f"{section}: {error}" if str(error) else f"{section}: {type(error).__name__}")
        return None


def unique_stripped(values: Iterable[str]) -> tuple[str, ...]:
    """Strip, drop empties, de-duplicate case-insensitively keeping the first spelling."""
    seen: set[str] = set()
    result = []
    for value in values:
        value = value.replace("\x00", "").strip()
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            result.append(value)
    return tuple(result)


def json_safe(value: Any) -> Any:
    """A copy of `value` that json.dumps and Postgres jsonb accept: no bytes, no NaN, no
    NUL characters, no lone surrogates. Values that have no JSON form become None."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        cleaned = value.replace("\x00", "")
        # Lone surrogates (from surrogateescape or JSON "\ud800") cannot be stored as UTF-8.
        return cleaned.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float | numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return None


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


def _orientation(exif: dict[str, Any]) -> int | None:
    orientation = exif.get("Orientation")
    return orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else None


def _camera(exif: dict[str, Any], xmp: dict[str, Any]) -> dict[str, str]:
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


def _gps(exif: dict[str, Any], xmp: dict[str, Any]) -> dict[str, float]:
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
    degrees = sum(part / 60**i for i, part in enumerate(parts))
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


# --- dates ----------------------------------------------------------------------------------

_EXIF_DATETIME = re.compile(r"^\s*(\d{4})[:\-/](\d\d)[:\-/](\d\d)[ T](\d\d):(\d\d)(?::(\d\d))?")
_UTC_OFFSET = re.compile(r"^\s*(?:(Z)|([+-])(\d\d):?(\d\d))\s*$")
_ISO_DATETIME = re.compile(
    r"^\s*(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
    r"(Z|[+-]\d\d:?\d\d)?)?)?)?\s*$"
)


def parse_exif_datetime(text: Any, offset: Any = None, subseconds: Any = None) -> datetime | None:
    """EXIF "YYYY:MM:DD HH:MM:SS" with an optional "+HH:MM" offset; without one it is taken
    as UTC. Placeholder dates such as "0000:00:00 00:00:00" give None."""
    match = _EXIF_DATETIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
    fraction = subseconds.strip() if isinstance(subseconds, str) else ""
    microsecond = int(fraction[:6].ljust(6, "0")) if fraction.isdigit() else 0
    return _datetime(year, month, day, hour, minute, second, microsecond, _utc_offset(offset))


def parse_iso_datetime(text: Any) -> datetime | None:
    """XMP dates: ISO 8601 from a bare year to full date-time with fraction and offset."""
    match = _ISO_DATETIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    *parts, fraction, offset = match.groups()
    year, month, day, hour, minute, second = (int(part) if part else 0 for part in parts)
    microsecond = int(fraction[:6].ljust(6, "0")) if fraction else 0
    return _datetime(
        year, month or 1, day or 1, hour, minute, second, microsecond, _utc_offset(offset)
    )


def _utc_offset(text: Any) -> timezone | None:
    match = _UTC_OFFSET.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    zulu, sign, hours, minutes = match.groups()
    if zulu:
        return UTC
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24):
        return None
    return timezone(-delta if sign == "-" else delta)


def _datetime(
    year: int,
    month: int,
    day: int,
    hour: int,
    minute: int,
    second: int,
    microsecond: int,
    tz: timezone | None,
) -> datetime | None:
    try:
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz or UTC)
    except ValueError:
        return None


def _iptc_datetime(iptc: dict[str, Any]) -> datetime | None:
    """IPTC DateCreated "CCYYMMDD" with TimeCreated "HHMMSS±HHMM"."""
    date, time = iptc.get("DateCreated"), iptc.get("TimeCreated")
    if not isinstance(date, str) or not re.fullmatch(r"\d{8}", date):
        return None
    time_match = re.fullmatch(r"(\d\d)(\d\d)(\d\d)([+-]\d{4})?", time or "")
    hour, minute, second, offset = time_match.groups() if time_match else ("0", "0", "0", None)
    return _datetime(
        int(date[:4]),
        int(date[4:6]),
        int(date[6:]),
        int(hour),
        int(minute),
        int(second),
        0,
        _utc_offset(offset),
    )


def _taken_at(exif: dict[str, Any], iptc: dict[str, Any], xmp: dict[str, Any]) -> datetime | None:
    # EXIF DateTime is the file's last change (editors rewrite it on save), so every statement
    # of when the picture was taken outranks it.
    candidates = (
        parse_exif_datetime(
            exif.get("DateTimeOriginal"),
            exif.get("OffsetTimeOriginal"),
            exif.get("SubsecTimeOriginal"),
        ),
        parse_exif_datetime(
            exif.get("DateTimeDigitized"),
            exif.get("OffsetTimeDigitized"),
            exif.get("SubsecTimeDigitized"),
        ),
        parse_iso_datetime(xmp.get("exif:DateTimeOriginal")),
        parse_iso_datetime(xmp.get("xmp:CreateDate")),
        parse_iso_datetime(xmp.get("photoshop:DateCreated")),
        _iptc_datetime(iptc),
        parse_exif_datetime(exif.get("DateTime"), exif.get("OffsetTime"), exif.get("SubsecTime")),
    )
    return next((found for found in candidates if found is not None), None)


# --- description ----------------------------------------------------------------------------

# What cameras write into ImageDescription when the user wrote nothing.
_PLACEHOLDER_DESCRIPTIONS = frozenset(
    {
        "",
        "default",
        "digital camera",
        "exif_jpeg_picture",
        "konica minolta digital camera",
        "minolta digital camera",
        "olympus digital camera",
        "samsung digital camera",
        "sony dsc",
    }
)


def _description(exif: dict[str, Any], iptc: dict[str, Any], xmp: dict[str, Any]) -> str | None:
    for value in (iptc.get("Caption-Abstract"), xmp.get("dc:description")):
        if isinstance(value, str) and value.strip():
            return value.strip()
    value = exif.get("ImageDescription")
    if isinstance(value, str) and value.strip().casefold() not in _PLACEHOLDER_DESCRIPTIONS:
        return value.strip()
    return None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


# --- IPTC -----------------------------------------------------------------------------------

_IPTC_DATASETS = {
    (2, 5): "ObjectName",
    (2, 15): "Category",
    (2, 20): "SupplementalCategories",
    (2, 25): "Keywords",
    (2, 40): "SpecialInstructions",
    (2, 55): "DateCreated",
    (2, 60): "TimeCreated",
    (2, 80): "By-line",
    (2, 85): "By-lineTitle",
    (2, 90): "City",
    (2, 92): "Sub-location",
    (2, 95): "Province-State",
    (2, 100): "Country-PrimaryLocationCode",
    (2, 101): "Country-PrimaryLocationName",
    (2, 103): "OriginalTransmissionReference",
    (2, 105): "Headline",
    (2, 110): "Credit",
    (2, 115): "Source",
    (2, 116): "CopyrightNotice",
    (2, 120): "Caption-Abstract",
    (2, 122): "Writer-Editor",
}
_IPTC_REPEATABLE = frozenset({"SupplementalCategories", "Keywords", "By-line", "By-lineTitle"})


def read_iptc(im: Image.Image) -> dict[str, Any]:
    """IPTC-IIM datasets (JPEG APP13, TIFF tag 33723) by name. Text is decoded as UTF-8,
    falling back to latin-1, which is what most old writers used without saying so."""
    datasets = IptcImagePlugin.getiptcinfo(im) or {}  # type: ignore[arg-type]
    result: dict[str, Any] = {}
    for key, raw in datasets.items():
        name = _IPTC_DATASETS.get(key)
        if name is None:
            continue
        values = [_decode_text(item) for item in (raw if isinstance(raw, list) else [raw])]
        values = [value for value in values if value]
        if values:
            result[name] = values if name in _IPTC_REPEATABLE else values[0]
    return result


def _decode_text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.replace("\x00", "").strip()


# --- XMP ------------------------------------------------------------------------------------

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DC = "http://purl.org/dc/elements/1.1/"
_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
_MWG_REGIONS = "http://www.metadataworkinggroup.com/schemas/regions/"
_MS_REGION = "http://ns.microsoft.com/photo/1.2/t/Region#"
_KNOWN_PREFIXES = {
    _DC: "dc",
    _IPTC_EXT: "Iptc4xmpExt",
    _MWG_REGIONS: "mwg-rs",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://cipa.jp/exif/1.0/": "exifEX",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/exif/1.0/aux/": "aux",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "Iptc4xmpCore",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
}
# Camera Raw develop settings and edit history: large, and say nothing about the picture.
_SKIPPED_XMP_NAMESPACES = frozenset(
    {"http://ns.adobe.com/camera-raw-settings/1.0/", "http://ns.adobe.com/xap/1.0/mm/"}
)
_MAX_XMP_LIST = 200


@dataclass(frozen=True, slots=True)
class Xmp:
    properties: dict[str, Any] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()


def read_xmp(im: Image.Image) -> Xmp:
    packet = im.info.get("xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if not isinstance(packet, bytes) or not packet.strip(b"\x00 \t\r\n"):
        return Xmp()
    return parse_xmp(packet)


def parse_xmp(packet: bytes) -> Xmp:
    """The simple properties of an XMP packet, plus keywords and the people shown.

    Structures other than face regions are skipped. DOCTYPEs are refused outright: XMP has
    no use for them, and entity tricks are the one thing expat would otherwise expand.
    """
    packet = packet.strip(b"\x00 \t\r\n")
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        raise ValueError("DOCTYPE and ENTITY declarations are not allowed in XMP")
    parser = ET.XMLPullParser(events=("start-ns", "end"))
    parser.feed(packet)
    parser.close()
    prefixes = dict(_KNOWN_PREFIXES)
    root = None
    for event, item in parser.read_events():
        if event == "start-ns":
            prefix, uri = item
            prefixes.setdefault(uri, prefix)
        else:
            root = item
    if root is None:
        return Xmp()
    rdf = root if root.tag == f"{{{_RDF}}}RDF" else root.find(f".//{{{_RDF}}}RDF")
    if rdf is None:
        return Xmp()

    properties: dict[str, Any] = {}
    for description in rdf.findall(f"{{{_RDF}}}Description"):
        for name, value in _description_properties(description):
            uri, local = _split_name(name)
            if uri in _SKIPPED_XMP_NAMESPACES or value in (None, "", []):
                continue
            properties[f"{prefixes.get(uri) or uri}:{local}"] = value

    keywords = _bag_texts(rdf, f"{{{_DC}}}subject")
    persons = [
        *_bag_texts(rdf, f"{{{_IPTC_EXT}}}PersonInImage"),
        *_mwg_face_names(rdf),
        *_microsoft_region_names(rdf),
    ]
    return Xmp(properties, unique_stripped(keywords), unique_stripped(persons))


def _split_name(name: str) -> tuple[str, str]:
    uri, _, local = name[1:].partition("}")
    return uri, local


def _description_properties(description: ET.Element) -> Iterator[tuple[str, Any]]:
    for name, value in description.attrib.items():
        if not name.startswith(f"{{{_RDF}}}"):
            yield name, value.strip()
    for element in description:
        yield element.tag, _property_value(element)


def _property_value(element: ET.Element) -> Any:
    """A simple value, the x-default of an rdf:Alt, or the texts of an rdf:Bag/Seq; None for
    structures."""
    if (resource := element.get(f"{{{_RDF}}}resource")) is not None:
        return resource.strip()
    if element.get(f"{{{_RDF}}}parseType") == "Resource":
        return None
    children = list(element)
    if not children:
        return (element.text or "").strip()
    container = children[0]
    items = container.findall(f"{{{_RDF}}}li")
    if container.tag == f"{{{_RDF}}}Alt":
        chosen = next((li for li in items if li.get(_XML_LANG) == "x-default"), None)
        chosen = chosen if chosen is not None else (items[0] if items else None)
        return _li_text(chosen) if chosen is not None else None
    if container.tag in (f"{{{_RDF}}}Bag", f"{{{_RDF}}}Seq"):
        texts = [_li_text(li) for li in items[:_MAX_XMP_LIST]]
        return [text for text in texts if text] if None not in texts else None
    return None


def _li_text(li: ET.Element) -> str | None:
    if len(li) or li.get(f"{{{_RDF}}}parseType") == "Resource":
        return None  # a structure, not text
    return (li.text or "").strip()


def _bag_texts(rdf: ET.Element, tag: str) -> list[str]:
    texts = []
    for element in rdf.iter(tag):
        texts.extend(li.text or "" for li in element.iter(f"{{{_RDF}}}li") if not len(li))
        if not element.findall(f".//{{{_RDF}}}li") and element.text:
            texts.append(element.text)
    return texts


def _mwg_face_names(rdf: ET.Element) -> list[str]:
    names = []
    for region_list in rdf.iter(f"{{{_MWG_REGIONS}}}RegionList"):
        for li in region_list.iter(f"{{{_RDF}}}li"):
            fields = _struct_fields(li)
            name = fields.get(f"{{{_MWG_REGIONS}}}Name")
            if name and fields.get(f"{{{_MWG_REGIONS}}}Type", "Face") == "Face":
                names.append(name)
    return names


def _microsoft_region_names(rdf: ET.Element) -> list[str]:
    key = f"{{{_MS_REGION}}}PersonDisplayName"
    names = [element.text or "" for element in rdf.iter(key)]
    names.extend(element.get(key, "") for element in rdf.iter() if key in element.attrib)
    return names


def _struct_fields(node: ET.Element) -> dict[str, str]:
    """The simple fields of an XMP struct, written as attributes or child elements, directly
    or inside an rdf:Description."""
    fields: dict[str, str] = {}
    for holder in (node, *node.findall(f"{{{_RDF}}}Description")):
        fields.update({name: value.strip() for name, value in holder.attrib.items()})
        for child in holder:
            if not len(child):
                fields[child.tag] = (child.text or "").strip()
    return fields
