"""The queries of `semsql eval` and how they are run: qrels read from a JSONL file, or the
user-written captions of the library as queries for their own assets; each one searched by
semsql.search once per signal (the other weights 0) and once fused.

A caption query hides its own caption: inside a transaction that is always rolled back, the
asset's user caption is deleted, its search document rebuilt from what is left (generated
captions, tags, people, names) and its text vector replaced by the vector of that document,
made here by the configured text model. The searches of that query run in the same
transaction, so that the keyword and text signals see the asset as if nobody had written the
caption, while nothing stored changes (the rolled-back rows are dead tuples that VACUUM takes).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .evaluation import query_metrics
from .search import (
    PARAMETER_TYPES,
    live_query_spaces,
    load_encoder,
    registered_spaces,
    search_statement,
    vector_text,
)

SIGNALS = ("image", "text", "keyword", "fused")
"""What each query is searched by: one signal alone (the other weights 0), then all fused."""

DEFAULT_WEIGHTS = {"image": 1.0, "text": 1.0, "keyword": 0.5, "name": 0.5}
"""semsql.search's own default weights."""

MAX_K = 1000

FILTERS = ("tags", "tags_match", "emotions", "people", "people_match", "collection",
           "taken_after", "taken_before", "metadata", "exclude", "names")  # fmt: skip
FILTER_FIELDS = {name: PARAMETER_TYPES[name] for name in FILTERS}
"""qrels fields -> their semsql.search parameter's type (the filters `semsql search` has)."""
QREL_FIELDS = {"query", "relevant", "article", "k", *FILTER_FIELDS}


class QrelsError(ValueError):
    """A qrels file that cannot be evaluated: says which line and why."""


@dataclass(frozen=True)
class EvalQuery:
    query: str | None
    relevant: frozenset[int]
    k: int = 10
    article: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None  # of the qrels file
    hidden_caption_of: int | None = None  # --captions: the asset whose user caption is hidden

    @property
    def label(self) -> str:
        text = self.query if self.query is not None else (self.article or "")
        return " ".join(text.split())


@dataclass(frozen=True)
class SignalResult:
    ranking: list[int]
    metrics: dict[str, float]


@dataclass(frozen=True)
class QueryReport:
    query: EvalQuery
    signals: dict[str, SignalResult]


# Reading qrels ------------------------------------------------------------------------------


def read_qrels(conn: psycopg.Connection, path: Path, default_k: int = 10) -> list[EvalQuery]:
    """The queries of a qrels JSONL file, their relevant uris or ids resolved to asset ids.
    Raises QrelsError naming the line of the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise QrelsError(f"cannot read {path}: {error}") from None
    queries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError, ValueError) as error:
            raise QrelsError(f"{where}: not JSON ({error})") from None
        queries.append(_qrel(conn, row, where, number, path.parent, default_k))
    if not queries:
        raise QrelsError(f"{path.name} has no queries (one JSON object per line)")
    return queries


def _qrel(
    conn: psycopg.Connection, row: Any, where: str, number: int, folder: Path, default_k: int
) -> EvalQuery:  # fmt: skip
    if not isinstance(row, dict):
        raise QrelsError(f"{where}: give a JSON object, not {type(row).__name__}")
    unknown = sorted(set(row) - QREL_FIELDS)
    if unknown:
        raise QrelsError(
            f"{where}: unknown field {', '.join(unknown)} (known: {', '.join(sorted(QREL_FIELDS))})"
        )
    query, article = row.get("query"), row.get("article")
    for name, value in (("query", query), ("article", article)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise QrelsError(f"{where}: {name} must be a non-empty string")
    if query is None and article is None:
        raise QrelsError(f'{where}: give a "query" (or an "article")')
    k = row.get("k", default_k)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise QrelsError(f"{where}: k must be a whole number from 1 to {MAX_K}, not {k!r}")
    relevant = row.get("relevant")
    if not isinstance(relevant, list):
        raise QrelsError(f'{where}: "relevant" must be a list of asset uris or ids')
    if not relevant:
        raise QrelsError(f"{where}: the relevant set is empty (nothing could be measured)")
    ids = frozenset(resolve_asset(conn, item, folder, where) for item in relevant)
    filters = {name: _filter_value(name, row[name], where) for name in FILTER_FIELDS if name in row}
    return EvalQuery(query, ids, k, article, filters, line=number)


def _filter_value(name: str, value: Any, where: str) -> Any:
    kind = FILTER_FIELDS[name]
    if kind == "text[]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise QrelsError(f"{where}: {name} must be a list of strings")
        return value
    if kind == "jsonb":
        if not isinstance(value, dict):
            raise QrelsError(f"{where}: {name} must be a JSON object")
        return Jsonb(value)
    if not isinstance(value, str):
        raise QrelsError(f"{where}: {name} must be a string")
    if kind == "timestamptz":
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise QrelsError(f"{where}: {name} is not an ISO 8601 date: {value!r}") from None
    return value


def resolve_asset(conn: psycopg.Connection, item: Any, folder: Path, where: str) -> int:
    """An asset id from an id (number, or digits) or a uri: as stored, relative to the qrels
    file's folder, or the one stored uri that ends with it at a path boundary."""
    if (isinstance(item, int) and not isinstance(item, bool)) or (
        isinstance(item, str) and item.isdecimal()
    ):
        found = conn.execute("SELECT id FROM semsql.assets WHERE id = %s", [int(item)]).fetchone()
        if found is None:
            raise QrelsError(f"{where}: no asset has id {item}")
        return int(found[0])
    if not isinstance(item, str) or not item.strip():
        raise QrelsError(f"{where}: a relevant asset is a uri or an id, not {item!r}")
    candidates = [item]
    if "://" not in item:
        candidates.append(str((folder / item).resolve()))
    rows = conn.execute(
        "SELECT id FROM semsql.assets WHERE uri = ANY (%s) ORDER BY uri = %s DESC LIMIT 1",
        [candidates, item],
    ).fetchall()
    if not rows:
        rows = conn.execute(
            "SELECT id FROM semsql.assets WHERE right(uri, %s) = %s LIMIT 2",
            [len(item) + 1, "/" + item.lstrip("/")],
        ).fetchall()
        if len(rows) > 1:
            raise QrelsError(f"{where}: {item!r} ends more than one asset's uri: give it whole")
    if not rows:
        raise QrelsError(f"{where}: no asset has uri {item!r}")
    return int(rows[0][0])


# Captions as queries --------------------------------------------------------------------------


def caption_queries(
    conn: psycopg.Connection, sample: int | None, seed: int, k: int = 10
) -> list[EvalQuery]:
    """The user-written captions as queries for their own asset: all, or a sample of them
    (the same for the same seed and library)."""
    rows = conn.execute(
        """SELECT c.asset_id, c.text FROM semsql.captions c
           WHERE c.source = 'user' AND btrim(c.text) <> ''
           ORDER BY md5(%s::text || ':' || c.asset_id::text), c.asset_id
           LIMIT %s""",
        [seed, sample],
    ).fetchall()
    return [
        EvalQuery(text, frozenset([asset_id]), k, hidden_caption_of=asset_id)
        for asset_id, text in rows
    ]


@contextmanager
def caption_hidden(conn: psycopg.Connection, asset_id: int, encoder: Any) -> Iterator[None]:
    """Inside: the asset as if it had no user caption, for the keyword and text signals (its
    search document, and its text vector made here from its document without the caption).
    Always rolled back."""
    try:
        conn.execute(
            "DELETE FROM semsql.captions WHERE asset_id = %s AND source = 'user'", [asset_id]
        )
        conn.execute("SELECT semsql.refresh_search_documents(ARRAY[%s]::bigint[])", [asset_id])
        row = conn.execute("SELECT semsql.asset_document(%s)", [asset_id]).fetchone()
        document = row[0] if row else None
        if document:
            vector = np.asarray(encoder.encode([document])[0], np.float32)
            conn.execute(
                "UPDATE semsql.embeddings SET embedding = %s::text::halfvec "
                "WHERE asset_id = %s AND space = 'text'",
                [vector_text(vector), asset_id],
            )
        else:  # nothing is left to embed
            conn.execute(
                "DELETE FROM semsql.embeddings WHERE asset_id = %s AND space = 'text'",
                [asset_id],
            )
        yield
    finally:
        conn.rollback()


# Running the searches -------------------------------------------------------------------------


def parse_weights(text: str) -> dict[str, float]:
    """`image=1,text=1,keyword=0.5,name=0.5` (any of them; the rest keep their defaults)."""
    weights = dict(DEFAULT_WEIGHTS)
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_WEIGHTS:
            raise ValueError(
                f"{part.strip()!r}: give NAME=NUMBER with NAME one of {', '.join(DEFAULT_WEIGHTS)}"
            )
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name}: {value.strip()!r} is not a number") from None
        if not 0 <= number <= 1000:
            raise ValueError(f"{name}: a weight is a number from 0 to 1000, not {value.strip()}")
        weights[name] = number
    if weights["image"] + weights["text"] + weights["keyword"] == 0:
        raise ValueError("image, text and keyword weights are all 0: nothing would rank")
    return weights


@dataclass
class Searcher:
    """Runs one query by each signal. Query vectors come from a running worker (through
    semsql.embed_text) or, for the spaces no worker answers, from the models here."""

    conn: psycopg.Connection
    embed: str = "auto"  # auto | worker | local
    device: str = "cpu"
    custom_weights: dict[str, float] | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # signal -> why
    _encoders: dict[str, Any] = field(default_factory=dict)
    _local_spaces: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        spaces = registered_spaces(self.conn)
        for space in ("image", "text"):
            if space not in spaces:
                self.unavailable[space] = f"no {space} vectors are stored yet"
        wanted = {s for s in spaces if s in ("image", "text")}
        if self.embed != "local":
            wanted -= live_query_spaces(self.conn)
        if self.embed == "worker":
            for space in wanted:
                self.unavailable[space] = f"no running worker answers the {space} space"
            wanted = set()
        for space in sorted(wanted):
            try:
                self._encoders[space] = load_encoder(space, self.device)
            except Exception as error:  # ModelLoadError, or no torch: said per signal
                self.unavailable[space] = f"its model does not load here: {error}"
            else:
                self._local_spaces.add(space)
        self.conn.rollback()

    @property
    def signals(self) -> list[str]:
        names = [s for s in SIGNALS if s not in self.unavailable]
        return names + (["custom"] if self.custom_weights else [])

    def text_encoder(self) -> Any:
        """The text model, loaded here (hiding a caption re-embeds its asset's document)."""
        if "text" not in self._encoders:
            self._encoders["text"] = load_encoder("text", self.device)
        return self._encoders["text"]

    def run(self, item: EvalQuery) -> QueryReport:
        depth = max(item.k, 10)
        if item.hidden_caption_of is None:
            return QueryReport(item, self._run_all(item, depth, rollback=True))
        encoder = self.text_encoder()
        with caption_hidden(self.conn, item.hidden_caption_of, encoder):
            return QueryReport(item, self._run_all(item, depth, rollback=False))

    def _run_all(self, item: EvalQuery, depth: int, rollback: bool) -> dict[str, SignalResult]:
        vectors = self._local_vectors(item)
        results = {}
        for signal in self.signals:
            ranking = self._search(item, depth, self._weights(signal), vectors)
            if rollback:
                self.conn.rollback()
            results[signal] = SignalResult(ranking, query_metrics(ranking, item.relevant, item.k))
        return results

    def _weights(self, signal: str) -> dict[str, float]:
        if signal == "fused":
            weights = dict(DEFAULT_WEIGHTS)
        elif signal == "custom":
            weights = dict(self.custom_weights or DEFAULT_WEIGHTS)
        else:
            weights = {"image": 0.0, "text": 0.0, "keyword": 0.0, "name": 0.0, signal: 1.0}
        for space in ("image", "text"):
            if space in self.unavailable:
                weights[space] = 0.0
        return weights

    def _local_vectors(self, item: EvalQuery) -> dict[str, np.ndarray]:
        if item.query is None or item.article is not None:
            return {}
        return {
            space: np.asarray(self._encoders[space].encode([item.query])[0], np.float32)
            for space in self._local_spaces
        }

    def _search(
        self, item: EvalQuery, depth: int, weights: Mapping[str, float],
        vectors: Mapping[str, np.ndarray],
    ) -> list[int]:  # fmt: skip
        arguments: dict[str, Any] = dict(item.filters)
        if item.query is not None:
            arguments["query"] = item.query
        if item.article is not None:
            arguments["article"] = item.article
        arguments |= {"k": depth, "image_weight": weights["image"], "text_weight": weights["text"]}
        arguments |= {"keyword_weight": weights["keyword"], "name_weight": weights["name"]}
        for space, vector in vectors.items():
            if weights[space] > 0:  # a vector given takes part even at weight 0
                arguments[f"{space}_embedding"] = vector_text(vector)
        rows = self.conn.execute(_statement(arguments), arguments).fetchall()
        return [int(row[0]) for row in rows]


def _statement(arguments: Mapping[str, Any]) -> sql.Composed:
    return sql.SQL("SELECT s.asset_id FROM ({}) AS s ORDER BY s.rank").format(
        search_statement(arguments)
    )


def summarise(
    reports: Sequence[QueryReport], signals: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Signal -> the mean of each metric over the queries."""
    from .evaluation import mean_metrics

    return {s: mean_metrics(r.signals[s].metrics for r in reports) for s in signals}
