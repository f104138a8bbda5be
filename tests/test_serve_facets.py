"""The search page's facets count the current results (the same semsql.search call), not the
library: GET /api/search/facets and the page's filter counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import psycopg
import pytest
from serve_support import coloured_png, only_stages, serving, settings_for, wait_for

HTML = {"Accept": "text/html"}


@pytest.fixture
def client(db_url: str, tmp_path: Path):
    only_stages(db_url, ())
    with serving(settings_for(db_url, tmp_path)) as client:
        uploads = [
            ("beach,summer", "trips", (200, 10, 10)),
            ("beach", "default", (10, 200, 10)),
            ("snow", "default", (10, 10, 200)),
        ]
        for tags, collection, colour in uploads:
            answer = client.post(
                "/api/assets",
                files=[("files", (f"{colour[0]}.png", coloured_png(colour), "image/png"))],
                data={"tags": tags, "collection": collection},
            )
            job = answer.json()["job_id"]
            wait_for(lambda job=job: client.get(f"/api/jobs/{job}").json()["status"] == "completed")
        yield client


def counts(facets: dict, name: str) -> dict[str, int]:
    return {facet["value"]: facet["assets"] for facet in facets[name]}


def test_facets_count_the_results_of_the_search(client) -> None:
    facets = client.get("/api/search/facets", params={"tag": "beach"}).json()
    assert counts(facets, "tag") == {"beach": 2, "summer": 1}
    assert counts(facets, "collection") == {"default": 1, "trips": 1}
    assert (facets["counted"], facets["complete"]) == (2, True)
    trips = client.get("/api/search/facets", params={"collection": "trips"}).json()
    assert counts(trips, "tag") == {"beach": 1, "summer": 1}
    everything = client.get("/api/search/facets").json()
    assert everything["counted"] is None
    assert counts(everything, "tag") == {"beach": 2, "summer": 1, "snow": 1}
    assert counts(everything, "collection") == {"default": 2, "trips": 1}


def test_the_page_shows_the_counts_of_its_results(client) -> None:
    page = client.get("/?tag=beach&tag=nowhere", headers=HTML)
    assert page.status_code == 200
    assert "Counts over these 2 results." in page.text
    shown = dict(
        re.findall(r'name="tag" value="([^"]+)"[^>]*>[^<]*<span class="count">(\d+)<', page.text)
    )
    # What the results have, and the chosen filters even where no result has them.
    assert shown == {"beach": "2", "summer": "1", "nowhere": "0"}
    library = client.get("/", headers=HTML).text
    assert "Counts over the whole library." in library
    assert 'name="tag" value="snow"' in library


def test_facets_take_the_search_parameters_and_their_rules(db_url: str, client) -> None:
    assert client.get("/api/search/facets", params={"order": "random"}).status_code == 400
    assert client.get("/api/search/facets", params={"k": 0}).status_code == 400
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT semsql.register_vector_space('text', 'some-model', 384)")
    text = client.get("/api/search/facets", params={"query": "beach"})
    assert text.status_code == 503
    partial = client.get("/api/search/facets", params={"query": "beach", "partial": "true"})
    assert partial.status_code == 200 and counts(partial.json(), "tag")["beach"] == 2


def test_what_narrows_a_search() -> None:
    from semsql.search import SearchRequest
    from semsql.serve.services import narrows

    assert not narrows(SearchRequest(k=50, offset=20, order_by="newest", image_weight=2))
    assert not narrows(SearchRequest(tags_match="all", min_score=0.2))
    for given in ({"query": "snow"}, {"tags": ("x",)}, {"collection": "c"}, {"like_asset": 3},
                  {"metadata": {"a": 1}}, {"exclude": "rain"},
                  {"query_embedding": np.ones(3, dtype=np.float32)}):  # fmt: skip
        assert narrows(SearchRequest(**given)), given


@pytest.fixture
def dated(db_url: str, client):
    """The three uploads taken on three days of 2019 and 2021, and a video of July 2019."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for tags, taken in (("beach,summer", "2019-07-14"), ("beach", "2019-12-01"),
                            ("snow", "2021-02-01")):  # fmt: skip
            conn.execute(
                """UPDATE semsql.assets a SET taken_at = %s::date + time '12:00'
                   WHERE (SELECT string_agg(label, ',' ORDER BY label) FROM semsql.tags t
                          WHERE t.asset_id = a.id) = %s""",
                [taken, tags],
            )
        conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms, taken_at)
               VALUES ('/v/clip.mp4', repeat('e', 64), 'video', 8000, '2019-07-20 12:00')"""
        )
    return client


def dates(facets: dict) -> tuple[str, int | None, dict[str, tuple[int, str, str]]]:
    found = facets["date"]
    values = {v["value"]: (v["assets"], v["taken_after"], v["taken_before"])
              for v in found["values"]}  # fmt: skip
    return found["by"], found["year"], values


def test_media_type_and_date_facets_count_the_results(dated) -> None:
    library = dated.get("/api/search/facets").json()
    assert counts(library, "media_type") == {"image": 3, "video": 1}
    assert dates(library) == (
        "year", None,
        {"2019": (3, "2019-01-01", "2020-01-01"), "2021": (1, "2021-01-01", "2022-01-01")},
    )  # fmt: skip
    beach = dated.get("/api/search/facets", params={"tag": "beach"}).json()
    assert counts(beach, "media_type") == {"image": 2}
    assert dates(beach)[2] == {"2019": (2, "2019-01-01", "2020-01-01")}
    videos = dated.get("/api/search/facets", params={"media_type": "video"}).json()
    assert counts(videos, "media_type") == {"video": 1} and counts(videos, "tag") == {}
    assert dates(videos)[2] == {"2019": (1, "2019-01-01", "2020-01-01")}
    # A range inside one year: its months, each a range that semsql.search's filter takes.
    year = {"taken_after": "2019-01-01", "taken_before": "2020-01-01"}
    in_2019 = dated.get("/api/search/facets", params=year).json()
    assert counts(in_2019, "media_type") == {"image": 2, "video": 1}
    assert dates(in_2019) == (
        "month", 2019,
        {"2019-07": (2, "2019-07-01", "2019-08-01"), "2019-12": (1, "2019-12-01", "2020-01-01")},
    )  # fmt: skip
    july = {"taken_after": "2019-07-01", "taken_before": "2019-08-01"}
    hits = dated.get("/api/search", params={**july, "order": "oldest"}).json()["hits"]
    assert [hit["media_type"] for hit in hits] == ["image", "video"]
    assert dates(dated.get("/api/search/facets", params=july).json())[2] == {
        "2019-07": (2, "2019-07-01", "2019-08-01")
    }
    # Longer than a year: by year again.
    two_years = {"taken_after": "2019-06-01", "taken_before": "2021-06-01"}
    assert dates(dated.get("/api/search/facets", params=two_years).json())[:2] == ("year", None)


def test_the_page_offers_media_type_and_dates_as_links_that_keep_the_query(dated) -> None:
    page = dated.get("/?tag=beach", headers=HTML).text
    radios = re.findall(
        r'name="media_type" value="([^"]*)"[^>]*>[^<]*(?:<span class="count">(\d+)<)?', page
    )
    assert radios == [("", ""), ("image", "2")]
    links = re.findall(r'class="date[^"]*" data-value="([^"]+)" href="([^"]+)"', page)
    assert links == [("2019", "/?tag=beach&amp;taken_after=2019-01-01&amp;taken_before=2020-01-01")]
    year = dated.get(links[0][1].replace("&amp;", "&"), headers=HTML).text
    assert "Counts over these 2 results." in year
    assert 'class="date-any" href="/?tag=beach"' in year
    months = re.findall(r'data-value="([^"]+)" href="[^"]+">(\w+) <span class="count">(\d+)<', year)
    assert months == [("2019-07", "Jul", "1"), ("2019-12", "Dec", "1")]
    assert 'value="2019-01-01"' in year and 'value="2020-01-01"' in year  # the date fields
    july = dated.get("/?tag=beach&taken_after=2019-07-01&taken_before=2019-08-01", headers=HTML)
    assert re.search(r'class="date chosen" data-value="2019-07"', july.text)
    assert 'class="date-year" href="/?tag=beach&amp;taken_after=2019-01-01' in july.text
    video = dated.get("/?media_type=video", headers=HTML).text
    assert re.search(r'name="media_type" value="video" checked', video)
    assert 'data-asset="' in video and video.count('<figure class="tile"') == 1


def test_date_facet_ranges() -> None:
    from datetime import UTC, datetime

    from semsql.search import SearchRequest
    from semsql.serve.date_facets import month_year, value_range

    assert value_range("2019") == (datetime(2019, 1, 1).date(), datetime(2020, 1, 1).date())
    assert value_range("2019-12") == (datetime(2019, 12, 1).date(), datetime(2020, 1, 1).date())
    assert value_range("2019-02")[1] == datetime(2019, 3, 1).date()

    def year_of(after: datetime | None, before: datetime | None) -> int | None:
        return month_year(SearchRequest(taken_after=after, taken_before=before))

    assert year_of(datetime(2019, 3, 5), datetime(2019, 4, 1)) == 2019
    assert year_of(datetime(2019, 1, 1), datetime(2020, 1, 1)) == 2019
    assert year_of(datetime(2019, 1, 1), datetime(2020, 1, 2)) is None
    assert year_of(datetime(2019, 1, 1), None) is None
    aware = datetime(2019, 2, 1, tzinfo=UTC)
    assert year_of(datetime(2019, 1, 1), aware) is None  # naive and aware: by year
    assert year_of(datetime(9999, 1, 1), datetime(9999, 2, 1)) is None
