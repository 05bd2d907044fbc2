"""Small statistics for tables and charts: percentiles, log-scale histograms, gap series."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) of ascending values, by nearest rank; None when empty."""
    if not ordered:
        return None
    rank = max(math.ceil(q * len(ordered)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def percentiles_by_key(pairs: Iterable[tuple[int, float]]) -> dict[int, tuple[float, float]]:
    """(key, value) pairs -> key: (p50, p95)."""
    grouped: dict[int, list[float]] = {}
    for key, value in pairs:
        grouped.setdefault(key, []).append(value)
    result: dict[int, tuple[float, float]] = {}
    for key, values in grouped.items():
        values.sort()
        result[key] = (percentile(values, 0.5) or 0.0, percentile(values, 0.95) or 0.0)
    return result


@dataclass(frozen=True, slots=True)
class Distribution:
    """Latencies of one method: counts per log-scale bucket plus the usual summary.

    `count` is every call; the latency figures cover the answered ones (None if none was).
    """

    label: str
    count: int
    p50: float | None
    p95: float | None
    maximum: float | None
    errors: int
    pending: int
    cancelled: int
    buckets: tuple[int, ...]


# Buckets cover 0.1 ms .. 100 s with four buckets per decade; outliers land in the end buckets.
BUCKET_LOW_MS = 0.1
BUCKETS_PER_DECADE = 4
BUCKET_COUNT = 6 * BUCKETS_PER_DECADE


def bucket_of(ms: float) -> int:
    if ms <= BUCKET_LOW_MS:
        return 0
    position = int(math.log10(ms / BUCKET_LOW_MS) * BUCKETS_PER_DECADE)
    return min(position, BUCKET_COUNT - 1)


def bucket_floor(index: int) -> float:
    return BUCKET_LOW_MS * 10 ** (index / BUCKETS_PER_DECADE)


def distributions(calls: Iterable[tuple[str, str | None, float | None, str]],
                  *, by_name: bool = True) -> list[Distribution]:
    """Per method (and tool/prompt/resource name), busiest first."""
    grouped: dict[str, tuple[list[float], list[int]]] = {}
    for method, name, latency, outcome in calls:
        label = f"{method} {name}" if by_name and name else method
        values, counters = grouped.setdefault(label, ([], [0, 0, 0, 0]))
        counters[0] += 1
        if latency is not None:
            values.append(latency)
        if outcome == "error":
            counters[1] += 1
        elif outcome == "pending":
            counters[2] += 1
        elif outcome == "cancelled":
            counters[3] += 1
    result = []
    for label, (values, (count, errors, pending, cancelled)) in grouped.items():
        values.sort()
        buckets = [0] * BUCKET_COUNT
        for value in values:
            buckets[bucket_of(value)] += 1
        result.append(Distribution(label, count, percentile(values, 0.5),
                                   percentile(values, 0.95), values[-1] if values else None,
                                   errors, pending, cancelled, tuple(buckets)))
    result.sort(key=lambda d: (-d.count, d.label))
    return result


@dataclass(frozen=True, slots=True)
class GapSeries:
    """The longest silence on any stream of a session, per time bucket."""

    start: float
    end: float
    bucket_seconds: float
    maxima_ms: tuple[float, ...]
    worst_ms: float
    worst_at: float | None


def gap_series(chunk_times: Iterable[tuple[int, float]], opened: dict[int, float],
               start: float, end: float, buckets: int) -> GapSeries:
    """Each gap (between a stream's open and first chunk, or between chunks) is charged to
    the bucket where it ended. `chunk_times` is (stream_id, t) by stream, then time."""
    span = max(end - start, 1e-6)
    width = span / max(buckets, 1)
    maxima = [0.0] * max(buckets, 1)
    worst, worst_at = 0.0, None
    last_stream, last_t = None, 0.0
    for stream_id, t in chunk_times:
        if stream_id != last_stream:
            last_stream, last_t = stream_id, opened.get(stream_id, t)
        gap = (t - last_t) * 1000
        last_t = t
        slot = min(max(int((t - start) / width), 0), len(maxima) - 1)
        maxima[slot] = max(maxima[slot], gap)
        if gap > worst:
            worst, worst_at = gap, t
    return GapSeries(start, end, width, tuple(maxima), worst, worst_at)
