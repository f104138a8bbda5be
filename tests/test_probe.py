"""probe_file / probe_bytes on real files: images we keep, and every way a file is refused."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import pytest
import skimage
from corpus import (
    make_bomb,
    make_corrupt,
    make_gif_animation,
    make_jpeg,
    make_png,
    make_text,
    make_truncated,
    make_video_header,
    make_webm_header,
    make_zero_byte,
    noise_image,
)

from semsql.probe import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    Probe,
    ProbeError,
    ProbeSkipped,
    probe_bytes,
    probe_file,
)

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
MATPLOTLIB_SAMPLES = Path(matplotlib.get_data_path()) / "sample_data"


def refused(path: Path, **limits: int) -> ProbeError:
    with pytest.raises(ProbeError) as caught:
        probe_file(path, **limits)
    return caught.value


def skipped(path: Path) -> ProbeSkipped:
    with pytest.raises(ProbeSkipped) as caught:
        probe_file(path)
    return caught.value


# --- images we keep -------------------------------------------------------------------------


def test_jpeg_is_hashed_measured_and_typed(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "photo.jpg", size=(640, 480), seed=1)

    probe = probe_file(path)

    data = path.read_bytes()
    assert probe.sha256 == hashlib.sha256(data).hexdigest()
    assert probe.bytes == len(data)
    assert (probe.mime, probe.width, probe.height) == ("image/jpeg", 640, 480)
    assert probe.metadata == {}
    assert (probe.taken_at, probe.description, probe.keywords, probe.persons) == (
        None,
        None,
        (),
        (),
    )


def test_probe_bytes_and_probe_file_agree(tmp_path: Path) -> None:
    path = make_png(tmp_path / "a.png", size=(300, 200))
    assert probe_bytes(path.read_bytes()) == probe_file(path)


def test_mime_comes_from_the_content_not_the_extension(tmp_path: Path) -> None:
    path = make_png(tmp_path / "really-a-png.jpg", size=(32, 24))
    assert probe_file(path).mime == "image/png"


def test_seed_gives_unique_content_and_same_seed_same_hash(tmp_path: Path) -> None:
    first = probe_file(make_jpeg(tmp_path / "a.jpg", seed=1))
    again = probe_file(make_jpeg(tmp_path / "b.jpg", seed=1))
    other = probe_file(make_jpeg(tmp_path / "c.jpg", seed=2))
    assert first.sha256 == again.sha256 != other.sha256


def test_dimensions_are_stored_pixels_and_orientation_is_metadata(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "portrait.jpg", size=(640, 480), exif={"Orientation": 6})
    probe = probe_file(path)
    assert (probe.width, probe.height) == (640, 480)
    assert probe.metadata["orientation"] == 6


@pytest.mark.parametrize(
    ("image_format", "mime"),
    [
        ("PNG", "image/png"),
        ("WEBP", "image/webp"),
        ("TIFF", "image/tiff"),
        ("BMP", "image/bmp"),
        ("GIF", "image/gif"),
        ("JPEG2000", "image/jp2"),
    ],
)
def test_common_formats(image_format: str, mime: str) -> None:
    buffer = io.BytesIO()
    noise_image((120, 90), seed=3).save(buffer, image_format)
    probe = probe_bytes(buffer.getvalue())
    assert (probe.mime, probe.width, probe.height) == (mime, 120, 90)


def test_camera_mpo_is_reported_as_jpeg() -> None:
    buffer = io.BytesIO()
    frames = [noise_image((64, 48), seed=seed) for seed in (1, 2)]
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    assert probe_bytes(buffer.getvalue()).mime == "image/jpeg"


def test_animated_gif_is_accepted_by_its_first_frame(tmp_path: Path) -> None:
    probe = probe_file(make_gif_animation(tmp_path / "anim.gif", size=(64, 48), frames=3))
    assert (probe.mime, probe.width, probe.height) == ("image/gif", 64, 48)


def test_animated_webp_is_accepted() -> None:
    buffer = io.BytesIO()
    frames = [noise_image((40, 30), seed=seed) for seed in range(3)]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    assert probe_bytes(buffer.getvalue()).mime == "image/webp"


def test_damaged_exif_does_not_fail_the_probe_or_warn() -> None:
    # Make (0x010F) claims 80 bytes at offset 0x1000, past the end: Pillow warns and skips
    # it; under filterwarnings=error any escaping warning would fail this test.
    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x01\x0f\x00\x02\x00\x00\x00\x50"
    exif += b"\x00\x00\x10\x00\x00\x00\x00\x00"
    buffer = io.BytesIO()
    noise_image((64, 48)).save(buffer, "JPEG", exif=exif)
    probe = probe_bytes(buffer.getvalue())
    assert (probe.width, probe.height) == (64, 48)
    assert "Make" not in probe.metadata.get("exif", {})


# --- real files shipped with scikit-image and matplotlib ------------------------------------

SKIMAGE_IMAGES = sorted(
    path for path in SKIMAGE_DATA.iterdir() if path.suffix.lower() in {".png", ".jpg"}
)


@pytest.mark.parametrize("path", SKIMAGE_IMAGES, ids=lambda path: path.name)
def test_scikit_image_samples_probe(path: Path) -> None:
    probe = probe_file(path)
    assert probe.mime in {"image/png", "image/jpeg"}
    assert probe.width > 0 and probe.height > 0


def test_scikit_image_tiff_pillow_cannot_represent_is_skipped_as_unsupported() -> None:
    skip = skipped(SKIMAGE_DATA / "multipage_rgb.tif")
    assert skip.reason == "unsupported TIFF variant"
    assert "TIFF variant is not supported" in skip.message


@pytest.mark.parametrize(
    "path",
    sorted(path for path in MATPLOTLIB_SAMPLES.rglob("*") if path.is_file()),
    ids=lambda path: str(path.relative_to(MATPLOTLIB_SAMPLES)),
)
def test_matplotlib_samples_are_images_or_refused_cleanly(path: Path) -> None:
    try:
        probe = probe_file(path)
    except ProbeError as error:
        assert path.suffix.lower() not in {".png", ".jpg"}
        assert error.code == "not_an_image"
    except ProbeSkipped as skip:
        assert path.suffix.lower() not in {".png", ".jpg"}
        assert skip.reason.startswith("unsupported")
    else:
        assert path.suffix.lower() in {".png", ".jpg"}
        assert isinstance(probe, Probe)


def test_matplotlib_csv_is_recognised_as_text() -> None:
    error = refused(MATPLOTLIB_SAMPLES / "msft.csv")
    assert (error.code, error.message) == ("not_an_image", "not an image (looks like text)")


# --- every refusal --------------------------------------------------------------------------


def test_error_string_is_code_then_message() -> None:
    error = ProbeError("empty", "file is 0 bytes")
    assert str(error) == "empty: file is 0 bytes"
    with pytest.raises(ValueError, match="unknown probe error code"):
        ProbeError("nonsense", "x")


def test_empty(tmp_path: Path) -> None:
    error = refused(make_zero_byte(tmp_path / "empty.jpg"))
    assert (error.code, error.message) == ("empty", "file is 0 bytes")


def test_too_large_is_decided_before_reading(tmp_path: Path) -> None:
    path = make_jpeg(tmp_path / "big.jpg", size=(320, 240))
    error = refused(path, max_bytes=10 * 1024)
    assert error.code == "too_large"
    assert error.message.startswith("file is ")
    assert "over the 10 KB limit (SEMSQL_MAX_FILE_BYTES)" in error.message


def test_too_large_message_reads_like_a_person_wrote_it(tmp_path: Path) -> None:
    # A sparse file: 2.1 GB on paper, no disk used, and never read because fstat comes first.
    path = tmp_path / "huge.jpg"
    with path.open("wb") as file:
        file.truncate(int(2.1 * 1024**3))
    error = refused(path, max_bytes=DEFAULT_MAX_BYTES)
    assert error.message == "file is 2.1 GB, over the 200 MB limit (SEMSQL_MAX_FILE_BYTES)"


@pytest.mark.parametrize(
    ("content", "guess"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "(looks like PDF)"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "(looks like HTML)"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "(looks like SVG vector graphics"),
        (b"PK\x03\x04" + bytes(60), "(looks like a ZIP archive)"),
        (b"ID3\x04\x00" + bytes(60), "(looks like MP3 audio)"),
    ],
)
def test_not_an_image_says_what_it_looks_like(tmp_path: Path, content: bytes, guess: str) -> None:
    path = tmp_path / "file.jpg"
    path.write_bytes(content)
    error = refused(path)
    assert error.code == "not_an_image"
    assert error.message.startswith(f"not an image {guess}")


def test_text_file_is_not_an_image(tmp_path: Path) -> None:
    error = refused(make_text(tmp_path / "notes.jpg"))
    assert (error.code, error.message) == ("not_an_image", "not an image (looks like text)")


def test_binary_noise_is_not_an_image() -> None:
    with pytest.raises(ProbeError) as caught:
        probe_bytes(random.Random(1).randbytes(4096))
    assert (caught.value.code, caught.value.message) == ("not_an_image", "not an image")


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda path: make_video_header(path, b"isom"), "ISO BMFF/mp4"),
        (lambda path: make_video_header(path, b"qt  "), "ISO BMFF/QuickTime mov"),
        (make_webm_header, "Matroska/WebM"),
    ],
)
def test_a_video_header_alone_is_a_truncated_video(tmp_path: Path, make, kind: str) -> None:
    with pytest.raises(ProbeError) as caught:
        probe_file(make(tmp_path / "clip"))
    assert caught.value.code == "truncated"
    assert kind.split("/")[0].split()[0] in caught.value.message


def test_without_the_video_extra_a_video_is_skipped(tmp_path: Path, monkeypatch) -> None:
    import semsql.video

    monkeypatch.setattr(semsql.video, "video_available", lambda: False)
    skip = skipped(make_video_header(tmp_path / "clip", b"isom"))
    assert skip.reason == "video (needs the video extra)"
    assert skip.message == f"ISO BMFF/mp4 video: {semsql.video.NEEDS_EXTRA}"


def test_a_heic_header_without_an_image_is_corrupt(tmp_path: Path) -> None:
    # HEIC itself is read with the heif extra (tests/test_formats.py), or skipped without it.
    error = refused(make_video_header(tmp_path / "photo.heic", b"heic"))
    assert (error.code, error.message) == (
        "corrupt",
        "corrupt HEIC/HEIF: the header cannot be parsed",
    )


def test_truncated_jpeg(tmp_path: Path) -> None:
    error = refused(make_truncated(tmp_path / "cut.jpg"))
    assert error.code == "truncated"
    assert error.message.startswith("truncated JPEG: image file is truncated")


def test_truncated_png(tmp_path: Path) -> None:
    path = make_png(tmp_path / "cut.png", size=(200, 150))
    path.write_bytes(path.read_bytes()[:-3000])
    error = refused(path)
    assert error.code == "truncated"
    assert error.message.startswith("truncated PNG:")


def test_corrupt_jpeg_header(tmp_path: Path) -> None:
    error = refused(make_corrupt(tmp_path / "bad.jpg"))
    assert (error.code, error.message) == ("corrupt", "corrupt JPEG: the header cannot be parsed")


def test_corrupt_png_data(tmp_path: Path) -> None:
    data = bytearray(make_png(tmp_path / "a.png", size=(64, 48)).read_bytes())
    start = data.index(b"IDAT") + 60
    data[start : start + 20] = bytes(20)
    with pytest.raises(ProbeError) as caught:
        probe_bytes(bytes(data))
    assert caught.value.code == "corrupt"
    assert caught.value.message.startswith("corrupt PNG: ")


def test_decompression_bomb_over_pillows_limit(tmp_path: Path) -> None:
    error = refused(make_bomb(tmp_path / "bomb.png"))
    assert error.code == "decompression_bomb"
    assert error.message == (
        "decompression bomb: 40000x40000 = 1.6 gigapixels exceeds the limit of 178 megapixels"
        " (SEMSQL_MAX_PIXELS)"
    )


def test_decompression_bomb_under_our_own_limit(tmp_path: Path) -> None:
    error = refused(make_jpeg(tmp_path / "a.jpg", size=(640, 480)), max_pixels=100_000)
    assert error.code == "decompression_bomb"
    assert error.message == (
        "decompression bomb: 640x480 = 307200 pixels exceeds the limit of 100000 pixels"
        " (SEMSQL_MAX_PIXELS)"
    )


def test_pillows_bomb_warning_never_escapes(tmp_path: Path) -> None:
    # 90 megapixels: over Image.MAX_IMAGE_PIXELS (Pillow warns) but under Pillow's hard limit.
    path = make_bomb(tmp_path / "big.png", size=(10_000, 9_000))
    assert refused(path, max_pixels=50_000_000).code == "decompression_bomb"
    # Within our limit the header passes and decoding meets the missing data.
    assert refused(path, max_pixels=DEFAULT_MAX_PIXELS).code in {"truncated", "corrupt"}


def test_concurrent_probes_leave_warning_filters_as_they_were(tmp_path: Path) -> None:
    # Ingest probes from a thread pool; overlapping catch_warnings blocks must neither let a
    # DecompressionBombWarning through nor leave their filter installed afterwards.
    path = make_bomb(tmp_path / "big.png", size=(10_000, 9_000))
    photo = make_jpeg(tmp_path / "photo.jpg", size=(320, 240))
    before = list(warnings.filters)

    def probe_code(index: int) -> str:
        try:
            probe_file(photo if index % 2 else path, max_pixels=50_000_000)
        except ProbeError as error:
            return error.code
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(probe_code, range(40)))
    assert set(codes) == {"ok", "decompression_bomb"}
    assert warnings.filters == before


def test_unreadable_missing_file(tmp_path: Path) -> None:
    error = refused(tmp_path / "gone.jpg")
    assert error.code == "unreadable"
    assert "No such file or directory" in error.message


def test_unreadable_directory(tmp_path: Path) -> None:
    error = refused(tmp_path)
    assert error.code == "unreadable"
    assert str(tmp_path) in error.message


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    error = refused(fifo)
    assert (error.code, error.message) == ("unreadable", f"{fifo} is not a regular file")


# --- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_damaged_files_only_ever_raise_probe_error(image_format: str) -> None:
    """Flip, cut and zero bytes of real files: the probe answers a Probe or a ProbeError,
    never another exception and never a warning."""
    buffer = io.BytesIO()
    options = (
        {"exif": b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"} if image_format == "JPEG" else {}
    )
    noise_image((48, 32), seed=5).save(buffer, image_format, **options)
    original = buffer.getvalue()
    rng = random.Random(image_format)
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(1, len(data))]
        try:
            probe_bytes(bytes(data))
        except ProbeError as error:
            assert error.code in ProbeError.CODES


def test_header_declaring_zero_width_is_refused() -> None:
    buffer = io.BytesIO()
    noise_image((8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">I", data, 16, 0)
    with pytest.raises(ProbeError) as caught:
        probe_bytes(bytes(data))
    assert caught.value.code == "corrupt"
