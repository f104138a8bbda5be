"""XMP packets: simple properties, keywords and the people shown, without DTD tricks.

Keywords are dc:subject plus every level of Lightroom's hierarchical keywords
(lr:hierarchicalSubject "Places|Europe|Paris" gives Places, Europe and Paris): Lightroom's own
export writes each level ("containing keywords") into dc:subject, so a file carries the same
tags whether they came from an export or from its catalog's sidecar, and a tag filter on
"Europe" finds the photos filed under Paris.

Packets are untrusted XML. defusedxml refuses any DOCTYPE (and so every entity definition)
after the packet is decoded, whatever its encoding: a byte search for "<!DOCTYPE" misses a
UTF-16 packet, and expat would expand its entities.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from defusedxml import DefusedXmlException, DTDForbidden
from defusedxml.ElementTree import iterparse
from PIL import Image

MAX_XMP_BYTES = 2 * 1024 * 1024
"""A packet's size. Lightroom's, with the full develop history, reaches a few hundred KB; a
JPEG's standard packet is at most 64 KB. Larger ones (a PNG or TIFF can hold any size) are
refused whole and recorded in metadata_errors, and the file's other metadata still counts."""


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


# --- XMP ------------------------------------------------------------------------------------

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_DC = "http://purl.org/dc/elements/1.1/"
_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
_MWG_REGIONS = "http://www.metadataworkinggroup.com/schemas/regions/"
_MS_REGION = "http://ns.microsoft.com/photo/1.2/t/Region#"
_LIGHTROOM = "http://ns.adobe.com/lightroom/1.0/"
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
    _LIGHTROOM: "lr",
}
# Camera Raw develop settings and edit history: large, and say nothing about the picture.
_SKIPPED_XMP_NAMESPACES = frozenset(
    {"http://ns.adobe.com/camera-raw-settings/1.0/", "http://ns.adobe.com/xap/1.0/mm/"}
)
_MAX_XMP_LIST = 200
MAX_XMP_DEPTH = 64
"""Element nesting in a packet. Real XMP (face regions in a struct in a bag) is under 15 deep;
keyword and region lookups walk the subtree below each matching element, so a 2 MB packet of
tags nested in each other would cost them minutes (quadratic in the depth)."""


@dataclass(frozen=True, slots=True)
class Xmp:
    properties: dict[str, Any] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()


def read_xmp(im: Image.Image) -> Xmp:
    packet = im.info.get("xmp")
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if not isinstance(packet, bytes):
        return Xmp()
    return parse_xmp(packet)


def parse_xmp(packet: bytes) -> Xmp:
    """The simple properties of an XMP packet, plus keywords and the people shown.

    Structures other than face regions are skipped. Raises ValueError for a packet over
    MAX_XMP_BYTES, one nested deeper than MAX_XMP_DEPTH, one that is not XML, and one with a
    DOCTYPE: XMP has no use for them, and
    entities are the one thing expat would otherwise expand.
    """
    if len(packet) > MAX_XMP_BYTES:
        raise ValueError(
            f"packet of {len(packet):,} bytes is over the {MAX_XMP_BYTES:,}-byte limit"
        )
    text = packet_text(packet)
    if not text:
        return Xmp()
    prefixes = dict(_KNOWN_PREFIXES)
    root = None
    events = iterparse(io.StringIO(text), events=("start-ns", "start", "end"), forbid_dtd=True)
    depth = 0
    try:
        for event, item in events:
            if event == "start-ns":
                prefix, uri = item
                prefixes.setdefault(uri, prefix)
            elif event == "start":
                depth += 1
                if depth > MAX_XMP_DEPTH:
                    raise ValueError(f"elements nested deeper than {MAX_XMP_DEPTH} levels")
            else:
                depth -= 1
                root = item
    except DefusedXmlException as error:
        kind = "DOCTYPE" if isinstance(error, DTDForbidden) else type(error).__name__
        raise ValueError(f"{kind} declarations are not allowed in XMP") from None
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

    keywords = [
        *_bag_texts(rdf, f"{{{_DC}}}subject"),
        *hierarchy_levels(_bag_texts(rdf, f"{{{_LIGHTROOM}}}hierarchicalSubject")),
    ]
    persons = [
        *_bag_texts(rdf, f"{{{_IPTC_EXT}}}PersonInImage"),
        *_mwg_face_names(rdf),
        *_microsoft_region_names(rdf),
    ]
    return Xmp(properties, unique_stripped(keywords), unique_stripped(persons))


def hierarchy_levels(paths: Iterable[str]) -> list[str]:
    """Each level of Lightroom's "Parent|Child|Leaf" keyword paths, parents first."""
    return [level for path in paths for level in path.split("|")]


def merge_xmp(base: Xmp, *overrides: Xmp) -> Xmp:
    """`base` with each override's properties laid over it (an override wins for the properties
    it sets); keywords and persons are the union, in order."""
    properties = dict(base.properties)
    for xmp in overrides:
        properties.update(xmp.properties)
    everything = (base, *overrides)
    return Xmp(
        properties,
        unique_stripped(keyword for xmp in everything for keyword in xmp.keywords),
        unique_stripped(person for xmp in everything for person in xmp.persons),
    )


_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


def packet_text(packet: bytes) -> str:
    """The packet as text, decoded as XMP allows (UTF-8, 16 or 32, with or without a BOM),
    without the NUL padding and whitespace around it. The encoding is the first that decodes
    to something starting with "<" and free of NULs: UTF-16 read as UTF-8 is full of them,
    and stripping NUL bytes before decoding would cut a UTF-16LE packet's last character."""
    if not packet.strip(b"\x00 \t\r\n"):
        return ""
    for encoding in _ENCODINGS:
        try:
            text = packet.decode(encoding)
        except UnicodeDecodeError:
            continue
        text = text.strip("\ufeff\x00 \t\r\n")
        if text.startswith("<") and "\x00" not in text:
            return text
    raise ValueError("not XML in UTF-8, UTF-16 or UTF-32")


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
    texts: list[str] = []
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
