"""Filtered vector search: semsql.search side by side with the plain pgvector query.

N synthetic assets with 384-d vectors in clusters, and tags correlated with the clusters
(each tag is --tag-contrast times likelier in half of the clusters), so that a filter selects
regions of the space unevenly, as real tags do. Like sentence embeddings, the vectors lie near
a low-dimensional subspace (--latent-dims, mapped into 384-d, plus noise). Queries are new
draws from the same distribution. For each filter selectivity, the same query vectors go to
  semsql   semsql.search(query_embedding => q, tags => ARRAY[tag], k => 20)
  plain    SELECT ... WHERE asset has tag ORDER BY embedding::halfvec(384) <=> q LIMIT 20
           (the same table and HNSW index, no iterative scan, and the hnsw.ef_search that
           brings its own unfiltered recall to 0.99 with 95 % confidence, as semsql's own
           calibration judges it: the least of --plain-ef-tries that does, found in the same
           run on --calibration-queries other draws)
and recall@k is measured against an exact search done in numpy. "none" is no filter at all;
sel_0pct is a filter that no asset matches. semsql's own ef_search is calibrated in the run
too, by semsql.calibrate_ef_search on the same calibration queries.
Then semsql.embed_text is timed through a real `semsql worker` (MiniLM on CPU): cache misses
and hits.

    python bench/search.py [--assets 100000] [--queries 100] [--out bench/results/search.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there; it needs a superuser,
for loading with triggers off), else a throwaway embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import embed_latency
import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg.conninfo import make_conninfo

from semsql import migrate, stages
from semsql.testing import scratch_database, scratch_server

DATABASE = "semsql_bench_search"
SELECTIVITIES = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0)
MODEL = "bench-synthetic"
DOCUMENTS_PER_STATEMENT = 50_000

SEMSQL_QUERY = "SELECT asset_id FROM semsql.search(query_embedding => %s, tags => %s, k => %s)"
SEMSQL_UNFILTERED = "SELECT asset_id FROM semsql.search(query_embedding => %s, k => %s)"
PLAIN_QUERY = """SELECT e.asset_id FROM semsql.embeddings e
    WHERE e.space = 'text'
      AND e.asset_id IN (SELECT t.asset_id FROM semsql.tags t WHERE lower(t.label) = %s)
    ORDER BY e.embedding::halfvec({dims}) <=> %s::halfvec({dims}) LIMIT %s"""
PLAIN_UNFILTERED = """SELECT e.asset_id FROM semsql.embeddings e WHERE e.space = 'text'
    ORDER BY e.embedding::halfvec({dims}) <=> %s::halfvec({dims}) LIMIT %s"""


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, dims) float32, unit rows; row i is asset id i + 1
    tags: dict[str, np.ndarray]  # label -> boolean mask over the assets
    queries: np.ndarray  # (q, dims) float32, unit rows
    calibration: np.ndarray  # other draws, to tune the plain query's ef_search on


@dataclass
class Row:
    filter: str
    selectivity: float
    matching: int
    method: str
    recall: float
    min_rows: int
    p50_ms: float
    p95_ms: float


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def make_corpus(args: argparse.Namespace) -> Corpus:
    rng = np.random.default_rng(args.seed)
    latent, dims = args.latent_dims, args.dims
    centres = rng.standard_normal((args.clusters, latent))
    lift = np.linalg.qr(rng.standard_normal((dims, latent)))[0]  # orthonormal columns

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        cluster = rng.integers(0, args.clusters, count)
        points = centres[cluster] + 0.6 * rng.standard_normal((count, latent))
        noise = rng.standard_normal((count, dims)) * (0.3 / np.sqrt(dims))
        return unit_rows(points / np.sqrt(latent) @ lift.T + noise), cluster

    vectors, cluster = sample(args.assets)
    tags = {}
    favoured_share = 2 * args.tag_contrast / (args.tag_contrast + 1)  # mean of the two rates is 1
    for selectivity in SELECTIVITIES:
        favoured = rng.permutation(args.clusters) < args.clusters // 2
        rate = np.where(favoured[cluster], favoured_share, 2 - favoured_share)
        chance = selectivity * rate if selectivity < 1 else np.ones(args.assets)
        tags[label(selectivity)] = rng.random(args.assets) < chance
    queries = sample(args.queries)[0]
    return Corpus(vectors, tags, queries, sample(args.calibration_queries)[0])


def label(selectivity: float) -> str:
    return f"sel_{selectivity * 100:g}pct"


def exact_top(corpus: Corpus, query: np.ndarray, mask: np.ndarray | None, k: int) -> set[int]:
    similarity = corpus.vectors @ query
    if mask is not None:
        similarity = np.where(mask, similarity, -np.inf)
    best = np.argpartition(-similarity, k)[:k]
    return {int(i) + 1 for i in best if np.isfinite(similarity[i])}


def load(conn: psycopg.Connection, corpus: Corpus, maintenance_work_mem: str) -> dict[str, float]:
    """COPY the assets, tags and vectors with triggers off, then documents, index, ANALYZE."""
    seconds = {}
    started = time.perf_counter()
    conn.execute("SET session_replication_role = replica")  # no queue tasks for fake assets
    with conn.cursor().copy("COPY semsql.assets (uri, sha256) FROM STDIN") as copy:
        for i in range(len(corpus.vectors)):
            copy.write_row((f"/bench/{i + 1}.jpg", f"{i + 1:064x}"))
    with conn.cursor().copy("COPY semsql.tags (asset_id, label, source) FROM STDIN") as copy:
        for tag, mask in corpus.tags.items():
            for index in np.flatnonzero(mask):
                copy.write_row((int(index) + 1, tag, "user"))
    with conn.cursor().copy(
        "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN WITH (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["int8", "text", "text", "halfvec"])
        for i, vector in enumerate(corpus.vectors):
            copy.write_row((i + 1, "text", MODEL, HalfVector(vector)))
    conn.execute("SET session_replication_role = origin")
    conn.commit()
    seconds["copy_s"] = time.perf_counter() - started
    started = time.perf_counter()
    for first in range(1, len(corpus.vectors) + 1, DOCUMENTS_PER_STATEMENT):
        conn.execute(
            "SELECT semsql.refresh_search_documents(ARRAY(SELECT generate_series(%s, %s)::bigint))",
            [first, first + DOCUMENTS_PER_STATEMENT - 1],
        )
        conn.commit()
        done = min(first + DOCUMENTS_PER_STATEMENT - 1, len(corpus.vectors))
        rate = done / (time.perf_counter() - started)
        print(f"  documents {done}/{len(corpus.vectors)}, {rate:.0f}/s", file=sys.stderr)
    seconds["documents_s"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", [maintenance_work_mem])
    notices: list[str] = []
    conn.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    dims = corpus.vectors.shape[1]
    conn.execute("SELECT semsql.register_vector_space('text', %s, %s)", [MODEL, dims])
    conn.commit()
    seconds["hnsw_build_s"] = time.perf_counter() - started
    spilled = [n for n in notices if "no longer fits into maintenance_work_mem" in n]
    if spilled:  # pgvector went on building on disk, far slower: give it more memory
        print(f"HNSW build: {spilled[0]}", file=sys.stderr)
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    return seconds


def sizes(conn: psycopg.Connection) -> dict[str, object]:
    """What the loaded space takes: the HNSW index, the vectors' table and the settings, so that
    the RAM a library needs to stay in cache can be read off (index + the rows a search reads)."""
    row = conn.execute(
        """SELECT pg_relation_size(format('semsql.%I', semsql.vector_index_name('text'))),
                  pg_total_relation_size('semsql.embeddings'),
                  pg_total_relation_size('semsql.search_documents'),
                  pg_total_relation_size('semsql.assets'),
                  current_setting('maintenance_work_mem'), current_setting('shared_buffers'),
                  current_setting('max_parallel_maintenance_workers')"""
    ).fetchone()
    conn.rollback()
    mib = 1024 * 1024
    return {
        "hnsw_index_mib": round(row[0] / mib, 1),
        "embeddings_table_mib": round(row[1] / mib, 1),
        "search_documents_mib": round(row[2] / mib, 1),
        "assets_mib": round(row[3] / mib, 1),
        "maintenance_work_mem": row[4],
        "shared_buffers": row[5],
        "max_parallel_maintenance_workers": row[6],
    }


def interleaved_runs(
    conn: psycopg.Connection, runs: dict[str, Callable[[np.ndarray], list[int]]], queries
) -> dict[str, tuple[list[list[int]], list[float]]]:
    """Each query through every method in turn, the first method changing from query to query,
    so that load on the machine and warm caches favour none of them."""
    out: dict[str, tuple[list[list[int]], list[float]]] = {name: ([], []) for name in runs}
    names = list(runs)
    for i, query in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            run = runs[name]
            started = time.perf_counter()
            found = run(query)
            out[name][1].append((time.perf_counter() - started) * 1000)
            out[name][0].append(found)
            conn.rollback()
    return out


def summarise(
    name: str, selectivity: float, matching: int, method: str, results, millis, truths, k: int
) -> Row:
    recalls = [
        len(set(found) & truth) / min(k, len(truth)) if truth else float(not found)
        for found, truth in zip(results, truths, strict=True)
    ]
    quantiles = statistics.quantiles(millis, n=20)
    return Row(
        name,
        selectivity,
        matching,
        method,
        round(statistics.fmean(recalls), 4),
        min(len(found) for found in results),
        round(statistics.median(millis), 2),
        round(quantiles[18], 2),
    )


def confident_recall(recalls: list[float]) -> float:
    """The mean recall less 1.645 standard errors, as semsql.calibrate_ef_search judges a
    width: recall `target` with 95 % confidence."""
    if len(recalls) < 2:
        return statistics.fmean(recalls)
    return statistics.fmean(recalls) - 1.645 * statistics.stdev(recalls) / len(recalls) ** 0.5


def calibrate_plain(
    conn: psycopg.Connection, corpus: Corpus, k: int, tries: list[int], target: float = 0.99
) -> dict:
    """The least hnsw.ef_search of `tries` that brings the plain unfiltered query's recall@k
    to `target` with 95 % confidence on the calibration queries (if none does, the least whose
    mean recall is within 0.001 of the last's, as semsql.calibrate_ef_search chooses), set for
    the session: the plain query is compared at its own recall 0.99."""
    query = PLAIN_UNFILTERED.format(dims=corpus.vectors.shape[1])
    truths = [exact_top(corpus, q, None, k) for q in corpus.calibration]
    tried = []
    for ef in tries:
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        recalls = [
            len({row[0] for row in conn.execute(query, [q, k])} & truth) / k
            for q, truth in zip(corpus.calibration, truths, strict=True)
        ]
        recall, confident = statistics.fmean(recalls), confident_recall(recalls)
        tried.append(
            {"ef_search": ef, "recall": round(recall, 4), "confident": round(confident, 4)}
        )
        if confident >= target:
            break
    else:
        best = tried[-1]["recall"]
        chosen = next(t["ef_search"] for t in tried if t["recall"] >= best - 0.001)
        conn.execute(f"SET hnsw.ef_search = {int(chosen)}")
    conn.commit()  # the SET stays for the session
    ef_search = int(conn.execute("SHOW hnsw.ef_search").fetchone()[0])
    return {"ef_search": ef_search, "target": target, "tried": tried}


def calibrate_semsql(conn: psycopg.Connection, corpus: Corpus, k: int) -> dict:
    """semsql's own calibration (semsql.calibrate_ef_search) on the plain query's calibration
    queries (a library's own would be its cached query vectors)."""
    started = time.perf_counter()
    try:
        ef = conn.execute(
            "SELECT semsql.calibrate_ef_search("
            "'text', %s, p_sample => %s, p_queries => %s::vector[])",
            [k, len(corpus.calibration), list(corpus.calibration)],
        ).fetchone()[0]
    except psycopg.errors.UndefinedFunction:  # a release before it
        conn.rollback()
        return {"ef_search": None, "recall": None, "sample": None, "seconds": 0.0}
    conn.commit()
    seconds = time.perf_counter() - started
    row = conn.execute(
        "SELECT measured_recall, sample FROM semsql.search_tuning WHERE space = 'text'"
    ).fetchone()
    conn.rollback()
    return {"ef_search": ef, "recall": row[0], "sample": row[1], "seconds": round(seconds, 1)}


def measure(conn: psycopg.Connection, corpus: Corpus, k: int) -> list[Row]:
    dims = corpus.vectors.shape[1]
    plain_filtered = PLAIN_QUERY.format(dims=dims)
    plain_unfiltered = PLAIN_UNFILTERED.format(dims=dims)

    def ids(query: str, params: list) -> list[int]:
        return [row[0] for row in conn.execute(query, params, prepare=False)]

    filters: list[tuple[str, np.ndarray | None, dict]] = [
        (
            "none",
            None,
            {
                "plain": lambda q: ids(plain_unfiltered, [q, k]),
                "semsql": lambda q: ids(SEMSQL_UNFILTERED, [q, k]),
            },
        )
    ]
    for selectivity in SELECTIVITIES:
        tag = label(selectivity)
        runs = {
            "plain": lambda q, tag=tag: ids(plain_filtered, [tag, q, k]),
            "semsql": lambda q, tag=tag: ids(SEMSQL_QUERY, [q, [tag], k]),
        }
        filters.append((tag, corpus.tags[tag], runs))

    # Warm the caches (index and heap pages, catalog) before anything is timed.
    for _, _, runs in filters:
        interleaved_runs(conn, runs, corpus.queries[:10])
    rows = []
    for name, mask, runs in filters:
        truths = [exact_top(corpus, q, mask, k) for q in corpus.queries]
        matching = len(corpus.vectors) if mask is None else int(mask.sum())
        selectivity = matching / len(corpus.vectors)
        for method, (results, millis) in interleaved_runs(conn, runs, corpus.queries).items():
            rows.append(summarise(name, selectivity, matching, method, results, millis, truths, k))
    return rows


def measure_embed_text(server_url: str, texts: int = 100) -> dict:
    """semsql.embed_text through a real `semsql worker` with MiniLM on CPU, once it is warm:
    distinct texts (cache misses), then the same texts again (hits), timed from the client, and
    where a miss spends its time (bench/embed_latency.py)."""
    with scratch_database(server_url, f"{DATABASE}_embed") as url:
        return embed_latency.measure(url, texts)


def verdicts(rows: list[Row], embed_text: dict | None, k: int) -> dict[str, bool]:
    """Issue 17's targets, against the plain query tuned to its own recall 0.99."""
    semsql = [r for r in rows if r.method == "semsql"]
    plain_none = next(r for r in rows if r.method == "plain" and r.filter == "none")
    semsql_none = next(r for r in semsql if r.filter == "none")
    filtered = [r for r in semsql if r.filter != "none"]
    return {
        "recall_at_least_0.99": all(r.recall >= 0.99 for r in semsql),
        "never_fewer_than_k_rows": all(r.min_rows >= min(k, r.matching) for r in semsql),
        "filtered_p95_within_2x_plain_at_0.99": all(
            r.p95_ms <= 2 * plain_none.p95_ms for r in filtered
        ),
        "unfiltered_p95_within_1.2x_plain_at_0.99": semsql_none.p95_ms <= 1.2 * plain_none.p95_ms,
    } | (
        {
            "embed_text_hit_p95_within_0.5ms": embed_text["hit"]["p95_ms"] <= 0.5,
            "embed_text_miss_p95_within_20ms": embed_text["miss"]["p95_ms"] <= 20,
        }
        if embed_text
        else {}
    )


def print_table(rows: list[Row]) -> None:
    header = f"{'filter':<12}{'matching':>9}  {'method':<7}{'recall@k':>9}{'min rows':>9}"
    print(header + f"{'p50 ms':>9}{'p95 ms':>9}")
    for r in rows:
        print(
            f"{r.filter:<12}{r.matching:>9}  {r.method:<7}{r.recall:>9.3f}{r.min_rows:>9}"
            f"{r.p50_ms:>9.2f}{r.p95_ms:>9.2f}"
        )


@contextmanager
def bench_database(
    reuse: bool, shared_buffers: str, database: str
) -> Iterator[tuple[str, str, bool]]:
    """The server's DSN, the benchmark database's, and whether that was kept from an earlier
    --reuse run."""
    configured = bool(os.environ.get("SEMSQL_DATABASE_URL"))
    settings = {"fsync": "off", "shared_buffers": shared_buffers}
    with scratch_server(settings=settings) as server_url:
        with psycopg.connect(server_url, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT count(*) FROM pg_database WHERE datname = %s", [database]
            ).fetchone()[0]
        if reuse and exists:
            yield server_url, make_conninfo(server_url, dbname=database), True
            return
        with scratch_database(server_url, database, keep=reuse and configured) as url:
            yield server_url, url, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--latent-dims", type=int, default=48)
    parser.add_argument("--tag-contrast", type=float, default=4.0)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--calibration-queries", type=int, default=300)
    parser.add_argument(
        "--plain-ef-tries",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[40, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600, 800, 1000],
        help="hnsw.ef_search values tried, in order, for the plain query (comma separated); "
        "by default those semsql.calibrate_ef_search tries.",
    )
    parser.add_argument(
        "--maintenance-work-mem",
        default="1GB",
        help="For the HNSW build: the graph must fit (about 1.1 kB per 384-d vector), or pgvector "
        "goes on building on disk, many times slower. 3GB for a million.",
    )
    parser.add_argument(
        "--shared-buffers",
        default="1GB",
        help="Of the embedded server: room for the index and the rows a search reads. "
        "4GB for a million.",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/search.json"))
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="With SEMSQL_DATABASE_URL: keep the loaded database, and use it if there.",
    )
    parser.add_argument(
        "--database",
        default=DATABASE,
        help="Its name (with --reuse: one per size and dimension, to keep several).",
    )
    parser.add_argument(
        "--release",
        type=Path,
        help="A checkout of another release (semsql's folder): its migrations/ and sql/ make "
        "the schema, to measure it on the same data (with --reuse: before, then after).",
    )
    parser.add_argument(
        "--no-embed-text",
        dest="embed_text",
        action="store_false",
        help="Skip timing semsql.embed_text through a `semsql worker` (it needs the models extra).",
    )
    args = parser.parse_args()

    corpus = make_corpus(args)
    database = bench_database(args.reuse, args.shared_buffers, args.database)
    with database as (server_url, url, loaded):
        with psycopg.connect(url, autocommit=True) as conn:
            if args.release:
                # Another release's schema, on the same data: before and after, side by side.
                release = args.release
                migrate.init(conn, migrations=release / "migrations", definitions=release / "sql")
                with conn.transaction():
                    stages.write_rows(conn)
            else:
                migrate.init(conn)
        with psycopg.connect(url) as conn:
            register_vector(conn)
            setup = {}
            if not loaded:
                print(f"loading {args.assets} assets ...", file=sys.stderr)
                setup = load(conn, corpus, args.maintenance_work_mem)
                print(", ".join(f"{k} {v:.1f}" for k, v in setup.items()), file=sys.stderr)
            footprint = sizes(conn)
            print("sizes: " + ", ".join(f"{k} {v}" for k, v in footprint.items()))
            semsql_tuning = calibrate_semsql(conn, corpus, args.k)
            plain_tuning = calibrate_plain(conn, corpus, args.k, args.plain_ef_tries)
            print(
                f"plain ef_search {plain_tuning['ef_search']} (tried {plain_tuning['tried']}); "
                f"semsql calibrated ef_search {semsql_tuning['ef_search']} "
                f"(recall {semsql_tuning['recall']} on {semsql_tuning['sample']} of those queries, "
                f"{semsql_tuning['seconds']} s)"
            )
            load_before = os.getloadavg()
            rows = measure(conn, corpus, args.k)
            load_after = os.getloadavg()
        embed_text = measure_embed_text(server_url) if args.embed_text else None
    print_table(rows)
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in load_after)
    )
    if embed_text:
        print("embed_text (MiniLM, CPU):")
        embed_latency.print_table(embed_text)
    checks = verdicts(rows, embed_text, args.k)
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "assets": args.assets,
        "dims": args.dims,
        "clusters": args.clusters,
        "latent_dims": args.latent_dims,
        "tag_contrast": args.tag_contrast,
        "queries": args.queries,
        "k": args.k,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "setup": {k: round(v, 1) for k, v in setup.items()},
        "sizes": footprint,
        "plain_tuning": plain_tuning,
        "semsql_tuning": semsql_tuning,
        "load_average": {"before": load_before, "after": load_after},
        "results": [asdict(r) for r in rows],
        "embed_text": embed_text,
        "targets": checks,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
