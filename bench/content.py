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
           Methods: exact sha256; the upright hashes (as the content stage stored them before
           migration 0024, in a table of the bench's own) with no turns, and with each whole
           view turned the 8 ways (16 HNSW scans an asset); the canonical rows the content
           stage stores now, each linked within --max-distance bits and grouped by a
           union-find here; and semsql.duplicates(by => 'content').
3. latency --assets assets of drawn scenes and their copies (hashed here, inserted directly
           with their asset rows): semsql.similar(id, 20, by => 'content') per --queries random
           assets, p50/p95/max in ms, beside content_neighbours of the asset's stored rows and
           the search before 0024 (the upright hashes, 2 views x 8 turns = 16 scans; 2 scans
           with no turns).

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
    decoded = [
        load_image(uri, content_hash.DECODE_SIDE, mode=content_hash.DECODE_MODE).image
        for uri in uris[:200]
    ]
    decode_s = timed(
        lambda: [
            load_image(uri, content_hash.DECODE_SIDE, mode=content_hash.DECODE_MODE) for uri in uris
        ]
    )
    hash_s = timed(lambda: [content_hash.content_hashes(image) for image in decoded])
    sha_s = timed(lambda: [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths])
    only_content_stage(url)
    newest = max(p.stat().st_ctime_ns for p in paths)  # ingest signs only settled files
    time.sleep(max(0, newest + 2_000_000_000 - time.time_ns()) / 1e9)
    ingest_s = timed(lambda: ingest(url, folder / f"megapixel_{count}"))
    worker_s = timed(lambda: work(url, batch_size))
    with psycopg.connect(url) as conn:
        hashed, stage_s = conn.execute(
            """SELECT (SELECT count(DISTINCT asset_id) FROM semsql.content_hashes),
                      extract(epoch FROM max(finished_at) - min(started_at))::float
               FROM semsql.tasks WHERE stage = 'content'"""
        ).fetchone()
    assert hashed == count, (hashed, count)
    rate = lambda n, s: round(n / s, 1)  # noqa: E731
    return [
        {
            "step": "content_hashes alone (decoded images)",
            "images": len(decoded),
            "per_s": rate(len(decoded), hash_s),
        },
        {
            "step": "decode (grey, draft to 128) alone",
            "images": count,
            "per_s": rate(count, decode_s),
        },
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
            "step": "content stage, first task to last",
            "images": count,
            "per_s": rate(count, stage_s),
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


UPRIGHT_TABLE = "bench_upright_hashes"
"""The hashes as semsql stored them before migration 0024: each view upright, one row."""


def make_upright_table(conn: psycopg.Connection, rows: Iterable[tuple[int, str, str]]) -> None:
    """rows: (asset id, view, upright hash), indexed as semsql.content_hashes is."""
    conn.execute(f"CREATE TABLE {UPRIGHT_TABLE} (asset_id bigint, view text, hash bit(256))")
    with conn.cursor().copy(f"COPY {UPRIGHT_TABLE} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.execute(f"CREATE INDEX ON {UPRIGHT_TABLE} USING hnsw (hash bit_hamming_ops)")
    conn.execute(f"ANALYZE {UPRIGHT_TABLE}")


def turned(bits: str, turns: bool) -> list[str]:
    return [content_hash.variant(bits, n) for n in range(content_hash.VARIANTS if turns else 1)]


def links_between(
    conn: psycopg.Connection,
    table: str,
    queries: list[tuple[int, str]],
    max_distance: int,
    per_scan: int,
) -> list[tuple[int, int]]:
    """(query asset, stored asset) for each stored row among a query hash's per_scan nearest
    within max_distance bits; one HNSW scan per query hash."""
    conn.execute(f"SET hnsw.ef_search = {max(40, per_scan)}")
    return conn.execute(
        f"""SELECT q.asset_id, n.asset_id
            FROM unnest(%s::bigint[], %s::bit(256)[]) AS q (asset_id, hash)
            CROSS JOIN LATERAL (
                SELECT c.asset_id, c.hash <~> q.hash AS distance
                FROM {table} c
                WHERE position(B'1' IN c.hash) > 0
                ORDER BY c.hash <~> q.hash LIMIT %s) AS n
            WHERE n.distance <= %s AND n.asset_id <> q.asset_id""",
        [[a for a, _ in queries], [h for _, h in queries], per_scan, max_distance],
    ).fetchall()


def _upright_of_file(uri: str) -> tuple[str, str]:
    hashes = content_hash.content_hashes(
        load_image(uri, content_hash.DECODE_SIDE, mode=content_hash.DECODE_MODE).image
    )
    return hashes["full"], hashes["centre"]


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
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            uprights = list(pool.map(_upright_of_file, [uri for _, uri, _ in assets], chunksize=64))
        make_upright_table(
            conn,
            (
                (a, view, bits)
                for (a, _, _), pair in zip(assets, uprights, strict=True)
                for view, bits in zip(content_hash.VIEWS, pair, strict=True)
                if bits != content_hash.BLANK
            ),
        )
        canonical = conn.execute(
            "SELECT asset_id, hash::text FROM semsql.content_hashes "
            "WHERE view = 'full' AND NOT alternate"
        ).fetchall()
        methods = (
            ("upright hash, no turns", UPRIGHT_TABLE, False, 2),
            ("upright hash x 8 turns (before 0024)", UPRIGHT_TABLE, True, 2),
            ("canonical rows (union-find here)", "semsql.content_hashes", False, 6),
        )
        for label, table, turns, own_rows in methods:
            if table == UPRIGHT_TABLE:
                queries = [
                    (a, bits)
                    for (a, _, _), (full, _) in zip(assets, uprights, strict=True)
                    for bits in turned(full, turns)
                ]
            else:
                queries = canonical
            start = time.perf_counter()
            links = links_between(conn, table, queries, max_distance, neighbours + own_rows)
            groups = components(ids, links)
            rows.append(
                {
                    "method": label,
                    "seconds": round(time.perf_counter() - start, 2),
                    **pair_scores(groups, truth),
                }
            )
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
    for row in rows:
        row |= {"assets": len(ids), "originals": originals, "ingested": ingested["new"]}
    return rows


def _group_hashes(number: int) -> list[dict]:
    """A drawn scene and its 5 copies, made in memory: each one's upright hashes (full,
    centre) and the rows the content stage stores (view, turn, hash)."""
    image = scene(3_000_000 + number, (192, 144))
    images = [image] + [Image.open(io.BytesIO(data)) for data in copies(image).values()]
    hashed = []
    for picture in images:
        picture.thumbnail((content_hash.DECODE_SIDE, content_hash.DECODE_SIDE))
        picture = picture.convert("RGB")
        upright = content_hash.content_hashes(picture)
        rows = content_hash.index_rows(picture)
        hashed.append({"upright": [upright[view] for view in content_hash.VIEWS], "rows": rows})
    return hashed


def load_hashes(url: str, count: int, cache: Path) -> list[dict]:
    """count assets: groups of a drawn scene and its 5 copies, hashed here (cached in `cache`)
    and inserted with COPY, the HNSW indexes built after: the content stage's rows in
    semsql.content_hashes, the upright hashes in the bench's own table. Returns the hashes."""
    groups = (count + 5) // 6
    if cache.exists():
        hashed = json.loads(cache.read_text())
    else:
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            hashed = [h for g in pool.map(_group_hashes, range(groups), chunksize=64) for h in g]
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(hashed))
    hashed = hashed[:count]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE semsql.stages SET enabled = false")
        conn.execute("DROP INDEX semsql.content_hashes_hash_hnsw")
        # The row triggers (tasks, a search document each) cost minutes at 100,000 rows: off
        # for the COPY, and the search documents (which similar's rows show) built in one go.
        conn.execute("SET session_replication_role = replica")
        statement = "COPY semsql.assets (uri, sha256, width, height, status) FROM STDIN"
        with conn.cursor().copy(statement) as copy:
            for i in range(count):
                sha = hashlib.sha256(str(i).encode()).hexdigest()
                copy.write_row((f"/bench/g{i // 6:06d}_{i % 6}.jpg", sha, 128, 96, "ready"))
        conn.execute("RESET session_replication_role")
        ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
        conn.execute("SELECT semsql.rebuild_assets(%s, false)", [ids])
        statement = (
            "COPY semsql.content_hashes (asset_id, view, turn, hash, alternate, model) FROM STDIN"
        )
        with conn.cursor().copy(statement) as copy:
            for asset_id, one in zip(ids, hashed, strict=True):
                for view, turn, bits, alternate in one["rows"]:
                    copy.write_row((asset_id, view, turn, bits, alternate, "phash256"))
        # built as the worker builds it after a backlog
        for step in conn.execute("SELECT semsql.content_index_build_steps()").fetchone()[0]:
            conn.execute(step)
        conn.execute("ANALYZE semsql.content_hashes")
        make_upright_table(
            conn,
            (
                (asset_id, view, bits)
                for asset_id, one in zip(ids, hashed, strict=True)
                for view, bits in zip(content_hash.VIEWS, one["upright"], strict=True)
            ),
        )
    return hashed


def latencies(
    conn: psycopg.Connection,
    statement: str,
    arguments: Callable[[int], list],
    seeds: list[int],
    group: Callable[[int], set[int]],
) -> dict[str, float]:
    """Milliseconds per call, and the share of each seed's 5 copies that the call found."""
    for seed in seeds[:20]:  # warm the cache and the plan
        conn.execute(statement, arguments(seed)).fetchall()
    times, found = [], 0
    for seed in seeds:
        given = arguments(seed)
        start = time.perf_counter()
        rows = conn.execute(statement, given).fetchall()
        times.append((time.perf_counter() - start) * 1000)
        found += len({row[0] for row in rows} & group(seed))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "copies_found": round(found / (5 * len(seeds)), 4),
    }


UPRIGHT_SCANS = f"""
    SELECT n.asset_id, min(n.distance)
    FROM unnest(%s::bit(256)[]) AS t (hash)
    CROSS JOIN LATERAL (
        SELECT c.asset_id, c.hash <~> t.hash AS distance
        FROM {UPRIGHT_TABLE} c ORDER BY c.hash <~> t.hash LIMIT 21) AS n
    WHERE n.distance <= 64 GROUP BY n.asset_id ORDER BY 2, 1 LIMIT 21"""
"""The search before migration 0024 (content_neighbours then, ef_search 21): one HNSW scan per
query hash; the turns are computed here, before the clock starts."""


def latency_section(url: str, count: int, queries: int, cache: Path) -> list[dict]:
    hashed = load_hashes(url, count, cache)
    rows = []
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM semsql.assets ORDER BY id")]
        number = {asset_id: i for i, asset_id in enumerate(ids)}

        def group(seed: int) -> set[int]:
            first = number[seed] // 6 * 6
            return set(ids[first : first + 6]) - {seed}

        def upright(turns: bool) -> Callable[[int], list]:
            return lambda seed: [
                [t for bits in hashed[number[seed]]["upright"] for t in turned(bits, turns)]
            ]

        methods: dict[str, tuple[str, Callable[[int], list]]] = {
            "similar(by => 'content')": (
                "SELECT asset_id FROM semsql.similar(%s, 20, by => 'content')",
                lambda seed: [seed],
            ),
            "content_neighbours of its 2 first rows": (
                "SELECT * FROM semsql.content_neighbours(ARRAY(SELECT hash FROM "
                "semsql.content_hashes WHERE asset_id = %s AND NOT alternate), 21, 64)",
                lambda seed: [seed],
            ),
            "before 0024: upright, 2 views x 8 turns": (UPRIGHT_SCANS, upright(True)),
            "before 0024: upright, 2 views, no turns": (UPRIGHT_SCANS, upright(False)),
        }
        seeds = random.Random(1).sample(ids[: count // 6 * 6], min(queries, count // 6 * 6))
        stored_rows = conn.execute("SELECT count(*) FROM semsql.content_hashes").fetchone()[0]
        # for UPRIGHT_SCANS; content_neighbours sets its own
        conn.execute("SET hnsw.ef_search = 21")
        for label, (statement, arguments) in methods.items():
            timing = latencies(conn, statement, arguments, seeds, group)
            rows.append(
                {
                    "query": label,
                    "assets": count,
                    "rows": 2 * count if statement == UPRIGHT_SCANS else stored_rows,
                    "queries": len(seeds),
                    **timing,
                }
            )
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
            f"{os.cpu_count()} cores (target: content stage >= 300/s)"
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
            print(
                f"{row['method']:<40} {row['precision']:>9.4f} {row['recall']:>7.4f} "
                f"{row['pairs_found']:>7} {row['seconds']:>8.2f}"
            )
    if args.assets:
        with bench_database("semsql_bench_content_latency", settings) as url:
            result["latency"] = latency_section(
                url, args.assets, args.queries, args.corpus / f"index_rows_{args.assets}.json"
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
