"""histogram_quantile reproduces PromQL's: linear within the bucket, +Inf and empty histograms handled."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costslo.metrics.histogram import Bucket, histogram_quantile, merge_buckets
from tests.support.promtool import Case, evaluate

pytestmark = pytest.mark.unit

INF = math.inf
LATENCY = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (INF, 40.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.3),  # rank 20: 10 into the 20 observations of (0.1, 0.5]
        (0.95, 0.9),  # rank 38: 8 into the 10 observations of (0.5, 1]
        (0.25, 0.1),  # rank 10: the top of the first bucket
        (0.1, 0.04),  # rank 4 in (0, 0.1]: the lowest bucket starts at 0
        (1.0, 1.0),
        (0.0, 0.0),
    ],
)
def test_hand_computed_quantiles(q: float, expected: float) -> None:
    assert histogram_quantile(q, LATENCY) == pytest.approx(expected)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    buckets = [(1.0, 5.0), (2.0, 6.0), (INF, 10.0)]
    assert histogram_quantile(0.9, buckets) == 2.0
    assert histogram_quantile(0.6, buckets) == 2.0
    assert histogram_quantile(0.5, buckets) == 1.0


def test_negative_lowest_bound_is_returned_as_is() -> None:
    assert histogram_quantile(0.2, [(-1.0, 5.0), (INF, 10.0)]) == -1.0


@pytest.mark.parametrize(
    "buckets",
    [
        [],
        [(INF, 10.0)],  # a single bucket cannot be interpolated
        [(0.5, 3.0), (1.0, 5.0)],  # no +Inf bucket
        [(0.5, 0.0), (1.0, 0.0), (INF, 0.0)],  # no observations (no traffic in the window)
    ],
)
def test_unusable_histograms_give_none(buckets: list[Bucket]) -> None:
    assert histogram_quantile(0.95, buckets) is None


def test_q_outside_zero_one_follows_prometheus() -> None:
    assert histogram_quantile(-0.1, LATENCY) == -INF
    assert histogram_quantile(1.1, LATENCY) == INF
    assert histogram_quantile(math.nan, LATENCY) is None


def test_q_zero_with_an_empty_lowest_bucket_is_undefined() -> None:
    # Prometheus computes 0/0 here and answers NaN.
    assert histogram_quantile(0.0, [(1.0, 0.0), (2.0, 4.0), (INF, 4.0)]) is None


def test_order_does_not_matter_and_repeated_bounds_add_up() -> None:
    shuffled = [LATENCY[2], LATENCY[0], LATENCY[3], LATENCY[1]]
    assert histogram_quantile(0.5, shuffled) == pytest.approx(0.3)
    halves = [(le, c / 2) for le, c in LATENCY] * 2
    assert histogram_quantile(0.5, halves) == pytest.approx(0.3)


def test_decreasing_counts_are_made_monotonic() -> None:
    # A bucket scraped a moment earlier than its neighbours can read lower; Prometheus carries the max.
    broken = [(1.0, 10.0), (2.0, 8.0), (3.0, 15.0), (INF, 20.0)]
    fixed = [(1.0, 10.0), (2.0, 10.0), (3.0, 15.0), (INF, 20.0)]
    for q in (0.25, 0.5, 0.6, 0.7, 0.9):
        assert histogram_quantile(q, broken) == histogram_quantile(q, fixed)


def test_float_noise_between_buckets_is_ignored() -> None:
    noisy = [(1.0, 10.0), (2.0, 10.0 + 1e-14), (INF, 10.0 + 1e-14)]
    assert histogram_quantile(1.0, noisy) == 1.0


def test_rates_and_counts_give_the_same_quantile() -> None:
    window = 300.0
    rates = [(le, c / window) for le, c in LATENCY]
    for q in (0.5, 0.9, 0.95, 0.99):
        assert histogram_quantile(q, rates) == pytest.approx(histogram_quantile(q, LATENCY))


def test_merge_sums_by_bound() -> None:
    a = [(0.5, 2.0), (1.0, 3.0), (INF, 3.0)]
    b = [(0.5, 1.0), (2.0, 4.0), (INF, 5.0)]
    assert merge_buckets([a, b]) == [(0.5, 3.0), (1.0, 3.0), (2.0, 4.0), (INF, 8.0)]
    assert merge_buckets([]) == []


@st.composite
def histograms(draw: st.DrawFn) -> list[Bucket]:
    bounds = sorted(draw(st.sets(st.floats(0.001, 1000.0, allow_nan=False), min_size=1, max_size=12)))
    increments = draw(st.lists(st.floats(0.0, 1e6), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    cumulative, running = [], 0.0
    for bound, inc in zip([*bounds, INF], increments, strict=True):
        running += inc
        cumulative.append((bound, running))
    return cumulative


@given(histograms(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_monotone_in_q(buckets: list[Bucket], q1: float, q2: float) -> None:
    lo, hi = sorted((q1, q2))
    a, b = histogram_quantile(lo, buckets), histogram_quantile(hi, buckets)
    if a is not None and b is not None:
        assert a <= b + 1e-9 * max(1.0, abs(b))


@given(histograms(), st.floats(0.0, 1.0))
def test_quantile_lies_in_the_bucket_holding_its_rank(buckets: list[Bucket], q: float) -> None:
    value = histogram_quantile(q, buckets)
    total = buckets[-1][1]
    if total == 0:
        assert value is None
        return
    if value is None:  # only q = 0 with an empty lowest bucket is undefined
        assert q * total <= buckets[0][1]
        return
    rank = q * total
    holding = next((i for i, (_, c) in enumerate(buckets[:-1]) if c >= rank), len(buckets) - 1)
    if holding == len(buckets) - 1:
        assert value == buckets[-2][0]
        return
    lower = buckets[holding - 1][0] if holding > 0 else 0.0
    upper = buckets[holding][0]
    assert lower - 1e-9 <= value <= upper + 1e-9


@given(histograms(), st.floats(0.0, 1.0), st.floats(0.001, 1e6))
def test_scaling_counts_does_not_move_the_quantile(buckets: list[Bucket], q: float, factor: float) -> None:
    scaled = [(le, c * factor) for le, c in buckets]
    a, b = histogram_quantile(q, buckets), histogram_quantile(q, scaled)
    if a is not None and b is not None:
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9)


def test_agrees_with_prometheus(tmp_path: Path) -> None:
    """Random histograms (negative bounds, empty and non-monotonic buckets) through PromQL and through us."""
    rnd = random.Random(11)
    series: list[tuple[str, str]] = []
    cases: list[Case] = []
    for case in range(120):
        bounds = sorted(
            {
                round(rnd.choice([rnd.uniform(-2, 0), rnd.uniform(0, 100)]), 3)
                for _ in range(rnd.randint(1, 8))
            }
        )
        cumulative, running = [], 0.0
        for bound in [*bounds, INF]:
            running += rnd.choice([0, 0, rnd.randint(0, 50)])
            cumulative.append((bound, running))
        if case % 10 == 0:
            i = rnd.randrange(len(cumulative))
            cumulative[i] = (cumulative[i][0], max(0.0, cumulative[i][1] - 5))
        for bound, count in cumulative:
            le = "+Inf" if bound == INF else repr(bound)
            series.append((f'h_bucket{{case="{case}",le="{le}"}}', f"{count}x5"))
        for q in (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0):
            ours = histogram_quantile(q, cumulative)
            # Prometheus answers NaN where we answer None; `> -Inf` drops NaN, leaving no sample.
            expr = f'histogram_quantile({q}, h_bucket{{case="{case}"}}) > -Inf'
            cases.append((expr, [] if ours is None else [(f'{{case="{case}"}}', ours)]))
    evaluate(tmp_path, series, cases, eval_time="1m")
