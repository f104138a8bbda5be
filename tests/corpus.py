"""Builders for test files: real images with real metadata, and files that must be rejected.

Every builder writes one file and returns its path, so a test reads as a list of the files it
needs. Images are smooth colour fields with fine noise: they compress like photographs (a
640x480 JPEG at quality 90 is ~85 KB, 1024x768 ~210 KB), and `seed` makes the content
unique, so files from different seeds never share a hash.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin

# Tags that live in IFD0; every other name in ExifTags.Base goes into the Exif IFD.
_IFD0_TAGS = frozenset(
    {
        "ImageDescription",
        "Make",
        "Model",
        "Orientation",
        "XResolution",
        "YResolution",
        "ResolutionUnit",
        "Software",
        "DateTime",
        "Artist",
        "Copyright",
        "HostComputer",
        "XPTitle",
        "XPComment",
        "XPAuthor",
        "XPKeywords",
        "XPSubject",
    }
)
_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825


def _prepared(path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def noise_image(size: tuple[int, int] = (640, 480), *, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: a smooth random colour field plus fine grain."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    field = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    grain = rng.normal(0.0, 7.0, size=(height, width, 3))
    pixels = np.clip(np.asarray(field, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def build_exif(tags: Mapping[str | int, Any]) -> Image.Exif:
    """An Image.Exif from tag names (ExifTags.Base / ExifTags.GPS) or numbers, each placed in
    the IFD where cameras write it (IFD0, the Exif IFD or the GPS IFD)."""
    exif = Image.Exif()
    for key, value in tags.items():
        if isinstance(key, int):
            exif[key] = value
        elif key in ExifTags.GPS.__members__:
            exif.get_ifd(_GPS_IFD)[ExifTags.GPS[key]] = value
        elif key in _IFD0_TAGS:
            exif[ExifTags.Base[key]] = value
        else:
            exif.get_ifd(_EXIF_IFD)[ExifTags.Base[key]] = value
    return exif


def gps_tags(lat: float, lon: float, alt: float | None = None) -> dict[str, Any]:
    """EXIF GPS tags for signed decimal degrees, in the degrees/minutes/seconds form cameras use."""

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round((value - degrees - minutes / 60) * 3600, 4)
        return float(degrees), float(minutes), seconds

    tags: dict[str, Any] = {
        "GPSLatitudeRef": "N" if lat >= 0 else "S",
        "GPSLatitude": dms(lat),
        "GPSLongitudeRef": "E" if lon >= 0 else "W",
        "GPSLongitude": dms(lon),
    }
    if alt is not None:
        tags["GPSAltitudeRef"] = b"\x00" if alt >= 0 else b"\x01"
        tags["GPSAltitude"] = abs(alt)
    return tags


def make_xmp_packet(
    description: str | None = None,
    keywords: Iterable[str] = (),
    persons: Iterable[str] = (),
    created: datetime | str | None = None,
    *,
    region_names: Iterable[str] = (),
) -> str:
    """An XMP packet as Lightroom/Photo Mechanic write it: dc:description (rdf:Alt),
    dc:subject (rdf:Bag), Iptc4xmpExt:PersonInImage (rdf:Bag), photoshop:DateCreated, and
    optionally MWG face regions with names."""
    properties = []
    if description is not None:
        properties.append(
            "<dc:description><rdf:Alt>"
            f'<rdf:li xml:lang="x-default">{escape(description)}</rdf:li>'
            "</rdf:Alt></dc:description>"
        )
    if keywords := list(keywords):
        properties.append(f"<dc:subject>{_rdf_bag(keywords)}</dc:subject>")
    if persons := list(persons):
        properties.append(
            f"<Iptc4xmpExt:PersonInImage>{_rdf_bag(persons)}</Iptc4xmpExt:PersonInImage>"
        )
    if created is not None:
        created_text = created.isoformat() if isinstance(created, datetime) else created
        properties.append(f"<photoshop:DateCreated>{escape(created_text)}</photoshop:DateCreated>")
    if region_names := list(region_names):
        regions = "".join(
            f'<rdf:li rdf:parseType="Resource"><mwg-rs:Name>{escape(name)}</mwg-rs:Name>'
            "<mwg-rs:Type>Face</mwg-rs:Type></rdf:li>"
            for name in region_names
        )
        properties.append(
            '<mwg-rs:Regions rdf:parseType="Resource">'
            f"<mwg-rs:RegionList><rdf:Bag>{regions}</rdf:Bag></mwg-rs:RegionList>"
            "</mwg-rs:Regions>"
        )
    body = "".join(properties)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/">'
        f"{body}"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )


def _rdf_bag(items: list[str]) -> str:
    return (
        "<rdf:Bag>" + "".join(f"<rdf:li>{escape(item)}</rdf:li>" for item in items) + "</rdf:Bag>"
    )


def iptc_segment(
    datasets: Mapping[tuple[int, int] | int, str | bytes | Iterable[str | bytes]],
) -> bytes:
    """A JPEG APP13 segment (Photoshop 3.0, 8BIM resource 0x0404) holding IPTC-IIM datasets.

    Keys are (record, dataset) or a record-2 dataset number (25 = Keywords, 120 = Caption);
    str values are written as UTF-8, bytes as given (to test other encodings); an iterable
    writes a repeated dataset.
    """
    iim = bytearray()
    for key, value in datasets.items():
        record, dataset = key if isinstance(key, tuple) else (2, key)
        values = [value] if isinstance(value, str | bytes) else list(value)
        for item in values:
            raw = item.encode() if isinstance(item, str) else item
            iim += struct.pack(">BBBH", 0x1C, record, dataset, len(raw)) + raw
    if len(iim) % 2:
        iim += b"\x00"
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    payload = b"Photoshop 3.0\x00" + resource
    return b"\xff\xed" + struct.pack(">H", len(payload) + 2) + payload


def make_jpeg(
    path: Path,
    size: tuple[int, int] = (640, 480),
    *,
    seed: int = 0,
    quality: int = 90,
    exif: Mapping[str | int, Any] | None = None,
    xmp: str | None = None,
    iptc: Mapping[tuple[int, int] | int, Any] | None = None,
) -> Path:
    """A baseline JPEG; exif as tag names -> values (see build_exif), xmp as a packet (see
    make_xmp_packet), iptc as datasets (see iptc_segment)."""
    options: dict[str, Any] = {"quality": quality}
    if exif:
        options["exif"] = build_exif(exif)
    if xmp is not None:
        options["xmp"] = xmp.encode()
    path = _prepared(path)
    noise_image(size, seed=seed).save(path, "JPEG", **options)
    if iptc:
        data = path.read_bytes()
        # APP13 may follow SOI directly; readers do not depend on segment order.
        path.write_bytes(data[:2] + iptc_segment(iptc) + data[2:])
    return path


def make_png(
    path: Path,
    size: tuple[int, int] = (640, 480),
    *,
    seed: int = 0,
    exif: Mapping[str | int, Any] | None = None,
    xmp: str | None = None,
) -> Path:
    """A PNG; XMP goes into an iTXt chunk named XML:com.adobe.xmp, EXIF into eXIf."""
    options: dict[str, Any] = {}
    if exif:
        options["exif"] = build_exif(exif)
    if xmp is not None:
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", xmp)
        options["pnginfo"] = text
    path = _prepared(path)
    noise_image(size, seed=seed).save(path, "PNG", **options)
    return path


def make_gif_animation(path: Path, size: tuple[int, int] = (64, 48), *, frames: int = 3) -> Path:
    images = [noise_image(size, seed=i).convert("P") for i in range(frames)]
    path = _prepared(path)
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def make_corrupt(path: Path) -> Path:
    """A JPEG start-of-image marker followed by bytes that are no JPEG segment."""
    path = _prepared(path)
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    return path


def make_truncated(path: Path, size: tuple[int, int] = (640, 480), *, seed: int = 0) -> Path:
    """A valid JPEG cut in half: the header parses, the scan data ends early."""
    path = _prepared(path)
    make_jpeg(path, size, seed=seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_zero_byte(path: Path) -> Path:
    path = _prepared(path)
    path.write_bytes(b"")
    return path


def make_text(path: Path, text: str = "This is not an image.\nJust some notes.\n") -> Path:
    path = _prepared(path)
    path.write_text(text, encoding="utf-8")
    return path


def make_bomb(path: Path, size: tuple[int, int] = (40000, 40000)) -> Path:
    """A small PNG whose header declares `size`: a decompression bomb as readers see it.

    Only the IHDR width and height (and its CRC) are rewritten in a tiny valid PNG; the
    image data is never decoded because the size check must reject it first.
    """
    tiny = _prepared(path)
    Image.new("P", (8, 8)).save(tiny, "PNG")
    data = bytearray(tiny.read_bytes())
    # Signature (8) + IHDR length (4) + b"IHDR" (4), then width and height.
    ihdr_start = 12
    ihdr_data_start = ihdr_start + 4
    struct.pack_into(">II", data, ihdr_data_start, *size)
    ihdr_data = bytes(data[ihdr_data_start : ihdr_data_start + 13])
    crc = zlib.crc32(b"IHDR" + ihdr_data)
    struct.pack_into(">I", data, ihdr_data_start + 13, crc)
    tiny.write_bytes(bytes(data))
    return tiny


def make_video_header(path: Path, brand: bytes = b"isom") -> Path:
    """The first bytes of an ISO BMFF file (mp4/mov): an ftyp box, then an empty mdat."""
    ftyp = struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x02\x00" + brand + b"mp41"
    mdat = struct.pack(">I", 8) + b"mdat"
    path = _prepared(path)
    path.write_bytes(ftyp + mdat + bytes(1024))
    return path


def make_webm_header(path: Path) -> Path:
    """The first bytes of a Matroska/WebM file: an EBML header with DocType webm."""
    path = _prepared(path)
    path.write_bytes(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + bytes(1024))
    return path
