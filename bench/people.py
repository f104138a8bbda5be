"""Recognition at library scale: every face matched against every enrolled person, in SQL.

Synthetic face vectors (unit 512-d, one centre per identity, per-face noise so that a face's
similarity to its own person's references spreads across 0.4 .. 0.8, strangers near 0.15) in
a real semsql schema: assets whose text tasks are done (so that recognition re-queues them, as
it would in a library), faces with the HNSW index, reference vectors for the enrolled people.

  load          COPY assets, faces (HNSW built after), references (not part of the target)
  match all     semsql.match_faces(): every face against every reference, each reference
                walking the faces HNSW index out to the threshold (what a threshold change
                or a bulk enrolment runs)
  match all fwd the other direction, as match_faces(ids) does for a few faces: each face
                looks up its nearest reference (LATERAL ... LIMIT 1, person_faces HNSW)
  people filter semsql.assets_with_people(3 names); people summary: the people_summary view
  assets with face  semsql.assets_with_face(a face vector, 50)
  enrol one     semsql.enrol_person(...) of one new person with two photos' vectors
  new faces     the worker's writes (INSERT box, then UPDATE embedding): the trigger recognises
  clusters      semsql.refresh_face_clusters() over the faces that match nobody

    python bench/people.py [--faces 100000] [--people 1000] [--out bench/results/people.json]

Uses SEMSQL_DATABASE_URL when set (a throwaway database is made there), else a throwaway
embedded server. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from scratch import bench_database

from semsql import database

DIMS = 512
MODEL = "bench-facenet"
DATABASE = "semsql_bench_people"


class Library:
    """Identities 0 .. people-1 are enrolled; the rest are strangers."""

    def __init__(self, faces: int, people: int, strangers: int, known_share: float, seed: int):
        self.rng = np.random.default_rng(seed)
        shared = self._unit(self.rng.standard_normal(DIMS))
        self.centres = self._unit(
            0.4 * shared + self._unit(self.rng.standard_normal((people + strangers, DIMS)))
        )
        known = self.rng.random(faces) < known_share
        self.identity = np.where(
            known,
            self.rng.integers(0, people, faces),
            self.rng.integers(people, people + strangers, faces),
        )
        self.people = people
        self.vectors = self.samples(self.identity)

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def samples(self, identity: np.ndarray) -> np.ndarray:
        # |noise| from 0.5 to 1.2: cosine to the centre 0.89 .. 0.64, to another sample 0.8 .. 0.4
        spread = self.rng.uniform(0.5, 1.2, (len(identity), 1))
        noise = self.rng.standard_normal((len(identity), DIMS)) / np.sqrt(DIMS)
        return self._unit(self.centres[identity] + spread * noise)


def load(conn: psycopg.Connection, lib: Library, assets: int, refs_per_person: int) -> None:
    with conn.cursor().copy("COPY semsql.assets (uri, sha256) FROM STDIN") as copy:
        for i in range(assets):
            copy.write_row((f"/bench/img_{i:07d}.jpg", f"{i:064x}"))
    conn.execute("UPDATE semsql.tasks SET status = 'done', finished_at = now()")
    conn.execute("UPDATE semsql.assets SET status = 'ready'")
    first = conn.execute("SELECT min(id) FROM semsql.assets").fetchone()[0]
    conn.execute("DROP INDEX semsql.faces_embedding")
    with conn.cursor().copy(
        "COPY semsql.faces (asset_id, box, confidence, detector, embedding, embedding_model) "
        "FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["bigint", "real[]", "real", "text", "vector", "text"])
        for i, vector in enumerate(lib.vectors):
            copy.write_row((first + i % assets, [0, 0, 80, 80], 0.99, "mtcnn", vector, MODEL))
    conn.execute("SET maintenance_work_mem = '1GB'")
    conn.execute(
        "CREATE INDEX faces_embedding ON semsql.faces USING hnsw (embedding vector_cosine_ops)"
    )
    conn.execute(
        "INSERT INTO semsql.people (name) SELECT 'person ' || i FROM generate_series(0, %s) i",
        [lib.people - 1],
    )
    enrolled = np.repeat(np.arange(lib.people), refs_per_person)
    first_person = conn.execute("SELECT min(id) FROM semsql.people").fetchone()[0]
    with conn.cursor().copy(
        "COPY semsql.person_faces (person_id, embedding, model) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(["bigint", "vector", "text"])
        for identity, vector in zip(enrolled, lib.samples(enrolled), strict=True):
            copy.write_row((first_person + int(identity), vector, MODEL))
    conn.execute("VACUUM ANALYZE semsql.faces")
    conn.execute("VACUUM ANALYZE semsql.person_faces")


def accuracy(conn: psycopg.Connection, lib: Library) -> dict[str, float]:
    rows = conn.execute(
        """SELECT f.id - (SELECT min(id) FROM semsql.faces),
                  coalesce(p.id - (SELECT min(id) FROM semsql.people), -1)
           FROM semsql.faces f LEFT JOIN semsql.people p ON p.id = f.person_id
           WHERE f.embedding_model = %s ORDER BY f.id""",
        [MODEL],
    ).fetchall()
    got = np.full(len(lib.identity), -1)
    for index, person in rows:
        if index < len(got):
            got[index] = person
    known = lib.identity < lib.people
    return {
        "known_recognised": round(float(np.mean(got[known] == lib.identity[known])), 4),
        "known_wrong_person": round(
            float(np.mean((got[known] >= 0) & (got[known] != lib.identity[known]))), 4
        ),
        "strangers_recognised": round(float(np.mean(got[~known] >= 0)), 4),
    }


def reset_matches(conn: psycopg.Connection) -> None:
    conn.execute("SET session_replication_role = replica")  # no triggers: not part of the bench
    conn.execute("UPDATE semsql.faces SET person_id = NULL, match_confidence = NULL")
    conn.execute("UPDATE semsql.tasks SET status = 'done' WHERE status <> 'done'")
    conn.execute("SET session_replication_role = origin")
    conn.execute("VACUUM ANALYZE semsql.faces")


def timed(rows: list[dict], step: str, run: Callable[[], Any], **extra: Any) -> Any:
    started = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - started
    rows.append({"step": step, "seconds": round(seconds, 3), **extra})
    print(f"  {step:<16} {seconds:>9.2f} s", flush=True)
    return result


def scalar(conn: psycopg.Connection, query: str, params: list | None = None) -> Any:
    return conn.execute(query, params).fetchone()[0]


def run_bench(url: str, args: argparse.Namespace) -> tuple[list[dict], dict]:
    lib = Library(args.faces, args.people, args.strangers, args.known_share, args.seed)
    rows: list[dict] = []
    quality: dict[str, dict] = {}
    with database.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        timed(
            rows,
            "load",
            lambda: load(conn, lib, args.assets, args.refs_per_person),
            faces=args.faces,
            references=args.people * args.refs_per_person,
        )

        moved = timed(rows, "match all", lambda: scalar(conn, "SELECT semsql.match_faces()"))
        rows[-1]["faces_changed"] = moved
        rows[-1]["text_tasks_requeued"] = scalar(
            conn, "SELECT count(*) FROM semsql.tasks WHERE stage = 'text' AND status = 'pending'"
        )
        quality["match all"] = accuracy(conn, lib)

        reset_matches(conn)
        moved = timed(
            rows,
            "match all fwd",
            lambda: scalar(conn, "SELECT semsql.match_faces(array_agg(id)) FROM semsql.faces"),
        )
        rows[-1]["faces_changed"] = moved
        quality["match all fwd"] = accuracy(conn, lib)

        names = [f"person {i}" for i in range(3)]
        found = timed(
            rows,
            "people filter",
            lambda: scalar(
                conn, ("SELECT count(*) FROM semsql.assets_with_people(%s, false)"), [names]
            ),
        )
        rows[-1]["assets"] = found
        timed(
            rows,
            "people summary",
            lambda: scalar(conn, "SELECT sum(faces + assets) FROM semsql.people_summary"),
        )
        found = timed(
            rows,
            "assets with face",
            lambda: scalar(
                conn, ("SELECT count(*) FROM semsql.assets_with_face(%s, 50)"), [lib.vectors[0]]
            ),
        )
        rows[-1]["assets"] = found

        stranger = int(lib.identity[lib.identity >= lib.people][0])
        photos = lib.samples(np.array([stranger, stranger]))
        result = timed(
            rows,
            "enrol one",
            lambda: conn.execute(
                "SELECT * FROM semsql.enrol_person('new person', %s::vector[], %s)",
                [list(photos), MODEL],
            ).fetchone(),
        )
        rows[-1]["faces_matched"] = result[2]
        rows[-1]["faces_of_that_stranger"] = int(np.sum(lib.identity == stranger))

        new = lib.samples(lib.rng.integers(0, args.people, args.new_faces))
        first_asset = scalar(conn, "SELECT min(id) FROM semsql.assets")

        def write_like_the_worker() -> None:
            with conn.transaction():
                ids = [
                    scalar(
                        conn,
                        "INSERT INTO semsql.faces (asset_id, box, detector) VALUES "
                        "(%s, '{0,0,9,9}', 'mtcnn') RETURNING id",
                        [first_asset + i],
                    )
                    for i in range(len(new))
                ]
                conn.execute(
                    """UPDATE semsql.faces f SET embedding = r.e, embedding_model = %s
                       FROM unnest(%s::bigint[], %s::vector[]) AS r(id, e) WHERE f.id = r.id""",
                    [MODEL, ids, list(new)],
                )

        timed(rows, "new faces", write_like_the_worker, faces=args.new_faces)
        if args.clusters:
            made = timed(
                rows, "clusters", lambda: scalar(conn, "SELECT semsql.refresh_face_clusters()")
            )
            rows[-1]["clusters"] = made
            rows[-1]["unknown_faces"] = scalar(
                conn, "SELECT count(*) FROM semsql.faces WHERE person_id IS NULL"
            )
    return rows, quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--refs-per-person", type=int, default=2)
    parser.add_argument("--strangers", type=int, default=10_000, help="unenrolled identities")
    parser.add_argument("--known-share", type=float, default=0.6)
    parser.add_argument("--assets", type=int, default=40_000)
    parser.add_argument("--new-faces", type=int, default=1000)
    parser.add_argument("--no-clusters", dest="clusters", action="store_false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/people.json"))
    args = parser.parse_args()

    with bench_database(DATABASE) as url:
        print(
            f"{args.faces} faces, {args.people} people x {args.refs_per_person} references, "
            f"{os.cpu_count()} cores"
        )
        rows, quality = run_bench(url, args)

    print(f"{'step':<16} {'seconds':>9}  details")
    for row in rows:
        details = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("step", "seconds"))
        print(f"{row['step']:<16} {row['seconds']:>9.2f}  {details}")
    for step, numbers in quality.items():
        print(f"{step}: {numbers}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "faces": args.faces,
                "people": args.people,
                "refs_per_person": args.refs_per_person,
                "strangers": args.strangers,
                "known_share": args.known_share,
                "assets": args.assets,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "results": rows,
                "accuracy": quality,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
