"""Hostile input for the face-vector backends and per-model thresholds: boxes that are not
numbers, 16-bit images, and roles that must not change a model's threshold."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import psycopg
import pytest
import skimage.data
import torch
from PIL import Image

from semsql.decode import load_image
from semsql.embedder.models.stages import dlib_faces
from semsql.sources import uri_for_path

ASTRONAUT_FACE = (170.0, 40.0, 270.0, 170.0)


@pytest.fixture(scope="module")
def dlib_stage() -> dlib_faces.DlibFaceVectorStage:
    return dlib_faces.load_dlib_face_vectors(torch.device("cpu"))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_box_that_is_not_finite_is_a_clear_error(dlib_stage, bad: float) -> None:
    image = Image.fromarray(skimage.data.astronaut())
    with pytest.raises(ValueError, match=r"face box .* is not finite"):
        dlib_stage.run([image], [[ASTRONAUT_FACE, (0.0, bad, 10.0, 10.0)]])


def test_boxes_at_and_beyond_the_edges_give_unit_vectors(dlib_stage) -> None:
    image = Image.fromarray(skimage.data.astronaut())
    width, height = image.size
    boxes = [
        (-50.0, -50.0, 60.0, 60.0),
        (width + 10.0, height + 10.0, width + 100.0, height + 100.0),
        (10.0, 10.0, 11.0, 11.0),
        (100.0, 100.0, 50.0, 50.0),
        (-1000.0, -1000.0, 5000.0, 5000.0),
    ]
    vectors = dlib_stage.run([image], [boxes])[0]
    norms = [float(np.linalg.norm(v)) for v in vectors]
    assert norms == pytest.approx([1.0] * len(boxes), abs=1e-5)


def test_a_16_bit_grayscale_image_decodes_to_its_own_brightness(tmp_path: Path) -> None:
    gray = np.asarray(Image.fromarray(skimage.data.astronaut()).convert("L"))
    path = tmp_path / "sixteen.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"
    decoded = np.asarray(load_image(uri_for_path(path), 1600).image)
    assert np.abs(decoded[..., 0].astype(int) - gray.astype(int)).max() <= 1


def test_an_analyst_cannot_change_a_models_threshold(conn, login_as) -> None:
    analyst = login_as("semsql_analyst")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("SELECT semsql.set_face_match_threshold(0.1, 'dlib')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("SELECT semsql.set_face_match_threshold(0.1, 'a-new-model')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("UPDATE semsql.face_model_settings SET match_threshold = 0")
    threshold = analyst.execute("SELECT semsql.face_match_threshold('dlib')").fetchone()[0]
    assert threshold == pytest.approx(0.92)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-0.01", "1.01"])
def test_thresholds_out_of_range_are_refused_for_every_model(conn, value: str) -> None:
    for model in ("dlib", "a-new-model", None):
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute(
                "SELECT semsql.set_face_match_threshold(%s::float8, %s::text)", [value, model]
            )
        conn.rollback()
    assert conn.execute("SELECT count(*) FROM semsql.face_model_settings").fetchone()[0] == 1


def test_a_large_16_bit_image_shrinks_as_it_decodes(tmp_path: Path) -> None:
    """Shrunk by 2 or more, Pillow reduces first, which it cannot do in mode I;16."""
    gray = np.asarray(Image.fromarray(skimage.data.astronaut()).convert("L"))  # 512 px
    path = tmp_path / "sixteen.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(path)
    decoded = load_image(uri_for_path(path), 128).image
    expected = np.asarray(Image.fromarray(gray).resize((128, 128), Image.Resampling.BILINEAR))
    assert decoded.size == (128, 128)
    assert np.abs(np.asarray(decoded)[..., 0].astype(int) - expected.astype(int)).mean() < 3
