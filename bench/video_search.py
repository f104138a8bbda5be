"""Search over video frames beside the same search over images (issue 13's search target).

Two libraries, each in its own scratch database on one embedded server:
  images   --images image assets, one 512-d image-space vector each (semsql.embeddings)
  videos   --videos video assets (media_type 'video'), --frames frames each (semsql.frames with
           a stub JPEG, semsql.frame_vectors with the asset's filter copies)
Vectors are synthetic but structured like CLIP's: --topics topic centres in a --latent-dims
subspace lifted into 512-d, plus noise. A video has a centre near its topic, 2-5 shots that
drift from it, and frames that drift a little from their shot, so several frames of one video
lie near each other, as in real footage. An image is drawn the same way with one frame of one
shot, so both libraries have the same spread; only the grouping into videos differs.

Queries (--queries per library) are stored vectors (an image's, a random frame's) perturbed.
For each library, the same queries go to
  semsql   SELECT asset_id FROM semsql.search(image_embedding => q, k => 20)
  plain    the pgvector query a user would write: images ORDER BY embedding <=> q LIMIT 20
           (pgvector's defaults, ef_search 40); frames GROUP BY asset over the LIMIT n
           nearest frames, n in --plain-frame-limits (ef_search = n, relaxed iterative scans)
and, filtered to one collection of about 10 % of the assets, the same with collection => ...
(plain: WHERE collection = ... with relaxed iterative scans). recall@20 is against an exact
search in numpy over the halfvec-rounded vectors (a video: the max over its frames).

Then, to see why the video search costs what it costs: how often the statement of
semsql.nearest_sql returns fewer than k assets (semsql.search then scans exactly), its own
p50/p95, and the same for other frame over-fetch factors (the statement with its
frames LIMIT set to factor x k), with EXPLAIN ANALYZE of one query.

    flock /tmp/bench.lock python bench/video_search.py [--queries 150]

Generated vectors are cached under --cache (/tmp/semsql-bench-video). Uses
SEMSQL_DATABASE_URL when set (throwaway databases are made there; loading with triggers off
needs a superuser), else a throwaway embedded server. Writes bench/results/video_search.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psycopg
from pgvector import HalfVector, Vector
from pgvector.psycopg import register_vector

from semsql import migrate
from semsql.testing import scratch_database, scratch_server

MODEL = "bench-clip-synthetic"
DIMS = 512
K = 20
FILTER_COLLECTION = "tenth"
STUB_JPEG = b"\xff\xd8\xff\xd9"  # SOI + EOI: the search never reads it

SEMSQL = "SELECT asset_id FROM semsql.search(image_embedding => %s, k => %s)"
SEMSQL_FILTERED = (
    "SELECT asset_id FROM semsql.search(image_embedding => %s, collection => %s, k => %s)"
)
PLAIN_IMAGES = f"""SELECT e.asset_id FROM semsql.embeddings e WHERE e.space = 'image' {{filter}}
    ORDER BY e.embedding::halfvec({DIMS}) <=> %s::halfvec({DIMS}) LIMIT %s"""
PLAIN_FRAMES = f"""SELECT s.asset_id FROM (
        SELECT f.asset_id, f.embedding::halfvec({DIMS}) <=> %s::halfvec({DIMS}) AS distance
        FROM semsql.frame_vectors f {{filter}}
        ORDER BY f.embedding::halfvec({DIMS}) <=> %s::halfvec({DIMS}) LIMIT {{limit}}) AS s
    GROUP BY s.asset_id ORDER BY min(s.distance) LIMIT %s"""

# The statement semsql.search runs for an image vector (semsql.nearest_sql), under the settings
# semsql.search gives it for k = 20 (ef_search = candidates = 40), with the frames' over-fetch
# factor replaced by p_factor. Returns the asset ids; with p_explain, EXPLAIN ANALYZE instead.
PROBE = f"""
CREATE OR REPLACE FUNCTION pg_temp.nearest_probe(
    p_vector vector, p_k integer, p_collection text, p_factor integer, p_explain boolean,
    p_ef_search integer DEFAULT 40
) RETURNS SETOF text
LANGUAGE plpgsql
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = relaxed_order
SET hnsw.max_scan_tuples = 20000
AS $$
DECLARE
    args semsql.search_args;
    statement text;
    ids bigint[];
    similarities double precision[];
BEGIN
    PERFORM set_config('hnsw.ef_search', p_ef_search::text, true);
    args.image_vector := l2_normalize(p_vector)::halfvec;
    args.collection := p_collection;
    args.row_limit := p_k;
    statement := semsql.nearest_sql('image', {DIMS}, semsql.filter_conditions('e', args));
    IF p_factor IS NOT NULL THEN  -- NULL: the statement as semsql builds it
        statement := replace(statement, '3 * ($1).row_limit', p_factor || ' * ($1).row_limit');
        statement := replace(statement, '(SELECT semsql.frame_scan_factor()) * ($1).row_limit',
                             p_factor || ' * ($1).row_limit');
    END IF;
    IF p_explain THEN
        RETURN QUERY EXECUTE 'EXPLAIN (ANALYZE, BUFFERS) ' || statement USING args;
        RETURN;
    END IF;
    EXECUTE statement INTO ids, similarities USING args;
    RETURN QUERY SELECT unnest(ids)::text;
END
$$"""


@dataclass
class Library:
    name: str
    vectors: np.ndarray  # (rows, DIMS) float32 as stored (halfvec-rounded), unit rows
    owner: np.ndarray  # (rows,) asset index (0-based) of each vector
    assets: int
    in_filter: np.ndarray  # (assets,) bool: in FILTER_COLLECTION
    queries: np.ndarray  # (queries, DIMS) float32 unit rows


@dataclass
class Row:
    library: str
    query: str
    method: str
    p50_ms: float
    p95_ms: float
    recall: float
    min_rows: int


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def make_libraries(args: argparse.Namespace) -> tuple[Library, Library]:
    rng = np.random.default_rng(args.seed)
    latent = args.latent_dims
    lift = np.linalg.qr(rng.standard_normal((DIMS, latent)))[0]  # orthonormal columns
    centres = rng.standard_normal((args.topics, latent))

    def embed(points: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal((len(points), DIMS)) * (0.25 / np.sqrt(DIMS))
        rounded = unit_rows(points / np.sqrt(latent) @ lift.T + noise).astype(np.float16)
        return unit_rows(rounded.astype(np.float32)).astype(np.float16).astype(np.float32)

    def drift(count: int, scale: float) -> np.ndarray:
        return scale * rng.standard_normal((count, latent))

    # Images: topic, then the same three drifts as a video's frame (video, shot, frame).
    topic = rng.integers(0, args.topics, args.images)
    images = embed(
        centres[topic]
        + drift(args.images, 0.6)
        + drift(args.images, 0.3)
        + drift(args.images, 0.12)
    )
    # Videos: a centre per video, 2-5 shots of consecutive frames, frames drifting from the shot.
    videos, frames = args.videos, args.frames
    video_centre = centres[rng.integers(0, args.topics, videos)] + drift(videos, 0.6)
    points = np.empty((videos * frames, latent))
    for v in range(videos):
        shots = int(rng.integers(2, 6))
        cuts = np.sort(rng.choice(np.arange(1, frames), shots - 1, replace=False))
        shot_of_frame = np.searchsorted(cuts, np.arange(frames), side="right")
        shot_centre = video_centre[v] + drift(shots, 0.3)
        points[v * frames : (v + 1) * frames] = shot_centre[shot_of_frame] + drift(frames, 0.12)
    frame_vectors = embed(points)

    def queries(stored: np.ndarray) -> np.ndarray:
        picked = stored[rng.integers(0, len(stored), args.queries)]
        # about 0.9 cosine to the stored vector it is drawn near
        return unit_rows(picked + rng.standard_normal(picked.shape) * (0.45 / np.sqrt(DIMS)))

    image_library = Library(
        "images",
        images,
        np.arange(args.images),
        args.images,
        rng.random(args.images) < args.filter_share,
        queries(images),
    )
    video_library = Library(
        "videos",
        frame_vectors,
        np.repeat(np.arange(videos), frames),
        videos,
        rng.random(videos) < args.filter_share,
        queries(frame_vectors),
    )
    return image_library, video_library


def cached_libraries(args: argparse.Namespace) -> tuple[Library, Library]:
    key = (
        f"i{args.images}_v{args.videos}x{args.frames}_t{args.topics}_l{args.latent_dims}"
        f"_q{args.queries}_f{args.filter_share}_s{args.seed}"
    )
    path = args.cache / f"{key}.npz"
    if path.exists():
        data = np.load(path)
        return tuple(  # type: ignore[return-value]
            Library(
                name,
                data[f"{name}_vectors"],
                data[f"{name}_owner"],
                int(data[f"{name}_assets"]),
                data[f"{name}_in_filter"],
                data[f"{name}_queries"],
            )
            for name in ("images", "videos")
        )
    libraries = make_libraries(args)
    args.cache.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for library in libraries:
        arrays |= {
            f"{library.name}_vectors": library.vectors,
            f"{library.name}_owner": library.owner,
            f"{library.name}_assets": np.array(library.assets),
            f"{library.name}_in_filter": library.in_filter,
            f"{library.name}_queries": library.queries,
        }
    np.savez(path, **arrays)
    return libraries


def exact_top(library: Library, query: np.ndarray, filtered: bool, k: int) -> set[int]:
    """Asset ids (1-based) of the k assets most similar to the query: a video by its best frame."""
    similarity = library.vectors @ query
    best = np.full(library.assets, -np.inf, dtype=np.float32)
    np.maximum.at(best, library.owner, similarity)
    if filtered:
        best = np.where(library.in_filter, best, -np.inf)
    top = np.argpartition(-best, k)[:k]
    return {int(i) + 1 for i in top if np.isfinite(best[i])}


def load(conn: psycopg.Connection, library: Library) -> dict[str, float]:
    """COPY assets (and frames) and vectors with triggers off, then the search documents (with
    the filter copies on the vectors), the HNSW indexes, VACUUM ANALYZE."""
    seconds = {}
    started = time.perf_counter()
    video = library.name == "videos"
    collection = np.where(library.in_filter, FILTER_COLLECTION, "default")
    conn.execute("SET session_replication_role = replica")  # no queue tasks for fake assets
    with conn.cursor().copy(
        "COPY semsql.assets (collection, uri, sha256, media_type, duration_ms, status) FROM STDIN"
    ) as copy:
        for i in range(library.assets):
            copy.write_row(
                (
                    str(collection[i]),
                    f"/bench/{i + 1}.{'mp4' if video else 'jpg'}",
                    f"{i + 1:064x}",
                    "video" if video else "image",
                    40_000 if video else None,
                    "ready",
                )
            )
    if video:
        per_video = np.bincount(library.owner, minlength=library.assets)
        with conn.cursor().copy(
            "COPY semsql.frames (asset_id, at_ms, scene_cut, width, height, jpeg, model) "
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int4", "bool", "int4", "int4", "bytea", "text"])
            for asset, count in enumerate(per_video):
                for n in range(count):
                    copy.write_row((asset + 1, 2000 * n, False, 1280, 720, STUB_JPEG, "frames"))
        # A fresh table numbers the frames 1, 2, ... in the order written.
        frame_ids = [r[0] for r in conn.execute("SELECT id FROM semsql.frames ORDER BY id")]
        assert frame_ids == list(range(1, len(library.vectors) + 1)), "frame ids not 1..n"
        statement = "COPY semsql.frame_vectors (frame_id, asset_id, model, embedding) FROM STDIN"
        types = ["int8", "int8", "text", "halfvec"]
    else:
        statement = "COPY semsql.embeddings (asset_id, model, embedding, space) FROM STDIN"
        types = ["int8", "text", "halfvec", "text"]
    with conn.cursor().copy(statement + " WITH (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for i, vector in enumerate(library.vectors):
            owner = int(library.owner[i]) + 1
            if video:
                copy.write_row((i + 1, owner, MODEL, HalfVector(vector)))
            else:
                copy.write_row((owner, MODEL, HalfVector(vector), "image"))
    conn.execute("SET session_replication_role = origin")
    seconds["copy_s"] = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute("SELECT semsql.refresh_search_documents(ARRAY(SELECT id FROM semsql.assets))")
    conn.commit()
    seconds["documents_s"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute("SELECT semsql.register_vector_space('image', %s, %s)", [MODEL, DIMS])
    conn.commit()
    seconds["hnsw_build_s"] = time.perf_counter() - started
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE")
    conn.autocommit = False
    copies = conn.execute(
        "SELECT count(*) FILTER (WHERE collection = %s) FROM semsql."
        + ("frame_vectors" if video else "embeddings"),
        [FILTER_COLLECTION],
    ).fetchone()
    expected = int(library.in_filter[library.owner].sum())
    assert copies is not None and copies[0] == expected, (copies, expected)
    return seconds


Run = Callable[[np.ndarray], list[int]]


def methods(conns: dict[str, psycopg.Connection], plain_frame_limits: list[int]) -> list[tuple]:
    """(library, query kind, method, filtered, connection, run) for every row of the table."""
    out = []

    def ids(conn: psycopg.Connection, statement: str, params: list) -> list[int]:
        return [row[0] for row in conn.execute(statement, params, prepare=False)]

    for library in ("images", "videos"):
        for filtered in (False, True):
            kind = "collection 10%" if filtered else "unfiltered"
            semsql_conn = conns[f"{library}/semsql"]
            if filtered:
                run: Run = lambda q, c=semsql_conn: ids(  # noqa: E731
                    c, SEMSQL_FILTERED, [Vector(q), FILTER_COLLECTION, K]
                )
            else:
                run = lambda q, c=semsql_conn: ids(c, SEMSQL, [Vector(q), K])  # noqa: E731
            out.append((library, kind, "semsql.search", filtered, semsql_conn, run))
            where = "AND e.collection = %s" if filtered else ""
            if library == "images":
                plain_conn = conns[f"images/plain{'-iterative' if filtered else ''}"]
                statement = PLAIN_IMAGES.format(filter=where)
                label = "plain LIMIT 20" + (" (iterative)" if filtered else "")
                out.append(
                    (
                        library,
                        kind,
                        label,
                        filtered,
                        plain_conn,
                        lambda q, c=plain_conn, s=statement, f=filtered: ids(
                            c, s, ([FILTER_COLLECTION] if f else []) + [HalfVector(q), K]
                        ),
                    )
                )
                continue
            for limit in plain_frame_limits:
                plain_conn = conns[f"videos/plain{limit}"]
                statement = PLAIN_FRAMES.format(
                    filter="WHERE f.collection = %s" if filtered else "", limit=limit
                )
                out.append(
                    (
                        library,
                        kind,
                        f"plain {limit} frames, GROUP BY",
                        filtered,
                        plain_conn,
                        lambda q, c=plain_conn, s=statement, f=filtered: ids(
                            c,
                            s,
                            [HalfVector(q)]
                            + ([FILTER_COLLECTION] if f else [])
                            + [HalfVector(q), K],
                        ),
                    )
                )
    return out


def measure(libraries: dict[str, Library], conns, plain_frame_limits: list[int]) -> list[Row]:
    runs = methods(conns, plain_frame_limits)
    results: list[list[list[int]]] = [[] for _ in runs]
    millis: list[list[float]] = [[] for _ in runs]
    queries = len(libraries["images"].queries)
    # Warm the caches (index and heap pages, catalog) before anything is timed.
    for library, _, _, _, conn, run in runs:
        for q in libraries[library].queries[:10]:
            run(q)
            conn.rollback()
    # Each query through every method in turn, the first method changing from query to query,
    # so that load on the machine and warm caches favour none of them.
    order = list(range(len(runs)))
    for i in range(queries):
        for r in order[i % len(order) :] + order[: i % len(order)]:
            library, _, _, _, conn, run = runs[r]
            q = libraries[library].queries[i]
            started = time.perf_counter()
            found = run(q)
            millis[r].append((time.perf_counter() - started) * 1000)
            results[r].append(found)
            conn.rollback()
    rows = []
    for r, (library, kind, method, filtered, _, _) in enumerate(runs):
        truths = [exact_top(libraries[library], q, filtered, K) for q in libraries[library].queries]
        rows.append(summarise(library, kind, method, results[r], millis[r], truths))
    return rows


def summarise(library, kind, method, results, millis, truths) -> Row:
    recalls = [
        len(set(found) & truth) / max(1, min(K, len(truth)))
        for found, truth in zip(results, truths, strict=True)
    ]
    return Row(
        library,
        kind,
        method,
        round(statistics.median(millis), 2),
        round(statistics.quantiles(millis, n=20)[18], 2),
        round(statistics.fmean(recalls), 4),
        min(len(found) for found in results),
    )


def probe_nearest(
    conn: psycopg.Connection, library: Library, factors: list[int]
) -> tuple[list[dict], list[str]]:
    """For each frame over-fetch factor: how often the nearest_sql statement returns fewer than
    k assets (semsql.search then falls back to the exact scan), its recall@k when it does not
    fall short, and its own p50/p95; and EXPLAIN ANALYZE of the first query, as built."""
    conn.execute(PROBE)
    out = []
    truths = [exact_top(library, q, False, K) for q in library.queries]
    for factor in [None, *factors]:
        short, recalls, millis = 0, [], []
        for q, truth in zip(library.queries, truths, strict=True):
            started = time.perf_counter()
            found = [
                int(r[0])
                for r in conn.execute(
                    "SELECT * FROM pg_temp.nearest_probe(%s, %s, NULL, %s, false)",
                    [Vector(q), K, factor],
                )
            ]
            millis.append((time.perf_counter() - started) * 1000)
            short += len(found) < K
            recalls.append(len(set(found) & truth) / K)
        out.append(
            {
                "frame_factor": "as built" if factor is None else factor,
                "short_share": round(short / len(truths), 4),
                "recall": round(statistics.fmean(recalls), 4),
                "p50_ms": round(statistics.median(millis), 2),
                "p95_ms": round(statistics.quantiles(millis, n=20)[18], 2),
            }
        )
    plan = [
        re.sub(r"'\[[-0-9.e,]+\]'", "'[...]'", r[0])
        for r in conn.execute(
            "SELECT * FROM pg_temp.nearest_probe(%s, %s, NULL, NULL, true)",
            [Vector(library.queries[0]), K],
        )
    ]
    conn.rollback()
    exists = conn.execute("SELECT to_regproc('semsql.frame_scan_factor') IS NOT NULL").fetchone()
    if exists and exists[0]:  # a proposed change to sql/042, when installed
        factor = conn.execute("SELECT semsql.frame_scan_factor()").fetchone()
        plan.insert(0, f"(semsql.frame_scan_factor() = {factor[0] if factor else None})")
    conn.rollback()
    return out, plan


def frames_of_top_assets(library: Library, frames: int) -> dict[str, float]:
    """How many distinct videos the `frames` nearest frames span (exactly), over the queries."""
    spans = []
    for q in library.queries:
        nearest = np.argpartition(-(library.vectors @ q), frames)[:frames]
        spans.append(len(set(library.owner[nearest].tolist())))
    return {
        "frames": frames,
        "distinct_videos_min": min(spans),
        "distinct_videos_median": statistics.median(spans),
        "share_under_k": round(sum(s < K for s in spans) / len(spans), 4),
    }


def structure(library: Library, rng: np.random.Generator, pairs: int = 20000) -> dict[str, float]:
    """Mean cosine similarities that show the vectors' structure: two vectors of one asset (a
    video's frames), two random vectors, and a query to its nearest stored vector."""
    a, b = rng.integers(0, len(library.vectors), (2, pairs))
    random_pairs = np.einsum("ij,ij->i", library.vectors[a], library.vectors[b])
    out = {"random_pair": round(float(random_pairs.mean()), 3)}
    per = np.bincount(library.owner)
    if per.max() > 1:
        starts = np.concatenate([[0], np.cumsum(per)[:-1]])
        owner = rng.integers(0, library.assets, pairs)
        x = starts[owner] + rng.integers(0, per[owner])
        y = starts[owner] + rng.integers(0, per[owner])
        keep = x != y
        same = np.einsum("ij,ij->i", library.vectors[x[keep]], library.vectors[y[keep]])
        out["same_video_pair"] = round(float(same.mean()), 3)
    nearest = (library.queries[:50] @ library.vectors.T).max(axis=1)
    out["query_to_nearest"] = round(float(nearest.mean()), 3)
    return out


def print_table(rows: list[Row]) -> None:
    print(
        f"{'library':<8}{'query':<16}{'method':<28}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'recall@20':>10}{'rows':>6}"
    )
    for r in rows:
        print(
            f"{r.library:<8}{r.query:<16}{r.method:<28}{r.p50_ms:>8.2f}{r.p95_ms:>8.2f}"
            f"{r.recall:>10.3f}{r.min_rows:>6}"
        )


def verdicts(rows: list[Row]) -> dict[str, bool]:
    def semsql(library: str, kind: str) -> Row:
        return next(
            r for r in rows if (r.library, r.query, r.method) == (library, kind, "semsql.search")
        )

    video, image = semsql("videos", "unfiltered"), semsql("images", "unfiltered")
    video_f, image_f = semsql("videos", "collection 10%"), semsql("images", "collection 10%")
    return {
        "video_p95_within_2x_images": video.p95_ms <= 2 * image.p95_ms,
        "video_recall_at_least_0.95": video.recall >= 0.95,
        "filtered_video_p95_within_2x_images": video_f.p95_ms <= 2 * image_f.p95_ms,
        "filtered_video_recall_at_least_0.95": video_f.recall >= 0.95,
        "never_fewer_than_k_rows": all(
            r.min_rows >= K for r in rows if r.method == "semsql.search"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--videos", type=int, default=5_000)
    parser.add_argument("--frames", type=int, default=20, help="frames per video")
    parser.add_argument("--topics", type=int, default=300)
    parser.add_argument("--latent-dims", type=int, default=64)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--filter-share", type=float, default=0.1)
    parser.add_argument("--plain-frame-limits", default="60,400")
    parser.add_argument("--probe-factors", default="3,5,8,12,20,30")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/semsql-bench-video"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/video_search.json"))
    args = parser.parse_args()
    plain_frame_limits = [int(x) for x in args.plain_frame_limits.split(",")]
    factors = [int(x) for x in args.probe_factors.split(",")]
    load_start = os.getloadavg()
    started = time.perf_counter()

    image_library, video_library = cached_libraries(args)
    libraries = {"images": image_library, "videos": video_library}
    print(f"vectors ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    settings = {"fsync": "off", "shared_buffers": "1GB", "max_connections": "40"}
    setup: dict[str, dict[str, float]] = {}
    with ExitStack() as stack:
        server = stack.enter_context(scratch_server(settings=settings))
        urls = {}
        for library in libraries.values():
            url = stack.enter_context(
                scratch_database(server, f"semsql_bench_video_{library.name}")
            )
            urls[library.name] = url
            with psycopg.connect(url, autocommit=True) as conn:
                migrate.init(conn)
            with psycopg.connect(url) as conn:
                register_vector(conn)
                print(f"loading {library.name} ...", file=sys.stderr)
                setup[library.name] = load(conn, library)
                print(setup[library.name], file=sys.stderr)

        def connect(library: str, **settings: str) -> psycopg.Connection:
            conn = stack.enter_context(psycopg.connect(urls[library]))
            register_vector(conn)
            for name, value in settings.items():
                conn.execute("SELECT set_config(%s, %s, false)", [name, value])
            conn.commit()
            return conn

        conns = {
            "images/semsql": connect("images"),
            "images/plain": connect("images"),
            "images/plain-iterative": connect("images", **{"hnsw.iterative_scan": "relaxed_order"}),
            "videos/semsql": connect("videos"),
        }
        for limit in plain_frame_limits:
            conns[f"videos/plain{limit}"] = connect(
                "videos",
                **{"hnsw.ef_search": str(limit), "hnsw.iterative_scan": "relaxed_order"},
            )
        rows = measure(libraries, conns, plain_frame_limits)
        probe, plan = probe_nearest(conns["videos/semsql"], video_library, factors)
        image_probe, _ = probe_nearest(conns["images/semsql"], image_library, [3])
    spans = [frames_of_top_assets(video_library, n) for n in (60, 100, 160, 240, 400)]
    shape = {
        name: structure(library, np.random.default_rng(args.seed))
        for name, library in libraries.items()
    }
    load_end = os.getloadavg()

    print_table(rows)
    print("\nnearest_sql's statement alone (videos; then images as built):")
    print(f"{'frames':>9}{'short of 20':>13}{'recall':>8}{'p50 ms':>8}{'p95 ms':>8}")
    for p in [*probe, {**image_probe[0], "frame_factor": "images"}]:
        factor = p["frame_factor"]
        name = f"{factor} x k" if isinstance(factor, int) else str(factor)
        print(
            f"{name:>9}{p['short_share']:>13.1%}{p['recall']:>8.3f}"
            f"{p['p50_ms']:>8.2f}{p['p95_ms']:>8.2f}"
        )
    print("\ndistinct videos among the n nearest frames (exact):")
    for s in spans:
        print(
            f"  n={s['frames']:<4} min {s['distinct_videos_min']:<4} median "
            f"{s['distinct_videos_median']:<6} under 20: {s['share_under_k']:.1%}"
        )
    print(f"\nmean cosines: {shape}")
    print("\nEXPLAIN ANALYZE of nearest_sql's statement (videos, first query):")
    print("\n".join(plan))
    checks = verdicts(rows)
    for check, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {check}")
    print(f"load average {load_start} -> {load_end}", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "images": args.images,
        "videos": args.videos,
        "frames_per_video": args.frames,
        "dims": DIMS,
        "topics": args.topics,
        "latent_dims": args.latent_dims,
        "queries": args.queries,
        "k": K,
        "filter_share": args.filter_share,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "seconds": round(time.perf_counter() - started, 1),
        "setup": {k: {n: round(s, 1) for n, s in v.items()} for k, v in setup.items()},
        "cosines": shape,
        "results": [asdict(r) for r in rows],
        "nearest_probe_videos": probe,
        "nearest_probe_images": image_probe,
        "distinct_videos_in_nearest_frames": spans,
        "explain_analyze_videos": plan,
        "targets": checks,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
