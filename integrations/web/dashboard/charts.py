"""What the dashboard's charts and headline numbers show, computed from plain values. Pure.

The browser draws (uPlot); this module decides the numbers: histogram bins of attended
minutes, and the headline metrics taken from a `summary()` answer so they are the CLI's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

HISTOGRAM_BINS = 60  # at most this many bars: readable on a phone, a few KB of JSON


def bin_minutes(longest_seconds: int, bins: int = HISTOGRAM_BINS) -> int:
    """Width of one histogram bar in whole minutes, so that `bins` bars cover the longest attendance."""
    return max(1, math.ceil(longest_seconds / 60 / bins))


def histogram(seconds: Sequence[int], bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """People per bar of attended minutes: bar i counts [i*width, (i+1)*width) minutes."""
    width = bin_minutes(max(seconds, default=0), bins)
    counts = [0] * (max(seconds, default=0) // 60 // width + 1)
    for s in seconds:
        counts[s // 60 // width] += 1
    return {"bin_minutes": width, "starts": [i * width for i in range(len(counts))], "counts": counts}


def minutes(seconds: int | float | None) -> float | None:
    """Seconds as minutes to one decimal (the median's headline)."""
    return None if seconds is None else round(seconds / 60, 1)


def plain(value: int | float | None) -> str:
    """A number as the plain text of a `data-metric` element: no separators, no trailing `.0`."""
    if value is None:
        return "—"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def headline(summary: dict[str, Any]) -> dict[str, int | float | None]:
    """The instance page's `data-metric` numbers, from a `summary()` answer."""
    return {
        "in-now": summary["meeting"]["people_in_meeting"],
        "peak": summary["peak_concurrent"],
        "unique": summary["unique_attendees"],
        "eligible": summary["eligible"],
        "attended-minutes-median": minutes(summary["median_attended_seconds"]),
    }
