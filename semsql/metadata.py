"""What an image file says about itself: EXIF, IPTC and XMP, reduced to searchable facts.

`read_metadata` never raises for malformed metadata: a section that cannot be read is
recorded in `metadata["metadata_errors"]` and the other sections still count. Everything in
`metadata` survives `json.dumps` and Postgres jsonb (see `json_safe`).

XMP sidecars (semsql.sidecars) are merged as Lightroom means them: a sidecar wins for every
field it sets (description, title, headline, dates, GPS, camera, each XMP property), and its
keywords and persons are added to the file's own. `metadata["xmp"]` holds the merged XMP
properties and `metadata["sidecars"]` the files read, each with its SHA-256, so that an edited
sidecar changes the asset's metadata even when the image's bytes stay the same.
"""

from __future__ import annotations

import math
import numbers
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

from PIL import Image, IptcImagePlugin

from semsql.exif import camera_of, gps_of, orientation_of, read_exif
from semsql.sidecars import Sidecar
from semsql.xmp import Xmp, merge_xmp, parse_xmp, read_xmp, unique_stripped


@dataclass(frozen=True, slots=True)
class Metadata:
    metadata: dict[str, Any]
    taken_at: datetime | None
    description: str | None
    keywords: tuple[str, ...]
    persons: tuple[str, ...]
    title: str | None = None  # also metadata["title"]; the headline is metadata["headline"]


def read_metadata(im: Image.Image, sidecars: Sequence[Sidecar] = ()) -> Metadata:
    errors: list[str] = []
    with pillow_warnings_silenced():
        exif = _guarded(errors, "exif", lambda: read_exif(im)) or {}
        iptc = _guarded(errors, "iptc", lambda: read_iptc(im)) or {}
        embedded = _guarded(errors, "xmp", lambda: read_xmp(im)) or Xmp()
    beside = merge_xmp(Xmp(), *_parsed_sidecars(sidecars, errors))
    xmp = merge_xmp(embedded, beside)
    title = _first_text(beside.properties.get("dc:title"), iptc.get("ObjectName"),
                        embedded.properties.get("dc:title"), exif.get("XPTitle"))  # fmt: skip
    headline = _first_text(beside.properties.get("photoshop:Headline"), iptc.get("Headline"),
                           embedded.properties.get("photoshop:Headline"))  # fmt: skip

    metadata: dict[str, Any] = {
        "exif": exif,
        "camera": {**camera_of(exif, embedded.properties), **camera_of({}, beside.properties)},
        "gps": _guarded(errors, "gps", lambda: _gps(exif, embedded, beside)) or {},
        "orientation": orientation_of(exif),
        "iptc": iptc,
        "xmp": xmp.properties,
        "sidecars": [{"file": sidecar.name, "sha256": sidecar.sha256} for sidecar in sidecars],
        "title": title,
        "headline": headline,
        "metadata_errors": errors,
    }
    metadata = json_safe({key: value for key, value in metadata.items() if value})
    return Metadata(
        metadata=metadata,
        taken_at=_taken_at(beside.properties, exif, iptc, embedded.properties),
        description=_first_text(beside.properties.get("dc:description"))
        or _description(exif, iptc, embedded.properties),
        keywords=unique_stripped([*_as_list(iptc.get("Keywords")), *xmp.keywords]),
        persons=xmp.persons,
        title=title,
    )


def _parsed_sidecars(sidecars: Sequence[Sidecar], errors: list[str]) -> Iterator[Xmp]:
    for sidecar in sidecars:
        if sidecar.error is not None:
            errors.append(sidecar.error)
        elif sidecar.data is not None:
            parsed = _guarded(errors, f"sidecar {sidecar.name}", partial(parse_xmp, sidecar.data))
            if parsed is not None:
                yield parsed


def _gps(exif: dict[str, Any], embedded: Xmp, beside: Xmp) -> dict[str, float]:
    return gps_of({}, beside.properties) or gps_of(exif, embedded.properties)


def _first_text(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


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


def _taken_at(
    sidecar: dict[str, Any], exif: dict[str, Any], iptc: dict[str, Any], xmp: dict[str, Any]
) -> datetime | None:
    # A sidecar's date is a correction made in the catalog (Lightroom's Edit Capture Time), so
    # it outranks the file's. EXIF DateTime is the file's last change (editors rewrite it on
    # save), so every statement of when the picture was taken outranks it.
    candidates = (
        *(parse_iso_datetime(sidecar.get(name)) for name in _XMP_DATES),
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
        *(parse_iso_datetime(xmp.get(name)) for name in _XMP_DATES),
        _iptc_datetime(iptc),
        parse_exif_datetime(exif.get("DateTime"), exif.get("OffsetTime"), exif.get("SubsecTime")),
    )
    return next((found for found in candidates if found is not None), None)


_XMP_DATES = ("exif:DateTimeOriginal", "xmp:CreateDate", "photoshop:DateCreated")


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
