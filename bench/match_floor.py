"""What similarity makes a match: the text vectors' cosine similarity to real queries (each with
the asset it means) against their similarity to nonsense (random letters), over the library of
SEMSQL_DATABASE_URL (its stored text vectors, and queries embedded with its text model here).

    python bench/match_floor.py [--nonsense 300] [--queries FILE.json]

The default queries mean the scikit-image sample images (ingest skimage/data, run
`semsql worker`); --queries takes a JSON object {query: file name stem of the intended asset}.
Prints, per candidate floor, how many intended assets reach it and how many nonsense queries
would match anything.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
from pathlib import Path

import numpy as np
import psycopg

from semsql.embedder.models import load_stage

SKIMAGE_QUERIES = {
    "astronaut": "astronaut", "a man in a space suit": "astronaut", "coffee cup": "coffee",
    "a cup of coffee": "coffee", "a horse": "horse", "the moon": "moon", "rocket launch": "rocket",
    "space rocket": "rocket", "coins": "coins", "motorbike": "motorcycle_left",
    "eye retina scan": "retina", "chess board": "chessboard_GRAY", "gravel": "gravel",
    "grass": "grass", "microscope cells": "cell", "a clock": "clock_motion",
    "text on a page": "page", "a camera man": "camera", "a brick wall": "brick",
    "hubble telescope": "hubble_deep_field",
}  # fmt: skip


def nonsense(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))

    return [" ".join(word() for _ in range(rng.randint(1, 3))) for _ in range(count)]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nonsense", type=int, default=300)
    parser.add_argument("--queries", type=Path)
    args = parser.parse_args()
    queries = json.loads(args.queries.read_text()) if args.queries else SKIMAGE_QUERIES
    with psycopg.connect(os.environ["SEMSQL_DATABASE_URL"]) as conn:
        (model,) = conn.execute(
            "SELECT model FROM semsql.vector_spaces WHERE space = 'text'"
        ).fetchone()
        rows = conn.execute(
            """SELECT a.uri, e.embedding::text FROM semsql.embeddings e
               JOIN semsql.assets a ON a.id = e.asset_id WHERE e.space = 'text'"""
        ).fetchall()
    stems = [Path(uri).stem for uri, _ in rows]
    documents = unit(np.array([json.loads(vector) for _, vector in rows], dtype=np.float32))
    encoder = load_stage("text", model, "cpu")
    wanted = {query: stem for query, stem in queries.items() if stem in stems}
    intended = unit(encoder.encode(list(wanted))) @ documents.T
    intended_similarity = np.array(
        [intended[i, stems.index(stem)] for i, stem in enumerate(wanted.values())]
    )
    best_nonsense = (unit(encoder.encode(nonsense(args.nonsense))) @ documents.T).max(axis=1)
    print(
        f"{len(documents)} text vectors ({model}); {len(wanted)} queries, {args.nonsense} nonsense"
    )
    print("intended similarity: " + " ".join(f"{s:.3f}" for s in sorted(intended_similarity)))
    print("nonsense best similarity, percentiles 50/90/99/100: " + " ".join(
        f"{np.percentile(best_nonsense, p):.3f}" for p in (50, 90, 99, 100)))  # fmt: skip
    for floor in np.arange(0.20, 0.36, 0.02):
        kept = (intended_similarity >= floor).mean()
        matched = (best_nonsense >= floor).mean()
        print(f"floor {floor:.2f}: intended kept {kept:6.1%}, nonsense that matches {matched:6.1%}")


if __name__ == "__main__":
    main()
