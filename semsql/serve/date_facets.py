"""The dates facet: when the results were taken, by year, or by month within one year once the
search's date range lies inside it. Each value is a range that semsql.search's own filter
takes (taken_after inclusive, taken_before exclusive), written as ISO dates."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from semsql.search import SearchRequest

MAX_YEARS = 50
"""The most years listed (the latest)."""


def month_year(request: SearchRequest) -> int | None:
    """The year whose months are counted: the one the request's date range lies inside, if any."""
    after, before = request.taken_after, request.taken_before
    if after is None or before is None or after.year >= date.max.year:
        return None
    if (after.tzinfo is None) != (before.tzinfo is None):  # not comparable: count by year
        return None
    following = datetime(after.year + 1, 1, 1, tzinfo=after.tzinfo)
    return after.year if before <= following else None


def bucket(taken_at: datetime, year: int | None) -> str | None:
    """A time's value: its year ("2019"), or its month ("2019-07") when counting one year's
    months (None when it is in another year)."""
    if year is None:
        return f"{taken_at.year:04d}"
    return f"{taken_at.year:04d}-{taken_at.month:02d}" if taken_at.year == year else None


def count(times: Iterable[datetime | None], year: int | None) -> Counter[str]:
    counted: Counter[str] = Counter()
    for taken_at in times:
        if taken_at is not None and (value := bucket(taken_at, year)) is not None:
            counted[value] += 1
    return counted


def value_range(value: str) -> tuple[date, date]:
    """The range a value stands for: [its first day, the first day after it)."""
    year, _, month = value.partition("-")
    if not month:
        return date(int(year), 1, 1), date(int(year) + 1, 1, 1)
    first = date(int(year), int(month), 1)
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following


def facet(counted: Counter[str], year: int | None) -> dict[str, Any]:
    """The facet: by year (the latest MAX_YEARS), or by month of `year`, in time order, each
    value with its count and the range it filters on."""
    values = sorted(counted)
    if year is None:
        values = values[-MAX_YEARS:]
    return {
        "by": "year" if year is None else "month",
        "year": year,
        "values": [
            {
                "value": value,
                "assets": counted[value],
                "taken_after": value_range(value)[0].isoformat(),
                "taken_before": value_range(value)[1].isoformat(),
            }
            for value in values
        ],
    }


def of_results(times: Iterable[datetime | None], request: SearchRequest) -> dict[str, Any]:
    """The facet of the results' times: by month when the request's range lies in one year."""
    year = month_year(request)
    return facet(count(times, year), year)
