"""The content index (perceptual hashes, no model), measured in one run: table + JSON.

1. stage   --stage-images 1-megapixel JPEGs (1152 x 864, quality 90): the raw hash function
           (semsql.content_hash.content_hashes on images decoded as the worker decodes them:
           semsql.decode.load_image at DECODE_SIDE, JPEG draft), decoding alone, and the content
           stage end to end: `semsql ingest`, then `semsql worker` with every other stage off.
2. dups    --originals procedurally drawn scenes (each its own random background gradient,
           8-20 random rectangles, ellipses, polygons and lines of random colours, and a grain:
           distinct pictures, not copies of a few), each with 5 copies: resized to 50 %,
           re-encoded at JPEG quality 30, cropped by 10 % per side, turned 90°, mirrored.
           Ingested and hashed by the worker as above. Duplicate groups are scored pairwise:
           a true pair is two images of one original (15 per group of 6); precision = found
           true pairs / pairs found in one group, recall = found true pairs / true pairs.
           Methods: exact sha256; the hash without rotation variants (content_neighbours
           p_turned => false) and with them, each linked within --max-distance bits and grouped
           by a union-find here; and semsql.duplicates(by => 'content') when the database has it.
3. latency --assets content_hashes rows of drawn scenes (hashed here, inserted directly with
           their asset rows): semsql.similar(id, 20, by => 'content') per --queries random
           assets, p50/p95/max in ms, beside the same search with no variants
           (content_neighbours p_turned => false, the asset's two views).

    python bench/content.py [--stage-images 1000] [--originals 2000] [--assets 100000]

Uses SEMSQL_DATABASE_URL when set (throwaway databases are made there), else a throwaway
embedded server. Writes bench/results/content.json (--out).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import psycopg
from PIL import Image, ImageDraw, ImageOps
from scratch import bench_database

from semsql import content_hash, database
from semsql.decode import load_image
from semsql.embedder.worker import Worker, WorkerOptions
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.sources import iter_candidates
from semsql.stages import NAMES

MEGAPIXEL = (1152, 864)
ONLY_CONTENT = {name: None for name in NAMES} | {"content": "phash256"}


# Pictures ----------------------------------------------------------------------------------------


def scene(seed: int, size: tuple[int, int]) -> Image.Image:
    """A distinct picture for each seed: a gradient between two random colours in a random
    direction, 8 to 20 random shapes, and a fine grain."""
    rng = random.Random(seed)
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h + 1.5) / 3
    a, b = (np.array([rng.randrange(256) for _ in range(3)], np.float32) for _ in range(2))
    pixels = a + ramp[..., None] * (b - a)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(8, 20)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x0, y0 = rng.uniform(-0.2, 1) * w, rng.uniform(-0.2, 1) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * w, y0 + rng.uniform(0.05, 0.6) * h
        kind = rng.randrange(4)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 2:
            points = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(3, 6))]
            draw.polygon(points, fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=max(1, int(rng.uniform(0.01, 0.05) * w)))
    grain = np.random.default_rng(seed).normal(0, 6, (h, w, 1))
    return Image.fromarray((np.asarray(image, np.float32) + grain).clip(0, 255).astype(np.uint8))


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    data = io.BytesIO()
    image.save(data, "JPEG", quality=quality)
    return data.getvalue()


def copies(image: Image.Image) -> dict[str, bytes]:
    """The 5 transformed copies of the duplicate benchmark, as JPEG files' bytes."""
    w, h = image.size
    return {
        "resized": jpeg_bytes(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS)),
        "jpeg30": jpeg_bytes(image, 30),
        "cropped": jpeg_bytes(image.crop((w // 10, h // 10, w - w // 10, h - h // 10))),
        "rotated": jpeg_bytes(image.rotate(-90, expand=True)),
        "mirrored": jpeg_bytes(ImageOps.mirror(image)),
    }


def write_stage_corpus(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"mp_{i:05d}.jpg" for i in range(count)]
    missing = [(i, p) for i, p in enumerate(paths) if not p.exists()]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for (_, path), data in zip(
            missing, pool.map(_megapixel_jpeg, [i for i, _ in missing]), strict=True
        ):
            path.write_bytes(data)
    return paths


def _megapixel_jpeg(seed: int) -> bytes:
    return jpeg_bytes(scene(seed, MEGAPIXEL))


def write_duplicate_corpus(folder: Path, originals: int) -> dict[str, int]:
    """Files of the originals and their copies; file name -> original number."""
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, int] = {}
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for number, files in enumerate(pool.map(_group_files, range(originals), chunksize=16)):
            for name, data in files.items():
                path = folder / name
                if not path.exists():
                    path.write_bytes(data)
                truth[name] = number
    return truth


def _group_files(number: int) -> dict[str, bytes]:
    image = scene(1_000_000 + number, (320, 240))
    files = {f"g{number:05d}_original.jpg": jpeg_bytes(image)}
    files |= {f"g{number:05d}_{kind}.jpg": data for kind, data in copies(image).items()}
    return files


# Running ------------------------------------------------------------------------------------------


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def only_content_stage(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = (name = 'content')")


def ingest(url: str, folder: Path) -> dict:
    with database.connect(url) as conn:
        job_id = create_job(conn, "default", {"bench": "content"})
        candidates = list(iter_candidates([str(folder)]))
        return run_ingest(conn, job_id, candidates, IngestOptions(threads=2)).as_dict()


def work(url: str, batch_size: int) -> None:
    options = WorkerOptions(until_idle=True, poll_interval=0.2, batch_size=batch_size)
    Worker(url, options, models=ONLY_CONTENT).run()


def stage_section(url: str, folder: Path, count: int, batch_size: int) -> list[dict]:
    paths = write_stage_corpus(folder / f"megapixel_{count}", count)
    uris = [str(p) for p in paths]
    decoded = [load_image(uri, content_hash.DECODE_SIDE).image for uri in uris[:200]]
    decode_s = timed(lambda: [load_image(uri, content_hash.DECODE_SIDE) for uri in uris])
    hash_s = timed(lambda: [content_hash.content_hashes(image) for image in decoded])
    sha_s = timed(lambda: [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    only_content_stage(url)
    newest = max(p.stat().st_ctime_ns for p in paths)  # ingest signs only settled files
    time.sleep(max(0, newest + 2_000_000_000 - time.time_ns()) / 1e9)
    ingest_s = timed(lambda: ingest(url, folder / f"megapixel_{count}"))
    worker_s = timed(lambda: work(url, batch_size))
    with psycopg.connect(url) as conn:
        (hashed,) = conn.execute(
            "SELECT count(DISTINCT asset_id) FROM semsql.content_hashes"
        ).fetchone()
    assert hashed == count, (hashed, count)
    rate = lambda n, s: round(n / s, 1)  # noqa: E731
    return [
        {
            "step": "content_hashes alone (decoded images)",
            "images": len(decoded),
            "per_s": rate(len(decoded), hash_s),
        },
        {"step": "decode (draft to 128) alone", "images": count, "per_s": rate(count, decode_s)},
        {"step": "sha256 of the files alone", "images": count, "per_s": rate(count, sha_s)},
        {
            "step": "decode + hash, one process",
            "images": count,
            "per_s": rate(count, decode_s + hash_s * count / len(decoded)),
        },
        {"step": "semsql ingest (2 threads)", "images": count, "per_s": rate(count, ingest_s)},
        {
            "step": "semsql worker, content stage only",
            "images": count,
            "per_s": rate(count, worker_s),
        },
        {
            "step": "end to end (ingest + worker)",
            "images": count,
            "per_s": rate(count, ingest_s + worker_s),
        },
    ]


def components(ids: list[int], links: Iterable[tuple[int, int]]) -> dict[int, int]:
    """asset -> its group's least asset id: the union-find rule of semsql.duplicates."""
    parent = {a: a for a in ids}

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        x, y = root(a), root(b)
        if x != y:
            parent[max(x, y)] = min(x, y)
    return {a: root(a) for a in ids}


def pair_scores(groups: dict[int, int], truth: dict[int, int]) -> dict[str, float | int]:
    """Pairwise precision and recall of predicted groups against the true ones."""

    def pairs(of: dict[int, int]) -> set[tuple[int, int]]:
        members: dict[int, list[int]] = {}
        for asset, group in of.items():
            members.setdefault(group, []).append(asset)
        return {(a, b) for ms in members.values() for a in ms for b in ms if a < b}

    found, true = pairs(groups), pairs(truth)
    hit = len(found & true)
    return {
        "pairs_found": len(found),
        "true_pairs": len(true),
        "precision": round(hit / len(found), 4) if found else 1.0,
        "recall": round(hit / len(true), 4) if true else 1.0,
    }


def neighbour_links(
    conn: psycopg.Connection, turned: bool, max_distance: int, neighbours: int
) -> list[tuple[int, int]]:
    """Each asset's whole view against every stored view, within max_distance bits."""
    return conn.execute(
        """SELECT h.asset_id, n.asset_id
           FROM semsql.content_hashes h
           CROSS JOIN LATERAL semsql.content_neighbours(ARRAY[h.hash], %s, %s, %s) AS n
           WHERE h.view = 'full' AND n.asset_id <> h.asset_id""",
        [neighbours + 1, max_distance, turned],
    ).fetchall()


def has_duplicates_by(conn: psycopg.Connection) -> bool:
    return bool(
        conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'duplicates' "
            "AND pronamespace = 'semsql'::regnamespace AND 'by' = ANY (proargnames))"
        ).fetchone()[0]
    )


def duplicates_section(
    url: str, folder: Path, originals: int, max_distance: int, neighbours: int, batch_size: int
) -> list[dict]:
    corpus = folder / f"duplicates_{originals}"
    truth_by_name = write_duplicate_corpus(corpus, originals)
    only_content_stage(url)
    time.sleep(2)
    ingested = ingest(url, corpus)
    work(url, batch_size)
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        assets = conn.execute("SELECT id, uri, sha256 FROM semsql.assets").fetchall()
        truth = {a: truth_by_name[Path(uri).name] for a, uri, _ in assets}
        ids = sorted(truth)
        by_sha: dict[str, int] = {}
        sha_groups = {a: by_sha.setdefault(sha, a) for a, _, sha in sorted(assets)}
        rows.append({"method": "exact sha256", "seconds": 0.0, **pair_scores(sha_groups, truth)})
        for turned, label in (
            (False, "hash, no rotation variants"),
            (True, "hash with variants (union-find here)"),
        ):
            start = time.perf_counter()
            links = neighbour_links(conn, turned, max_distance, neighbours)
            groups = components(ids, links)
            rows.append(
                {
                    "method": label,
                    "seconds": round(time.perf_counter() - start, 2),
                    **pair_scores(groups, truth),
                }
            )
        if has_duplicates_by(conn):
            start = time.perf_counter()
            found = conn.execute(
                "SELECT group_id, asset_id FROM semsql.duplicates("
                "by => 'content', max_distance => %s, neighbours => %s)",
                [max_distance, neighbours],
            ).fetchall()
            groups = {a: a for a in ids} | {a: g for g, a in found}
            rows.append(
                {
                    "method": "semsql.duplicates(by => 'content')",
                    "seconds": round(time.perf_counter() - start, 2),
                    **pair_scores(groups, truth),
                }
            )
        else:
            rows.append(
                {
                    "method": "semsql.duplicates(by => 'content')",
                    "seconds": None,
                    "note": "not in this database (branch dupreview)",
                }
            )
    for row in rows:
        row |= {"assets": len(ids), "originals": originals, "ingested": ingested["new"]}
    return rows


def _group_hashes(number: int) -> list[tuple[str, str]]:
    """The (full, centre) hashes of a drawn scene and of its 5 copies, made in memory."""
    image = scene(3_000_000 + number, (192, 144))
    images = [image] + [Image.open(io.BytesIO(data)) for data in copies(image).values()]
    hashed = []
    for picture in images:
        picture.thumbnail((content_hash.DECODE_SIDE, content_hash.DECODE_SIDE))
        hashes = content_hash.content_hashes(picture.convert("RGB"))
        hashed.append((hashes["full"], hashes["centre"]))
    return hashed


def load_hashes(url: str, count: int, cache: Path) -> None:
    """count assets: groups of a drawn scene and its 5 copies, hashed here (cached in `cache`)
    and inserted with COPY, the HNSW index built after."""
    groups = (count + 5) // 6
    if cache.exists():
        rows = json.loads(cache.read_text())
    else:
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            rows = [h for g in pool.map(_group_hashes, range(groups), chunksize=64) for h in g]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rows))
    rows = rows[:count]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")
        conn.execute("DROP INDEX semsql.content_hashes_hash_hnsw")
        statement = "COPY semsql.assets (uri, sha256, width, height, status) FROM STDIN"
        with conn.cursor().copy(statement) as copy:
            for i in range(count):
                sha = hashlib.sha256(str(i).encode()).hexdigest()
                copy.write_row((f"/bench/g{i // 6:06d}_{i % 6}.jpg", sha, 128, 96, "ready"))
        ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
        statement = "COPY semsql.content_hashes (asset_id, view, hash, model) FROM STDIN"
        with conn.cursor().copy(statement) as copy:
            for asset_id, (full, centre) in zip(ids, rows, strict=True):
                copy.write_row((asset_id, "full", full, "phash256"))
                copy.write_row((asset_id, "centre", centre, "phash256"))
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(
            "CREATE INDEX content_hashes_hash_hnsw ON semsql.content_hashes "
            "USING hnsw (hash bit_hamming_ops)"
        )
        conn.execute("ANALYZE semsql.content_hashes")


def latencies(
    conn: psycopg.Connection, statement: str, seeds: list[int], group: Callable[[int], set[int]]
) -> dict[str, float]:
    """Milliseconds per call, and the share of each seed's 5 copies that the call found."""
    for seed in seeds[:20]:  # warm the cache and the plan
        conn.execute(statement, [seed]).fetchall()
    times, found = [], 0
    for seed in seeds:
        start = time.perf_counter()
        rows = conn.execute(statement, [seed]).fetchall()
        times.append((time.perf_counter() - start) * 1000)
        found += len({row[0] for row in rows} & group(seed))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "copies_found": round(found / (5 * len(seeds)), 4),
    }


def _views(view: str, turned: bool) -> str:
    return (
        "SELECT * FROM semsql.content_neighbours(ARRAY(SELECT hash FROM semsql.content_hashes "
        f"WHERE asset_id = %s{view}), 21, 64, {str(turned).lower()})"
    )


LATENCY = {
    "similar(by => 'content'): 2 views x 8 turns": (
        "SELECT asset_id FROM semsql.similar(%s, 20, by => 'content')"
    ),
    "2 views x 8 turns (content_neighbours)": _views("", True),
    "whole view x 8 turns only": _views(" AND view = 'full'", True),
    "2 views, no turns": _views("", False),
}


def latency_section(url: str, count: int, queries: int, cache: Path) -> list[dict]:
    load_hashes(url, count, cache)
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
        number = {asset_id: i for i, asset_id in enumerate(ids)}

        def group(seed: int) -> set[int]:
            first = number[seed] // 6 * 6
            return set(ids[first : first + 6]) - {seed}

        seeds = random.Random(1).sample(ids[: count // 6 * 6], min(queries, count // 6 * 6))
        for label, statement in LATENCY.items():
            timing = latencies(conn, statement, seeds, group)
            rows.append({"query": label, "assets": count, "queries": len(seeds), **timing})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage-images", type=int, default=1000, help="0 skips the stage section")
    parser.add_argument(
        "--originals", type=int, default=2000, help="0 skips the duplicates section"
    )
    parser.add_argument("--assets", type=int, default=100_000, help="0 skips the latency section")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--max-distance", type=int, default=40, help="bits, for the duplicates")
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="the worker's batch")
    parser.add_argument(
        "--corpus", type=Path, default=Path(tempfile.gettempdir()) / "semsql-bench-content"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/content.json"))
    args = parser.parse_args()

    result: dict[str, object] = {"cpus": os.cpu_count(), "machine": platform.machine()}
    settings = {"fsync": "off", "synchronous_commit": "off", "max_wal_size": "4GB"}
    if args.stage_images:
        with bench_database("semsql_bench_content_stage", settings) as url:
            result["stage"] = stage_section(url, args.corpus, args.stage_images, args.batch_size)
        print(
            f"\ncontent stage, {args.stage_images} JPEGs of {MEGAPIXEL[0]}x{MEGAPIXEL[1]}, "
            f"{os.cpu_count()} cores (target: end to end >= 300/s)"
        )
        print(f"{'step':<40} {'images':>7} {'per s':>8}")
        for row in result["stage"]:  # type: ignore[attr-defined]
            print(f"{row['step']:<40} {row['images']:>7} {row['per_s']:>8.1f}")
    if args.originals:
        with bench_database("semsql_bench_content_dups", settings) as url:
            result["duplicates"] = duplicates_section(
                url,
                args.corpus,
                args.originals,
                args.max_distance,
                args.neighbours,
                args.batch_size,
            )
        print(
            f"\nduplicates: {args.originals} originals x 6, within {args.max_distance} bits "
            "(target: precision and recall >= 0.98)"
        )
        print(f"{'method':<40} {'precision':>9} {'recall':>7} {'pairs':>7} {'seconds':>8}")
        for row in result["duplicates"]:  # type: ignore[attr-defined]
            if row.get("seconds") is None:
                print(f"{row['method']:<40} {row['note']}")
                continue
            print(
                f"{row['method']:<40} {row['precision']:>9.4f} {row['recall']:>7.4f} "
                f"{row['pairs_found']:>7} {row['seconds']:>8.2f}"
            )
    if args.assets:
        with bench_database("semsql_bench_content_latency", settings) as url:
            result["latency"] = latency_section(
                url, args.assets, args.queries, args.corpus / f"hashes_{args.assets}.json"
            )
        print(f"\nlook-alike search at {args.assets} assets, k 20 (target: p95 <= 5 ms)")
        print(f"{'query':<48} {'p50':>6} {'p95':>6} {'max':>6} ms  copies found")
        for row in result["latency"]:  # type: ignore[attr-defined]
            print(
                f"{row['query']:<48} {row['p50_ms']:>6.2f} {row['p95_ms']:>6.2f} "
                f"{row['max_ms']:>6.2f}     {row['copies_found']:.4f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
