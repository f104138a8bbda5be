"""The search corpus: a small catalog of human captions, tags, people, dates and facial emotions,
imported by manifest, with document vectors from the real MiniLM. One database per test module
(`corpus_url`), read-only by convention; `corpus` is a connection to it with helpers."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
from corpus import make_jpeg
from fix_db import TEMPLATE

from semsql import database
from semsql.embedder.models import default_models, load_stage
from semsql.ingest import IngestOptions, create_job, run_ingest
from semsql.search import SearchRequest, run_search
from semsql.sources import iter_manifest_candidates
from semsql.testing import scratch_database

TEXT_MODEL = default_models()["text"]  # what `semsql worker` uses: the packaged MiniLM

# key: caption, tags, people, facial emotions, date taken, collection, metadata
CATALOG: dict[str, tuple] = {
    "vogels_convertible": ("Werner Vogels at the wheel of an old convertible on a coastal road",
                           ["car", "road", "coast"], ["Werner Vogels"], ["happy"], "2019-06-01"),
    "vogels_pickup": ("Werner Vogels leaning on a red pickup truck in the desert",
                      ["truck", "desert", "car"], ["Werner Vogels"], [], "2020-03-10"),
    "vogels_keynote": ("Werner Vogels giving a keynote talk on a conference stage",
                       ["stage", "conference", "microphone"], ["Werner Vogels"], ["neutral"],
                       "2018-11-28"),
    "vogels_market": ("Werner Vogels eating noodles at a night market",
                      ["food", "market", "night"], ["Werner Vogels"], ["happy"], "2019-09-14"),
    "sports_car": ("A vintage sports car parked on a cobbled street",
                   ["car", "street", "vintage"], [], [], "2021-05-02"),
    "traffic": ("Traffic jam on a motorway at dusk, long rows of cars",
                ["car", "highway", "traffic"], [], [], "2022-01-20"),
    "snowman": ("Two kids building a snowman in the garden",
                ["snow", "children", "winter"], [], ["happy"], "2021-01-15"),
    "sledging": ("A girl sledging down a snowy hill", ["snow", "sled", "child", "winter"], [],
                 ["surprise"], "2021-02-02"),
    "skiing": ("Skiers on a mountain slope under a blue sky", ["snow", "ski", "mountain", "winter"],
               [], [], "2020-02-20"),
    "retriever": ("A golden retriever catching a frisbee in the park", ["dog", "park", "frisbee"],
                  [], [], "2022-06-11"),
    "puppy": ("A puppy asleep on the sofa", ["dog", "sofa", "indoors"], [], [], "2022-07-01"),
    "cat_window": ("A cat sleeping by the window in the living room", ["cat", "indoors", "window"],
                   [], [], "2023-03-03"),
    "cat_meadow": ("A cat hunting in the tall grass of a meadow", ["cat", "outdoors", "grass"],
                   [], [], "2023-04-04"),
    "beach": ("Ana and Joe laughing at the beach", ["beach", "summer", "sea"],
              ["Ana Lima", "Joe Park"], ["happy", "happy"], "2019-07-20"),
    "birthday": ("Ana blowing out the candles on her birthday cake",
                 ["cake", "birthday", "party", "indoors"], ["Ana Lima"], ["happy"], "2020-05-05"),
    "hiking": ("Joe hiking on a rocky mountain trail", ["mountain", "hiking", "trail"],
               ["Joe Park"], [], "2021-08-08"),
    "office": ("Joe frowning at a laptop in the office", ["laptop", "office", "indoors"],
               ["Joe Park"], ["angry"], "2022-10-10"),
    "wedding": ("Bride and groom dancing at their wedding reception", ["wedding", "dance", "party"],
                [], ["happy", "happy"], "2018-06-16"),
    "funeral": ("A grieving family under umbrellas at a rainy funeral",
                ["funeral", "rain", "umbrella"], [], ["sad", "sad"], "2017-10-10"),
    "pasta": ("A plate of spaghetti with tomato sauce and basil", ["food", "pasta", "dinner"], [],
              [], "2023-01-01"),
    "sushi": ("Fresh sushi rolls on a wooden board", ["food", "sushi"], [], [], "2023-02-14"),
    "skyline": ("The city skyline lit up at night", ["city", "skyline", "night"], [], [],
                "2020-12-31", "travel"),
    "harbour": ("Fishing boats moored in a small harbour", ["boat", "harbour", "sea"], [], [],
                "2019-08-08", "travel", {"camera": {"make": "Canon"}}),
    "concert": ("A crowd cheering at an outdoor rock concert",
                ["concert", "crowd", "music", "outdoors"], [], ["happy", "surprise"], "2022-07-15"),
    "hopper": ("Portrait of Grace Hopper in uniform", ["portrait"], ["Grace Hopper"], ["neutral"],
               None, "default", {"camera": {"make": "Canon"}, "rights": "public domain"}),
    "forest": ("Sunlight through tall pine trees in a forest", ["forest", "trees", "outdoors"], [],
               [], None),
}  # fmt: skip


@dataclass
class Entry:
    key: str
    caption: str
    tags: list[str]
    people: list[str]
    emotions: list[str]
    taken_at: datetime | None
    collection: str = "default"
    metadata: dict | None = None


def entries() -> list[Entry]:
    found = []
    for key, (caption, tags, people, emotions, taken, *rest) in CATALOG.items():
        day = datetime.fromisoformat(taken).replace(tzinfo=UTC) if taken else None
        found.append(Entry(key, caption, tags, people, emotions, day, *rest))
    return found


@dataclass
class Corpus:
    conn: psycopg.Connection
    ids: dict[str, int]
    encoder: object

    def vector(self, text: str) -> np.ndarray:
        return self.encoder.encode([text])[0]

    def search(self, **arguments) -> list:
        hits, _ = run_search(self.conn, SearchRequest(**arguments))
        self.conn.rollback()
        return hits

    def keys(self, hits) -> list[str]:
        """The catalog keys of hits (or of asset ids)."""
        by_id = {asset_id: key for key, asset_id in self.ids.items()}
        return [by_id[getattr(hit, "asset_id", hit)] for hit in hits]


@pytest.fixture(scope="session")
def text_encoder():
    return load_stage("text", TEXT_MODEL, "cpu")


def build_corpus(url: str, folder: Path, encoder) -> dict[str, int]:
    """Ingest the catalog by manifest (one per collection), add dates taken and facial
    emotions, and store the MiniLM vector of every asset document."""
    manifests: dict[str, list[dict]] = {}
    for seed, entry in enumerate(entries()):
        make_jpeg(folder / entry.collection / f"{entry.key}.jpg", size=(64, 48), seed=seed)
        row = {"uri": f"{entry.key}.jpg", "caption": entry.caption, "tags": entry.tags}
        row |= {"people": entry.people, "metadata": entry.metadata or {}}
        manifests.setdefault(entry.collection, []).append(row)
    with database.connect(url) as conn:
        for collection, rows in manifests.items():
            manifest = folder / collection / "catalog.jsonl"
            manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
            job = create_job(conn, collection, {})
            run_ingest(conn, job, iter_manifest_candidates(manifest), IngestOptions(collection))
        ids = {}
        for entry in entries():
            path = str(folder / entry.collection / f"{entry.key}.jpg")
            ids[entry.key] = conn.execute(
                "UPDATE semsql.assets SET taken_at = %s WHERE uri = %s RETURNING id",
                [entry.taken_at, path],
            ).fetchone()[0]
            for emotion in entry.emotions:
                conn.execute(
                    """INSERT INTO semsql.faces (asset_id, box, detector, emotion)
                       VALUES (%s, '{1,1,20,20}', 'test', %s)""",
                    [ids[entry.key], emotion],
                )
        store_document_vectors(conn, encoder)
        conn.commit()
    return ids


def store_document_vectors(conn: psycopg.Connection, encoder) -> None:
    documents = conn.execute(
        "SELECT asset_id, document FROM semsql.asset_documents(ARRAY(SELECT id FROM semsql.assets))"
    ).fetchall()
    vectors = encoder.encode([document for _, document in documents])
    for (asset_id, document), vector in zip(documents, vectors, strict=True):
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding, input_sha256)
               VALUES (%s, 'text', %s, %s, %s)
               ON CONFLICT (asset_id, space) DO UPDATE SET embedding = EXCLUDED.embedding""",
            [asset_id, TEXT_MODEL, vector, hashlib.sha256(document.encode()).hexdigest()],
        )
    conn.execute("SELECT semsql.register_vector_space('text', %s, %s)", [TEXT_MODEL, 384])


@pytest.fixture(scope="module")
def corpus_url(server_url, template_url, tmp_path_factory, text_encoder) -> Iterator[str]:
    name = f"semsql_search_{os.getpid()}_{tmp_path_factory.mktemp('n').name}"
    with scratch_database(server_url, name, template=TEMPLATE) as url:
        build_corpus(url, tmp_path_factory.mktemp("catalog"), text_encoder)
        yield url


@pytest.fixture
def corpus(corpus_url, text_encoder) -> Iterator[Corpus]:
    with database.connect(corpus_url) as conn:
        ids = dict(conn.execute("SELECT uri, id FROM semsql.assets").fetchall())
        yield Corpus(
            conn, {Path(uri).stem: asset_id for uri, asset_id in ids.items()}, text_encoder
        )
