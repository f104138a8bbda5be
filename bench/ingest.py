"""Ingest throughput: files/s for N generated JPEGs with the models off.

Side by side in one run, over the same files:
  read+hash   read every file and SHA-256 it (the floor: disk and hashing only)
  probe       read, hash, decode (1/8-scale JPEG), EXIF/IPTC/XMP, in the ingest thread pool
  ingest      `semsql ingest` as run_ingest does it: probe + one SQL call per batch + job rows
  re-ingest   the same files again: every one skipped as unchanged by its stat signature
              (size, mtime, ctime, inode, sidecars), none of them opened

    python bench/ingest.py [--files 1000] [--threads 4] [--out bench/results/ingest.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway
embedded server.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from corpus import noise_image
from scratch import bench_database

from semsql import database, signature
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.probe import probe_file
from semsql.sources import iter_candidates


def make_corpus(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = noise_image((1024, 768), seed=0)
    for i in range(count):
        path = folder / f"img_{i:05d}.jpg"
        if path.exists():
            continue
        # A different pixel per file: unique content (no dedup shortcut), same size and cost.
        im = base.copy()
        im.putpixel((i % 1024, i // 1024 % 768), (i % 256, 255 - i % 256, 7))
        im.save(path, quality=90)  # ~200 KB


def timed(label: str, count: int, run) -> dict:
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    return {
        "step": label,
        "files": count,
        "seconds": round(seconds, 3),
        "files_per_s": round(count / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--corpus", type=Path, default=Path(tempfile.gettempdir()) / "semsql-bench-jpegs"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/ingest.json"))
    args = parser.parse_args()

    make_corpus(args.corpus, args.files)
    files = sorted(args.corpus.glob("img_*.jpg"))[: args.files]
    mean_kb = sum(f.stat().st_size for f in files) / len(files) / 1024
    with Image.open(files[0]) as im:
        size = im.size

    def read_and_hash() -> None:
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda f: hashlib.sha256(f.read_bytes()).hexdigest(), files))

    def probe_all() -> None:
        with ThreadPoolExecutor(args.threads) as pool:
            limits = {"max_bytes": 1 << 30, "max_pixels": 1 << 30}
            list(pool.map(lambda f: probe_file(f, **limits), files))

    # A file changed within signature.RACY_NS of its ingest gets no signature (it is read again
    # next time): a corpus made just now must settle first, as a user's files have.
    newest = max(f.stat().st_ctime_ns for f in files)
    time.sleep(max(0, newest + signature.RACY_NS - time.time_ns()) / 1e9)

    options = IngestOptions(threads=args.threads)
    rows, results = [], {}
    with bench_database("semsql_bench_ingest") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE semsql.stages SET enabled = false")

        def ingest_all() -> dict:
            with database.connect(url) as conn:
                job_id = create_job(conn, "default", {"bench": True})
                candidates = list(iter_candidates([str(args.corpus)]))[: args.files]
                return run_ingest(conn, job_id, candidates, options).as_dict()

        rows.append(timed("read+hash", len(files), read_and_hash))
        rows.append(timed("probe", len(files), probe_all))
        rows.append(timed("ingest", len(files), lambda: results.update(first=ingest_all())))
        rows.append(timed("re-ingest", len(files), lambda: results.update(again=ingest_all())))
    assert results["first"]["new"] == len(files), results["first"]
    assert results["again"]["skipped_reasons"] == {"unchanged": len(files)}, results["again"]
    first, again = rows[2]["files_per_s"], rows[3]["files_per_s"]
    speedup = round(again / first, 1)

    print(
        f"{len(files)} JPEGs, {size[0]}x{size[1]}, mean {mean_kb:.0f} KB, "
        f"{args.threads} threads, {os.cpu_count()} cores"
    )
    print(f"{'step':<10} {'files':>6} {'seconds':>8} {'files/s':>8} {'x ingest':>9}")
    for row in rows:
        ratio = row["files_per_s"] / first
        print(
            f"{row['step']:<10} {row['files']:>6} {row['seconds']:>8.2f} "
            f"{row['files_per_s']:>8.1f} {ratio:>8.1f}x"
        )
    print(f"re-ingest: {speedup}x the first ingest's files/s (target >= 10x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "files": len(files),
                "image_size": size,
                "mean_kb": round(mean_kb, 1),
                "threads": args.threads,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "results": rows,
                "reingest_speedup": speedup,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
