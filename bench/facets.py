"""What the search page's facets cost beside the search itself, side by side in one run: for
each kind of search, semsql.search alone (run_search, k=20) and the facets of its results
(services.result_facets: tags, people, emotions, collections, media types, dates), over a
synthetic library of images and videos with tags and dates.

  library   nothing narrows: the library's summaries (one scan of the assets for
            collections, media types and years)
  tag       a tag a tenth of the library has: its first 500 results counted
  year      a tag and one year (the dates facet by month)
  video     media_type=video

    python bench/facets.py [--assets 20000] [--runs 40] [--out bench/results/facets.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway
embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
from scratch import bench_database

from semsql import database
from semsql.search import SearchRequest, run_search
from semsql.serve.services import result_facets

CASES = {
    "library": SearchRequest(),
    "tag": SearchRequest(tags=("tag0",)),
    "year": SearchRequest(
        tags=("tag0",), taken_after=datetime(2019, 1, 1), taken_before=datetime(2020, 1, 1)
    ),
    "video": SearchRequest(media_type="video"),
}

LIBRARY = [
    """INSERT INTO semsql.assets (uri, sha256, media_type, duration_ms, collection, taken_at)
       SELECT '/bench/' || i || CASE WHEN i %% 10 = 0 THEN '.mp4' ELSE '.jpg' END,
              lpad(to_hex(i), 64, '0'),
              CASE WHEN i %% 10 = 0 THEN 'video' ELSE 'image' END,
              CASE WHEN i %% 10 = 0 THEN 30000 END,
              'collection' || i %% 5,
              CASE WHEN i %% 7 <> 0
                   THEN timestamptz '2015-01-01' + (i %% 3650) * interval '1 day' END
       FROM generate_series(1, %(assets)s) AS i""",
    """INSERT INTO semsql.tags (asset_id, label, source, confidence)
       SELECT a.id, 'tag' || (a.id + 7 * t) %% 30, 'bench', 0.9
       FROM semsql.assets a CROSS JOIN generate_series(1, 3) AS t""",
    "ANALYZE semsql.assets, semsql.tags",
]
"""A tenth videos, a seventh undated, the rest over ten years; three of 30 tags each."""


def load(url: str, assets: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")  # no tasks: filters only
        for statement in LIBRARY:
            conn.execute(statement, {"assets": assets})


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def measure(url: str, runs: int) -> dict[str, dict[str, float]]:
    """Per case, the search alone and its facets, interleaved run by run (after a warm-up)."""
    results: dict[str, dict[str, float]] = {}
    with database.connect(url) as conn:
        for name, request in CASES.items():
            search: list[float] = []
            facets: list[float] = []
            result_facets(conn, request)
            run_search(conn, request)
            for _ in range(runs):
                search.append(timed(lambda request=request: run_search(conn, request)))
                facets.append(timed(lambda request=request: result_facets(conn, request)))
            counted = result_facets(conn, request)["counted"]
            results[name] = {
                "search_p50_ms": statistics.median(search),
                "search_p95_ms": p95(search),
                "facets_p50_ms": statistics.median(facets),
                "facets_p95_ms": p95(facets),
                "counted": counted,
            }
    return results


def print_report(results: dict[str, dict[str, float]], assets: int) -> None:
    print(f"facets beside semsql.search, {assets:,} assets (ms)")
    print(f"{'case':<9} {'search p50':>10} {'p95':>7} {'facets p50':>11} {'p95':>7} counted")
    for name, row in results.items():
        counted = "library" if row["counted"] is None else str(row["counted"])
        print(
            f"{name:<9} {row['search_p50_ms']:>10.1f} {row['search_p95_ms']:>7.1f}"
            f" {row['facets_p50_ms']:>11.1f} {row['facets_p95_ms']:>7.1f} {counted}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("bench/results/facets.json"))
    args = parser.parse_args()
    with bench_database("semsql_bench_facets") as url:
        load(url, args.assets)
        results = measure(url, args.runs)
    print_report(results, args.assets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load_average = os.getloadavg()
    report = {
        "assets": args.assets,
        "runs": args.runs,
        "results": results,
        "load_average": load_average,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "command": " ".join(sys.argv),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"load average {load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f}")


if __name__ == "__main__":
    main()
