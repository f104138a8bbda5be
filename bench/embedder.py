"""Embedder daemon: items/s per stage and end to end, pickup latency, overhead, vector writes.

Four measurements, side by side in one run, against a fresh database:

  stages    every stage on --images photos (the sample photos, cycled), one worker until idle:
            items/s per stage with its time split into claim, decode (in background threads;
            `waited` is what the model waited for it), model and database write; end to end.
  overhead  the text stage alone on --docs asset documents: documents/s end to end against
            raw MiniLM forward passes on the same documents at the same batch size.
  pickup    commit of a new asset to the claim of its task (server clocks), the worker idle:
            woken by NOTIFY, against --no-listen polling every --poll-interval seconds.
  writes    --vectors 384-d vectors upserted in batches of --write-batch into the embeddings
            table with its HNSW index, and with the index dropped (the write path alone).

Models: the tests' tiny random-weight models of the real architectures, plus the real MTCNN
and MiniLM (all on --device, default cpu). Database: a temporary embedded PostgreSQL with its
default (durable) settings, or the server of SEMSQL_DATABASE_URL (a scratch database on it).

    python bench/embedder.py [--images 48] [--docs 256] [--repeat 3] [--batch-size 16]
                             [--pickups 40] [--poll-interval 0.5] [--vectors 5000]
                             [--write-batch 500] [--device cpu]
                             [--out bench/results/embedder.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import skimage.data
from matplotlib import cbook
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fix_models import build_tiny_models
from scratch import scratch_database

from semsql import database
from semsql.embedder import writers
from semsql.embedder.models import STAGES, load_stage
from semsql.embedder.worker import Worker, WorkerOptions

DATABASE = "semsql_bench_embedder"
WORDS = (
    "kite",
    "harbour",
    "snow",
    "children",
    "red",
    "bicycle",
    "market",
    "portrait",
    "dog",
    "sunset",
    "bridge",
    "train",
    "forest",
    "wedding",
    "beach",
    "mountain",
)


def sample_photos() -> list[Image.Image]:
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as hopper:
        hopper = hopper.convert("RGB")
    return [
        Image.fromarray(skimage.data.astronaut()),
        Image.fromarray(skimage.data.chelsea()),
        hopper,
    ]


def reset(conn: psycopg.Connection, *stages: str) -> None:
    conn.execute("TRUNCATE semsql.assets, semsql.jobs, semsql.query_embeddings CASCADE")
    conn.execute("UPDATE semsql.stages SET enabled = (name = ANY (%s))", [list(stages)])


def add_photos(conn: psycopg.Connection, folder: Path, count: int) -> None:
    photos = sample_photos()
    with conn.transaction():
        for n in range(count):
            image = photos[n % len(photos)].copy()
            image.paste((n % 256, n // 256 % 256, 128), (0, 0, 16, 16))  # unique content
            path = folder / f"photo{n:05}.jpg"
            image.save(path, quality=90)
            conn.execute(
                "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s)",
                [str(path), hashlib.sha256(path.read_bytes()).hexdigest()],
            )


def add_documents(conn: psycopg.Connection, count: int, *, start: int = 0) -> None:
    """Assets whose documents look like real ones: a caption, a few tags, a person."""
    rng = random.Random(start)
    with conn.transaction():
        for n in range(start, start + count):
            asset_id = conn.execute(
                "INSERT INTO semsql.assets (uri, sha256) VALUES (%s, %s) RETURNING id",
                [f"/bench/doc{n}.jpg", hashlib.sha256(f"doc{n}".encode()).hexdigest()],
            ).fetchone()[0]
            words = rng.sample(WORDS, 6)
            caption = (
                f"a photo of a {words[0]} near a {words[1]} with a {words[2]} in the {words[3]}"
            )
            conn.execute(
                "SELECT semsql.add_user_facts(%s, %s, %s, %s)",
                [asset_id, caption, words[4:], ["Grace Hopper"] if n % 5 == 0 else []],
            )


def run_worker(
    url: str, options: WorkerOptions, models: dict[str, str | None]
) -> tuple[Worker, float]:
    """Run a worker until idle; return it and the seconds from ready (models loaded) to idle."""
    worker = Worker(url, options, models=models)
    finished: list[float] = []
    thread = threading.Thread(target=lambda: (worker.run(), finished.append(time.perf_counter())))
    thread.start()
    worker.ready.wait()
    started = time.perf_counter()
    thread.join()
    return worker, finished[0] - started


def bench_stages(url: str, conn: psycopg.Connection, models: dict[str, str], args: Any) -> dict:
    reset(conn, *STAGES)
    folder = Path(tempfile.mkdtemp(prefix="semsql-bench-photos-"))
    try:
        add_photos(conn, folder, args.images)
        options = WorkerOptions(
            until_idle=True,
            batch_size=args.batch_size,
            device=args.device,
            poll_interval=0.1,
            answer_queries=False,
            stage_options={"tags": {"threshold": 0.0, "max_tags": 5}},
        )
        worker, seconds = run_worker(url, options, models)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    done = conn.execute("SELECT count(*) FROM semsql.tasks WHERE status = 'done'").fetchone()[0]
    assert done == args.images * len(STAGES), f"{done} tasks done"
    rows = []
    for stage in STAGES:
        stats = worker.runners[stage].stats
        busy = stats.claim_s + stats.decode_wait_s + stats.model_s + stats.write_s
        rows.append(
            {
                "stage": stage,
                "items": stats.items,
                "items_per_s": stats.items / busy,
                **{k: round(v, 3) for k, v in stats.as_dict().items() if k.endswith("_s")},
            }
        )
    return {
        "images": args.images,
        "seconds": seconds,
        "images_per_s_end_to_end": args.images / seconds,
        "stages": rows,
    }


def bench_overhead(url: str, conn: psycopg.Connection, models: dict[str, str], args: Any) -> dict:
    reset(conn, "text")
    add_documents(conn, args.docs)
    documents = [
        row[0]
        for row in conn.execute(
            "SELECT document FROM semsql.asset_documents(ARRAY(SELECT id FROM semsql.assets)) "
            "ORDER BY asset_id"
        )
    ]
    encoder = load_stage("text", models["text"], args.device)
    encoder.encode(documents[: args.batch_size])  # warm up

    def raw() -> float:
        started = time.perf_counter()
        for start in range(0, len(documents), args.batch_size):
            encoder.encode(documents[start : start + args.batch_size])
        return len(documents) / (time.perf_counter() - started)

    # Other load on the machine moves both numbers: pair each end-to-end run with raw runs just
    # before and after it, and report the median of the pairs' ratios.
    pairs = []
    for _ in range(args.repeat):
        conn.execute("DELETE FROM semsql.embeddings WHERE space = 'text'")
        conn.execute("SELECT semsql.requeue_tasks(ARRAY(SELECT id FROM semsql.assets), '{text}')")
        raw_before = raw()
        options = WorkerOptions(
            stages=("text",),
            until_idle=True,
            batch_size=args.batch_size,
            device=args.device,
            poll_interval=0.1,
            answer_queries=False,
        )
        worker, seconds = run_worker(url, options, models)
        raw_docs_per_s = (raw_before + raw()) / 2
        end_to_end = len(documents) / seconds
        split = {
            k: round(v, 3)
            for k, v in worker.runners["text"].stats.as_dict().items()
            if k.endswith("_s")
        }
        pairs.append(
            {
                "raw_minilm_docs_per_s": raw_docs_per_s,
                "end_to_end_docs_per_s": end_to_end,
                "ratio": end_to_end / raw_docs_per_s,
                "split_s": split,
            }
        )
    middle = sorted(pairs, key=lambda pair: pair["ratio"])[len(pairs) // 2]
    return {
        "documents": len(documents),
        "batch_size": args.batch_size,
        "mean_document_chars": statistics.mean(map(len, documents)),
        **middle,
        "runs": pairs,
    }


def measure_pickups(conn: psycopg.Connection, count: int, start: int) -> list[float]:
    """Insert assets one at a time, the worker idle; return commit-to-claim milliseconds."""
    latencies = []
    for n in range(start, start + count):
        add_documents(conn, 1, start=n)  # one transaction: one commit, one NOTIFY
        while True:
            row = conn.execute(
                """SELECT extract(epoch FROM t.started_at - t.created_at) * 1000, t.status
                   FROM semsql.tasks t JOIN semsql.assets a ON a.id = t.asset_id
                   WHERE a.uri = %s""",
                [f"/bench/doc{n}.jpg"],
            ).fetchone()
            if row[1] == "done":
                break
            time.sleep(0.005)
        latencies.append(float(row[0]))
        time.sleep(random.uniform(0.02, 0.1))
    return latencies


def bench_pickup(url: str, conn: psycopg.Connection, models: dict[str, str], args: Any) -> dict:
    reset(conn, "text")
    results = {}
    for label, listen, poll, count in (
        ("notify", True, 3600.0, args.pickups),
        ("poll_only", False, args.poll_interval, max(args.pickups // 2, 5)),
    ):
        worker = Worker(
            url,
            WorkerOptions(
                stages=("text",),
                poll_interval=poll,
                listen=listen,
                device=args.device,
                answer_queries=False,
            ),
            models=models,
        )
        thread = threading.Thread(target=worker.run)
        thread.start()
        worker.ready.wait()
        time.sleep(0.5)  # idle: its start-up drain is over
        try:
            latencies = measure_pickups(conn, count, start=len(results) * 10_000)
        finally:
            worker.stop()
            thread.join()
        ordered = sorted(latencies)
        results[label] = {
            "pickups": count,
            "poll_interval_s": None if listen else poll,
            "p50_ms": statistics.median(ordered),
            "p95_ms": ordered[max(0, round(0.95 * len(ordered)) - 1)],
            "max_ms": ordered[-1],
        }
    return results


def bench_writes(conn: psycopg.Connection, args: Any) -> dict:
    reset(conn)
    conn.execute(
        """INSERT INTO semsql.assets (uri, sha256)
                    SELECT '/bench/v' || g, encode(sha256(('v' || g)::bytea), 'hex')
                    FROM generate_series(1, %s) AS g""",
        [args.vectors],
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
    vectors = np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    (model,) = conn.execute(
        "SELECT model FROM semsql.vector_spaces WHERE space = 'text'"
    ).fetchone()

    def write() -> float:
        conn.execute("DELETE FROM semsql.embeddings")
        conn.execute("VACUUM semsql.embeddings")
        started = time.perf_counter()
        for start in range(0, len(ids), args.write_batch):
            rows = [
                (ids[i], vectors[i], "bench")
                for i in range(start, min(start + args.write_batch, len(ids)))
            ]
            with conn.transaction():
                writers.upsert_embeddings(conn, "text", model, rows)
        return len(ids) / (time.perf_counter() - started)

    indexed = write()
    conn.execute("DROP INDEX semsql.embeddings_text_hnsw")
    bare = write()
    conn.execute("DELETE FROM semsql.embeddings")
    conn.execute("SELECT semsql.register_vector_space('text', %s, 384)", [model])
    return {
        "vectors": len(ids),
        "dims": 384,
        "batch": args.write_batch,
        "rows_per_s_hnsw_indexed": indexed,
        "rows_per_s_without_index": bare,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="overhead runs (median)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pickups", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--vectors", type=int, default=5000)
    parser.add_argument("--write-batch", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/results/embedder.json"))
    args = parser.parse_args()

    models = build_tiny_models(Path(tempfile.mkdtemp(prefix="semsql-bench-models-")))
    with scratch_database(DATABASE) as url, database.connect(url, autocommit=True) as conn:
        report = {
            "stages": bench_stages(url, conn, models, args),
            "overhead": bench_overhead(url, conn, models, args),
            "pickup": bench_pickup(url, conn, models, args),
            "writes": bench_writes(conn, args),
        }
    report["machine"] = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "device": args.device,
        "batch_size": args.batch_size,
    }
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {args.out}")


def print_report(report: dict) -> None:
    stages = report["stages"]
    print(
        f"stages: {stages['images']} photos, {stages['images_per_s_end_to_end']:.2f} images/s "
        f"end to end (all 7 stages, {report['machine']['cpus']} CPUs, "
        f"{report['machine']['device']})"
    )
    print(
        f"  {'stage':<13}{'items/s':>9}{'claim s':>9}{'decode s':>10}{'waited s':>10}"
        f"{'model s':>9}{'write s':>9}"
    )
    for row in stages["stages"]:
        print(
            f"  {row['stage']:<13}{row['items_per_s']:>9.1f}{row['claim_s']:>9.2f}"
            f"{row['decode_s']:>10.2f}{row['decode_wait_s']:>10.2f}{row['model_s']:>9.2f}"
            f"{row['write_s']:>9.2f}"
        )
    over = report["overhead"]
    print(
        f"overhead: {over['documents']} documents at batch {over['batch_size']}: raw MiniLM "
        f"{over['raw_minilm_docs_per_s']:.1f} docs/s, "
        f"end to end {over['end_to_end_docs_per_s']:.1f} "
        f"docs/s = {over['ratio']:.2f} x raw (median of {len(over['runs'])} runs: "
        f"{', '.join(format(run['ratio'], '.2f') for run in over['runs'])}; target >= 0.8)"
    )
    for row in report["pickup"].values():
        how = (
            "NOTIFY"
            if row["poll_interval_s"] is None
            else f"polling every {row['poll_interval_s']} s"
        )
        print(
            f"pickup ({how}, {row['pickups']} assets): p50 {row['p50_ms']:.1f} ms, "
            f"p95 {row['p95_ms']:.1f} ms, max {row['max_ms']:.1f} ms"
        )
    writes = report["writes"]
    print(
        f"writes: {writes['vectors']} x {writes['dims']}-d in batches of {writes['batch']}: "
        f"{writes['rows_per_s_hnsw_indexed']:.0f} rows/s with the HNSW index, "
        f"{writes['rows_per_s_without_index']:.0f} rows/s without"
    )


if __name__ == "__main__":
    main()
