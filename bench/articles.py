"""Images for an article: semsql.search(article => ...) beside a long text as one query and the
seed's pipeline, on the synthetic newsroom catalog of bench/newsroom.py.

The catalog (2,160 photos, 40 people with near-identical names, 32 articles, 28 short
paraphrase queries by default) is imported with the CLI's own `semsql ingest --manifest`, and
a real `semsql worker` (MiniLM on CPU, the text stage only) embeds the documents and answers
the queries. For each article, side by side:
  article  semsql.search(article => text, k => 10)
  query    semsql.search(query => text, k => 10)           (the whole article as one query)
  seed     one MiniLM vector of the whole text (semsql.embed_text), the people whose names
           appear verbatim as a filter, nearest documents first (the seeds' simple pipeline)
P@5 and P@10 against the photos of the article's people in its setting. The article query is
timed cold (its sentences never embedded before) and warm (cached), and split: reading the
article (names, sentences, keyphrases), the worker's round trip for its vectors, the search.
Then the short queries: fused semsql.search(query => q) against the text vector alone.

    python bench/articles.py [--articles 32] [--people 40] [--strangers 400] [--database URL]
                             [--out bench/results/articles.json]

About two minutes on 2 cores (most of it the worker embedding the documents). Uses
SEMSQL_DATABASE_URL's server when set (a throwaway database is made there), else a throwaway
embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from newsroom import Newsroom, compose

from semsql import migrate
from semsql.testing import scratch_database, scratch_server

DATABASE = "semsql_bench_articles"
OFF_STAGES = ("caption", "tags", "faces", "face_vectors", "emotion", "clip")
K = 10


def worker_env(url: str) -> dict[str, str]:
    env = {**os.environ, **{f"SEMSQL_MODEL_{stage.upper()}": "off" for stage in OFF_STAGES}}
    return env | {"SEMSQL_WORKER_TASKS": "text", "SEMSQL_DATABASE_URL": url}


def ingest(url: str, newsroom: Newsroom, folder: Path) -> float:
    manifest = newsroom.write(folder)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "semsql.cli", "ingest", "--manifest", str(manifest)],
        env=worker_env(url),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def wait_for_documents(conn: psycopg.Connection, worker: subprocess.Popen[bytes] | None) -> float:
    started = time.perf_counter()
    while True:
        left = conn.execute(
            "SELECT count(*) FROM semsql.tasks WHERE stage = 'text' AND status <> 'done'"
        ).fetchone()
        if left is not None and left[0] == 0:
            return time.perf_counter() - started
        if worker is not None and worker.poll() is not None:
            raise RuntimeError("`semsql worker` stopped before it embedded the documents")
        time.sleep(0.5)


def precision(found: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(1 for key in found[:k] if key in relevant) / k


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def timed(run: Callable[[], list[str]]) -> tuple[list[str], float]:
    started = time.perf_counter()
    found = run()
    return found, (time.perf_counter() - started) * 1000


def measure(conn: psycopg.Connection, newsroom: Newsroom) -> dict[str, object]:
    key_of = {
        row[0]: Path(row[1]).stem for row in conn.execute("SELECT id, uri FROM semsql.assets")
    }
    people = [row[0] for row in conn.execute("SELECT name FROM semsql.people")]

    def keys(statement: str, params: list[object]) -> list[str]:
        return [key_of[row[0]] for row in conn.execute(statement, params)]

    def article_search(text: str) -> list[str]:
        return keys("SELECT asset_id FROM semsql.search(article => %s, k => %s)", [text, K])

    def query_search(text: str) -> list[str]:
        return keys("SELECT asset_id FROM semsql.search(query => %s, k => %s)", [text, K])

    def seed_pipeline(text: str) -> list[str]:
        named = [name for name in people if name in text]
        return keys(
            """SELECT e.asset_id FROM semsql.embeddings e
               JOIN semsql.search_documents d ON d.asset_id = e.asset_id
               WHERE e.space = 'text'
                 AND (cardinality(%(named)s::text[]) = 0 OR d.people && ARRAY(
                      SELECT p.id FROM semsql.people p WHERE p.name = ANY (%(named)s::text[])))
               ORDER BY e.embedding <=> semsql.embed_text(%(text)s) LIMIT %(k)s""",
            {"named": named, "text": text, "k": K},  # type: ignore[list-item]
        )

    methods = {"article": article_search, "query": query_search, "seed": seed_pipeline}
    conn.execute("DELETE FROM semsql.query_embeddings")  # every article cold once
    per_article = []
    cold, warm = [], []
    for article in newsroom.articles:
        row: dict[str, object] = {
            "article": article.key,
            "people": article.people,
            "setting": article.setting,
            "words": article.words,
        }
        for name, method in methods.items():
            found, millis = timed(lambda m=method, t=article.text: m(t))  # type: ignore[misc]
            row[f"{name}_p5"] = precision(found, article.relevant, 5)
            row[f"{name}_p10"] = precision(found, article.relevant, 10)
            if name == "article":
                cold.append(millis)
                warm.append(timed(lambda t=article.text: article_search(t))[1])  # type: ignore[misc]
        per_article.append(row)

    # The split, with the cache emptied again: reading, the worker's round trip, the search.
    split: dict[str, list[float]] = {"read": [], "embed": [], "search": [], "total": []}
    conn.execute("DELETE FROM semsql.query_embeddings")
    for article in newsroom.articles:
        text = article.text
        started = time.perf_counter()
        texts = conn.execute("SELECT (semsql.article_texts(%s)).texts", [text]).fetchone()
        conn.execute("SELECT * FROM semsql.article_people(%s)", [text]).fetchall()
        read_done = time.perf_counter()
        conn.execute("SELECT semsql.embed_texts(%s)", [texts[0] if texts else []]).fetchone()
        embed_done = time.perf_counter()
        article_search(text)
        done = time.perf_counter()
        split["read"].append((read_done - started) * 1000)
        split["embed"].append((embed_done - read_done) * 1000)
        split["search"].append((done - embed_done) * 1000)
        split["total"].append((done - started) * 1000)

    short = []
    for query in newsroom.queries:
        fused = query_search(query.text)
        vector_only = keys(
            """SELECT asset_id FROM semsql.search(
                   query_embedding => semsql.embed_text(%s), query_space => 'text', k => %s)""",
            [query.text, K],
        )
        short.append(
            {
                "query": query.text,
                "setting": query.setting,
                "fused_p10": precision(fused, query.relevant, 10),
                "text_vector_p10": precision(vector_only, query.relevant, 10),
            }
        )

    def mean(rows: list[dict[str, object]], column: str) -> float:
        return round(statistics.fmean(float(r[column]) for r in rows), 3)  # type: ignore[arg-type]

    return {
        "summary": {f"{m}_p{k}": mean(per_article, f"{m}_p{k}") for m in methods for k in (5, 10)},
        "timing_ms": {
            "article_cold_p50": round(statistics.median(cold), 1),
            "article_cold_p95": round(p95(cold), 1),
            "article_warm_p50": round(statistics.median(warm), 1),
            "article_warm_p95": round(p95(warm), 1),
        }
        | {f"split_{part}_p50": round(statistics.median(v), 1) for part, v in split.items()}
        | {f"split_{part}_p95": round(p95(v), 1) for part, v in split.items()},
        "short_queries": {
            "fused_p10": mean(short, "fused_p10"),
            "text_vector_p10": mean(short, "text_vector_p10"),
        },
        "articles": per_article,
        "queries": short,
    }


def targets(results: dict[str, object]) -> dict[str, bool]:
    summary: dict[str, float] = results["summary"]  # type: ignore[assignment]
    timing: dict[str, float] = results["timing_ms"]  # type: ignore[assignment]
    short: dict[str, float] = results["short_queries"]  # type: ignore[assignment]
    return {
        "article_p5_at_least_0.8": summary["article_p5"] >= 0.8,
        "article_p5_0.2_above_seed": summary["article_p5"] >= summary["seed_p5"] + 0.2,
        "article_cold_p95_within_150ms": timing["article_cold_p95"] <= 150,
        "short_fused_p10_at_least_text_vector": short["fused_p10"] >= short["text_vector_p10"],
    }


def print_report(results: dict[str, object], checks: dict[str, bool]) -> None:
    summary: dict[str, float] = results["summary"]  # type: ignore[assignment]
    print(f"{'method':<10}{'P@5':>7}{'P@10':>7}")
    for method in ("article", "query", "seed"):
        print(f"{method:<10}{summary[f'{method}_p5']:>7.3f}{summary[f'{method}_p10']:>7.3f}")
    short: dict[str, float] = results["short_queries"]  # type: ignore[assignment]
    print(
        f"short paraphrase queries: fused P@10 {short['fused_p10']:.3f}, "
        f"text vector alone P@10 {short['text_vector_p10']:.3f}"
    )
    timing: dict[str, float] = results["timing_ms"]  # type: ignore[assignment]
    print("article query ms: " + ", ".join(f"{k} {v}" for k, v in timing.items()))
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")


def run(url: str, newsroom: Newsroom, setup: dict[str, float]) -> dict[str, object]:
    """Load the catalog (unless there), embed it with a worker (unless one runs), measure."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrate.init(conn)
        loaded = conn.execute("SELECT count(*) FROM semsql.assets").fetchone()
        running = conn.execute("SELECT count(*) FROM semsql.live_workers()").fetchone()
    worker = None
    with tempfile.TemporaryDirectory(prefix="semsql-newsroom-") as folder:
        if not (loaded and loaded[0]):
            print(f"ingesting {len(newsroom.photos)} photos ...", file=sys.stderr)
            setup["ingest_s"] = round(ingest(url, newsroom, Path(folder)), 1)
        if not (running and running[0]):
            worker = subprocess.Popen(
                [sys.executable, "-m", "semsql.cli", "worker", "--device", "cpu"],
                env=worker_env(url),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                while not conn.execute("SELECT count(*) FROM semsql.live_workers()").fetchone()[0]:  # type: ignore[index]
                    if worker is not None and worker.poll() is not None:
                        raise RuntimeError("`semsql worker` did not start")
                    time.sleep(0.5)
                setup["embed_documents_s"] = round(wait_for_documents(conn, worker), 1)
                conn.execute("ANALYZE")
                for i in range(10):  # torch is slow on the first shapes it sees
                    conn.execute(
                        "SELECT semsql.embed_texts(%s)",
                        [[f"warm up {i}", f"warm up sentence {i} of two"]],
                    )
                return measure(conn, newsroom)
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--people", type=int, default=40, help="named people (8 to 300)")
    parser.add_argument("--strangers", type=int, default=400, help="photos of nobody known")
    parser.add_argument("--articles", type=int, default=32, help="articles (8 or more)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/articles.json"))
    parser.add_argument(
        "--database",
        metavar="URL",
        help="Use this semsql database as it is: ingest only when it has no assets, and start "
        "a worker only when none is running (for trying changes again quickly).",
    )
    args = parser.parse_args()
    if not 8 <= args.people <= 300 or args.articles < 8 or args.strangers < 0:
        parser.error("--people takes 8 to 300, --articles 8 or more, --strangers 0 or more")

    newsroom = compose(
        args.seed, people=args.people, strangers=args.strangers, articles=args.articles
    )
    setup: dict[str, float] = {}
    if args.database:
        results = run(args.database, newsroom, setup)
    else:
        with (
            scratch_server(settings={"fsync": "off"}) as server_url,
            scratch_database(server_url, DATABASE) as url,
        ):
            results = run(url, newsroom, setup)
    checks = targets(results)
    print_report(results, checks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "photos": len(newsroom.photos),
        "people": len(newsroom.people),
        "articles": len(newsroom.articles),
        "queries": len(newsroom.queries),
        "k": K,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "setup": setup,
        **results,
        "targets": checks,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
