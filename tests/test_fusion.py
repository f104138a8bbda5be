"""How semsql.search fuses keywords with the vectors: each query lexeme weighs as much as it is
selective (inverse document frequency), and a keyword match adds to the fused score only where
it covers most of the query's selectivity, so that a document sharing one word of a
paraphrased query does not climb over what the vectors found (bench/fusion.py measures it)."""

from __future__ import annotations

import pytest


def test_keywords_alone_rank_the_rarer_word_first(corpus) -> None:
    # "car" is in five documents, "harbour" in one: the harbour covers more of the query.
    hits = corpus.search(query="car harbour", text_weight=0, k=10)
    assert corpus.keys(hits)[0] == "harbour"
    assert hits[0].keyword_score > max(hit.keyword_score for hit in hits[1:])
    assert {"sports_car", "traffic"} <= set(corpus.keys(hits))
    assert all("keyword" in hit.matched_by for hit in hits)


def test_a_word_of_the_query_found_elsewhere_leaves_the_vector_ranking_as_it_is(corpus) -> None:
    query = "a puppy romping through fresh snow"
    vector = corpus.vector(query)
    fused = corpus.search(query=query, text_embedding=vector, k=8)
    text_only = corpus.search(query=query, text_embedding=vector, k=8, keyword_weight=0)
    # The puppy (indoors) and the snowy scenes each share one word: none covers the query.
    partial = [hit for hit in fused if "keyword" in hit.matched_by]
    assert {"puppy", "snowman", "sledging"} <= set(corpus.keys(partial))
    assert all(hit.keyword_score == 0 for hit in partial)
    shown = [key for key in corpus.keys(fused) if key in corpus.keys(text_only)]
    assert shown == [key for key in corpus.keys(text_only) if key in shown]


def test_a_match_of_the_whole_query_still_counts(corpus) -> None:
    # "picture" names the photo itself, which no caption says: "harbour" is the whole query.
    query = "a picture of the harbour"
    hits = corpus.search(query=query, text_embedding=corpus.vector(query), k=3)
    assert corpus.keys(hits)[0] == "harbour"
    assert hits[0].keyword_score == pytest.approx(1)
    assert hits[0].score == pytest.approx((hits[0].text_score + 0.5) / 1.5, abs=1e-5)


def test_a_file_name_is_found_by_its_words(corpus) -> None:
    hits = corpus.search(query="hopper", text_embedding=corpus.vector("hopper"), k=3)
    assert corpus.keys(hits)[0] == "hopper" and hits[0].keyword_score == pytest.approx(1)


def test_a_query_word_that_no_document_has_keeps_a_partial_match_out_of_fusion(corpus) -> None:
    # "sea" is in the harbour and beach documents, "kraken" in none: a document with "sea" has
    # the less selective half of the query, and the vectors decide (a paraphrase is likelier).
    query = "a kraken rising from the sea"
    hits = corpus.search(query=query, text_embedding=corpus.vector(query), k=10)
    partial = [hit for hit in hits if "keyword" in hit.matched_by]
    assert {"harbour", "beach"} <= set(corpus.keys(partial))
    assert all(hit.keyword_score == 0 for hit in partial)


def test_near_the_best_match_is_a_match(corpus) -> None:
    def floor(best: float, ratio: float | None = 0.8) -> float:
        row = corpus.conn.execute(
            "SELECT semsql.effective_floor(0.30, %s::real, %s)", [ratio, best]
        ).fetchone()
        corpus.conn.rollback()
        return row[0]

    assert floor(0.32) == pytest.approx(0.256)  # 80 % of a best that passed the floor
    assert floor(0.60) == pytest.approx(0.30)  # never above the floor
    assert floor(0.29) == pytest.approx(0.30)  # a best below the floor lowers nothing
    assert floor(0.32, None) == pytest.approx(0.30)  # a least similarity the call set
