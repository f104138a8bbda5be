"""semsql.embed_text from SQL: where a cache miss spends its time, and miss/hit latency.

A real `semsql worker` (MiniLM on CPU, nothing else to do) answers; a client calls
`SELECT semsql.embed_text(...)` with distinct texts (cache misses), then with the same texts
again (hits). Each miss is split, on the machine's one clock, into
  request   the call starting, up to the loopback transaction starting (embed_text's checks,
            dblink's login as the loopback role)
  pick-up   filing the request, its commit and NOTIFY, until the worker holds the row
  model     tokenising and MiniLM
  write     the answer's UPDATE and commit
  wake-up   the worker's commit until the client has the vector (the caller noticing, dblink
            returning and closing its connection)
and pick-up again in two: (filed) until the worker starts looking (the request's statements on
the fresh connection, its commit, the NOTIFY reaching the worker), (taken) the worker's query.
from the request row's requested_at and the worker's per-batch debug lines (`-v`). The calls are
made by a login in semsql_analyst, whose session keeps its loopback connection. In the same run,
misses by the other ways are timed side by side: a connection per call (as where PUBLIC may run
dblink) and the first miss of a new session; and the loopback login alone
(`dblink(conninfo, 'SELECT 1')`).

    python bench/embed_latency.py [--texts 200] [--out bench/results/embed_latency.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway
embedded server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from semsql import database, migrate
from semsql.testing import scratch_database, scratch_server

DATABASE = "semsql_bench_embed_latency"
STAGES = ("caption", "tags", "faces", "face_vectors", "emotion", "clip")
# embedder/query_embeddings.py logs one such line per batch it answers.
BATCH_LINE = re.compile(
    r"answered (?P<count>\d+) text\(s\) of (?P<space>\S+): looked at (?P<looked>[\d.]+), "
    r"picked up at (?P<picked>[\d.]+), "
    r"model (?P<model>[\d.]+) ms, written at (?P<written>[\d.]+)"
)
PARTS = ("request", "pick-up", "model", "write", "wake-up", "(filed)", "(taken)")


def quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(statistics.quantiles(values, n=20)[18], 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def start_worker(url: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **{f"SEMSQL_MODEL_{stage.upper()}": "off" for stage in STAGES}}
    env["SEMSQL_WORKER_TASKS"] = "text"
    env["SEMSQL_DATABASE_URL"] = url
    log = log_path.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "semsql.cli", "worker", "--device", "cpu", "-v"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def wait_for_worker(conn: psycopg.Connection, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while not conn.execute(
        "SELECT count(*) FROM semsql.live_workers() WHERE 'text' = ANY (query_spaces)"
    ).fetchone()[0]:
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError("no `semsql worker` came up to answer embed_text")
        time.sleep(0.2)


def batches(log_path: Path) -> list[dict[str, float]]:
    found = []
    for line in log_path.read_text(errors="replace").splitlines():
        if match := BATCH_LINE.search(line):
            found.append(
                {
                    "count": int(match["count"]),
                    "looked": float(match["looked"]),
                    "picked": float(match["picked"]),
                    "model_ms": float(match["model"]),
                    "written": float(match["written"]),
                }
            )
    return found


@contextmanager
def analyst_login(conn: psycopg.Connection, url: str) -> Iterator[str]:
    """A login role in semsql_analyst (as BI tools and psql users log in): its DSN."""
    name, password = "bench_embed_latency_analyst", "bench-pw"
    conn.execute(f"DROP ROLE IF EXISTS {name}")
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE semsql_analyst")
    try:
        yield make_conninfo(url, user=name, password=password)
    finally:
        conn.execute(f"DROP OWNED BY {name}; DROP ROLE {name}")


def other_paths(
    conn: psycopg.Connection, analyst: psycopg.Connection, analyst_url: str, count: int
) -> dict[str, list[float]]:
    """Misses by the other ways a call may go, in the same run: in blocks of ten, alternating,
    the session's kept loopback connection; a connection per call, as where PUBLIC may run
    dblink (granted for the block, then taken back); and the first miss of a new session."""
    dblink = [
        row[0]
        for row in conn.execute(
            """SELECT d.objid::regprocedure::text FROM pg_depend d
               WHERE d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
                 AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dblink')"""
        )
    ]
    millis: dict[str, list[float]] = {"miss_kept": [], "miss_per_call": [], "miss_new_session": []}
    for block in range(0, count, 10):
        for path in millis:
            texts = [f"{path} text {i}" for i in range(block, min(block + 10, count))]
            if path == "miss_per_call":
                for function in dblink:
                    conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
            for text in texts:
                if path == "miss_new_session":
                    with database.connect(analyst_url, autocommit=True) as fresh:
                        started = time.perf_counter()
                        fresh.execute("SELECT semsql.embed_text(%s)", [text]).fetchone()
                else:
                    started = time.perf_counter()
                    analyst.execute("SELECT semsql.embed_text(%s)", [text]).fetchone()
                millis[path].append((time.perf_counter() - started) * 1000)
            if path == "miss_per_call":
                for function in dblink:
                    conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    return millis


def measure(url: str, texts: int) -> dict:
    log_path = Path(tempfile.mkdtemp(prefix="semsql-embed-latency-")) / "worker.log"
    worker = None
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.init(conn)
            worker = start_worker(url, log_path)
            wait_for_worker(conn, worker)
            conninfo = conn.execute("SELECT semsql.embed_loopback_conninfo()").fetchone()[0]
            login = []
            for _ in range(50):
                started = time.perf_counter()
                conn.execute("SELECT * FROM public.dblink(%s, 'SELECT 1') AS t(x int)", [conninfo])
                login.append((time.perf_counter() - started) * 1000)
            # Texts no later call repeats; the first few after start are not counted.
            for i in range(20):
                conn.execute("SELECT semsql.embed_text(%s)", [f"warming up, text {i}"])
            with analyst_login(conn, url) as analyst_url, database.connect(analyst_url) as analyst:
                analyst.autocommit = True
                others = other_paths(conn, analyst, analyst_url, min(texts, 60))
                words = ["dog", "cat", "a red bicycle by the canal", "children playing in snow"]
                phrases = [f"photo number {i} of {words[i % len(words)]}" for i in range(texts)]
                calls = []
                for phrase in phrases:
                    started_at = time.time()
                    started = time.perf_counter()
                    analyst.execute("SELECT semsql.embed_text(%s)", [phrase]).fetchone()
                    calls.append((phrase, started_at, (time.perf_counter() - started) * 1000))
                hits = []
                for phrase in phrases:
                    started = time.perf_counter()
                    analyst.execute("SELECT semsql.embed_text(%s)", [phrase]).fetchone()
                    hits.append((time.perf_counter() - started) * 1000)
            requested = dict(
                conn.execute(
                    """SELECT text, extract(epoch FROM requested_at)::float8
                       FROM semsql.query_embeddings WHERE text = ANY (%s)""",
                    [phrases],
                ).fetchall()
            )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
    answered = [b for b in batches(log_path) if b["count"] == 1][-texts:]
    parts: dict[str, list[float]] = {part: [] for part in PARTS}
    if len(answered) == texts:  # one batch per miss, in order
        for (phrase, started_at, millis), batch in zip(calls, answered, strict=True):
            request_at = requested[phrase]
            ended_at = started_at + millis / 1000
            parts["request"].append((request_at - started_at) * 1000)
            parts["pick-up"].append((batch["picked"] - request_at) * 1000)
            parts["model"].append(batch["model_ms"])
            parts["write"].append((batch["written"] - batch["picked"]) * 1000 - batch["model_ms"])
            parts["wake-up"].append((ended_at - batch["written"]) * 1000)
            parts["(filed)"].append((batch["looked"] - request_at) * 1000)
            parts["(taken)"].append((batch["picked"] - batch["looked"]) * 1000)
    return {
        "miss": quantiles([millis for _, _, millis in calls]),
        "hit": quantiles(hits),
        **{name: quantiles(values) for name, values in others.items()},
        "loopback_login": quantiles(login),
        "breakdown": {part: quantiles(values) for part, values in parts.items() if values},
    }


def print_table(result: dict) -> None:
    print(f"{'':<16}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}")
    rows = [("miss", result["miss"]), ("hit", result["hit"])]
    rows += [(f"  {part}", figures) for part, figures in result["breakdown"].items()]
    rows += [("loopback login", result["loopback_login"])]
    rows += [
        (label, result[key])
        for key, label in (
            ("miss_kept", "miss, kept conn."),
            ("miss_per_call", "miss, conn./call"),
            ("miss_new_session", "miss, new session"),
        )
        if key in result
    ]
    for name, figures in rows:
        print(
            f"{name:<16}{figures['p50_ms']:>9.2f}{figures['p95_ms']:>9.2f}{figures['mean_ms']:>9.2f}"
        )
    if not result["breakdown"]:
        print("(no breakdown: the worker's batches did not match the calls one to one)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/embed_latency.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    with scratch_server(settings={"fsync": "off"}) as server_url:
        with psycopg.connect(server_url, autocommit=True) as admin:
            version = admin.execute("SHOW server_version").fetchone()[0]
        with scratch_database(server_url, DATABASE) as url:
            result = measure(url, args.texts)
    load_after = os.getloadavg()

    print_table(result)
    targets = {
        "embed_text_miss_p95_within_20ms": result["miss"]["p95_ms"] <= 20,
        "embed_text_hit_p95_within_0.5ms": result["hit"]["p95_ms"] <= 0.5,
    }
    for target, passed in targets.items():
        print(f"{'PASS' if passed else 'FAIL'}  {target}")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "texts": args.texts,
        "server_version": version,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": {"before": load_before, "after": load_after},
        **result,
        "targets": targets,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
