"""EXIF, IPTC and XMP read from real files into searchable facts and jsonb-safe metadata."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import skimage
from corpus import gps_tags, make_jpeg, make_png, make_xmp_packet, noise_image
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from semsql.metadata import (
    json_safe,
    parse_exif_datetime,
    parse_iso_datetime,
    read_metadata,
)
from semsql.probe import probe_bytes, probe_file
from semsql.xmp import MAX_XMP_BYTES, parse_xmp

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def assert_jsonb_safe(metadata: dict) -> None:
    text = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    assert "\\u0000" not in text and "\x00" not in text
    text.encode("utf-8")  # no lone surrogates


# --- EXIF -----------------------------------------------------------------------------------


def test_exif_date_with_offset_camera_and_gps(tmp_path: Path) -> None:
    exif = {
        "Make": "Canon",
        "Model": "EOS R5",
        "LensModel": "RF24-105mm F4 L IS USM",
        "Orientation": 8,
        "DateTimeOriginal": "2019:07:14 18:30:00",
        "OffsetTimeOriginal": "+02:00",
        **gps_tags(48.8584, 2.2945, alt=35.5),
    }
    probe = probe_file(make_jpeg(tmp_path / "paris.jpg", exif=exif))

    assert probe.taken_at == datetime(2019, 7, 14, 16, 30, tzinfo=UTC)
    assert probe.taken_at.utcoffset() == timedelta(hours=2)
    metadata = probe.metadata
    assert metadata["camera"] == {
        "make": "Canon",
        "model": "EOS R5",
        "lens": "RF24-105mm F4 L IS USM",
    }
    assert metadata["gps"] == pytest.approx({"lat": 48.8584, "lon": 2.2945, "alt": 35.5})
    assert metadata["orientation"] == 8
    assert metadata["exif"]["DateTimeOriginal"] == "2019:07:14 18:30:00"
    assert metadata["exif"]["GPSLatitudeRef"] == "N"
    assert all(isinstance(part, float) for part in metadata["exif"]["GPSLatitude"])
    assert_jsonb_safe(metadata)


def test_gps_south_west_and_below_sea_level_are_negative(tmp_path: Path) -> None:
    exif = gps_tags(-33.8568, -70.6483, alt=-12.5)
    gps = probe_file(make_jpeg(tmp_path / "a.jpg", exif=exif)).metadata["gps"]
    assert gps == pytest.approx({"lat": -33.8568, "lon": -70.6483, "alt": -12.5})


def test_gps_without_a_fix_is_dropped(tmp_path: Path) -> None:
    exif = {"GPSLatitudeRef": "N", "GPSLatitude": (0.0, 0.0, 0.0)}
    exif |= {"GPSLongitudeRef": "E", "GPSLongitude": (0.0, 0.0, 0.0)}
    assert "gps" not in probe_file(make_jpeg(tmp_path / "a.jpg", exif=exif)).metadata


def test_date_without_offset_is_utc_and_the_local_text_is_kept(tmp_path: Path) -> None:
    exif = {"DateTimeOriginal": "2021:12:31 23:59:58", "SubsecTimeOriginal": "25"}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", exif=exif))
    assert probe.taken_at == datetime(2021, 12, 31, 23, 59, 58, 250_000, tzinfo=UTC)
    assert probe.metadata["exif"]["DateTimeOriginal"] == "2021:12:31 23:59:58"


def test_placeholder_dates_give_none_or_the_next_source(tmp_path: Path) -> None:
    blank = {"DateTimeOriginal": "0000:00:00 00:00:00"}
    assert probe_file(make_jpeg(tmp_path / "a.jpg", exif=blank)).taken_at is None

    with_fallback = blank | {"DateTime": "2020:02:29 12:00:00"}
    probe = probe_file(make_jpeg(tmp_path / "b.jpg", exif=with_fallback))
    assert probe.taken_at == datetime(2020, 2, 29, 12, 0, tzinfo=UTC)


def test_exif_original_date_outranks_the_file_change_date(tmp_path: Path) -> None:
    exif = {"DateTime": "2024:01:01 10:00:00", "DateTimeDigitized": "2010:05:05 10:00:00"}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", exif=exif))
    assert probe.taken_at == datetime(2010, 5, 5, 10, 0, tzinfo=UTC)


def test_exif_strings_are_cleaned_and_blobs_dropped(tmp_path: Path) -> None:
    exif = {
        "Make": "NIKON\x00\x00 ",
        "Software": "   ",
        "MakerNote": bytes(range(256)),
        "UserComment": b"ASCII\x00\x00\x00a note",
        "ExifVersion": b"0232",
        "FNumber": IFDRational(0, 0),  # NaN once divided
    }
    metadata = probe_file(make_jpeg(tmp_path / "a.jpg", exif=exif)).metadata
    assert metadata["exif"]["Make"] == "NIKON"
    assert metadata["exif"]["UserComment"] == "a note"
    assert metadata["exif"]["ExifVersion"] == "0232"
    for dropped in ("Software", "MakerNote", "FNumber", "ExifOffset"):
        assert dropped not in metadata["exif"]
    assert_jsonb_safe(metadata)


def test_camera_placeholder_is_not_a_description(tmp_path: Path) -> None:
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", exif={"ImageDescription": "SONY DSC  "}))
    assert probe.description is None
    assert probe.metadata["exif"]["ImageDescription"] == "SONY DSC"

    probe = probe_file(make_jpeg(tmp_path / "b.jpg", exif={"ImageDescription": " A quiet bay "}))
    assert probe.description == "A quiet bay"


# --- XMP ------------------------------------------------------------------------------------


def test_xmp_description_keywords_and_people(tmp_path: Path) -> None:
    xmp = make_xmp_packet(
        description="Zoë and Grace at the harbour",
        keywords=["harbour", "Boats", "boats", " ", "night"],
        persons=["Zoë Ångström", "Grace Hopper", "zoë ångström"],
        created="2019-07-14T18:30:00+02:00",
    )
    probe = probe_file(make_jpeg(tmp_path / "harbour.jpg", xmp=xmp))

    assert probe.description == "Zoë and Grace at the harbour"
    assert probe.keywords == ("harbour", "Boats", "night")
    assert probe.persons == ("Zoë Ångström", "Grace Hopper")
    assert probe.taken_at == datetime(2019, 7, 14, 18, 30, tzinfo=timezone(timedelta(hours=2)))
    assert probe.metadata["xmp"]["dc:description"] == "Zoë and Grace at the harbour"
    assert probe.metadata["xmp"]["Iptc4xmpExt:PersonInImage"] == [
        "Zoë Ångström",
        "Grace Hopper",
        "zoë ångström",
    ]
    assert_jsonb_safe(probe.metadata)


def test_xmp_in_png(tmp_path: Path) -> None:
    xmp = make_xmp_packet(description="a PNG with XMP", keywords=["png"])
    probe = probe_file(make_png(tmp_path / "a.png", xmp=xmp, exif={"Make": "Scanner Co"}))
    assert (probe.description, probe.keywords) == ("a PNG with XMP", ("png",))
    assert probe.metadata["camera"] == {"make": "Scanner Co"}


def test_xmp_face_region_names_count_as_people(tmp_path: Path) -> None:
    xmp = make_xmp_packet(persons=["Ada Lovelace"], region_names=["Grace Hopper", "Ada Lovelace"])
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", xmp=xmp))
    assert probe.persons == ("Ada Lovelace", "Grace Hopper")


def test_xmp_alt_prefers_x_default_and_reads_attributes() -> None:
    packet = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/">
      <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
        <rdf:Description rdf:about=""
            xmlns:dc="http://purl.org/dc/elements/1.1/"
            xmlns:xmp="http://ns.adobe.com/xap/1.0/"
            xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
            xmlns:exif="http://ns.adobe.com/exif/1.0/"
            xmlns:MP="http://ns.microsoft.com/photo/1.2/"
            xmlns:MPRI="http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
            xmlns:MPReg="http://ns.microsoft.com/photo/1.2/t/Region#"
            xmp:CreateDate="2015-03-01T08:00:00Z" tiff:Make="Fujifilm"
            exif:GPSLatitude="51,30.4500N" exif:GPSLongitude="0,7.5000W">
          <dc:description><rdf:Alt>
            <rdf:li xml:lang="de">Ein Hafen</rdf:li>
            <rdf:li xml:lang="x-default">A harbour</rdf:li>
          </rdf:Alt></dc:description>
          <MP:RegionInfo rdf:parseType="Resource"><MPRI:Regions><rdf:Bag>
            <rdf:li><rdf:Description MPReg:PersonDisplayName="Jean Dupont"/></rdf:li>
          </rdf:Bag></MPRI:Regions></MP:RegionInfo>
        </rdf:Description>
      </rdf:RDF>
    </x:xmpmeta>"""
    xmp = parse_xmp(packet)
    assert xmp.properties["dc:description"] == "A harbour"
    assert xmp.properties["xmp:CreateDate"] == "2015-03-01T08:00:00Z"
    assert xmp.persons == ("Jean Dupont",)
    assert "MP:RegionInfo" not in xmp.properties  # structures are not flattened

    buffer = io.BytesIO()
    noise_image((32, 24)).save(buffer, "JPEG", xmp=packet)
    probe = probe_bytes(buffer.getvalue())
    assert probe.taken_at == datetime(2015, 3, 1, 8, 0, tzinfo=UTC)
    assert probe.metadata["camera"] == {"make": "Fujifilm"}
    assert probe.metadata["gps"] == pytest.approx({"lat": 51.5075, "lon": -0.125})


def test_malformed_xmp_is_recorded_not_raised(tmp_path: Path) -> None:
    broken = "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><unclosed></x:xmpmeta>"
    exif = {"Make": "Canon", "DateTimeOriginal": "2019:07:14 18:30:00"}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", xmp=broken, exif=exif))

    errors = probe.metadata["metadata_errors"]
    assert len(errors) == 1 and errors[0].startswith("xmp: ")
    assert "line 1" in errors[0]
    assert probe.metadata["camera"] == {"make": "Canon"}  # the other sections still count
    assert probe.taken_at == datetime(2019, 7, 14, 18, 30, tzinfo=UTC)


def test_entity_expansion_in_xmp_is_refused(tmp_path: Path) -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'>&lol2;</x:xmpmeta>"
    )
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", xmp=bomb))
    assert probe.metadata["metadata_errors"] == ["xmp: DOCTYPE declarations are not allowed in XMP"]


def tiff_with_xmp(path: Path, packet: bytes, **tags: str) -> Path:
    """A TIFF whose XMP (tag 700) is `packet` byte for byte: a TIFF packet may be UTF-16."""
    tiffinfo = {700: packet, **({271: tags["make"]} if "make" in tags else {})}
    noise_image((64, 48)).save(path, "TIFF", tiffinfo=tiffinfo)
    return path


ENCODINGS = [  # (Python codec, declared encoding, byte order mark)
    ("utf-8", "UTF-8", b""),
    ("utf-16-le", "UTF-16", b"\xff\xfe"),
    ("utf-16-be", "UTF-16", b"\xfe\xff"),
    ("utf-16-le", "UTF-16LE", b""),
    ("utf-16-be", "UTF-16BE", b""),
]


@pytest.mark.parametrize(("codec", "declared", "bom"), ENCODINGS)
def test_an_xmp_entity_is_refused_in_every_encoding(
    tmp_path: Path, codec: str, declared: str, bom: bytes
) -> None:
    body = make_xmp_packet(description="PLACE", keywords=["sea"]).replace("PLACE", "&e;&e;")
    text = (
        f'<?xml version="1.0" encoding="{declared}"?>'
        '<!DOCTYPE x:xmpmeta [<!ENTITY e "EXPANDED">]>' + body
    )
    probe = probe_file(tiff_with_xmp(tmp_path / "a.tif", bom + text.encode(codec), make="Canon"))

    assert probe.metadata["metadata_errors"] == ["xmp: DOCTYPE declarations are not allowed in XMP"]
    assert probe.description is None and probe.keywords == ()
    assert "EXPANDED" not in json.dumps(probe.metadata)
    assert probe.metadata["camera"] == {"make": "Canon"}  # the other sections still count


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-16", "utf-8-sig"])
def test_an_xmp_packet_in_utf16_is_read_to_its_last_character(tmp_path: Path, codec: str) -> None:
    packet = make_xmp_packet(description="Zoë at the harbour", keywords=["harbour", "boats"])
    assert packet.endswith("?>")  # its last character, in UTF-16LE ">\x00", must survive
    probe = probe_file(tiff_with_xmp(tmp_path / "a.tif", packet.encode(codec)))

    assert "metadata_errors" not in probe.metadata
    assert probe.description == "Zoë at the harbour"
    assert probe.keywords == ("harbour", "boats")


def test_an_xmp_packet_over_the_limit_is_refused_whole(tmp_path: Path) -> None:
    packet = make_xmp_packet(description="x" * MAX_XMP_BYTES, keywords=["sea"]).encode()
    probe = probe_file(tiff_with_xmp(tmp_path / "a.tif", packet, make="Canon"))

    assert probe.metadata["metadata_errors"] == [
        f"xmp: packet of {len(packet):,} bytes is over the 2,097,152-byte limit"
    ]
    assert probe.keywords == () and probe.metadata["camera"] == {"make": "Canon"}


# --- IPTC -----------------------------------------------------------------------------------


def test_iptc_caption_and_keywords(tmp_path: Path) -> None:
    iptc = {120: "Fishing boats at dawn", 25: ["boats", "dawn", "Boats"], 80: "Ann Smith"}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", iptc=iptc))
    assert probe.description == "Fishing boats at dawn"
    assert probe.keywords == ("boats", "dawn")
    assert probe.metadata["iptc"] == {
        "Caption-Abstract": "Fishing boats at dawn",
        "Keywords": ["boats", "dawn", "Boats"],
        "By-line": ["Ann Smith"],
    }


def test_iptc_in_latin1_is_decoded(tmp_path: Path) -> None:
    iptc = {120: "Café in Zürich".encode("latin-1"), 25: [b"caf\xe9", "Zürich".encode()]}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", iptc=iptc))
    assert probe.description == "Café in Zürich"
    assert probe.keywords == ("café", "Zürich")


def test_iptc_with_nul_characters_is_cleaned(tmp_path: Path) -> None:
    probe = probe_file(
        make_jpeg(tmp_path / "a.jpg", iptc={120: b"caption\x00\x00", 25: [b"k\x00"]})
    )
    assert (probe.description, probe.keywords) == ("caption", ("k",))
    assert_jsonb_safe(probe.metadata)


def test_caption_precedence_and_keyword_merge(tmp_path: Path) -> None:
    xmp = make_xmp_packet(description="from XMP", keywords=["Sea", "sand"])
    iptc = {120: "from IPTC", 25: ["sea", "sun"]}
    exif = {"ImageDescription": "from EXIF"}
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", xmp=xmp, iptc=iptc, exif=exif))
    assert probe.description == "from IPTC"
    assert probe.keywords == ("sea", "sun", "sand")

    probe = probe_file(make_jpeg(tmp_path / "b.jpg", xmp=xmp, exif=exif))
    assert probe.description == "from XMP"


def test_iptc_date_is_a_fallback(tmp_path: Path) -> None:
    probe = probe_file(make_jpeg(tmp_path / "a.jpg", iptc={55: "20180102", 60: "030405+0100"}))
    assert probe.taken_at == datetime(2018, 1, 2, 2, 4, 5, tzinfo=UTC)


# --- real files -----------------------------------------------------------------------------


def test_real_metadata_from_scikit_image_samples() -> None:
    hubble = probe_file(SKIMAGE_DATA / "hubble_deep_field.jpg")
    assert hubble.taken_at == datetime(2012, 6, 29, 13, 29, tzinfo=UTC)
    assert hubble.metadata["xmp"]["xmp:CreatorTool"] == "Adobe Photoshop CS5 Macintosh"
    chelsea = probe_file(SKIMAGE_DATA / "chelsea.png")
    assert chelsea.taken_at is not None and chelsea.taken_at.year == 2009
    for probe in (hubble, chelsea):
        assert_jsonb_safe(probe.metadata)


def test_image_without_metadata_gives_empty_metadata() -> None:
    found = read_metadata(Image.new("RGB", (4, 4)))
    assert (found.metadata, found.taken_at, found.description) == ({}, None, None)
    assert (found.keywords, found.persons) == ((), ())


# --- parsers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "offset", "expected"),
    [
        ("2019:07:14 18:30:00", "+02:00", datetime(2019, 7, 14, 16, 30, tzinfo=UTC)),
        ("2019:07:14 18:30:00", "-05:30", datetime(2019, 7, 15, 0, 0, tzinfo=UTC)),
        ("2019:07:14 18:30:00", "Z", datetime(2019, 7, 14, 18, 30, tzinfo=UTC)),
        ("2019-07-14T18:30", None, datetime(2019, 7, 14, 18, 30, tzinfo=UTC)),
        ("2019:07:14 18:30:00\x00", "  :  ", datetime(2019, 7, 14, 18, 30, tzinfo=UTC)),
        ("0000:00:00 00:00:00", None, None),
        ("2019:02:30 10:00:00", None, None),
        ("    :  :     :  :  ", None, None),
        ("yesterday", None, None),
        (None, None, None),
        (20190714, None, None),
    ],
)
def test_parse_exif_datetime(text, offset, expected) -> None:
    assert parse_exif_datetime(text, offset) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-03-01T08:00:00.5+01:00", datetime(2015, 3, 1, 7, 0, 0, 500_000, tzinfo=UTC)),
        ("2015-03-01T08:00Z", datetime(2015, 3, 1, 8, 0, tzinfo=UTC)),
        ("2015-03-01", datetime(2015, 3, 1, tzinfo=UTC)),
        ("2015-03", datetime(2015, 3, 1, tzinfo=UTC)),
        ("2015", datetime(2015, 1, 1, tzinfo=UTC)),
        ("2015-13-01", None),
        ("March 2015", None),
    ],
)
def test_parse_iso_datetime(text: str, expected: datetime | None) -> None:
    assert parse_iso_datetime(text) == expected


def test_json_safe() -> None:
    value = {
        "nan": float("nan"),
        "inf": float("inf"),
        "blob": b"\x00\x01",
        "nul": "a\x00b",
        "surrogate": "x\ud800y",
        "tuple": (1, 2.5, True, None),
        1: "numeric key",
    }
    assert json_safe(value) == {
        "nan": None,
        "inf": None,
        "blob": None,
        "nul": "ab",
        "surrogate": "x?y",
        "tuple": [1, 2.5, True, None],
        "1": "numeric key",
    }
