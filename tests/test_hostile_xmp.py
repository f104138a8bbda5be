"""Hostile XMP packets and sidecars (what a 2 MB packet may make ingest do), and HEIC."""

from __future__ import annotations

from pathlib import Path

import pytest
from dam_corpus import make_heic
from PIL import Image

from semsql.probe import ProbeError, probe_bytes, probe_file
from semsql.xmp import MAX_XMP_DEPTH, parse_xmp

HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
    ' xmlns:dc="http://purl.org/dc/elements/1.1/"><rdf:Description>'
)
TAIL = "</rdf:Description></rdf:RDF></x:xmpmeta>"


def nested(tag: str, levels: int) -> bytes:
    return (
        HEAD + f"<{tag}>" * levels + "<rdf:li>deep</rdf:li>" + f"</{tag}>" * levels + TAIL
    ).encode()


def test_a_packet_nested_deeper_than_any_real_xmp_is_refused_before_it_is_walked() -> None:
    # dc:subject inside dc:subject, 80,000 deep, fits in 2 MB; each level's keyword search
    # walked the whole subtree below it: minutes of CPU for one file.
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_XMP_DEPTH} levels"):
        parse_xmp(nested("dc:subject", 80_000))


def test_real_nesting_depth_still_reads() -> None:
    packet = nested("dc:subject", 3)
    assert parse_xmp(packet).keywords == ("deep",)


def test_a_deeply_nested_sidecar_is_a_metadata_error_and_the_image_is_ingested(
    tmp_path: Path,
) -> None:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "photo.jpg")
    (tmp_path / "photo.xmp").write_bytes(nested("dc:subject", 5_000))
    probe = probe_file(tmp_path / "photo.jpg", root=tmp_path)
    assert probe.keywords == ()
    errors = probe.metadata["metadata_errors"]
    assert any("photo.xmp" in error and "nested deeper" in error for error in errors), errors


def test_a_truncated_heic_is_reported_as_truncated(tmp_path: Path) -> None:
    data = make_heic(tmp_path / "IMG_0001.heic").read_bytes()
    with pytest.raises(ProbeError) as raised:
        probe_bytes(data[: len(data) // 2])
    assert raised.value.code == "truncated", raised.value.message
