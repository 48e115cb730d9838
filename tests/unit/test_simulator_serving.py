"""The simulator's queueing model: exact arrivals, capacity, latency that grows with load."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costslo.simulator.profiles import PerformanceProfile
from costslo.simulator.serving import MAX_UTILISATION, Arrivals, RequestSampler, operating_point

pytestmark = pytest.mark.unit

PROFILE = PerformanceProfile.model_validate(
    {
        "prefillTokensPerSecond": 40000,
        "decodeTokensPerSecond": 4000,
        "meanInputTokens": 800,
        "meanOutputTokens": 200,
        "failureRate": 0.05,
        "ttftSeconds": 0.06,
        "itlSeconds": 0.012,
    }
)


@given(rate=st.floats(0, 500), ticks=st.lists(st.floats(0.01, 2.0), min_size=1, max_size=200))
def test_arrivals_never_drift_from_the_rate(rate: float, ticks: list[float]) -> None:
    arrivals = Arrivals()
    total = sum(arrivals.take(rate, dt) for dt in ticks)
    expected = rate * sum(ticks)
    assert expected - 1 < total <= expected + 1e-6


def test_capacity_follows_gpu_work_per_request() -> None:
    # 800/40000 + 200/4000 = 0.07 GPU-seconds per request.
    assert PROFILE.gpu_seconds_per_request == pytest.approx(0.07)
    assert PROFILE.capacity_rps(2) == pytest.approx(2 / 0.07)


def test_operating_point_splits_served_and_dropped_load() -> None:
    light = operating_point(PROFILE, 1, 7.0)
    assert light.served_rps == 7.0 and light.dropped_rps == 0.0
    assert light.utilisation == pytest.approx(7.0 * 0.07)
    heavy = operating_point(PROFILE, 1, 100.0)
    assert heavy.utilisation == pytest.approx(MAX_UTILISATION)
    assert heavy.served_rps + heavy.dropped_rps == pytest.approx(100.0)
    assert heavy.dropped_rps > 0


def test_latency_grows_as_utilisation_approaches_one() -> None:
    def mean(rho: float, attr: str) -> float:
        sampler = RequestSampler(PROFILE, seed=7)
        return statistics.fmean(getattr(sampler.served(rho, 1), attr) for _ in range(4000))

    low, mid, high = (mean(rho, "e2e_seconds") for rho in (0.1, 0.7, 0.95))
    assert low < mid < high
    # Queueing, measured in GPU time per request, explodes near saturation: 0.07 s * rho / (1 - rho).
    assert mean(0.5, "queue_seconds") == pytest.approx(0.07, rel=0.1)
    assert mean(0.95, "queue_seconds") == pytest.approx(0.07 * 19, rel=0.1)


def test_requests_fail_at_the_profile_rate_and_carry_their_work() -> None:
    sampler = RequestSampler(PROFILE, seed=1)
    reqs = [sampler.served(0.5, 1) for _ in range(20000)]
    failed = sum(not r.ok for r in reqs) / len(reqs)
    assert failed == pytest.approx(0.05, abs=0.01)
    assert all(r.finished_reason == "abort" for r in reqs if not r.ok)
    mean_work = statistics.fmean(r.gpu_seconds for r in reqs)
    assert mean_work == pytest.approx(PROFILE.gpu_seconds_per_request, rel=0.03)
    dropped = sampler.dropped()
    assert dropped.dropped and not dropped.ok and dropped.gpu_seconds == 0.0
