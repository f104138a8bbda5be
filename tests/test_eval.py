"""`semsql eval`: the metrics against values worked out by hand, qrels and caption queries on a
small catalog imported by manifest and embedded by a real worker (MiniLM), and its errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from fix_corpus import TEXT_MODEL
from fix_db import TEMPLATE
from PIL import Image
from psycopg import sql
from psycopg.conninfo import make_conninfo

from semsql import database
from semsql.cli.main import cli
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.eval_queries import parse_weights
from semsql.evaluation import (
    mean_metrics,
    ndcg_at,
    precision_at,
    query_metrics,
    recall_at,
    reciprocal_rank,
)
from semsql.testing import scratch_database

# Metrics, by hand -------------------------------------------------------------------------------


def test_precision_counts_relevant_places_over_n() -> None:
    ranking = [5, 1, 9, 2, 7]
    assert precision_at(ranking, {1, 2}, 1) == 0
    assert precision_at(ranking, {1, 2}, 2) == 0.5
    assert precision_at(ranking, {1, 2}, 5) == 0.4
    # Places the search left empty are not relevant.
    assert precision_at(ranking, {1, 2}, 10) == 0.2
    with pytest.raises(ValueError, match="at least 1"):
        precision_at(ranking, {1}, 0)


def test_recall_is_the_share_of_relevant_found() -> None:
    assert recall_at([5, 1, 9], {1, 2, 3, 4}, 10) == 0.25
    assert recall_at([5, 1, 9], {1, 9}, 2) == 0.5
    with pytest.raises(ValueError, match="relevant"):
        recall_at([1], set(), 10)


def test_reciprocal_rank_is_one_over_the_first_relevant_place() -> None:
    assert reciprocal_rank([5, 1, 9], {9}) == pytest.approx(1 / 3)
    assert reciprocal_rank([5, 1, 9], {1, 9}) == 0.5
    assert reciprocal_rank([5, 1, 9], {4}) == 0


def test_ndcg_against_the_ideal_ranking() -> None:
    # Relevant at places 2 and 4 of three relevant: (1/log2 3 + 1/log2 5) / (1 + 1/log2 3 + 1/2)
    value = ndcg_at([5, 1, 9, 2], {1, 2, 3}, 10)
    assert value == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    )
    assert ndcg_at([1, 2, 3], {1, 2, 3}, 10) == pytest.approx(1)
    assert ndcg_at([7, 8], {1}, 10) == 0
    # Only the first n places count, and the ideal has at most n of them.
    assert ndcg_at([9] * 10 + [1], {1}, 10) == 0


def test_query_metrics_and_means() -> None:
    metrics = query_metrics([3, 1, 3, 8], {1, 8}, k=2)
    # A repeated asset counts once: the ranking is [3, 1, 8].
    assert metrics == pytest.approx(
        {
            "P@1": 0,
            "P@5": 0.4,
            "P@10": 0.2,
            "recall@k": 0.5,
            "MRR": 0.5,
            "nDCG@10": (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)),
        }
    )
    other = query_metrics([1], {1}, k=10)
    means = mean_metrics([metrics, other])
    assert means["P@1"] == 0.5 and means["MRR"] == 0.75
    assert mean_metrics([]) == {}


def test_weights_are_parsed_with_defaults_and_ranges() -> None:
    assert parse_weights("text=2,keyword=0") == {"image": 1, "text": 2, "keyword": 0, "name": 0.5}
    for bad, message in [
        ("texts=1", "NAME=NUMBER"),
        ("text=x", "not a number"),
        ("text=-1", "from 0 to 1000"),
        ("image=0,text=0,keyword=0", "all 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_weights(bad)


# A small library ---------------------------------------------------------------------------------

# file name: (user caption, tags)
LIBRARY = {
    "zeppelin.png": ("A silver zeppelin floating above the city skyline", ["airship", "sky"]),
    "cat.png": ("A ginger cat asleep on a windowsill", ["cat", "window"]),
    "soup.png": ("A bowl of tomato soup with fresh basil", ["food", "soup"]),
    "bicycle.png": ("A red bicycle leaning against a brick wall", ["bicycle", "street"]),
    "lake.png": ("A calm mountain lake at sunrise", ["lake", "mountain"]),
    "img_0001.png": ("Fireworks exploding over the harbour at midnight", []),
}


@pytest.fixture(scope="module")
def library_url(server_url, template_url, tmp_path_factory) -> Iterator[str]:
    """The library imported with `semsql ingest --manifest`, documents embedded by a worker."""
    folder = tmp_path_factory.mktemp("library")
    rows = []
    for n, (name, (caption, tags)) in enumerate(LIBRARY.items()):
        Image.new("RGB", (8, 8), (40 * n, 255 - 40 * n, 90)).save(folder / name)
        rows.append({"uri": name, "caption": caption, "tags": tags})
    manifest = folder / "catalog.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    name = f"semsql_eval_{tmp_path_factory.mktemp('n').name}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        with database.connect(url) as conn:
            conn.execute("UPDATE semsql.stages SET enabled = (name = 'text')")
            conn.commit()
        result = CliRunner().invoke(
            cli, ["ingest", "--manifest", str(manifest)], env={"SEMSQL_DATABASE_URL": url}
        )
        assert result.exit_code == 0, result.output
        models: dict[str, str | None] = {"text": TEXT_MODEL}
        Worker(url, WorkerOptions(until_idle=True, poll_interval=0.2), models=models).run()
        yield url


@pytest.fixture
def library(library_url, monkeypatch, tmp_path) -> Iterator[psycopg.Connection]:
    monkeypatch.setenv("SEMSQL_DATABASE_URL", library_url)
    monkeypatch.delenv("SEMSQL_MODEL_TEXT", raising=False)
    with database.connect(library_url) as conn:
        yield conn


def ids(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT uri, id FROM semsql.assets").fetchall()
    return {Path(uri).name: asset_id for uri, asset_id in rows}


def run_eval(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["eval", *args, "--embed", "local"])
    return result.exit_code, result.stdout, result.stderr


def write_qrels(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_eval_of_qrels_gives_the_metrics_worked_out_by_hand(library, tmp_path) -> None:
    qrels = write_qrels(
        tmp_path / "qrels.jsonl",
        # The one relevant asset: first for every signal.
        {"query": "a red bicycle leaning against a brick wall", "relevant": ["bicycle.png"]},
        # Two relevant, one of which the word is not in: keywords find the zeppelin alone.
        {"query": "zeppelin", "relevant": ["zeppelin.png", ids(library)["lake.png"]], "k": 5},
    )
    code, out, err = run_eval(str(qrels), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["queries"] == 2 and report["signals"] == ["text", "keyword", "fused"]
    assert "image" in report["unavailable"]  # no CLIP vectors in this library
    first, second = report["per_query"]
    for signal in ("text", "keyword", "fused"):
        assert first["signals"][signal]["metrics"] == pytest.approx(
            {"P@1": 1, "P@5": 0.2, "P@10": 0.1, "recall@k": 1, "MRR": 1, "nDCG@10": 1}
        )
    by_name = ids(library)
    assert second["signals"]["keyword"]["ranking"] == [by_name["zeppelin.png"]]
    assert second["signals"]["keyword"]["metrics"] == pytest.approx(
        {
            "P@1": 1,
            "P@5": 0.2,
            "P@10": 0.1,
            "recall@k": 0.5,
            "MRR": 1,
            "nDCG@10": 1 / (1 + 1 / math.log2(3)),
        }
    )
    # Each signal's metrics are those of its own ranking, and the summary is their mean.
    for query in report["per_query"]:
        for result in query["signals"].values():
            assert result["metrics"] == pytest.approx(
                query_metrics(result["ranking"], set(query["relevant"]), query["k"])
            )
    assert report["summary"]["keyword"]["recall@k"] == pytest.approx(0.75)
    assert report["summary"]["keyword"]["P@1"] == 1


def test_eval_prints_a_table_and_writes_an_html_chart(library, tmp_path) -> None:
    qrels = write_qrels(tmp_path / "q.jsonl", {"query": "cat", "relevant": ["cat.png"]})
    page = tmp_path / "eval.html"
    code, out, err = run_eval(str(qrels), "--per-query", "--html", str(page),
                              "--weights", "text=1,keyword=2")  # fmt: skip
    assert code == 0, err
    assert "1 queries" in out and "recall@10" in out
    assert "fused image=1,text=1,keyword=2,name=0.5" in out
    assert "the image signal is left out" in err
    html = page.read_text()
    assert "<svg" in html and "<rect" in html and "nDCG@10" in html and "cat" in html


def test_other_weights_rank_the_same_queries_again(library, tmp_path) -> None:
    qrels = write_qrels(tmp_path / "q.jsonl", {"query": "soup", "relevant": ["soup.png"]})
    code, out, err = run_eval(str(qrels), "--json", "--weights", "text=0,keyword=1")
    assert code == 0, err
    report = json.loads(out)
    assert report["signals"] == ["text", "keyword", "fused", "custom"]
    assert report["weights"] == {"image": 1, "text": 0, "keyword": 1, "name": 0.5}
    (query,) = report["per_query"]
    # Text at weight 0: the custom fusion is the keyword ranking.
    assert query["signals"]["custom"]["ranking"] == query["signals"]["keyword"]["ranking"]


def test_captions_become_queries_with_their_own_words_hidden(library) -> None:
    def stored() -> list:
        return [
            library.execute(
                "SELECT asset_id, source, text FROM semsql.captions ORDER BY 1, 2"
            ).fetchall(),
            library.execute(
                "SELECT asset_id, document::text, caption FROM semsql.search_documents ORDER BY 1"
            ).fetchall(),
            library.execute(
                "SELECT asset_id, embedding::text FROM semsql.embeddings ORDER BY 1"
            ).fetchall(),
        ]

    before = stored()
    library.rollback()
    code, out, err = run_eval("--captions", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["queries"] == len(LIBRARY)
    by_id = {v: k for k, v in ids(library).items()}
    per_asset = {by_id[q["relevant"][0]]: q for q in report["per_query"]}
    assert per_asset["bicycle.png"]["query"] == LIBRARY["bicycle.png"][0]
    # Its tags and file name still have "bicycle": keywords find it first.
    assert per_asset["bicycle.png"]["signals"]["keyword"]["metrics"]["P@1"] == 1
    # Nothing but the caption says "fireworks" or "harbour": hidden, keywords cannot find it.
    fireworks = per_asset["img_0001.png"]["signals"]
    assert fireworks["keyword"]["ranking"] == [] and fireworks["keyword"]["metrics"]["MRR"] == 0
    assert library.execute(
        "SELECT count(*) FROM semsql.search(%s, names => 'off', keyword_weight => 1, "
        "text_weight => 0)",
        [LIBRARY["img_0001.png"][0]],
    ).fetchone() == (1,)  # while with its caption, they do
    library.rollback()
    assert stored() == before  # nothing stored changed


def test_captions_sample_is_the_same_for_the_same_seed(library) -> None:
    picks = []
    for seed in ("1", "1", "2"):
        code, out, err = run_eval("--captions", "--sample", "2", "--seed", seed, "--json")
        assert code == 0, err
        picks.append([q["relevant"] for q in json.loads(out)["per_query"]])
    assert picks[0] == picks[1] and len(picks[0]) == 2


# Errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"query": "cat", "relevant": ["cat.png"]', "q.jsonl line 2: not JSON"),
        ('["cat"]', "line 2: give a JSON object"),
        ('{"query": "cat", "relevant": []}', "line 2: the relevant set is empty"),
        ('{"query": "cat", "relevant": ["dog.png"]}', "line 2: no asset has uri 'dog.png'"),
        ('{"query": "cat", "relevant": [999999]}', "line 2: no asset has id 999999"),
        ('{"query": "cat", "relevant": "cat.png"}', 'line 2: "relevant" must be a list'),
        ('{"relevant": ["cat.png"]}', 'line 2: give a "query"'),
        ('{"query": "cat", "relevant": ["cat.png"], "tag": ["x"]}', "unknown field tag"),
        ('{"query": "cat", "relevant": ["cat.png"], "k": 0}', "k must be a whole number"),
        ('{"query": "cat", "relevant": ["cat.png"], "taken_after": "soon"}', "not an ISO 8601"),
    ],
)
def test_a_bad_qrels_line_is_named(library, tmp_path, line: str, message: str) -> None:
    qrels = write_qrels(tmp_path / "q.jsonl", {"query": "cat", "relevant": ["cat.png"]}, line)
    code, out, err = run_eval(str(qrels))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_an_article_is_evaluated_as_search_takes_it(library, tmp_path) -> None:
    article = (
        "Zeppelin returns to the skies\n"
        "A silver zeppelin was seen floating over the skyline on Sunday. "
        "Officials said the council would meet again next week to discuss the budget."
    )
    qrels = write_qrels(tmp_path / "q.jsonl", {"article": article, "relevant": ["zeppelin.png"]})
    code, out, err = run_eval(str(qrels), "--json")
    assert code == 0, err
    (query,) = json.loads(out)["per_query"]
    for signal in ("keyword", "fused"):
        assert query["signals"][signal]["ranking"][0] == ids(library)["zeppelin.png"], signal


def test_usage_errors(library, tmp_path) -> None:
    qrels = write_qrels(tmp_path / "q.jsonl", {"query": "cat", "relevant": ["cat.png"]})
    for args, message in [
        ([], "give a QRELS file or --captions"),
        ([str(qrels), "--captions"], "give a QRELS file or --captions"),
        ([str(tmp_path / "missing.jsonl")], "does not exist"),
        ([str(qrels), "--sample", "3"], "--sample goes with --captions"),
        ([str(qrels), "--weights", "colour=1"], "NAME=NUMBER"),
        (["--captions", "--sample", "0"], "1<=x<=1000000"),
    ]:
        code, _, err = run_eval(*args)
        assert code == 2 and message in err, (args, err)


def test_an_analyst_evaluates_qrels_but_not_captions(library_url, tmp_path, monkeypatch) -> None:
    name = f"analyst_{tmp_path.name}"[:60]
    with psycopg.connect(library_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw' IN ROLE semsql_analyst").format(
                sql.Identifier(name)
            )
        )
    try:
        monkeypatch.setenv(
            "SEMSQL_DATABASE_URL", make_conninfo(library_url, user=name, password="pw")
        )
        qrels = write_qrels(tmp_path / "q.jsonl", {"query": "cat", "relevant": ["cat.png"]})
        code, out, err = run_eval(str(qrels), "--json")
        assert code == 0, err
        assert json.loads(out)["summary"]["keyword"]["P@1"] == 1
        code, _, err = run_eval("--captions")
        assert code == 1 and "needs a role that may write" in err
    finally:
        with psycopg.connect(library_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(name)))
