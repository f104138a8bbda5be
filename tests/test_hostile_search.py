"""Hostile settings and escapes for honest search: the match floor setting, URL escapes."""

from __future__ import annotations

import psycopg
import pytest


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "2", "-1.5", "1e40", "x"])
def test_a_match_floor_setting_that_is_no_similarity_is_refused_by_name(db, value: str) -> None:
    # The min_text_similarity argument refuses these; the setting took NaN (nothing ever
    # matched, silently), 2, and gave a bare "out of range for type real" for 1e40.
    db.execute("SELECT set_config('semsql.min_text_similarity', %s, false)", [value])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r"semsql\.min_text_similarity"):
        db.execute("SELECT semsql.match_similarity('text')")


def test_a_match_floor_setting_in_range_is_used(db) -> None:
    db.execute("SET semsql.min_image_similarity = ' -0.25 '")
    assert db.execute("SELECT semsql.match_similarity('image')").fetchone() == (-0.25,)


@pytest.mark.parametrize(
    ("segment", "decoded"),
    [
        ("Caf%C3%A9%20%FF", "Café  "),  # one byte that is not UTF-8 spoiled every escape
        ("a%41%00%42b", "aA Bb"),  # NUL is a separator, its neighbours are still letters
        ("%C3%A9t%C3", "ét "),
        ("plain%ZZ%", "plain%ZZ%"),
    ],
)
def test_each_escape_that_is_not_utf8_text_alone_becomes_a_space(
    db, segment: str, decoded: str
) -> None:
    assert db.execute("SELECT semsql.percent_decode(%s)", [segment]).fetchone() == (decoded,)
