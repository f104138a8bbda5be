"""Embedder daemon: items/s per stage and end to end, pickup latency, overhead, vector writes.

Four measurements, side by side in one run, against a fresh database:

  stages    every stage on --images photos (the sample photos, cycled), one worker until idle:
            items/s per stage with its time split into claim, decode (in background threads;
            `waited` is what the model waited for it), model and database write; end to end.
  overhead  the text stage alone on --docs asset documents: documents/s end to end against
            raw MiniLM forward passes on the same documents at the same batch size.
  pickup    commit of a new asset to the claim of its task (server clocks), the worker idle:
            woken by NOTIFY, against --no-listen polling every --poll-interval seconds.
  writes    --vectors 384-d vectors upserted in batches of --write-batch into the text space:
            row by row into its HNSW index; by the worker's bulk path for a backlog (index
            dropped, vectors written, index built again CONCURRENTLY, timed until it is ready);
            and with no index (the write path alone). Once for random unit vectors (the
            hardest case for HNSW) and once for MiniLM's vectors of captions.

Models: the tests' tiny random-weight models of the real architectures, plus the real MTCNN
and MiniLM (all on --device, default cpu). Database: a temporary embedded PostgreSQL with its
default (durable) settings, or the server of SEMSQL_DATABASE_URL (a scratch database on it).

    python bench/embedder.py [--images 48] [--docs 256] [--repeat 3] [--batch-size 16]
                             [--pickups 40] [--poll-interval 0.5] [--vectors 20000]
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
from scratch import bench_database

from semsql import database
from semsql.embedder import writers
from semsql.embedder.models import STAGES, load_stage
from semsql.embedder.vector_index import VectorIndexes
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


def document_vectors(models: dict[str, str], args: Any, count: int) -> np.ndarray:
    """MiniLM's vectors of `count` captions drawn from its own vocabulary's words."""
    folder = Path(models["text"])
    vocabulary = [
        word
        for word in (folder / "vocab.txt").read_text().split()
        if word.isalpha() and word.islower() and len(word) >= 4
    ]
    rng = random.Random(1)
    texts = []
    for _ in range(count):
        w = rng.sample(vocabulary, 6)
        texts.append(f"a photo of a {w[0]} near a {w[1]} with a {w[2]} in the {w[3]}. "
                     f"Tags: {w[4]}, {w[5]}.")  # fmt: skip
    encoder = load_stage("text", models["text"], args.device)
    return np.concatenate([encoder.encode(texts[i : i + 256]) for i in range(0, count, 256)])


def bench_writes(url: str, conn: psycopg.Connection, models: dict[str, str], args: Any) -> dict:
    reset(conn)
    conn.execute(
        """INSERT INTO semsql.assets (uri, sha256)
                    SELECT '/bench/v' || g, encode(sha256(('v' || g)::bytea), 'hex')
                    FROM generate_series(1, %s) AS g""",
        [args.vectors],
    )
    ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
    noise = np.random.default_rng(0).standard_normal((len(ids), 384)).astype(np.float32)
    sources = {
        "random": noise / np.linalg.norm(noise, axis=1, keepdims=True),
        "minilm": document_vectors(models, args, len(ids)),
    }
    model = models["text"]
    conn.execute("SELECT semsql.register_vector_space('text', %s, 384)", [model])

    def write(vectors: np.ndarray) -> float:
        started = time.perf_counter()
        for start in range(0, len(ids), args.write_batch):
            rows = [
                (ids[i], vectors[i], "bench")
                for i in range(start, min(start + args.write_batch, len(ids)))
            ]
            with conn.transaction():
                writers.upsert_embeddings(conn, "text", model, rows)
        return time.perf_counter() - started

    def clear() -> None:
        conn.execute("DELETE FROM semsql.embeddings")
        conn.execute("VACUUM semsql.embeddings")

    def bulk(vectors: np.ndarray) -> dict:
        """The worker's path for a backlog: index dropped, vectors written, index built."""
        clear()
        conn.execute(
            "INSERT INTO semsql.tasks (asset_id, stage) SELECT unnest(%s::bigint[]), 'text'", [ids]
        )
        indexes = VectorIndexes(lambda: database.connect(url, autocommit=True), ["text"], 1)
        started = time.perf_counter()
        assert indexes.defer(conn) == ["text"]
        write_s = write(vectors)
        conn.execute("DELETE FROM semsql.tasks WHERE stage = 'text'")  # the backlog is written
        indexes.build_deferred(conn)
        indexes.wait()
        total_s = time.perf_counter() - started
        assert indexes.rebuilt == ["text"], "the index was not built again"
        return {"rows_per_s": len(ids) / total_s, "write_s": write_s, "total_s": total_s}

    results = {}
    for name, vectors in sources.items():
        clear()
        row_by_row = len(ids) / write(vectors)
        results[name] = {"rows_per_s_row_by_row_into_hnsw": row_by_row, "bulk": bulk(vectors)}
        conn.execute("DROP INDEX semsql.embeddings_text_hnsw")
        clear()
        results[name]["rows_per_s_without_index"] = len(ids) / write(vectors)
        conn.execute("SELECT semsql.register_vector_space('text', %s, 384)", [model])
    conn.execute("DELETE FROM semsql.embeddings")
    return {"vectors": len(ids), "dims": 384, "batch": args.write_batch, **results}


PARTS = {
    "stages": bench_stages,
    "overhead": bench_overhead,
    "pickup": bench_pickup,
    "writes": bench_writes,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="overhead runs (median)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pickups", type=int, default=40)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--vectors", type=int, default=20000)
    parser.add_argument("--write-batch", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--parts",
        type=lambda value: value.split(","),
        default=list(PARTS),
        help=f"comma-separated, of {','.join(PARTS)} [default: all]",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/embedder.json"))
    args = parser.parse_args()

    models = build_tiny_models(Path(tempfile.mkdtemp(prefix="semsql-bench-models-")))
    with bench_database(DATABASE) as url, database.connect(url, autocommit=True) as conn:
        report = {part: PARTS[part](url, conn, models, args) for part in args.parts}
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
    for part in PARTS:
        if part in report:
            PRINTERS[part](report[part], report["machine"])


def print_stages(stages: dict, machine: dict) -> None:
    print(
        f"stages: {stages['images']} photos, {stages['images_per_s_end_to_end']:.2f} images/s "
        f"end to end (all 7 stages, {machine['cpus']} CPUs, "
        f"{machine['device']})"
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


def print_overhead(over: dict, machine: dict) -> None:
    print(
        f"overhead: {over['documents']} documents at batch {over['batch_size']}: raw MiniLM "
        f"{over['raw_minilm_docs_per_s']:.1f} docs/s, "
        f"end to end {over['end_to_end_docs_per_s']:.1f} "
        f"docs/s = {over['ratio']:.2f} x raw (median of {len(over['runs'])} runs: "
        f"{', '.join(format(run['ratio'], '.2f') for run in over['runs'])}; target >= 0.8)"
    )


def print_pickup(pickup: dict, machine: dict) -> None:
    for row in pickup.values():
        how = (
            "NOTIFY"
            if row["poll_interval_s"] is None
            else f"polling every {row['poll_interval_s']} s"
        )
        print(
            f"pickup ({how}, {row['pickups']} assets): p50 {row['p50_ms']:.1f} ms, "
            f"p95 {row['p95_ms']:.1f} ms, max {row['max_ms']:.1f} ms"
        )


def print_writes(writes: dict, machine: dict) -> None:
    print(
        f"writes: {writes['vectors']} x {writes['dims']}-d vectors in batches of "
        f"{writes['batch']}, rows/s (target >= 5000 into the indexed table)"
    )
    print(f"  {'vectors':<9}{'into HNSW':>11}{'bulk path':>11}{'(write s':>10}{'build s)':>10}"
          f"{'no index':>10}")  # fmt: skip
    for name in ("random", "minilm"):
        row, bulk = writes[name], writes[name]["bulk"]
        print(
            f"  {name:<9}{row['rows_per_s_row_by_row_into_hnsw']:>11.0f}{bulk['rows_per_s']:>11.0f}"
            f"{bulk['write_s']:>10.1f}{bulk['total_s'] - bulk['write_s']:>10.1f}"
            f"{row['rows_per_s_without_index']:>10.0f}"
        )


PRINTERS = {
    "stages": print_stages,
    "overhead": print_overhead,
    "pickup": print_pickup,
    "writes": print_writes,
}


if __name__ == "__main__":
    main()
