"""Interval arithmetic of attendance (issue 4): union, clipping, whole seconds, concurrency."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.attendance.intervals import (
    OPEN,
    clip,
    concurrency,
    epoch_seconds,
    iso_time,
    length,
    peak,
    present_at,
    union,
    union_length,
)

# Small ranges so brute force over every second stays cheap.
times = st.integers(min_value=0, max_value=300)
intervals = st.lists(st.tuples(times, times).map(lambda p: (min(p), max(p))), max_size=12)
windows = st.tuples(times, times).map(lambda p: (min(p), max(p)))


def covered(items, start, end):
    """Brute force: the seconds [t, t+1) covered by any interval, inside the window."""
    return {t for s, e in items for t in range(max(s, start), min(e, end))}


@given(intervals, windows)
def test_union_length_never_exceeds_the_window(items, window):
    start, end = window
    assert union_length(items, start, end) <= end - start


@given(intervals, windows)
def test_union_length_never_exceeds_the_sum_of_segments(items, window):
    assert union_length(items, *window) <= sum(e - s for s, e in items)
    assert union_length(items, *window) <= sum(e - s for s, e in clip(items, *window))


@given(intervals, windows)
def test_union_length_counts_each_covered_second_once(items, window):
    assert union_length(items, *window) == len(covered(items, *window))


@given(intervals, windows, st.randoms(use_true_random=False))
def test_union_is_unchanged_by_duplicates_and_delivery_order(items, window, rnd):
    shuffled = items + items[: len(items) // 2]
    rnd.shuffle(shuffled)
    assert union(clip(shuffled, *window)) == union(clip(items, *window))
    assert union_length(shuffled, *window) == union_length(items, *window)


@given(intervals)
def test_union_is_sorted_disjoint_and_never_touching(items):
    merged = union(items)
    assert all(s < e for s, e in merged)
    assert all(a[1] < b[0] for a, b in zip(merged, merged[1:], strict=False))


def test_rejoin_at_the_same_second_is_one_session():
    assert union([(0, 60), (60, 120)]) == [(0, 120)]


def test_overlapping_devices_count_once():
    laptop, phone = (0, 3000), (1800, 3600)
    assert union_length([laptop, phone]) == 3600


def test_clip_drops_what_lies_outside_the_window():
    assert clip([(0, 10), (20, 30), (40, 50)], 5, 45) == [(5, 10), (20, 30), (40, 45)]
    assert clip([(0, 10)], 10, 20) == []


def test_open_intervals_are_not_counted_until_closed():
    merged = union([(0, 50), (40, OPEN)])
    assert merged == [(0, OPEN)]
    assert length(merged) == 0
    assert length(union([(0, 50), (60, OPEN)])) == 50


@given(st.lists(intervals, max_size=6))
def test_peak_concurrency_matches_brute_force(people):
    unions = [union(p) for p in people]
    curve = concurrency(unions)
    counts = {t: sum(1 for u in unions if any(s <= t < e for s, e in u)) for t in range(0, 301)}
    best, at = peak(curve)
    assert best == max(counts.values(), default=0)
    if best:
        assert at == min(t for t, c in counts.items() if c == best)
    assert present_at(curve, range(0, 301)) == [counts[t] for t in range(0, 301)]


def test_a_person_with_two_devices_is_present_once():
    curve = concurrency([union([(0, 100), (50, 150)]), union([(60, 70)])])
    assert peak(curve) == (2, 60)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("2024-05-01T10:00:00Z", 1714557600),
        ("2024-05-01T10:00:00.999999Z", 1714557600),  # truncated, never rounded up
        ("2024-05-01T12:00:00+02:00", 1714557600),
        ("2024-05-01T10:00:00", 1714557600),
    ],
)
def test_epoch_seconds_reads_zoom_times(text, seconds):
    assert epoch_seconds(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2024-05-01T24:00:00Z", "2024-13-01T10:00:00Z", "2024-05-01T1x:00:00Z"]
)
def test_epoch_seconds_refuses_what_is_not_a_time(text):
    with pytest.raises(ValueError):
        epoch_seconds(text)


@settings(max_examples=300)
@given(st.integers(min_value=-(10**9), max_value=4 * 10**9))
def test_iso_time_and_epoch_seconds_round_trip(seconds):
    assert epoch_seconds(iso_time(seconds)) == seconds


def test_iso_time_matches_strftime():
    for seconds in random.Random(3).sample(range(0, 4 * 10**9), 200):
        assert iso_time(seconds) == datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert iso_time(None) is None and iso_time(OPEN) is None
