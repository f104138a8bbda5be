"""How much stated text one asset may carry: what its indexes hold, with room to spare.

Captions, keywords and people names go into B-tree indexes (tags_label, people_name), GIN
indexes (people_name_trgm, search_documents' tags and document) and the asset's tsvector. A
B-tree or GIN entry holds at most about 2,700 bytes and a tsvector at most 1 MB; one value
over either used to roll back its whole batch of files. `bound_facts` and `bound_metadata`
trim or drop what is over these limits before it reaches the database, and say what they did
in warnings that ingest keeps in metadata["metadata_errors"] (at most MAX_WARNINGS of them).
An asset's metadata is also bounded as a whole: in nesting (MAX_METADATA_DEPTH), which every
reader of it walks recursively, and in size (MAX_METADATA_BYTES), since it is sent, stored and
read back with the asset.

Even with every limit reached at once (a full caption, 500 keywords and 200 names of 200
characters each) an asset's search text is about 150,000 characters, which makes a tsvector
well under 1 MB (tests/test_ingest_hardening.py stores such an asset).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_CAPTION_CHARS = 10_000
"""About 1,500 words: far more than MiniLM reads (256 word pieces, some 1,000 characters) and
plenty for keyword search; longer "captions" are articles pasted into a description field."""
MAX_LABEL_CHARS = 200
"""A keyword. Real ones, hierarchical Lightroom paths included, stay under 100 characters; 200
characters are at most 800 bytes of UTF-8, under a third of a B-tree entry."""
MAX_NAME_CHARS = 200
"""A person's name: the longest real full names are about 100 characters; 800 bytes at most."""
MAX_KEYWORDS = 500
"""Per asset. Stock agencies take 50 keywords; exports with every parent keyword stay under a
few hundred."""
MAX_PEOPLE = 200
"""Per asset: a named school class or team photo."""
MAX_METADATA_TEXT_CHARS = 10_000
"""One string value in assets.metadata (EXIF, IPTC, XMP, a manifest's metadata). Longer ones are
blobs (a 1 MB XMP description, a TIFF ImageDescription holding a document) that would be sent
and stored once per asset for nothing."""
MAX_METADATA_DEPTH = 32
"""Levels of objects and arrays in an asset's metadata, counted from assets.metadata itself (a
manifest's metadata sits one level down, in "catalog"). EXIF, IPTC and XMP need three; a
catalog's own structure rarely more than five. Deeper values are dropped: code that walks
JSON recursively (Python's json, jsonb functions, BI tools) fails on a few hundred levels."""
MAX_METADATA_BYTES = 256 * 1024
"""An asset's metadata as JSON (UTF-8). A camera's EXIF, IPTC and XMP make a few kB, a
Lightroom packet with its develop settings under 100 kB; over the limit, the largest entries
are dropped until it fits."""
MAX_WARNINGS = 100
"""Warnings kept per asset in metadata["metadata_errors"]; the rest are counted."""
MAX_URI_BYTES = 2_000
"""assets (collection, uri) is a unique B-tree; this leaves 700 bytes for the collection."""
MAX_COLLECTION_CHARS = 200
"""A collection's name, which is part of every asset's key; at most MAX_COLLECTION_BYTES."""
MAX_COLLECTION_BYTES = 700


@dataclass(frozen=True, slots=True)
class Facts:
    caption: str | None
    tags: tuple[str, ...]
    people: tuple[str, ...]


def bound_facts(
    caption: str | None, tags: Iterable[str], people: Iterable[str], warnings: list[str]
) -> Facts:
    """The caption trimmed at a word to MAX_CAPTION_CHARS; keywords and names longer than
    their limit dropped (a cut name would be somebody else), and only the first MAX_KEYWORDS
    and MAX_PEOPLE kept. Each change appends a warning."""
    if caption is not None and len(caption) > MAX_CAPTION_CHARS:
        warnings.append(
            f"caption: {len(caption):,} characters, trimmed to the first {MAX_CAPTION_CHARS:,}"
        )
        caption = trim_at_word(caption, MAX_CAPTION_CHARS)
    return Facts(
        caption=caption,
        tags=_bounded_names(tags, ("keyword", "keywords"), MAX_LABEL_CHARS, MAX_KEYWORDS, warnings),
        people=_bounded_names(people, ("person", "people"), MAX_NAME_CHARS, MAX_PEOPLE, warnings),
    )


def bound_metadata(metadata: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """A copy with every string over MAX_METADATA_TEXT_CHARS trimmed, every value deeper than
    MAX_METADATA_DEPTH dropped, and, when it is still over MAX_METADATA_BYTES of JSON, its
    largest entries dropped; each change appends a warning."""

    def bounded(value: Any, where: str) -> Any:
        if isinstance(value, str) and len(value) > MAX_METADATA_TEXT_CHARS:
            warnings.append(
                f"metadata {shown_path(where)}: {len(value):,} characters, trimmed to the first "
                f"{MAX_METADATA_TEXT_CHARS:,}"
            )
            return trim_at_word(value, MAX_METADATA_TEXT_CHARS)
        if isinstance(value, dict):
            return {
                key: bounded(item, f"{where}.{key}" if where else key)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [bounded(item, f"{where}[{n}]") for n, item in enumerate(value)]
        return value

    shallow = bound_depth(metadata, MAX_METADATA_DEPTH, warnings)
    return bound_size(bounded(shallow, ""), MAX_METADATA_BYTES, warnings)


def bound_depth(value: Any, levels: int, warnings: list[str], where: str = "") -> Any:
    """A copy of `value` in which objects and arrays nest at most `levels` deep (`value`
    itself being the first level); deeper ones become None, each with a warning. It recurses
    only `levels` deep, so it is safe on any JSON that could be parsed."""
    if not isinstance(value, dict | list):
        return value
    if levels <= 0:
        warnings.append(
            f"metadata {shown_path(where)}: nested deeper than {MAX_METADATA_DEPTH} levels, dropped"
        )
        return None
    if isinstance(value, dict):
        return {
            key: bound_depth(item, levels - 1, warnings, f"{where}.{key}" if where else str(key))
            for key, item in value.items()
        }
    return [
        bound_depth(item, levels - 1, warnings, f"{where}[{n}]") for n, item in enumerate(value)
    ]


def bound_size(metadata: dict[str, Any], limit: int, warnings: list[str]) -> dict[str, Any]:
    """`metadata` when its JSON is at most `limit` bytes; otherwise a copy without its
    largest entries: whole sections where the others fit, else the largest entries of the
    largest sections, with a warning for each section cut."""
    total = json_bytes(metadata)
    if total <= limit:
        return metadata
    # Keep the small sections whole, then fill what is left with each large section's
    # entries, smallest first.
    budget = limit - 2
    sizes = {key: json_bytes(key) + 1 + json_bytes(value) + 1 for key, value in metadata.items()}
    kept: dict[str, Any] = {}
    for key in sorted(metadata, key=lambda name: sizes[name]):
        value = metadata[key]
        if sizes[key] <= budget:
            kept[key] = value
            budget -= sizes[key]
            continue
        room = budget - json_bytes(key) - 3
        if isinstance(value, dict) and room > 0:
            part, dropped = _fit_entries(value, room)
            kept[key] = part
            budget -= json_bytes(key) + 1 + json_bytes(part) + 1
            warnings.append(
                f"metadata {shown_path(key)}: {dropped:,} of {len(value):,} entries dropped "
                f"(the metadata was {total:,} bytes of JSON; the limit is {limit:,})"
            )
        else:
            warnings.append(
                f"metadata {shown_path(key)}: {json_bytes(value):,} bytes of JSON, dropped "
                f"(the metadata was {total:,} bytes; the limit is {limit:,})"
            )
    return {key: kept[key] for key in metadata if key in kept}


def _fit_entries(value: dict[str, Any], room: int) -> tuple[dict[str, Any], int]:
    """The entries of `value` that fit in `room` bytes of JSON (smallest first, in their
    order), and how many did not."""
    sizes = {key: json_bytes(key) + 1 + json_bytes(item) + 1 for key, item in value.items()}
    chosen: set[str] = set()
    for key in sorted(value, key=lambda name: sizes[name]):
        if sizes[key] > room:
            break
        chosen.add(key)
        room -= sizes[key]
    return {key: item for key, item in value.items() if key in chosen}, len(value) - len(chosen)


def json_bytes(value: Any) -> int:
    """The size of `value` as compact JSON in UTF-8 (lone surrogates count as three bytes)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def bound_warnings(warnings: list[str]) -> list[str]:
    """At most MAX_WARNINGS warnings, the last one saying how many more there were."""
    if len(warnings) <= MAX_WARNINGS:
        return warnings
    more = len(warnings) - MAX_WARNINGS + 1
    return [*warnings[: MAX_WARNINGS - 1], f"and {more:,} more warnings like these"]


def shown_path(where: str, limit: int = 120) -> str:
    """A metadata path for a warning, at most `limit` characters (keys can be any length)."""
    return where if len(where) <= limit else where[: limit - 3] + "..."


def collection_problem(name: str) -> str | None:
    """Why `name` cannot name a collection, or None: it must hold some text, no control
    characters, and fit beside a path in the assets' unique index."""
    if not name.strip():
        return "a collection needs a name: it is empty"
    if len(name) > MAX_COLLECTION_CHARS:
        return f"the name is {len(name):,} characters long; at most {MAX_COLLECTION_CHARS} fit"
    for position, char in enumerate(name, start=1):
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
            return f"the name holds the control character {char!r} at character {position}"
    size = len(name.encode("utf-8"))
    if size > MAX_COLLECTION_BYTES:
        return f"the name is {size:,} bytes of UTF-8; at most {MAX_COLLECTION_BYTES} fit"
    return None


_LAST_SPACE = re.compile(r"\s+\S*\Z")


def trim_at_word(text: str, limit: int) -> str:
    """At most `limit` characters, cut at the last space when one is near the end."""
    cut = text[:limit]
    if not text[limit : limit + 1].isspace():
        space = _LAST_SPACE.search(cut)
        if space is not None and space.start() > limit * 0.9:
            cut = cut[: space.start()]
    return cut.rstrip()


def _bounded_names(
    values: Iterable[str],
    kind: tuple[str, str],
    max_chars: int,
    max_count: int,
    warnings: list[str],
) -> tuple[str, ...]:
    one, many = kind
    kept: list[str] = []
    over = 0
    for value in values:
        if len(value) > max_chars:
            warnings.append(
                f"{one} of {len(value):,} characters dropped (the limit is {max_chars}): "
                f"{value[:40]!r}..."
            )
        elif len(kept) < max_count:
            kept.append(value)
        else:
            over += 1
    if over:
        warnings.append(f"{len(kept) + over:,} {many} given, the first {max_count} kept")
    return tuple(kept)
