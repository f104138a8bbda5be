"""semsql.duplicates (union-find over the neighbour links) side by side with the transitive
closure it replaced, on the same data in one run.

Shapes, each at --sizes assets (64-d vectors, the HNSW index built after loading):
  cluster   every asset within 0.01 of every other (a burst, a library of near-identical
            scans): one component of all of them, n^2 pairs in the closure
  groups    near copies in groups of --group-size, far from one another
and, with --wide, one cluster of --wide-size assets at neighbours => 1000.

Each method runs on a connection of its own, as an analyst would call it; meanwhile the
backend's /proc/<pid>/status is read every 10 ms: VmHWM (its peak resident memory, shared
buffers it touched included) and the peak of RssAnon (its private memory: sorts, hashes, the
closure's working tables). The closure is cancelled after --old-timeout seconds
(statement_timeout); when both finish, their rows are compared.

    python bench/duplicates.py [--sizes 1000,3000,10000] [--old-timeout 60] [--wide]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there; memory is read only
when that server runs on this machine), else a throwaway embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg
from scratch import bench_database

from semsql.testing import DUPLICATES_BY_CLOSURE

DATABASE = "semsql_bench_duplicates"
DIMS = 64
MAX_DISTANCE = 0.05

NEW = "SELECT * FROM semsql.duplicates(max_distance => %s::real, neighbours => %s)"


@dataclass
class Row:
    shape: str
    assets: int
    neighbours: int
    method: str  # closure (the old query) or union-find (semsql.duplicates)
    status: str  # ok, or timeout after --old-timeout seconds
    seconds: float
    rows: int | None
    groups: int | None
    peak_rss_mb: float | None  # VmHWM
    peak_private_mb: float | None  # the highest RssAnon seen
    same_rows: bool | None  # the two methods' rows equal (set on the union-find's row)


def vectors(shape: str, count: int, group_size: int, rng: np.random.Generator) -> np.ndarray:
    if shape == "cluster":
        centre = rng.normal(size=DIMS)
        points = centre / np.linalg.norm(centre) + rng.normal(0, 0.005, (count, DIMS))
    else:
        centres = rng.normal(size=(-(-count // group_size), DIMS))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        points = np.repeat(centres, group_size, axis=0)[:count]
        points = points + rng.normal(0, 0.02, (count, DIMS))
    return points.astype(np.float32)


def load(conn: psycopg.Connection, points: np.ndarray) -> None:
    """The assets and their vectors (no triggers' work: every stage disabled), then the index."""
    conn.execute("TRUNCATE semsql.assets CASCADE")
    conn.execute("DROP INDEX IF EXISTS semsql.embeddings_image_hnsw")
    conn.execute(
        """INSERT INTO semsql.assets (uri, sha256)
           SELECT '/bench/' || n || '.jpg', encode(sha256(n::text::bytea), 'hex')
           FROM generate_series(1, %s) AS n""",
        [len(points)],
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
    with conn.cursor().copy(
        "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN"
    ) as copy:
        for asset_id, point in zip(ids, points, strict=True):
            copy.write_row([asset_id, "image", "bench", "[" + ",".join(map(str, point)) + "]"])
    conn.execute(conn.execute("SELECT semsql.vector_index_sql('image', %s)", [DIMS]).fetchone()[0])
    conn.execute("ANALYZE semsql.assets, semsql.embeddings")


class Watch:
    """The peaks of a backend's VmHWM and RssAnon, read from /proc while it works."""

    def __init__(self, pid: int) -> None:
        self.path = Path(f"/proc/{pid}/status")
        self.hwm = self.anon = 0
        self.readable = self.path.exists()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def sample(self) -> None:
        try:
            for line in self.path.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.hwm = max(self.hwm, int(line.split()[1]))
                elif line.startswith("RssAnon:"):
                    self.anon = max(self.anon, int(line.split()[1]))
        except OSError:
            pass

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            time.sleep(0.01)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self.done.set()
        self.thread.join()


def run(url: str, method: str, neighbours: int, timeout: float) -> tuple[str, float, list, Watch]:
    with psycopg.connect(url, autocommit=True) as conn:
        dims = conn.execute("SELECT dims FROM semsql.vector_spaces WHERE space = 'image'")
        statement = (
            DUPLICATES_BY_CLOSURE.format(dims=dims.fetchone()[0]) if method == "closure" else NEW
        )
        params = (
            {"max_distance": MAX_DISTANCE, "neighbours": neighbours, "collection": None}
            if method == "closure"
            else [MAX_DISTANCE, neighbours]
        )
        if method == "closure":  # what the old function's SET clause did
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, false)", [str(max(40, neighbours))]
            )
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [f"{int(timeout)}s"])
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        started = time.perf_counter()
        with Watch(pid) as watch:
            try:
                rows = conn.execute(statement, params).fetchall()
                status = "ok"
            except psycopg.errors.QueryCanceled:
                rows, status = [], "timeout"
        return status, time.perf_counter() - started, rows, watch


def measure(url: str, shape: str, count: int, neighbours: int, timeout: float) -> list[Row]:
    results: dict[str, list] = {}
    rows = []
    for method in ("closure", "union-find"):
        status, seconds, found, watch = run(url, method, neighbours, timeout)
        results[method] = found if status == "ok" else None
        ok = status == "ok"
        rows.append(
            Row(
                shape=shape,
                assets=count,
                neighbours=neighbours,
                method=method,
                status=status,
                seconds=round(seconds, 2),
                rows=len(found) if ok else None,
                groups=len({r[0] for r in found}) if ok else None,
                peak_rss_mb=round(watch.hwm / 1024, 1) if watch.readable else None,
                peak_private_mb=round(watch.anon / 1024, 1) if watch.readable else None,
                same_rows=None,
            )
        )
        print(
            f"  {shape} {count} x {neighbours}: {method} {status} {seconds:.1f} s", file=sys.stderr
        )
    if results["closure"] is not None:
        rows[1].same_rows = results["closure"] == results["union-find"]
    return rows


def print_table(rows: list[Row]) -> None:
    def shown(value: object) -> str:
        return "-" if value is None else str(value)

    print(
        f"{'shape':<8}{'assets':>7}{'nbrs':>6}  {'method':<11}{'status':<9}{'seconds':>9}"
        f"{'rows':>7}{'groups':>7}{'peak RSS MB':>13}{'peak private MB':>17}  same"
    )
    for r in rows:
        print(
            f"{r.shape:<8}{r.assets:>7}{r.neighbours:>6}  {r.method:<11}{r.status:<9}"
            f"{r.seconds:>9.2f}{shown(r.rows):>7}{shown(r.groups):>7}"
            f"{shown(r.peak_rss_mb):>13}{shown(r.peak_private_mb):>17}  {shown(r.same_rows)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,10000")
    parser.add_argument("--shapes", default="cluster,groups")
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--group-size", type=int, default=5)
    parser.add_argument("--old-timeout", type=float, default=60, help="seconds (the closure)")
    parser.add_argument("--wide", action="store_true", help="also a cluster at neighbours 1000")
    parser.add_argument("--wide-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/duplicates.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cases = [
        (shape, int(size), args.neighbours)
        for shape in args.shapes.split(",")
        for size in args.sizes.split(",")
    ]
    if args.wide:
        cases.append(("cluster", args.wide_size, 1000))

    rows: list[Row] = []
    settings = {"fsync": "off", "synchronous_commit": "off"}
    with bench_database(DATABASE, settings) as url, psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")
        conn.execute("SELECT semsql.register_vector_space('image', 'bench', %s)", [DIMS])
        for shape, size, neighbours in cases:
            load(conn, vectors(shape, size, args.group_size, rng))
            rows += measure(url, shape, size, neighbours, args.old_timeout)
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "dims": DIMS,
        "max_distance": MAX_DISTANCE,
        "group_size": args.group_size,
        "old_timeout_s": args.old_timeout,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "results": [asdict(r) for r in rows],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
