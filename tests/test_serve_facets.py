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
