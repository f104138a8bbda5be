"""Files a DAM holds besides plain JPEGs: HEIC written with pillow-heif, and XMP sidecars as
Lightroom writes them (with hierarchical keywords, a title, a headline and develop settings)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from corpus import build_exif, noise_image


def make_heic(
    path: Path,
    size: tuple[int, int] = (96, 64),
    *,
    seed: int = 0,
    exif: Mapping[str | int, Any] | None = None,
    xmp: str | None = None,
) -> Path:
    """A HEIC (HEVC-coded HEIF) file written by pillow-heif; its EXIF Orientation, if any,
    becomes the file's rotation (irot), as iPhones write it."""
    import pillow_heif

    options: dict[str, Any] = {"quality": 60}
    if exif:
        options["exif"] = build_exif(exif).tobytes()
    if xmp is not None:
        options["xmp"] = xmp.encode()
    buffer = io.BytesIO()
    heif = pillow_heif.from_pillow(noise_image(size, seed=seed))
    heif.save(buffer, format="HEIF", **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _bag(items: Iterable[str]) -> str:
    lis = "".join(f"<rdf:li>{escape(item)}</rdf:li>" for item in items)
    return f"<rdf:Bag>{lis}</rdf:Bag>"


def _alt(text: str) -> str:
    return f'<rdf:Alt><rdf:li xml:lang="x-default">{escape(text)}</rdf:li></rdf:Alt>'


def lightroom_xmp(
    *,
    description: str | None = None,
    title: str | None = None,
    headline: str | None = None,
    keywords: Iterable[str] = (),
    hierarchical: Iterable[str] = (),
    persons: Iterable[str] = (),
    taken: str | None = None,
    gps: tuple[str, str] | None = None,
) -> str:
    """An XMP packet as Lightroom Classic writes a sidecar: the fields given, and Camera Raw
    develop settings (which say nothing about the picture)."""
    fields = []
    if description is not None:
        fields.append(f"<dc:description>{_alt(description)}</dc:description>")
    if title is not None:
        fields.append(f"<dc:title>{_alt(title)}</dc:title>")
    if headline is not None:
        fields.append(f"<photoshop:Headline>{escape(headline)}</photoshop:Headline>")
    if keywords := list(keywords):
        fields.append(f"<dc:subject>{_bag(keywords)}</dc:subject>")
    if hierarchical := list(hierarchical):
        fields.append(f"<lr:hierarchicalSubject>{_bag(hierarchical)}</lr:hierarchicalSubject>")
    if persons := list(persons):
        fields.append(f"<Iptc4xmpExt:PersonInImage>{_bag(persons)}</Iptc4xmpExt:PersonInImage>")
    if taken is not None:
        fields.append(f"<exif:DateTimeOriginal>{escape(taken)}</exif:DateTimeOriginal>")
    if gps is not None:
        fields.append(f"<exif:GPSLatitude>{gps[0]}</exif:GPSLatitude>")
        fields.append(f"<exif:GPSLongitude>{gps[1]}</exif:GPSLongitude>")
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000">\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '<rdf:Description rdf:about=""'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"'
        ' xmlns:lr="http://ns.adobe.com/lightroom/1.0/"'
        ' xmlns:exif="http://ns.adobe.com/exif/1.0/"'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"'
        ' crs:Version="15.0" crs:Exposure2012="+0.35" crs:WhiteBalance="As Shot">\n'
        + "\n".join(fields)
        + "\n</rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n"
    )
