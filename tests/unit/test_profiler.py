"""The profiler's arithmetic: request shapes, quantiles, capacity, the step within the latency budget,
and the budget and replicas it suggests (the money itself is `costslo estimate`'s)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costslo import economics
from costslo.profiler.analysis import Settings, summarise
from costslo.profiler.load import RequestResult, Shape, Step


def step(concurrency: int, rps: float, latency: float, n: int = 100, failed: int = 0) -> Step:
    results = [RequestResult(i >= failed, latency, latency / 10, 800, 200) for i in range(n)]
    return Step(concurrency, n / rps, results)


SETTINGS = Settings(gpus=1, gpu_hourly=Decimal("3.00"), latency_budget_seconds=5.0, target_rps=40)


def test_shapes_parse_and_bad_ones_say_how_to_write_them() -> None:
    assert Shape.parse("800:200") == Shape(800, 200, 1.0)
    assert Shape.parse("3000:500:0.25") == Shape(3000, 500, 0.25)
    for bad in ("800", "a:b", "0:10", "10:10:0"):
        with pytest.raises(ValueError, match="--mix"):
            Shape.parse(bad)


def test_quantiles_are_nearest_rank_over_delivered_requests() -> None:
    s = Step(1, 10.0, [RequestResult(True, float(i), None, None, None) for i in range(1, 101)])
    s.results.append(RequestResult(False, 999.0, None, None, None, "HTTP 500"))
    assert s.quantile(0.95) == 95.0 and s.quantile(0.5) == 50.0
    assert s.failure_rate == pytest.approx(1 / 101) and s.errors == ["HTTP 500"]


def test_capacity_budget_step_and_suggestion() -> None:
    steps = [step(1, 2.0, 2.5), step(8, 12.0, 3.0), step(32, 14.0, 4.8, failed=2), step(64, 14.2, 9.0)]
    out = summarise(steps, SETTINGS)
    assert out["capacityRequestsPerSecond"] == pytest.approx(14.2) and out["capacityReached"]
    assert not summarise(steps[:2], SETTINGS)["capacityReached"]  # 2 -> 12 req/s: still rising
    at = out["atBudget"]
    assert at["concurrency"] == 32 and at["latencySeconds"] == 4.8
    # The same numbers through `costslo estimate`'s arithmetic give the same cost.
    same = economics.estimate(
        gpu_hourly="3.00",
        gpus=1,
        requests_per_second=at["requestsPerSecond"],
        capacity_per_gpu=out["capacityRequestsPerSecond"],
        failure_rate=at["failureRate"],
        input_tokens=800,
        output_tokens=200,
    )
    assert Decimal(at["costPerRequest"]) == same.cost.cost_per_request
    s = out["suggestion"]
    # At 70% of 14 req/s: 9.8 req/s per replica, so 40 req/s needs 5 replicas.
    assert s["requestsPerSecondPerReplica"] == pytest.approx(9.8) and s["replicas"] == 5
    assert Decimal(s["maxCostPerRequest"]) >= Decimal(s["costPerRequest"])
    assert len(Decimal(s["maxCostPerRequest"]).normalize().as_tuple().digits) <= 2


def test_idle_gpus_make_low_concurrency_dear() -> None:
    out = summarise([step(1, 2.0, 2.5), step(64, 14.0, 4.0)], SETTINGS)
    low, high = (Decimal(r["costPerRequest"]) for r in out["steps"])
    assert float(low / high) == pytest.approx(7.0, rel=0.02)  # a seventh of the capacity used, all of it paid


def test_a_budget_no_step_meets_is_said_plainly() -> None:
    out = summarise([step(1, 2.0, 6.0), step(4, 6.0, 7.0)], SETTINGS)
    assert out["atBudget"] is None and "below what one request takes" in out["suggestion"]
    failing = Step(1, 1.0, [RequestResult(False, 0.1, None, None, None, "HTTP 404: unknown model")])
    with pytest.raises(ValueError, match="no step delivered 90% of its requests: HTTP 404: unknown model"):
        summarise([failing], SETTINGS)


def test_a_step_that_mostly_fails_is_no_operating_point() -> None:
    """Fast rejections (429s) at high concurrency look like throughput; they are not."""
    rejected = step(128, 300.0, 0.05, n=400, failed=380)
    out = summarise([step(8, 12.0, 3.0), step(32, 14.0, 4.8), rejected], SETTINGS)
    assert out["capacityRequestsPerSecond"] == pytest.approx(14.0)
    assert out["atBudget"]["concurrency"] == 32
    assert out["steps"][-1]["failed"] == 380  # still reported, just not chosen


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://localhost:8000", True),
        ("http://127.0.0.1:28400", True),
        ("http://127.0.0.2:8000/v1", True),
        ("http://[::1]:8000", True),
        ("https://vllm.ml.svc:8000", False),
        ("http://10.0.0.7:8000", False),
        ("http://[2001:db8::1]:8000", False),
    ],
)
def test_local_gpus_are_sampled_only_for_an_endpoint_on_this_machine(url: str, local: bool) -> None:
    from costslo.profiler.run import is_local

    assert is_local(url) is local
