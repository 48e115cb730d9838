"""Quantiles from classic (cumulative `le`) histogram buckets, exactly as PromQL's histogram_quantile.

Buckets are summed across pods in Python, so any group of pods (a target, a revision) gets its quantile
without a query of its own; the interpolation below reproduces Prometheus' `BucketQuantile` so the number
matches what a dashboard shows for the same pods.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence

Bucket = tuple[float, float]  # (upper bound `le`, cumulative count or rate)

# Prometheus treats neighbouring cumulative counts this close as equal: float noise from rate() must not
# look like observations.
_SMALL_DELTA = 1e-12


def merge_buckets(groups: Iterable[Sequence[Bucket]]) -> list[Bucket]:
    """Buckets of several series summed by upper bound, like `sum by (le)`."""
    totals: dict[float, float] = {}
    for buckets in groups:
        for le, value in buckets:
            totals[le] = totals.get(le, 0.0) + value
    return sorted(totals.items())


def _almost_equal(a: float, b: float) -> bool:
    if a == b:
        return True
    abs_sum, diff = abs(a) + abs(b), abs(a - b)
    if a == 0 or b == 0 or abs_sum < sys.float_info.min:
        return diff < _SMALL_DELTA * sys.float_info.min
    return diff / min(abs_sum, sys.float_info.max) < _SMALL_DELTA


def histogram_quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly within the bucket holding it.

    None where Prometheus answers NaN: no buckets, no +Inf bucket, fewer than two buckets, no observations.
    Like Prometheus, q < 0 gives -inf and q > 1 gives +inf; a quantile in the +Inf bucket is reported as the
    highest finite upper bound, and the lowest bucket is taken to start at 0 unless its bound is negative.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = merge_buckets([buckets])  # sorts and coalesces repeated bounds
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return None
    bounds = [le for le, _ in ordered]
    counts = [c for _, c in ordered]
    # Counts must not decrease with `le`; scrapes of one histogram at slightly different times can break that.
    for i in range(1, len(counts)):
        if counts[i] < counts[i - 1] or _almost_equal(counts[i], counts[i - 1]):
            counts[i] = counts[i - 1]
    observations = counts[-1]
    if observations == 0 or math.isnan(observations):
        return None
    rank = q * observations
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        return None  # 0/0 in Prometheus: q = 0 with an empty lowest bucket
    return start + (end - start) * (rank / count)
