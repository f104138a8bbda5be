"""How much stated text one asset may carry: what its indexes hold, with room to spare.

Captions, keywords and people names go into B-tree indexes (tags_label, people_name), GIN
indexes (people_name_trgm, search_documents' tags and document) and the asset's tsvector. A
B-tree or GIN entry holds at most about 2,700 bytes and a tsvector at most 1 MB; one value
over either used to roll back its whole batch of files. `bound_facts` and `bound_metadata`
trim or drop what is over these limits before it reaches the database, and say what they did
in warnings that ingest keeps in metadata["metadata_errors"].

Even with every limit reached at once (a full caption, 500 keywords and 200 names of 200
characters each) an asset's search text is about 150,000 characters, which makes a tsvector
well under 1 MB (tests/test_ingest_hardening.py stores such an asset).
"""

from __future__ import annotations

import re
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
MAX_URI_BYTES = 2_000
"""assets (collection, uri) is a unique B-tree; this leaves 700 bytes for the collection."""


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
    """A copy with every string over MAX_METADATA_TEXT_CHARS trimmed, each with a warning."""

    def bounded(value: Any, where: str) -> Any:
        if isinstance(value, str) and len(value) > MAX_METADATA_TEXT_CHARS:
            warnings.append(
                f"metadata {where}: {len(value):,} characters, trimmed to the first "
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

    return bounded(metadata, "")


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
