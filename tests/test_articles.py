"""Articles as queries: the people an article names, the parts it becomes, semsql.search
(article => ...) over the manifest-imported search corpus (fix_corpus.py), explain_query, the
CLI, and embed_texts (many texts, one request to the worker)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner
from fix_corpus import TEXT_MODEL

from semsql.articles import ArticleError, explain, read_article, summarise
from semsql.cli.main import cli
from semsql.embedder.models import load_stage
from semsql.search import SearchRequest, run_search

VOGELS = """Werner Vogels: a life on the road

Werner Vogels liked travelling around the globe in his Toyota. The city council met on Monday
to discuss parking fees. He drove it along coastal roads and across deserts, stopping wherever
the view was good. Interest rates were left unchanged by the central bank. Friends say the old
car never let him down on a road trip. A new bakery opened on the high street."""


def people_found(conn: psycopg.Connection, text: str) -> list[tuple[str, str, str, int]]:
    return [
        (r[1], r[2], r[3], r[4])
        for r in conn.execute("SELECT * FROM semsql.article_people(%s)", [text])
    ]


@pytest.fixture
def named(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(
        """INSERT INTO semsql.people (name) VALUES ('Ana Lima'), ('Anna Lima'), ('Jo Parker'),
           ('Joe Park'), ('Sofia Rossi'), ('Grace'), ('Seán O''Brien')"""
    )
    return conn


# Names ----------------------------------------------------------------------------------------


def test_names_are_found_in_any_case_and_as_possessives(named) -> None:
    text = (
        "SOFIA ROSSI MARRIES\n\nsofia rossi's wedding was in June. Everyone loved "
        "Ana Lima\u2019s dog, and seán o'brien's speech. Sofia Rossi thanked them."
    )
    assert people_found(named, text) == [
        ("Sofia Rossi", "SOFIA ROSSI", "as written, in another case, possessive", 3),
        ("Ana Lima", "Ana Lima's", "as written, possessive", 1),
        ("Seán O'Brien", "seán o'brien's", "in another case, possessive", 1),
    ]


def test_near_identical_names_are_not_confused(named) -> None:
    assert [p[0] for p in people_found(named, "Anna Lima met Jo Parker at the harbour.")] == [
        "Anna Lima",
        "Jo Parker",
    ]
    assert [p[0] for p in people_found(named, "Ana Lima and JOE PARK, with Jo Parkes.")] == [
        "Ana Lima",
        "Joe Park",
    ]
    # A possessive inside a name is no name; a name split by a line break still is.
    assert people_found(named, "Ana's Lima beans. Joe\nPark ran.")[0][:1] == ("Joe Park",)


def test_a_name_that_is_a_common_word_counts_only_capitalised_and_not_as_a_sentence_start(
    named,
) -> None:
    assert people_found(named, "She danced with grace. Grace fell on the town.") == []
    assert people_found(named, "The mayor thanked Grace. Grace's garden won.") == [
        ("Grace", "Grace", "as written, possessive, one-word name, capitalised", 2)
    ]


def test_an_article_naming_nobody_known(named) -> None:
    assert people_found(named, "Rain is expected tomorrow. Mr Smith said so.") == []


# Sentences, parts and keyphrases ----------------------------------------------------------------


def test_a_short_first_line_is_the_headline_else_the_first_sentence(conn) -> None:
    rows = conn.execute(
        "SELECT sentence, is_headline FROM semsql.article_sentences(%s)",
        ['Storm hits the coast\nWaves rose. "Stay in," said Dr. Lee! Is it over? Yes.\n\nEnd'],
    ).fetchall()
    assert rows == [
        ("Storm hits the coast", True),
        ("Waves rose.", False),
        ('"Stay in," said Dr.', False),  # abbreviations are cut: a known weakness, harmless
        ("Lee!", False),
        ("Is it over?", False),
        ("Yes.", False),
        ("End", False),
    ]
    first = conn.execute(
        "SELECT sentence FROM semsql.article_sentences('One two. Four five.') WHERE is_headline"
    ).fetchall()
    assert first == [("One two.",)]


def test_without_a_worker_the_lead_stands_in_and_explain_says_so(named) -> None:
    article = "Ana Lima at the beach\n\nAna Lima swam all day. Prices rose. Beach beach sand."
    rows, _ = explain(named, article=article)
    assert [(r.kind, r.item, r.weight) for r in rows] == [
        ("person", "Ana Lima", None),
        ("part", "at the beach", 1.0),
        ("part", "swam all day.", 0.6),
        ("part", "Prices rose.", 0.6),
        ("part", "Beach beach sand.", 0.6),
        ("part", "beach", 0.4),
        ("keyword", "beach", 5.0),
        ("note", "no sentence vectors", None),
    ]
    assert rows[0].detail == (
        'matched "Ana Lima" (as written), 2 mention(s); '
        "filter: only assets showing one of the people named"
    )


def test_explain_a_short_query_with_an_exclusion(named) -> None:
    rows, _ = explain(named, query="Ana Lima at the beach", exclude="rain", names="boost")
    assert [(r.kind, r.item) for r in rows] == [
        ("person", "Ana Lima"),
        ("part", "at the beach"),
        ("keyword", "ana"),
        ("keyword", "beach"),
        ("keyword", "lima"),
        ("exclude", "rain"),
    ]
    assert "boost" in (rows[0].detail or "")


def test_query_and_article_together_are_refused(conn) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="query or article"):
        conn.execute("SELECT * FROM semsql.search(query => 'a', article => 'b')")


def test_an_over_long_article_is_refused(conn) -> None:
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="at most 40000"):
        conn.execute("SELECT * FROM semsql.search(article => repeat('word ', 9000))")


# Search by article over the corpus ---------------------------------------------------------------


def cache_article_texts(corpus, article: str, summary: str | None = None) -> list[str]:
    """Store the vectors the worker would give the article's texts; the texts."""
    (texts,) = corpus.conn.execute(
        "SELECT (semsql.article_texts(%s, %s)).texts", [article, summary]
    ).fetchone()
    for text, vector in zip(texts, corpus.encoder.encode(texts), strict=True):
        corpus.conn.execute(
            """INSERT INTO semsql.query_embeddings (space, text_sha256, text, model, embedding)
               VALUES ('text', %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            [hashlib.sha256(text.encode()).hexdigest(), text, TEXT_MODEL, vector],
        )
    return texts


def test_the_central_sentences_are_picked_and_filler_left_out(corpus) -> None:
    cache_article_texts(corpus, VOGELS)
    parts = corpus.conn.execute(
        "SELECT kind, part, weight FROM semsql.article_parts(%s) WHERE kind <> 'keyword'", [VOGELS]
    ).fetchall()
    corpus.conn.rollback()
    assert parts[0] == ("headline", "a life on the road", 1.0)
    sentences = [part for kind, part, _ in parts if kind == "sentence"]
    assert "liked travelling around the globe in his Toyota." in sentences
    assert not any("council" in s or "bank" in s or "bakery" in s for s in sentences)
    assert parts[-1][0] == "keyphrases" and "road" in parts[-1][1]


def test_an_article_finds_the_named_person_in_the_setting_it_describes(corpus) -> None:
    cache_article_texts(corpus, VOGELS)
    hits, notices = run_search(corpus.conn, SearchRequest(article=VOGELS, k=4))
    corpus.conn.rollback()
    # No caption says Toyota: the cars are found by meaning, and only Vogels's photos.
    assert set(corpus.keys(hits[:2])) == {"vogels_convertible", "vogels_pickup"}
    assert all(hit.people == ["Werner Vogels"] for hit in hits)
    assert "people named in the article (filter): Werner Vogels" in notices


def test_a_lower_case_possessive_name_boosts_when_asked(corpus) -> None:
    article = (
        "Summer by the sea\n\nana lima's summer: she laughed by the sea with friends on the sand."
    )
    cache_article_texts(corpus, article)
    hits = corpus.search(article=article, names="boost", k=3)
    assert corpus.keys(hits)[0] == "beach"
    assert "name" in hits[0].matched_by


def test_a_summary_replaces_the_extracted_sentences(corpus) -> None:
    summary = "He loves driving cars."
    cache_article_texts(corpus, VOGELS, summary)
    parts = corpus.conn.execute(
        "SELECT kind, part FROM semsql.article_parts(%s, %s) WHERE kind <> 'keyword'",
        [VOGELS, summary],
    ).fetchall()
    hits = corpus.search(article=VOGELS, article_summary=summary, k=2)
    assert parts[:2] == [("headline", "a life on the road"), ("summary", summary)]
    assert set(corpus.keys(hits)) == {"vogels_convertible", "vogels_pickup"}


def test_the_cli_explains_and_searches_an_article_from_stdin(corpus, corpus_url, monkeypatch):
    cache_article_texts(corpus, VOGELS)
    corpus.conn.commit()  # the CLI's own connection reads the cached vectors
    monkeypatch.setenv("SEMSQL_DATABASE_URL", corpus_url)
    runner = CliRunner()
    explained = runner.invoke(cli, ["search", "--article", "-", "--explain", "--json"], VOGELS)
    assert explained.exit_code == 0, explained.output
    kinds = [row["kind"] for row in json.loads(explained.stdout)]
    assert kinds[:2] == ["person", "part"] and "keyword" in kinds
    found = runner.invoke(cli, ["search", "--article", "-", "--json", "-n", "2"], VOGELS)
    assert found.exit_code == 0, found.output
    uris = {Path(hit["uri"]).stem for hit in json.loads(found.stdout)}
    assert uris == {"vogels_convertible", "vogels_pickup"}
    both = runner.invoke(cli, ["search", "cars", "--article", "-"], VOGELS)
    assert both.exit_code == 2 and "not both" in both.output


def test_the_cli_names_an_unreadable_article(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["search", "--article", str(tmp_path / "gone.txt")])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot read") and "gone.txt" in result.stderr


def test_read_article_refuses_what_is_not_text(tmp_path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ArticleError, match="not UTF-8"):
        read_article(str(tmp_path / "bin"))
    with pytest.raises(ArticleError, match="empty"):
        read_article(str(tmp_path / "empty"))


# Many texts in one request; summarisation models ------------------------------------------------


def test_embed_texts_asks_the_worker_once_for_many_texts_and_caches_them(
    db, query_worker, tiny_models
) -> None:
    texts = ["a kite over a field", "two dogs", "a kite over a field", "snow"]
    (answers,) = db.execute("SELECT semsql.embed_texts(%s)", [texts]).fetchone()
    encoder = load_stage("text", tiny_models["text"], "cpu")
    expected = encoder.encode(texts)
    got = np.array([json.loads(answer) for answer in answers], dtype=np.float32)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    cached = db.execute("SELECT count(*) FROM semsql.query_embeddings").fetchone()[0]
    assert cached == 3
    query_worker.stop()
    again = db.execute("SELECT semsql.embed_texts(%s)", [texts[:2]]).fetchone()[0]
    assert again == answers[:2]


def test_embed_texts_refuses_too_many_and_null(conn) -> None:
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="at most 64"):
        conn.execute("SELECT semsql.embed_texts(%s)", [[f"t{i}" for i in range(65)]])
    conn.rollback()
    with pytest.raises(psycopg.errors.NullValueNotAllowed):
        conn.execute("SELECT semsql.embed_texts(ARRAY['a', NULL])")


def build_tiny_summariser(folder: Path) -> Path:
    """A random-weight BART with MiniLM's BERT vocabulary: the real seq2seq code path."""
    import torch
    from fix_models import minilm_folder
    from transformers import BartConfig, BartForConditionalGeneration, BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(minilm_folder())
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=600, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.cls_token_id, forced_eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_configured_summarisation_model_runs_offline(tmp_path) -> None:
    model = build_tiny_summariser(tmp_path / "bart")
    summary = summarise(VOGELS, str(model), max_new_tokens=8)
    assert isinstance(summary, str)
    with pytest.raises(ArticleError, match=r"cannot load the summarisation model .*hint"):
        summarise(VOGELS, str(tmp_path / "missing"))


def test_the_orm_searches_by_article(corpus, corpus_url) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from semsql import orm

    cache_article_texts(corpus, VOGELS)
    corpus.conn.commit()
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(corpus_url))
    hits = orm.search(article=VOGELS, k=2)
    with Session(engine) as session:
        uris = session.execute(select(hits.c.uri).order_by(hits.c.rank)).scalars().all()
    engine.dispose()
    assert {Path(uri).stem for uri in uris} == {"vogels_convertible", "vogels_pickup"}


def test_the_analyst_searches_by_article(corpus) -> None:
    cache_article_texts(corpus, VOGELS)  # as the worker would have, for this login
    corpus.conn.execute("SET ROLE semsql_analyst")
    hits = corpus.search(article=VOGELS, k=2)
    assert set(corpus.keys(hits)) == {"vogels_convertible", "vogels_pickup"}


def test_article_parts_are_embedded_in_the_image_space_too(db, query_worker, tiny_models):
    dims = {
        space: len(load_stage(stage, tiny_models[stage], "cpu").encode(["x"])[0])
        for space, stage in (("text", "text"), ("image", "clip"))
    }
    for space, stage in (("text", "text"), ("image", "clip")):
        db.execute(
            "SELECT semsql.register_vector_space(%s, %s, %s)",
            [space, tiny_models[stage], dims[space]],
        )
    article = "Go\n\nWe ran to the sea. It was cold."  # no keyphrase: no lexeme said enough
    parts = db.execute(
        """SELECT kind, part, vector_dims(text_vector), vector_dims(image_vector)
           FROM semsql.article_parts(%s, NULL, ARRAY['text', 'image'])""",
        [article],
    ).fetchall()
    assert parts[0][:2] == ("headline", "Go")
    assert all(p[2:] == (dims["text"], dims["image"]) for p in parts)
    assert "keyphrases" not in [p[0] for p in parts]
