"""Retrieval metrics of ranked results against the assets known to be relevant (qrels).

Pure functions over a ranking (asset ids, best first) and a set of relevant ids, with binary
relevance, as in the usual definitions (Manning et al., Introduction to Information Retrieval,
ch. 8):

    precision_at([3, 1, 7], {1, 2}, 2) == 0.5      # one of the first two is relevant
    recall_at([3, 1, 7], {1, 2}, 10) == 0.5        # one of the two relevant found
    reciprocal_rank([3, 1, 7], {1, 2}) == 0.5      # the first relevant is second
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

METRICS = ("P@1", "P@5", "P@10", "recall@k", "MRR", "nDCG@10")
"""The metrics of every evaluated query, in the order reports show them."""


def precision_at(ranking: Sequence[int], relevant: Collection[int], n: int) -> float:
    """The share of the first n places that hold a relevant asset (places left empty count as
    not relevant: a search that returns fewer than n rows is not rewarded for it)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return sum(1 for asset in ranking[:n] if asset in relevant) / n


def recall_at(ranking: Sequence[int], relevant: Collection[int], k: int) -> float:
    """The share of the relevant assets found in the first k places."""
    if not relevant:
        raise ValueError("recall needs at least one relevant asset")
    return len(set(ranking[:k]) & set(relevant)) / len(relevant)


def reciprocal_rank(ranking: Sequence[int], relevant: Collection[int]) -> float:
    """1 / the place of the first relevant asset; 0 when none was returned."""
    for place, asset in enumerate(ranking, start=1):
        if asset in relevant:
            return 1 / place
    return 0.0


def ndcg_at(ranking: Sequence[int], relevant: Collection[int], n: int) -> float:
    """Normalised discounted cumulative gain of the first n places, binary gains: the sum of
    1 / log2(place + 1) over the relevant places, over that of the best possible ranking."""
    if not relevant:
        raise ValueError("nDCG needs at least one relevant asset")
    gained = sum(
        1 / math.log2(place + 1)
        for place, asset in enumerate(ranking[:n], start=1)
        if asset in relevant
    )
    ideal = sum(1 / math.log2(place + 1) for place in range(1, min(len(relevant), n) + 1))
    return gained / ideal


def query_metrics(ranking: Sequence[int], relevant: Collection[int], k: int) -> dict[str, float]:
    """Every metric of METRICS for one ranked result; recall at k."""
    # A result holds each asset once; a repeat would count twice in precision.
    unique = list(dict.fromkeys(ranking))
    return {
        "P@1": precision_at(unique, relevant, 1),
        "P@5": precision_at(unique, relevant, 5),
        "P@10": precision_at(unique, relevant, 10),
        "recall@k": recall_at(unique, relevant, k),
        "MRR": reciprocal_rank(unique, relevant),
        "nDCG@10": ndcg_at(unique, relevant, 10),
    }


def mean_metrics(per_query: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over the queries (macro average); empty for no query."""
    rows = list(per_query)
    if not rows:
        return {}
    return {name: sum(row[name] for row in rows) / len(rows) for name in METRICS}


@dataclass(frozen=True)
class Judged:
    """One query's ranking by one signal, with its metrics."""

    signal: str
    ranking: tuple[int, ...]
    metrics: dict[str, float]
