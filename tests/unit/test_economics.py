"""The cost model: hand-computed examples, missing-data rules and properties of the arithmetic."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from costslo.economics import (
    NO_BUSY,
    NO_DELIVERED,
    NO_DELIVERED_IN_WINDOW,
    NO_ENERGY,
    NO_GPU_PRICE,
    NO_GPUS,
    NO_INPUT_TOKENS,
    NO_OUTPUT_TOKENS,
    NO_OUTPUT_TOKENS_IN_WINDOW,
    NO_PODS,
    NO_REQUESTS,
    NO_UTILISATION,
    ZERO_UTILISATION,
    CostBreakdown,
    Objective,
    Prices,
    Usage,
    as_decimal,
    cost_of,
    estimate,
    money,
    project,
)

pytestmark = pytest.mark.unit

D = Decimal

# The worked example of docs/cost-model.md: four GPUs and four replicas for one hour.
HOUR = 3600.0
FLEET = Usage(
    window_seconds=HOUR,
    gpu_seconds=4 * HOUR,
    replica_seconds=4 * HOUR,
    requests=40_000,
    delivered=36_000,
    busy_gpu_seconds=8_640,
    input_tokens=40_000_000,
    output_tokens=16_000_000,
    prefill_seconds=2_160,
    decode_seconds=6_480,
)
PRICES = Prices(gpu_hourly=D("3.60"), per_replica_hourly=D("0.36"), supporting_cost_per_request=D("0.000054"))
# The canary of the same example: one pod, ten minutes, twice the GPU work per request.
CANARY = Usage(
    window_seconds=600,
    gpu_seconds=600,
    replica_seconds=600,
    requests=1_000,
    delivered=900,
    busy_gpu_seconds=432,
)


def close(a: Decimal | float | None, b: Decimal | float, rel: float = 1e-9) -> bool:
    assert a is not None
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-18)


# --- money --------------------------------------------------------------------------------------------


def test_money_rounds_to_twelve_significant_digits_half_even() -> None:
    assert money(D("0.1234567890125")) == D("0.123456789012")
    assert money(D("0.1234567890135")) == D("0.123456789014")
    assert money(1 / 3) == D("0.333333333333")
    assert money(98.32 / 56) == D("1.75571428571")


def test_money_removes_float_noise_and_trailing_zeros() -> None:
    assert money(0.1 + 0.2) == D("0.3")
    assert str(money(0.1 + 0.2)) == "0.3"
    assert str(money(D("18.00"))) == "18"
    assert str(money(1000.0)) == "1000"
    assert money(-0.0) == 0 and str(money(-0.0)) == "0"


def test_money_rejects_what_is_not_an_amount() -> None:
    with pytest.raises(ValueError, match="finite"):
        money(float("nan"))
    with pytest.raises(ValueError, match="finite"):
        money(D("Infinity"))


def test_as_decimal_reads_floats_through_their_shortest_repr() -> None:
    assert as_decimal(0.1, "x") == D("0.1")
    assert as_decimal("0.00015", "x") == D("0.00015")
    assert as_decimal(3, "x") == D(3)
    with pytest.raises(ValueError, match="gpu_hourly must be a number"):
        as_decimal("three", "gpu_hourly")
    with pytest.raises(ValueError, match="finite"):
        as_decimal(float("inf"), "gpu_hourly")
    with pytest.raises(ValueError, match="must be a number"):
        as_decimal(True, "gpu_hourly")


# --- the worked example -------------------------------------------------------------------------------


def test_worked_example_every_term() -> None:
    b = cost_of(FLEET, PRICES, revenue_per_request=D("0.01"))
    assert b.mode == "provisioned"
    assert (b.requests, b.delivered, b.failed) == (40_000, 36_000, 4_000)
    assert b.failure_rate == pytest.approx(0.1)
    assert b.requests_per_second == pytest.approx(40_000 / 3600)
    assert (b.gpus, b.replicas) == (4.0, 4.0)
    assert b.gpu_cost == D("14.4")  # 14 400 GPU-s * 3.60 / 3600
    assert b.replica_cost == D("1.44")  # 14 400 replica-s * 0.36 / 3600
    assert b.energy_cost is None  # not priced
    assert b.compute_cost == D("15.84")
    assert b.supporting_cost == D("2.16")  # 40 000 * 0.000054
    assert b.total_cost == D("18")
    assert b.cost_per_request == D("0.0005")  # 18 / 36 000
    assert b.hourly_cost == D("18")
    assert b.utilisation == pytest.approx(0.6)  # 8 640 / 14 400
    assert b.idle_cost_fraction == pytest.approx(0.4)
    assert b.idle_cost == D("5.76")  # 14.40 * 0.4
    assert b.busy_gpu_seconds_per_request == pytest.approx(0.24)
    assert b.prefill_share == pytest.approx(0.25)  # 2 160 / (2 160 + 6 480)
    assert b.prefill_share_source == "measured"
    assert b.input_cost == D("3.96")
    assert b.output_cost == D("11.88")
    assert b.cost_per_million_input_tokens == D("0.099")  # 3.96 / 40
    assert b.cost_per_million_output_tokens == D("0.7425")  # 11.88 / 16
    assert b.revenue_per_request == D("0.01")
    assert b.gross_margin_per_request == D("0.0095")
    assert b.gross_margin == pytest.approx(0.95)
    assert b.missing == ()


def test_worked_example_weighted_split_without_timing() -> None:
    b = cost_of(dataclasses.replace(FLEET, prefill_seconds=None, decode_seconds=None), PRICES)
    # p = 40M / (40M + 2.5 * 16M) = 0.5
    assert b.prefill_share_source == "weighted"
    assert b.prefill_share == pytest.approx(0.5)
    assert (b.input_cost, b.output_cost) == (D("7.92"), D("7.92"))
    assert b.cost_per_million_input_tokens == D("0.198")
    assert b.cost_per_million_output_tokens == D("0.495")
    assert b.missing == ()


def test_prefix_cache_hits_weigh_nothing_in_the_split() -> None:
    """30M of the 40M input tokens came from the prefix cache: only 10M were computed."""
    usage = dataclasses.replace(FLEET, prefill_seconds=None, decode_seconds=None, cached_input_tokens=30e6)
    b = cost_of(usage, PRICES)
    # p = 10M / (10M + 2.5 * 16M) = 0.2; the input cost is spread over all 40M input tokens
    assert b.prefill_share == pytest.approx(0.2)
    assert b.cached_input_fraction == pytest.approx(0.75)
    assert b.input_cost == D("3.168") and b.cost_per_million_input_tokens == D("0.0792")
    # Measured prefill time already reflects the hits: the split stays the measured one.
    measured = cost_of(dataclasses.replace(FLEET, cached_input_tokens=30e6), PRICES)
    assert measured.prefill_share_source == "measured" and measured.prefill_share == pytest.approx(0.25)
    assert cost_of(FLEET, PRICES).cached_input_fraction is None  # not measured: unknown, not zero


def test_output_token_weight_is_configurable() -> None:
    usage = dataclasses.replace(FLEET, prefill_seconds=None, decode_seconds=None)
    b = cost_of(usage, dataclasses.replace(PRICES, output_token_weight=1.0))
    assert b.prefill_share == pytest.approx(40 / 56)
    assert b.cost_per_million_input_tokens == b.cost_per_million_output_tokens


def test_zero_prefill_and_decode_time_falls_back_to_weights() -> None:
    b = cost_of(dataclasses.replace(FLEET, prefill_seconds=0.0, decode_seconds=0.0), PRICES)
    assert b.prefill_share_source == "weighted"


def test_worked_example_projection_at_fleet_utilisation_equals_observed() -> None:
    p = project(FLEET, PRICES, fleet_utilisation=0.6)
    assert p.utilisation_source == "fleet"
    assert p.busy_gpu_seconds_per_request == pytest.approx(0.24)
    assert p.provisioned_gpu_seconds_per_request == pytest.approx(0.4)
    assert p.gpu_cost_per_request == D("0.0004")
    assert p.replica_cost_per_request == D("0.00004")
    assert p.supporting_cost_per_request == D("0.00006")  # 0.000054 * 40 000 / 36 000
    assert p.energy_cost_per_request is None
    assert p.cost_per_request == D("0.0005") == cost_of(FLEET, PRICES).cost_per_request
    assert p.missing == ()


def test_worked_example_canary_projection() -> None:
    observed = cost_of(CANARY, PRICES)
    assert observed.cost_per_request == D("0.000793333333333")  # 0.714 / 900
    at_fleet = project(CANARY, PRICES, fleet_utilisation=0.6)
    assert at_fleet.busy_gpu_seconds_per_request == pytest.approx(0.48)
    assert at_fleet.provisioned_gpu_seconds_per_request == pytest.approx(0.8)
    assert (at_fleet.gpu_cost_per_request, at_fleet.replica_cost_per_request) == (D("0.0008"), D("0.00008"))
    assert at_fleet.cost_per_request == D("0.00094")
    at_target = project(CANARY, PRICES, fleet_utilisation=0.6, target_utilisation=0.8)
    assert at_target.utilisation_source == "target"
    assert at_target.cost_per_request == D("0.00072")


# --- other modes and terms ----------------------------------------------------------------------------


def test_energy_is_priced_per_kwh() -> None:
    # Four GPUs at 700 W for an hour: 10.08 MJ = 2.8 kWh.
    usage = dataclasses.replace(FLEET, energy_joules=4 * 700 * 3600)
    b = cost_of(usage, dataclasses.replace(PRICES, energy_per_kwh=D("0.15")))
    assert b.energy_cost == D("0.42")
    assert b.compute_cost == D("16.26")
    assert b.total_cost == D("18.42")


def test_priced_energy_without_data_leaves_compute_cost_unknown() -> None:
    b = cost_of(FLEET, dataclasses.replace(PRICES, energy_per_kwh=D("0.15")))
    assert b.energy_cost is None and b.compute_cost is None and b.cost_per_request is None
    assert b.gpu_cost == D("14.4")
    assert b.missing == (NO_ENERGY,)


def test_hosted_api_mode_replaces_compute_cost_by_tokens() -> None:
    prices = Prices(
        api_input_per_million=D("0.15"),
        api_output_per_million=D("0.60"),
        supporting_cost_per_request=D("0.000054"),
    )
    b = cost_of(FLEET, prices)
    assert b.mode == "api"
    assert (b.gpu_cost, b.replica_cost, b.energy_cost, b.utilisation, b.idle_cost) == (None,) * 5
    assert b.input_cost == D("6")  # 40M * 0.15 / 1M
    assert b.output_cost == D("9.6")  # 16M * 0.60 / 1M
    assert b.compute_cost == D("15.6")
    assert b.total_cost == D("17.76")
    assert b.cost_per_request == D("0.000493333333333")
    assert b.cost_per_million_input_tokens == D("0.15")
    assert b.cost_per_million_output_tokens == D("0.60")
    assert b.prefill_share_source == "api"
    assert b.prefill_share == pytest.approx(6 / 15.6)
    assert b.missing == ()


def test_hosted_api_mode_without_tokens_has_no_cost() -> None:
    prices = Prices(api_input_per_million=D("0.15"), api_output_per_million=D("0.60"))
    b = cost_of(dataclasses.replace(FLEET, output_tokens=None), prices)
    assert b.compute_cost is None and b.cost_per_request is None
    assert b.missing == (NO_OUTPUT_TOKENS,)


def test_more_successes_than_finishes_counts_no_failures() -> None:
    b = cost_of(dataclasses.replace(FLEET, requests=35_990), PRICES)
    assert b.failed == 0 and b.failure_rate == 0


def test_busy_time_above_provisioned_caps_utilisation_at_one() -> None:
    b = cost_of(dataclasses.replace(FLEET, busy_gpu_seconds=15_000), PRICES)
    assert b.utilisation == 1.0 and b.idle_cost_fraction == 0.0 and b.idle_cost == 0


def test_cpu_only_target_costs_replicas_and_has_no_utilisation() -> None:
    usage = dataclasses.replace(FLEET, gpu_seconds=0.0, busy_gpu_seconds=None)
    b = cost_of(usage, Prices(per_replica_hourly=D("0.36")))
    assert b.gpu_cost == 0 and b.compute_cost == D("1.44")
    assert b.utilisation is None and b.missing == (NO_GPUS,)


def test_gross_margin_can_be_negative() -> None:
    b = cost_of(FLEET, PRICES, revenue_per_request=D("0.0004"))
    assert b.gross_margin_per_request == D("-0.0001")
    assert b.gross_margin == pytest.approx(-0.25)


def test_zero_revenue_reports_margin_per_request_only() -> None:
    b = cost_of(FLEET, PRICES, revenue_per_request=D(0))
    assert b.gross_margin_per_request == D("-0.0005") and b.gross_margin is None


# --- missing or unusable data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason", "unknown"),
    [
        ({"delivered": None}, NO_DELIVERED, ("cost_per_request", "failed", "busy_gpu_seconds_per_request")),
        ({"delivered": 0.0}, NO_DELIVERED_IN_WINDOW, ("cost_per_request", "busy_gpu_seconds_per_request")),
        (
            {"requests": None},
            NO_REQUESTS,
            ("supporting_cost", "total_cost", "cost_per_request", "failure_rate"),
        ),
        ({"busy_gpu_seconds": None}, NO_BUSY, ("utilisation", "idle_cost_fraction", "idle_cost")),
        ({"output_tokens": None}, NO_OUTPUT_TOKENS, ("cost_per_million_output_tokens",)),
        ({"output_tokens": 0.0}, NO_OUTPUT_TOKENS_IN_WINDOW, ("cost_per_million_output_tokens",)),
        (
            {"input_tokens": None, "prefill_seconds": None},
            NO_INPUT_TOKENS,
            ("prefill_share", "input_cost", "output_cost", "cost_per_million_input_tokens"),
        ),
        (
            {"gpu_seconds": 0.0, "replica_seconds": 0.0},
            NO_PODS,
            ("compute_cost", "total_cost", "cost_per_request", "utilisation"),
        ),
    ],
)
def test_missing_data_gives_none_and_a_reason(
    change: dict[str, Any], reason: str, unknown: tuple[str, ...]
) -> None:
    b = cost_of(dataclasses.replace(FLEET, **change), PRICES, revenue_per_request=D("0.01"))
    assert reason in b.missing
    for name in unknown:
        assert getattr(b, name) is None, name


def test_missing_gpu_price_is_not_a_free_gpu() -> None:
    b = cost_of(FLEET, dataclasses.replace(PRICES, gpu_hourly=None))
    assert b.gpu_cost is None and b.compute_cost is None and b.cost_per_request is None
    assert b.replica_cost == D("1.44")
    assert b.missing == (NO_GPU_PRICE,)


def test_unpriced_supporting_cost_needs_no_request_count() -> None:
    b = cost_of(
        dataclasses.replace(FLEET, requests=None),
        dataclasses.replace(PRICES, supporting_cost_per_request=D(0)),
    )
    assert b.supporting_cost == 0 and b.cost_per_request == D("0.00044")
    assert b.missing == (NO_REQUESTS,)


def test_projection_needs_a_utilisation_above_zero() -> None:
    assert NO_UTILISATION in project(FLEET, PRICES, fleet_utilisation=None).missing
    idle = project(FLEET, PRICES, fleet_utilisation=0.0)
    assert idle.cost_per_request is None and ZERO_UTILISATION in idle.missing
    with pytest.raises(ValueError, match="target utilisation"):
        project(FLEET, PRICES, fleet_utilisation=0.6, target_utilisation=1.5)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"busy_gpu_seconds": None}, NO_BUSY),
        ({"delivered": 0.0}, NO_DELIVERED_IN_WINDOW),
        ({"gpu_seconds": 0.0}, NO_GPUS),
    ],
)
def test_projection_without_data_has_no_cost(change: dict[str, Any], reason: str) -> None:
    p = project(dataclasses.replace(CANARY, **change), PRICES, fleet_utilisation=0.6)
    assert p.cost_per_request is None and reason in p.missing


def test_projection_without_gpu_price() -> None:
    p = project(CANARY, dataclasses.replace(PRICES, gpu_hourly=None), fleet_utilisation=0.6)
    assert p.gpu_cost_per_request is None and p.cost_per_request is None and NO_GPU_PRICE in p.missing


def test_projection_counts_priced_energy_per_delivered_request() -> None:
    prices = dataclasses.replace(PRICES, energy_per_kwh=D("0.15"))
    canary = dataclasses.replace(CANARY, energy_joules=900 * 3600 * 1000 / 0.15 * 1e-6)  # 0.9 money units
    p = project(canary, prices, fleet_utilisation=0.6)
    assert p.energy_cost_per_request == D("0.000001")
    assert p.cost_per_request == D("0.000941")
    assert NO_ENERGY in project(CANARY, prices, fleet_utilisation=0.6).missing


def test_projection_in_hosted_api_mode_is_the_observed_cost() -> None:
    prices = Prices(api_input_per_million=D("0.15"), api_output_per_million=D("0.60"))
    p = project(FLEET, prices, fleet_utilisation=None)
    assert p.cost_per_request == cost_of(FLEET, prices).cost_per_request
    assert p.utilisation is None and p.missing == ()


# --- validation of inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_seconds": 0.0}, "window_seconds must be > 0"),
        ({"gpu_seconds": -1.0}, "gpu_seconds must be >= 0"),
        ({"busy_gpu_seconds": float("nan")}, "busy_gpu_seconds must be a finite number"),
        ({"requests": float("inf")}, "requests must be a finite number"),
    ],
)
def test_usage_rejects_impossible_measurements(change: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(FLEET, **change)


def test_prices_are_validated() -> None:
    with pytest.raises(TypeError, match="gpu_hourly must be a Decimal"):
        Prices(gpu_hourly=3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_replica_hourly must be a finite amount >= 0"):
        Prices(per_replica_hourly=D("-1"))
    with pytest.raises(ValueError, match="both an input and an output price"):
        Prices(api_input_per_million=D("0.15"))
    with pytest.raises(ValueError, match="output_token_weight"):
        Prices(output_token_weight=0.0)
    assert Prices().mode == "provisioned"


def test_budget_from_maximum_is_the_given_decimal() -> None:
    assert Objective(max_cost_per_request=D("0.00015")).budget == D("0.00015")


def test_budget_from_revenue_and_margin() -> None:
    objective = Objective(revenue_per_request=D("0.002"), target_gross_margin=D("0.90"))
    assert objective.budget == D("0.0002")
    assert str(objective.budget) == "0.0002"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "give maxCostPerRequest"),
        ({"revenue_per_request": D("0.002")}, "give maxCostPerRequest"),
        ({"target_gross_margin": D("0.5")}, "needs revenuePerRequest"),
        ({"revenue_per_request": D("0.002"), "target_gross_margin": D("1")}, r"in \[0, 1\)"),
        (
            {"max_cost_per_request": D("1"), "revenue_per_request": D("2"), "target_gross_margin": D("0.5")},
            "not both",
        ),
        ({"max_cost_per_request": D("-1")}, ">= 0"),
    ],
)
def test_objective_rejects_ambiguous_or_impossible_budgets(fields: dict[str, Decimal], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Objective(**fields)


def test_objective_may_carry_revenue_beside_a_maximum() -> None:
    assert Objective(max_cost_per_request=D("1"), revenue_per_request=D("2")).budget == D("1")


# --- estimate -----------------------------------------------------------------------------------------


def test_estimate_example() -> None:
    e = estimate(
        gpu_hourly="3.60",
        gpus=4,
        requests_per_second=10,
        capacity_per_gpu=5,
        input_tokens=1000,
        output_tokens=400,
        revenue_per_request="0.01",
        target_gross_margin="0.9",
        api_input_per_million="0.15",
        api_output_per_million="0.60",
    )
    assert (e.capacity_requests_per_second, e.served_requests_per_second, e.saturated) == (20.0, 10.0, False)
    assert e.usage.requests == 36_000 and e.usage.busy_gpu_seconds == 7_200
    assert e.cost.utilisation == pytest.approx(0.5) and e.cost.idle_cost_fraction == pytest.approx(0.5)
    assert e.cost.cost_per_request == D("0.0004")  # 14.40 / 36 000
    assert e.cost.idle_cost == D("7.2")
    assert e.cost.prefill_share_source == "weighted"  # 1000 / (1000 + 2.5 * 400) = 0.5
    assert e.cost.cost_per_million_input_tokens == D("0.2")
    assert e.cost.cost_per_million_output_tokens == D("0.5")
    assert e.budget == D("0.001") and e.within_budget is True
    assert e.cost.gross_margin == pytest.approx(0.96)
    assert e.hosted_api is not None
    assert e.hosted_api.cost_per_request == D("0.00039")  # 1000 * 0.15e-6 + 400 * 0.60e-6


def test_estimate_reuses_cost_of() -> None:
    e = estimate(gpu_hourly=D("2.5"), gpus=2, requests_per_second=3, capacity_per_gpu=4, failure_rate=0.05)
    prices = Prices(gpu_hourly=D("2.5"))
    assert e.cost == cost_of(e.usage, prices)


def test_estimate_saturated_serves_only_capacity() -> None:
    e = estimate(
        gpu_hourly="3.60", gpus=2, requests_per_second=30, capacity_per_gpu=5, max_cost_per_request="0.0001"
    )
    assert e.saturated and e.served_requests_per_second == 10
    assert e.cost.utilisation == 1.0
    assert e.cost.cost_per_request == D("0.0002")  # 7.20 / 36 000
    assert e.within_budget is False


def test_estimate_with_failures_and_prefill_share() -> None:
    e = estimate(
        gpu_hourly="3.60",
        gpus=4,
        requests_per_second=10,
        capacity_per_gpu=5,
        failure_rate=0.1,
        supporting_cost_per_request="0.00001",
        input_tokens=1000,
        output_tokens=400,
        prefill_share=0.2,
    )
    assert e.usage.delivered == pytest.approx(32_400)
    assert e.cost.prefill_share_source == "measured" and e.cost.prefill_share == pytest.approx(0.2)
    # (14.40 + 0.36) / 32 400
    assert e.cost.cost_per_request == D("0.000455555555556")
    assert e.budget is None and e.within_budget is None and e.hosted_api is None


def test_estimate_replicas_default_to_one_per_gpu() -> None:
    e = estimate(gpu_hourly=1, gpus=8, requests_per_second=1, capacity_per_gpu=1, per_replica_hourly="0.5")
    assert e.cost.replicas == 8 and e.cost.replica_cost == D("4")
    e = estimate(
        gpu_hourly=1, gpus=8, replicas=1, requests_per_second=1, capacity_per_gpu=1, per_replica_hourly="0.5"
    )
    assert e.cost.replica_cost == D("0.5")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": 0}, "gpus must be > 0"),
        ({"capacity_per_gpu": 0}, "capacity_per_gpu must be > 0"),
        ({"requests_per_second": -1}, "requests_per_second"),
        ({"failure_rate": 1.5}, "failure_rate must be in"),
        ({"prefill_share": -0.1}, "prefill_share must be in"),
        ({"input_tokens": -5}, "input_tokens"),
        ({"gpu_hourly": "cheap"}, "gpu_hourly must be a number"),
        ({"api_input_per_million": "0.15"}, "both an input and an output price"),
        ({"target_gross_margin": "0.9"}, "needs revenuePerRequest"),
    ],
)
def test_estimate_rejects_bad_numbers(change: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"gpu_hourly": "3", "gpus": 1, "requests_per_second": 1, "capacity_per_gpu": 1}
    with pytest.raises(ValueError, match=message):
        estimate(**{**args, **change})  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------------

prices_st = st.decimals(min_value=D("0.01"), max_value=D("100"), places=4)
small_prices_st = st.decimals(min_value=D("0"), max_value=D("0.01"), places=6)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    window = draw(st.floats(60, 86_400))
    gpus = draw(st.floats(0.25, 64))
    requests = draw(st.floats(1, 1e7))
    return Usage(
        window_seconds=window,
        gpu_seconds=gpus * window,
        replica_seconds=draw(st.floats(0.25, 64)) * window,
        requests=requests,
        delivered=requests * draw(st.floats(0.01, 1)),
        busy_gpu_seconds=gpus * window * draw(st.floats(0.01, 1)),
        input_tokens=requests * draw(st.floats(1, 8000)),
        output_tokens=requests * draw(st.floats(1, 2000)),
        prefill_seconds=draw(st.none() | st.floats(0.01, 1e5)),
        decode_seconds=draw(st.floats(0.01, 1e5)),
    )


@st.composite
def all_prices(draw: st.DrawFn) -> Prices:
    return Prices(
        gpu_hourly=draw(prices_st),
        per_replica_hourly=draw(st.decimals(min_value=0, max_value=5, places=3)),
        supporting_cost_per_request=draw(small_prices_st),
        output_token_weight=draw(st.floats(0.5, 10)),
    )


def cpr(usage: Usage, prices: Prices) -> Decimal:
    value = cost_of(usage, prices).cost_per_request
    assert value is not None
    return value


@given(usages(), all_prices(), st.floats(1, 4))
def test_cost_per_request_rises_with_gpus(usage: Usage, prices: Prices, factor: float) -> None:
    more = dataclasses.replace(usage, gpu_seconds=usage.gpu_seconds * factor)
    assert cpr(more, prices) >= cpr(usage, prices)


@given(usages(), all_prices(), prices_st)
def test_cost_per_request_rises_with_gpu_price(usage: Usage, prices: Prices, other: Decimal) -> None:
    assert prices.gpu_hourly is not None
    low, high = sorted((prices.gpu_hourly, other))
    assume(low < high)
    cheap = cpr(usage, dataclasses.replace(prices, gpu_hourly=low))
    dear = cpr(usage, dataclasses.replace(prices, gpu_hourly=high))
    assert dear > cheap


@given(usages(), all_prices(), st.floats(0, 1e6))
def test_cost_per_request_rises_with_failures(usage: Usage, prices: Prices, extra: float) -> None:
    assert usage.requests is not None and usage.delivered is not None
    # The same finished requests with fewer delivered, and the same delivered with more failed.
    fewer_delivered = dataclasses.replace(usage, delivered=usage.delivered / 2)
    assert cpr(fewer_delivered, prices) > cpr(usage, prices)
    more_failed = dataclasses.replace(usage, requests=usage.requests + extra)
    assert cpr(more_failed, prices) >= cpr(usage, prices)


@given(usages(), all_prices(), small_prices_st)
def test_cost_per_request_rises_with_supporting_cost(usage: Usage, prices: Prices, other: Decimal) -> None:
    low, high = sorted((prices.supporting_cost_per_request, other))
    cheap = cpr(usage, dataclasses.replace(prices, supporting_cost_per_request=low))
    dear = cpr(usage, dataclasses.replace(prices, supporting_cost_per_request=high))
    assert dear >= cheap
    expected = (high - low) * D(usage.requests or 0) / D(usage.delivered or 1)
    # Each side is rounded to 12 significant digits after terms that are rounded too: an ulp or so of each.
    assert abs(dear - cheap - expected) <= (dear + cheap) * D("1e-11")


@given(usages(), all_prices(), st.floats(1, 10))
def test_cost_per_request_falls_with_delivered_traffic(usage: Usage, prices: Prices, factor: float) -> None:
    assert usage.requests is not None and usage.delivered is not None
    failed = usage.requests - usage.delivered
    delivered = usage.delivered * factor
    busier = dataclasses.replace(usage, requests=delivered + failed, delivered=delivered)
    assert cpr(busier, prices) <= cpr(usage, prices)


@given(usages(), all_prices())
def test_token_split_adds_up_to_compute_cost(usage: Usage, prices: Prices) -> None:
    b = cost_of(usage, prices)
    assert b.input_cost is not None and b.output_cost is not None and b.compute_cost is not None
    assert b.input_cost + b.output_cost == b.compute_cost
    assert usage.input_tokens is not None and usage.output_tokens is not None
    assert b.cost_per_million_input_tokens is not None and b.cost_per_million_output_tokens is not None
    from_input = b.cost_per_million_input_tokens * D(usage.input_tokens) / 10**6
    from_output = b.cost_per_million_output_tokens * D(usage.output_tokens) / 10**6
    # Each side carries the rounding of the compute cost, so the tolerance is relative to it.
    assert abs(from_input + from_output - b.compute_cost) <= b.compute_cost * D("1e-10")
    assert abs(from_input - b.input_cost) <= b.compute_cost * D("1e-10")


@given(usages(), all_prices())
def test_weighted_output_token_costs_weight_times_an_input_token(usage: Usage, prices: Prices) -> None:
    b = cost_of(dataclasses.replace(usage, prefill_seconds=None, decode_seconds=None), prices)
    assert b.prefill_share_source == "weighted"
    assert b.cost_per_million_input_tokens is not None and b.cost_per_million_output_tokens is not None
    ratio = b.cost_per_million_output_tokens / b.cost_per_million_input_tokens
    assert close(ratio, prices.output_token_weight, rel=1e-9)


@given(
    st.decimals(min_value=D("0.000001"), max_value=D("1000"), places=6),
    st.decimals(min_value=0, max_value=D("0.99"), places=2),
)
def test_budget_is_revenue_times_one_minus_margin(revenue: Decimal, margin: Decimal) -> None:
    budget = Objective(revenue_per_request=revenue, target_gross_margin=margin).budget
    assert budget == revenue * (1 - margin)
    assert 0 < budget <= revenue


@given(
    usages(),
    all_prices(),
    st.decimals(min_value=D("0.0001"), max_value=D("10"), places=4),
    st.decimals(min_value=0, max_value=D("0.99"), places=2),
)
def test_within_budget_exactly_when_margin_is_met(
    usage: Usage, prices: Prices, revenue: Decimal, margin: Decimal
) -> None:
    b = cost_of(usage, prices, revenue_per_request=revenue)
    budget = Objective(revenue_per_request=revenue, target_gross_margin=margin).budget
    assert b.cost_per_request is not None and b.gross_margin_per_request is not None
    assert b.gross_margin_per_request == revenue - b.cost_per_request
    assert (b.cost_per_request <= budget) == (b.gross_margin_per_request >= revenue * margin)
    assert b.gross_margin is not None and close(b.gross_margin, 1 - b.cost_per_request / revenue, rel=1e-9)


twelve_digit_amounts = st.builds(
    lambda coefficient, exponent: D(coefficient).scaleb(exponent),
    st.integers(1, 10**12 - 1),
    st.integers(-14, 2),
)


@given(twelve_digit_amounts)
def test_decimal_amounts_round_trip_exactly(amount: Decimal) -> None:
    assert money(amount) == amount
    assert money(float(amount)) == amount
    assert Objective(max_cost_per_request=amount).budget is amount
    # One GPU for one hour costs exactly its hourly price, and so does one request using all of it.
    one_gpu_hour = Usage(window_seconds=3600, gpu_seconds=3600, replica_seconds=3600, requests=1, delivered=1)
    b = cost_of(one_gpu_hour, Prices(gpu_hourly=amount))
    assert b.gpu_cost == amount and b.cost_per_request == amount and b.hourly_cost == amount


@given(usages(), all_prices(), st.floats(0.05, 1))
def test_projected_cost_doubles_with_gpu_work_per_request(
    usage: Usage, prices: Prices, u_star: float
) -> None:
    prices = dataclasses.replace(prices, supporting_cost_per_request=D(0))
    assert usage.busy_gpu_seconds is not None
    heavier = dataclasses.replace(usage, busy_gpu_seconds=usage.busy_gpu_seconds * 2)
    once = project(usage, prices, fleet_utilisation=u_star)
    twice = project(heavier, prices, fleet_utilisation=u_star)
    assert once.cost_per_request is not None and twice.cost_per_request is not None
    assert close(twice.cost_per_request, 2 * once.cost_per_request, rel=1e-9)
    assert once.gpu_cost_per_request is not None
    assert close(twice.gpu_cost_per_request, 2 * once.gpu_cost_per_request, rel=1e-9)


@given(usages(), all_prices())
def test_projection_at_own_utilisation_is_the_observed_cost(usage: Usage, prices: Prices) -> None:
    observed = cost_of(usage, prices)
    projected = project(usage, prices, fleet_utilisation=observed.utilisation)
    assert observed.cost_per_request is not None
    assert close(projected.cost_per_request, observed.cost_per_request, rel=1e-9)


@given(usages(), all_prices(), st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_projection_falls_as_target_utilisation_rises(
    usage: Usage, prices: Prices, a: float, b: float
) -> None:
    low, high = sorted((a, b))
    at_low = project(usage, prices, fleet_utilisation=None, target_utilisation=low).cost_per_request
    at_high = project(usage, prices, fleet_utilisation=None, target_utilisation=high).cost_per_request
    assert at_low is not None and at_high is not None and at_high <= at_low


optional_amount = st.none() | st.just(0.0) | st.floats(0.5, 1e6)


@given(
    st.builds(
        Usage,
        window_seconds=st.floats(1, 86_400),
        gpu_seconds=st.just(0.0) | st.floats(1, 1e6),
        replica_seconds=st.just(0.0) | st.floats(1, 1e6),
        requests=optional_amount,
        delivered=optional_amount,
        busy_gpu_seconds=optional_amount,
        input_tokens=optional_amount,
        output_tokens=optional_amount,
        prefill_seconds=optional_amount,
        decode_seconds=optional_amount,
        energy_joules=optional_amount,
    ),
    st.builds(
        Prices,
        gpu_hourly=st.none() | prices_st,
        per_replica_hourly=small_prices_st,
        supporting_cost_per_request=small_prices_st,
        energy_per_kwh=st.none() | small_prices_st,
    ),
)
def test_unknown_is_never_silent(usage: Usage, prices: Prices) -> None:
    b = cost_of(usage, prices, revenue_per_request=D("0.01"))
    money_terms = (
        b.compute_cost,
        b.total_cost,
        b.cost_per_request,
        b.cost_per_million_input_tokens,
        b.cost_per_million_output_tokens,
    )
    if any(term is None for term in money_terms):
        assert b.missing
    if b.cost_per_request is not None:
        # A known cost per request rests on known delivered requests and on every priced term.
        assert usage.delivered
        assert usage.gpu_seconds == 0 or prices.gpu_hourly is not None
        assert prices.energy_per_kwh is None or usage.energy_joules is not None
        assert usage.gpu_seconds + usage.replica_seconds > 0
    p = project(usage, prices, fleet_utilisation=b.utilisation)
    if p.cost_per_request is None:
        assert p.missing


def test_complete_data_leaves_nothing_missing() -> None:
    b: CostBreakdown = cost_of(
        dataclasses.replace(FLEET, energy_joules=1e6, cached_input_tokens=1e5),
        dataclasses.replace(PRICES, energy_per_kwh=D("0.1")),
        revenue_per_request=D("0.01"),
    )
    assert b.missing == ()
    assert all(getattr(b, f.name) is not None for f in dataclasses.fields(b))
