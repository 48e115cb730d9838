"""The verdict: both windows to breach, minRequests, hysteresis, the missing-data policy, latency."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, get_args

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from costslo import api
from costslo.economics import NO_GPU_DATA, Prices, Usage, cost_of
from costslo.verdict import (
    CONDITION_TYPES,
    INSUFFICIENT_TRAFFIC_AFTER_BREACH,
    LATENCY_MET,
    METRICS_AVAILABLE,
    METRICS_UNAVAILABLE_AFTER_BREACH,
    ROLLOUT_ALLOWED,
    SLO_MET,
    LatencyKind,
    Policy,
    Standing,
    TokenSide,
    Verdict,
    VerdictCondition,
    VerdictPhase,
    WindowReading,
    judge,
    merge_conditions,
    outcome,
)

pytestmark = pytest.mark.unit

D = Decimal
BUDGET = D("0.00015")  # recovery at 5% hysteresis: 0.0001425
POLICY = Policy(budget=BUDGET)
LATENCY = Policy(budget=BUDGET, latency_threshold_seconds=2.5)  # recovery at 2.375 s
BREACHED = Standing(cost_breached=True)


def reading(
    cost: str | None = "0.00012",
    requests: float | None = 5234,
    latency: float | None = 1.0,
    kind: LatencyKind = "quantile",
    missing: tuple[str, ...] = (),
    latency_missing: tuple[str, ...] = (),
) -> WindowReading:
    return WindowReading(
        cost_per_request=None if cost is None else D(cost),
        requests=requests,
        latency_seconds=latency,
        latency_kind=kind,
        missing=missing,
        latency_missing=latency_missing,
    )


def statuses(verdict: Verdict) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in verdict.conditions}


def chain(policy: Policy, *windows: tuple[WindowReading, WindowReading]) -> list[Verdict]:
    """Evaluations in order, each reading its standing from the conditions the previous one wrote."""
    verdicts: list[Verdict] = []
    conditions: Sequence[VerdictCondition] = ()
    for long, short in windows:
        verdicts.append(judge(long, short, policy, Standing.from_conditions(conditions)))
        conditions = verdicts[-1].conditions
    return verdicts


# --- cost: both windows ---------------------------------------------------------------------------------


def test_a_breach_needs_both_windows_over_budget_and_says_so_with_the_numbers() -> None:
    verdict = judge(reading("0.000182"), reading("0.000190", requests=400), POLICY)
    assert verdict.phase == "Breached"
    assert not verdict.rollout_allowed
    assert verdict.reason == (
        "cost per request $0.000182 is over the budget $0.000150 in both windows "
        "(1h: $0.000182, 5m: $0.000190) over 5,234 requests"
    )
    assert statuses(verdict) == {
        SLO_MET: ("False", "OverBudget"),
        LATENCY_MET: ("True", "NoLatencyObjective"),
        METRICS_AVAILABLE: ("True", "MetricsPresent"),
        ROLLOUT_ALLOWED: ("False", "SLOBreached"),
    }
    assert verdict.condition(SLO_MET).message == verdict.reason
    assert verdict.standing == Standing(cost_breached=True)


def test_a_spike_in_the_short_window_alone_is_not_a_breach() -> None:
    verdict = judge(reading("0.000120"), reading("0.000900"), POLICY)
    assert verdict.phase == "Met"
    assert verdict.rollout_allowed
    assert statuses(verdict)[SLO_MET] == ("True", "OneWindowOverBudget")
    assert verdict.reason == (
        "cost per request is over the budget $0.000150 only in the 5m window (5m: $0.000900, 1h: $0.000120) "
        "over 5,234 requests, which is not a breach"
    )


def test_an_excess_in_the_long_window_alone_is_not_a_breach() -> None:
    verdict = judge(reading("0.000170"), reading("0.000130"), POLICY)
    assert verdict.phase == "Met"
    assert statuses(verdict)[SLO_MET] == ("True", "OneWindowOverBudget")
    assert "only in the 1h window (1h: $0.000170, 5m: $0.000130)" in verdict.reason


def test_a_cost_exactly_at_the_budget_is_within_it() -> None:
    verdict = judge(reading("0.00015"), reading("0.00015"), POLICY)
    assert verdict.phase == "Met"
    assert statuses(verdict)[SLO_MET] == ("True", "WithinBudget")
    assert verdict.reason == (
        "cost per request $0.000150 is within the budget $0.000150 in both windows "
        "(1h: $0.000150, 5m: $0.000150) over 5,234 requests"
    )


def test_a_cost_a_hair_over_the_budget_never_reads_as_equal_to_it() -> None:
    verdict = judge(reading("0.0001500001"), reading("0.0001500002"), POLICY)
    assert verdict.phase == "Breached"
    assert "$0.0001500001 is over the budget $0.0001500000" in verdict.reason


def test_window_names_come_from_the_policy() -> None:
    policy = Policy(budget=BUDGET, long_window="6h", short_window="30m")
    verdict = judge(reading("0.0002"), reading("0.0003"), policy)
    assert "(6h: $0.000200, 30m: $0.000300)" in verdict.reason


# --- minRequests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "phase"),
    [(99, "InsufficientTraffic"), (99.97, "InsufficientTraffic"), (100, "Breached"), (100.5, "Breached")],
)
def test_exactly_min_requests_is_enough_to_judge(requests: float, phase: VerdictPhase) -> None:
    verdict = judge(reading("0.0002", requests=requests), reading("0.0003", requests=10), POLICY)
    assert verdict.phase == phase


def test_too_few_requests_take_no_action_and_say_how_many() -> None:
    verdict = judge(reading("0.0002", requests=99.97), reading("0.0003", requests=3), POLICY)
    assert verdict.phase == "InsufficientTraffic"
    assert verdict.rollout_allowed
    assert verdict.reason == (
        "99.97 requests in the 1h window are fewer than minRequests (100), too few to judge, "
        "so no action is taken"
    )
    assert statuses(verdict) == {
        SLO_MET: ("Unknown", "InsufficientTraffic"),
        LATENCY_MET: ("True", "NoLatencyObjective"),
        METRICS_AVAILABLE: ("True", "MetricsPresent"),
        ROLLOUT_ALLOWED: ("True", "InsufficientTraffic"),
    }
    assert verdict.standing == Standing()


def test_no_traffic_at_all_is_insufficient_traffic_not_missing_metrics() -> None:
    no_requests = ("no finished requests in the window", "no delivered requests in the window")
    idle = reading(None, requests=0, latency=None, missing=no_requests)
    verdict = judge(idle, idle, LATENCY)
    assert verdict.phase == "InsufficientTraffic"
    assert statuses(verdict)[METRICS_AVAILABLE] == ("True", "MetricsPresent")
    assert "no requests in the 1h and 5m windows" in verdict.condition(METRICS_AVAILABLE).message
    assert verdict.reason.startswith("0 requests in the 1h window are fewer than minRequests (100)")


def test_a_silent_short_window_with_enough_traffic_is_missing_data() -> None:
    silent = reading(None, requests=0, missing=("no finished requests in the window",))
    verdict = judge(reading("0.0002"), silent, POLICY)
    assert verdict.phase == "MetricsUnavailable"
    assert (
        "no usable cost per request in the 5m window (no finished requests in the window)" in verdict.reason
    )


def test_one_request_reads_in_the_singular() -> None:
    verdict = judge(reading(requests=1), reading(requests=1), POLICY)
    assert verdict.reason.startswith("1 request in the 1h window is fewer than minRequests (100)")


# --- hysteresis -------------------------------------------------------------------------------------------


def test_recovery_needs_the_long_window_under_the_hysteresis_margin() -> None:
    breach, recovering, recovered, settled = chain(
        POLICY,
        (reading("0.000182"), reading("0.000190")),
        (reading("0.000148"), reading("0.000140")),  # under budget, not under 0.0001425
        (reading("0.0001425"), reading("0.000140")),  # exactly at the margin recovers
        (reading("0.000148"), reading("0.000140")),  # and then the budget alone rules again
    )
    assert breach.phase == "Breached"
    assert recovering.phase == "Breached"
    assert not recovering.rollout_allowed
    assert statuses(recovering)[SLO_MET] == ("False", "Recovering")
    assert recovering.reason == (
        "cost per request $0.000148 in the 1h window is under the budget $0.000150 (5m: $0.000140) "
        "over 5,234 requests but not yet at or under $0.0001425, the budget $0.000150 less the 5% "
        "hysteresis, so the breach stands"
    )
    assert recovered.phase == "Met"
    assert statuses(recovered)[SLO_MET] == ("True", "Recovered")
    assert "back at or under $0.0001425, the budget $0.000150 less the 5% hysteresis" in recovered.reason
    assert settled.phase == "Met"
    assert statuses(settled)[SLO_MET] == ("True", "WithinBudget")


def test_a_breach_stands_while_the_long_window_is_over_even_if_the_short_one_is_not() -> None:
    long, short = reading("0.000160"), reading("0.000140")
    assert judge(long, short, POLICY).phase == "Met"
    verdict = judge(long, short, POLICY, BREACHED)
    assert verdict.phase == "Breached"
    assert statuses(verdict)[SLO_MET] == ("False", "OverBudget")
    assert "so the breach stands until it is at or under $0.0001425" in verdict.reason


def test_recovery_is_judged_on_the_long_window_alone() -> None:
    verdict = judge(reading("0.000100"), reading("0.000300"), POLICY, BREACHED)
    assert verdict.phase == "Met"
    assert statuses(verdict)[SLO_MET] == ("True", "Recovered")


def test_without_hysteresis_recovery_is_back_at_the_budget() -> None:
    policy = Policy(budget=BUDGET, hysteresis=0)
    verdict = judge(reading("0.00015"), reading("0.00014"), policy, BREACHED)
    assert verdict.phase == "Met"
    assert "back at or under $0.000150, the budget (5m: $0.000140)" in verdict.reason


def test_a_breach_survives_evaluations_without_data() -> None:
    gone = reading(None, missing=(NO_GPU_DATA,))
    breach, blind, quiet, back = chain(
        POLICY,
        (reading("0.0002"), reading("0.0002")),
        (gone, gone),
        (reading("0.0002", requests=5), reading("0.0002", requests=1)),
        (reading("0.000148"), reading("0.000140")),
    )
    assert breach.phase == "Breached"
    assert blind.phase == "MetricsUnavailable"
    assert statuses(blind)[SLO_MET] == ("Unknown", METRICS_UNAVAILABLE_AFTER_BREACH)
    assert blind.condition(SLO_MET).message.endswith(
        "it stays breached until the 1h window is at or under $0.0001425"
    )
    assert quiet.phase == "InsufficientTraffic"
    assert statuses(quiet)[SLO_MET] == ("Unknown", INSUFFICIENT_TRAFFIC_AFTER_BREACH)
    # Back under budget but inside the margin: the breach from before the gap still needs the margin.
    assert back.phase == "Breached"
    assert statuses(back)[SLO_MET] == ("False", "Recovering")


def test_standing_is_read_from_stored_conditions() -> None:
    def condition(type_: str, status: str, reason: str) -> api.Condition:
        return api.Condition.model_validate(
            {"type": type_, "status": status, "reason": reason, "lastTransitionTime": "2024-05-01T12:00:00Z"}
        )

    assert Standing.from_conditions([]) == Standing()
    assert Standing.from_conditions(
        [condition(SLO_MET, "False", "Recovering"), condition(LATENCY_MET, "True", "WithinThreshold")]
    ) == Standing(cost_breached=True)
    assert Standing.from_conditions(
        [
            condition(SLO_MET, "Unknown", "MetricsUnavailable"),
            condition(LATENCY_MET, "Unknown", INSUFFICIENT_TRAFFIC_AFTER_BREACH),
        ]
    ) == Standing(latency_breached=True)


# --- missing data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "allowed", "reason"),
    [("Hold", False, "OnMissingMetricsHold"), ("Allow", True, "OnMissingMetricsAllow")],
)
def test_missing_metrics_hold_or_allow_rollouts_as_the_spec_says(
    policy: Any, allowed: bool, reason: str
) -> None:
    verdict = judge(
        reading("0.0001"),
        reading(None, missing=(NO_GPU_DATA, "no GPU price")),
        Policy(budget=BUDGET, on_missing_metrics=policy),
    )
    assert verdict.phase == "MetricsUnavailable"
    assert verdict.rollout_allowed is allowed
    assert statuses(verdict) == {
        SLO_MET: ("Unknown", "MetricsUnavailable"),
        LATENCY_MET: ("True", "NoLatencyObjective"),
        METRICS_AVAILABLE: ("False", "MetricsUnavailable"),
        ROLLOUT_ALLOWED: (str(allowed), reason),
    }
    consequence = (
        "rollouts proceed unchecked (onMissingMetrics: Allow)"
        if allowed
        else "rollouts wait until the data returns (onMissingMetrics: Hold)"
    )
    assert verdict.reason == (
        "cannot judge the SLO: no usable cost per request in the 5m window "
        f"(no data for GPUs allocated, no GPU price); {consequence}"
    )


def test_missing_request_counts_are_missing_metrics_not_low_traffic() -> None:
    verdict = judge(reading(requests=None, missing=("no data for requests",)), reading(), POLICY)
    assert verdict.phase == "MetricsUnavailable"
    assert "no usable request count in the 1h window (no data for requests)" in verdict.reason


def test_the_same_reason_in_both_windows_is_said_once() -> None:
    gone = reading(None, missing=(NO_GPU_DATA,))
    verdict = judge(gone, gone, POLICY)
    assert verdict.condition(METRICS_AVAILABLE).message == (
        "no usable cost per request in the 1h and 5m windows (no data for GPUs allocated)"
    )


@pytest.mark.parametrize(
    ("long", "text"),
    [
        (reading("NaN"), "no usable cost per request in the 1h window (NaN is not a usable value)"),
        (reading("-0.1"), "no usable cost per request in the 1h window (-0.1 is not a usable value)"),
        (
            reading(requests=float("inf")),
            "no usable request count in the 1h window (inf is not a usable value)",
        ),
        (reading(latency=float("nan")), "no usable p95 latency in the 1h window (nan is not a usable value)"),
    ],
)
def test_numbers_that_are_not_numbers_are_missing_data(long: WindowReading, text: str) -> None:
    verdict = judge(long, reading(), LATENCY)
    assert verdict.phase == "MetricsUnavailable"
    assert text in verdict.reason


def test_missing_latency_does_not_hide_a_cost_breach() -> None:
    no_latency = reading("0.0003", latency=None, latency_missing=("no data for e2e latency of ml/chat",))
    verdict = judge(no_latency, reading("0.0003"), LATENCY)
    assert verdict.phase == "Breached"
    assert statuses(verdict)[LATENCY_MET] == ("Unknown", "MetricsUnavailable")
    assert statuses(verdict)[METRICS_AVAILABLE] == ("False", "MetricsUnavailable")
    assert "no usable p95 latency in the 1h window (no data for e2e latency of ml/chat)" in (
        verdict.condition(LATENCY_MET).message
    )


def test_missing_latency_with_cost_within_budget_is_not_met() -> None:
    verdict = judge(reading(latency=None), reading(), LATENCY)
    assert verdict.phase == "MetricsUnavailable"
    assert statuses(verdict)[SLO_MET] == ("True", "WithinBudget")
    assert not verdict.rollout_allowed


# --- latency ----------------------------------------------------------------------------------------------


def test_latency_over_threshold_in_both_windows_breaches_on_its_own() -> None:
    verdict = judge(reading(latency=2.8), reading(latency=3.1), LATENCY)
    assert verdict.phase == "Breached"
    assert not verdict.rollout_allowed
    assert statuses(verdict)[SLO_MET] == ("True", "WithinBudget")
    assert statuses(verdict)[LATENCY_MET] == ("False", "OverThreshold")
    assert (
        verdict.reason == "p95 latency 2.8s is over the threshold 2.5s in both windows (1h: 2.8s, 5m: 3.1s)"
    )
    assert verdict.standing == Standing(latency_breached=True)


def test_cost_and_latency_breaches_are_both_reported() -> None:
    verdict = judge(reading("0.0002", latency=2.8), reading("0.0002", latency=3.1), LATENCY)
    assert statuses(verdict)[SLO_MET] == ("False", "OverBudget")
    assert statuses(verdict)[LATENCY_MET] == ("False", "OverThreshold")
    assert verdict.reason.startswith("cost per request $0.000200 is over the budget")
    assert "; p95 latency 2.8s is over the threshold 2.5s" in verdict.reason


def test_a_latency_spike_in_one_window_is_not_a_breach() -> None:
    verdict = judge(reading(latency=1.0), reading(latency=9.0), LATENCY)
    assert verdict.phase == "Met"
    assert statuses(verdict)[LATENCY_MET] == ("True", "OneWindowOverThreshold")


def test_latency_recovery_needs_the_hysteresis_margin() -> None:
    _, recovering, recovered = chain(
        LATENCY,
        (reading(latency=2.8), reading(latency=3.1)),
        (reading(latency=2.4), reading(latency=2.0)),
        (reading(latency=2.375), reading(latency=2.0)),
    )
    assert recovering.phase == "Breached"
    assert statuses(recovering)[LATENCY_MET] == ("False", "Recovering")
    assert "not yet at or under 2.375s, the threshold 2.5s less the 5% hysteresis" in recovering.reason
    assert recovered.phase == "Met"
    assert statuses(recovered)[LATENCY_MET] == ("True", "Recovered")


def test_a_mean_latency_is_called_a_mean() -> None:
    verdict = judge(reading(latency=2.8, kind="mean"), reading(latency=3.1, kind="mean"), LATENCY)
    assert verdict.reason == (
        "mean latency 2.8s is over the threshold 2.5s in both windows (1h: 2.8s, 5m: 3.1s); "
        "it is only a mean, not the p95, as no latency histogram answered"
    )


def test_one_mean_among_quantiles_is_named() -> None:
    verdict = judge(reading(latency=1.0), reading(latency=1.2, kind="mean"), LATENCY)
    assert verdict.reason.endswith(
        "p95 latency 1s is within the threshold 2.5s in both windows (1h: 1s, 5m: 1.2s); "
        "the 5m figure is only a mean, not the p95, as no latency histogram answered"
    )


def test_the_quantile_named_is_the_objectives() -> None:
    policy = Policy(budget=BUDGET, latency_threshold_seconds=0.5, latency_quantile=0.999)
    verdict = judge(reading(latency=0.6), reading(latency=0.7), policy)
    assert verdict.reason.startswith("p99.9 latency 0.6s is over the threshold 0.5s")


def test_removing_the_latency_objective_clears_a_latency_breach() -> None:
    verdict = judge(reading(), reading(), POLICY, Standing(latency_breached=True))
    assert verdict.phase == "Met"
    assert verdict.standing == Standing()


def test_outcome_table() -> None:
    assert outcome(2.0, 2.0, 1.0, 0.9, breached=False) == "over"
    assert outcome(2.0, 0.5, 1.0, 0.9, breached=False) == "one_window"
    assert outcome(0.5, 2.0, 1.0, 0.9, breached=False) == "one_window"
    assert outcome(1.0, 1.0, 1.0, 0.9, breached=False) == "within"
    assert outcome(2.0, 0.5, 1.0, 0.9, breached=True) == "still_over"
    assert outcome(0.95, 2.0, 1.0, 0.9, breached=True) == "recovering"
    assert outcome(0.9, 2.0, 1.0, 0.9, breached=True) == "recovered"


# --- budgets per 1M tokens -------------------------------------------------------------------------------

TOKEN_BUDGET = D("2.50")  # recovery at 5% hysteresis: 2.375
OUTPUT = Policy(budget=BUDGET, max_cost_per_million_output_tokens=TOKEN_BUDGET)
INPUT = Policy(budget=BUDGET, max_cost_per_million_input_tokens=TOKEN_BUDGET)


def per_token(
    output: str | None = "2.00", input_: str | None = "0.80", cost: str | None = "0.00012", **kw: Any
) -> WindowReading:
    return dataclasses.replace(
        reading(cost, **kw),
        cost_per_million_input_tokens=None if input_ is None else D(input_),
        cost_per_million_output_tokens=None if output is None else D(output),
    )


def test_an_output_token_budget_over_in_both_windows_is_a_breach() -> None:
    verdict = judge(per_token("3.10"), per_token("3.20", requests=400), OUTPUT)
    assert verdict.phase == "Breached"
    assert not verdict.rollout_allowed
    assert verdict.reason == (
        "cost per 1M output tokens $3.10 is over the budget $2.50 in both windows (1h: $3.10, 5m: $3.20)"
    )
    assert statuses(verdict) == {
        SLO_MET: ("False", "OutputTokenBudgetExceeded"),
        LATENCY_MET: ("True", "NoLatencyObjective"),
        METRICS_AVAILABLE: ("True", "MetricsPresent"),
        ROLLOUT_ALLOWED: ("False", "SLOBreached"),
    }
    assert verdict.condition(SLO_MET).message == (
        "cost per request $0.000120 is within the budget $0.000150 in both windows "
        "(1h: $0.000120, 5m: $0.000120) over 5,234 requests; " + verdict.reason
    )
    assert verdict.standing == Standing(output_tokens_breached=True)


def test_an_input_token_budget_is_judged_the_same_way() -> None:
    verdict = judge(per_token(input_="2.6"), per_token(input_="2.7"), INPUT)
    assert verdict.phase == "Breached"
    assert statuses(verdict)[SLO_MET] == ("False", "InputTokenBudgetExceeded")
    assert verdict.reason == (
        "cost per 1M input tokens $2.60 is over the budget $2.50 in both windows (1h: $2.60, 5m: $2.70)"
    )
    assert verdict.standing == Standing(input_tokens_breached=True)

    spike = judge(per_token(input_="1.0"), per_token(input_="9.0"), INPUT)
    assert spike.phase == "Met"
    assert statuses(spike)[SLO_MET] == ("True", "OneWindowOverInputTokenBudget")

    gap = judge(per_token(input_=None, missing=("no data for input tokens",)), per_token(), INPUT)
    assert gap.phase == "MetricsUnavailable"
    assert "no usable cost per 1M input tokens in the 1h window (no data for input tokens)" in gap.reason


@pytest.mark.parametrize(
    ("long", "short", "over"),
    [("3.10", "2.00", "1h"), ("2.00", "3.10", "5m")],
)
def test_a_token_budget_over_in_one_window_alone_is_not_a_breach(long: str, short: str, over: str) -> None:
    verdict = judge(per_token(long), per_token(short), OUTPUT)
    assert verdict.phase == "Met"
    assert verdict.rollout_allowed
    assert statuses(verdict)[SLO_MET] == ("True", "OneWindowOverOutputTokenBudget")
    assert f"cost per 1M output tokens is over the budget $2.50 only in the {over} window" in verdict.reason
    assert verdict.reason.endswith("which is not a breach")


def test_a_cost_exactly_at_the_token_budget_is_within_it() -> None:
    verdict = judge(per_token("2.5"), per_token("2.50"), OUTPUT)
    assert verdict.phase == "Met"
    assert statuses(verdict)[SLO_MET] == ("True", "WithinBudget")  # every budget of SLOMet is met
    assert verdict.reason.endswith(
        "; cost per 1M output tokens $2.50 is within the budget $2.50 in both windows (1h: $2.50, 5m: $2.50)"
    )


def test_a_token_budget_breach_needs_min_requests() -> None:
    verdict = judge(per_token("9", requests=99), per_token("9", requests=3), OUTPUT)
    assert verdict.phase == "InsufficientTraffic"
    assert verdict.rollout_allowed
    assert statuses(verdict)[SLO_MET] == ("Unknown", "InsufficientTraffic")
    assert verdict.reason.startswith("99 requests in the 1h window are fewer than minRequests (100)")
    assert verdict.standing == Standing()


def test_token_budget_recovery_needs_the_hysteresis_margin() -> None:
    breach, recovering, recovered, settled = chain(
        OUTPUT,
        (per_token("3.10"), per_token("3.20")),
        (per_token("2.45"), per_token("2.00")),  # under budget, not under 2.375
        (per_token("2.375"), per_token("2.00")),  # exactly at the margin recovers
        (per_token("2.45"), per_token("2.00")),  # and then the budget alone rules again
    )
    assert breach.phase == "Breached"
    assert recovering.phase == "Breached"
    assert not recovering.rollout_allowed
    assert statuses(recovering)[SLO_MET] == ("False", "OutputTokenBudgetRecovering")
    assert recovering.reason == (
        "cost per 1M output tokens $2.45 in the 1h window is under the budget $2.50 (5m: $2.00) but not yet "
        "at or under $2.375, the budget $2.50 less the 5% hysteresis, so the breach stands"
    )
    assert recovering.standing == Standing(output_tokens_breached=True)
    assert recovered.phase == "Met"
    assert statuses(recovered)[SLO_MET] == ("True", "OutputTokenBudgetRecovered")
    assert "back at or under $2.375, the budget $2.50 less the 5% hysteresis (5m: $2.00)" in recovered.reason
    assert settled.phase == "Met"
    assert statuses(settled)[SLO_MET] == ("True", "WithinBudget")


def test_a_token_breach_stands_while_the_long_window_is_over() -> None:
    long, short = per_token("2.60"), per_token("2.00")
    assert judge(long, short, OUTPUT).phase == "Met"
    verdict = judge(long, short, OUTPUT, Standing(output_tokens_breached=True))
    assert verdict.phase == "Breached"
    assert statuses(verdict)[SLO_MET] == ("False", "OutputTokenBudgetExceeded")
    assert "so the breach stands until it is at or under $2.375" in verdict.reason


def test_a_token_breach_survives_evaluations_without_data() -> None:
    gone = per_token(None, missing=("no data for output tokens",))
    breach, blind, quiet, back = chain(
        OUTPUT,
        (per_token("3.10"), per_token("3.20")),
        (gone, gone),
        (per_token("3.10", requests=5), per_token("3.20", requests=1)),
        (per_token("2.45"), per_token("2.00")),
    )
    assert breach.phase == "Breached"
    assert blind.phase == "MetricsUnavailable"
    assert statuses(blind)[SLO_MET] == ("Unknown", "MetricsUnavailableAfterOutputTokenBreach")
    assert blind.condition(SLO_MET).message.endswith(
        "cannot judge: no usable cost per 1M output tokens in the 1h and 5m windows (no data for output "
        "tokens); cost per 1M output tokens stays breached until the 1h window is at or under $2.375"
    )
    assert blind.standing == Standing(output_tokens_breached=True)
    assert quiet.phase == "InsufficientTraffic"
    assert statuses(quiet)[SLO_MET] == ("Unknown", "InsufficientTrafficAfterOutputTokenBreach")
    assert back.phase == "Breached"
    assert statuses(back)[SLO_MET] == ("False", "OutputTokenBudgetRecovering")


def test_a_missing_token_cost_is_missing_data_while_its_budget_is_set() -> None:
    verdict = judge(per_token(), per_token(None, missing=("no data for output tokens",)), OUTPUT)
    assert verdict.phase == "MetricsUnavailable"
    assert not verdict.rollout_allowed
    assert verdict.reason == (
        "cannot judge the SLO: no usable cost per 1M output tokens in the 5m window "
        "(no data for output tokens); rollouts wait until the data returns (onMissingMetrics: Hold)"
    )
    assert statuses(verdict) == {
        SLO_MET: ("Unknown", "MetricsUnavailable"),
        LATENCY_MET: ("True", "NoLatencyObjective"),
        METRICS_AVAILABLE: ("False", "MetricsUnavailable"),
        ROLLOUT_ALLOWED: ("False", "OnMissingMetricsHold"),
    }
    assert verdict.condition(SLO_MET).message.startswith("cost per request $0.000120 is within the budget")
    assert verdict.condition(METRICS_AVAILABLE).message == (
        "no usable cost per 1M output tokens in the 5m window (no data for output tokens)"
    )


def test_a_missing_token_cost_does_not_hide_a_cost_breach() -> None:
    verdict = judge(per_token(None, cost="0.0003"), per_token(None, cost="0.0003"), OUTPUT)
    assert verdict.phase == "Breached"
    assert statuses(verdict)[SLO_MET] == ("False", "OverBudget")
    assert statuses(verdict)[METRICS_AVAILABLE] == ("False", "MetricsUnavailable")
    assert verdict.reason.startswith("cost per request $0.000300 is over the budget $0.000150")
    assert verdict.condition(SLO_MET).message.endswith(
        "; cannot judge: no usable cost per 1M output tokens in the 1h and 5m windows"
    )


def test_a_missing_token_cost_without_its_budget_is_no_gap() -> None:
    verdict = judge(per_token(None, input_=None), per_token(None, input_=None), POLICY)
    assert verdict.phase == "Met"
    assert statuses(verdict)[METRICS_AVAILABLE] == ("True", "MetricsPresent")


def test_without_a_token_budget_nothing_changes() -> None:
    cases = [
        (reading("0.000182"), reading("0.000190", requests=400), Standing()),
        (reading("0.000120"), reading("0.000900"), Standing()),
        (reading("0.000148"), reading("0.000140"), BREACHED),
        (reading(None, missing=(NO_GPU_DATA,)), reading(), BREACHED),
        (reading(requests=40), reading(requests=3), Standing()),
        (reading(latency=2.8), reading(latency=3.1), Standing(latency_breached=True)),
    ]
    for long, short, standing in cases:
        long_t, short_t = (
            dataclasses.replace(
                r, cost_per_million_input_tokens=D("90"), cost_per_million_output_tokens=D("99")
            )
            for r in (long, short)
        )
        # A standing token breach is forgotten once its budget is gone, as a latency breach is.
        stale = dataclasses.replace(standing, input_tokens_breached=True, output_tokens_breached=True)
        assert judge(long_t, short_t, LATENCY, stale) == judge(long, short, LATENCY, standing)


def test_per_request_and_token_breaches_are_both_named_and_both_stand() -> None:
    policy = dataclasses.replace(OUTPUT, max_cost_per_million_input_tokens=D("1"))
    breach, after, recovering = chain(
        policy,
        (per_token("3.10", cost="0.0002"), per_token("3.20", cost="0.0002")),
        (per_token("3.10", cost=None, missing=(NO_GPU_DATA,)), per_token("3.20", cost=None)),
        (per_token("2.45", cost="0.000148"), per_token("2.00", cost="0.000140")),
    )
    assert breach.phase == "Breached"
    assert statuses(breach)[SLO_MET] == ("False", "OverBudgetAndOutputTokenBudgetExceeded")
    assert breach.reason == (
        "cost per request $0.000200 is over the budget $0.000150 in both windows "
        "(1h: $0.000200, 5m: $0.000200) over 5,234 requests; "
        "cost per 1M output tokens $3.10 is over the budget $2.50 in both windows (1h: $3.10, 5m: $3.20)"
    )
    assert breach.standing == Standing(cost_breached=True, output_tokens_breached=True)
    # The cost per request cannot be judged, the output tokens still breach: both stand.
    assert statuses(after)[SLO_MET] == ("False", "MetricsUnavailableAfterBreachAndOutputTokenBudgetExceeded")
    assert after.condition(SLO_MET).message.endswith(
        "; cost per request stays breached until the 1h window is at or under $0.0001425"
    )
    assert after.standing == Standing(cost_breached=True, output_tokens_breached=True)
    assert statuses(recovering)[SLO_MET] == ("False", "RecoveringAndOutputTokenBudgetRecovering")
    assert recovering.standing == Standing(cost_breached=True, output_tokens_breached=True)


def test_token_standing_is_read_from_stored_conditions() -> None:
    def slo(status: str, reason: str) -> api.Condition:
        return api.Condition(type=SLO_MET, status=status, reason=reason, last_transition_time=T0)

    assert Standing.from_conditions([slo("False", "OutputTokenBudgetRecovering")]) == Standing(
        output_tokens_breached=True
    )
    assert Standing.from_conditions(
        [slo("False", "MetricsUnavailableAfterInputTokenBreachAndOutputTokenBudgetExceeded")]
    ) == Standing(input_tokens_breached=True, output_tokens_breached=True)
    assert Standing.from_conditions([slo("Unknown", "InsufficientTrafficAfterInputTokenBreach")]) == Standing(
        input_tokens_breached=True
    )
    assert Standing.from_conditions([slo("True", "OutputTokenBudgetRecovered")]) == Standing()
    assert Standing.from_conditions([slo("False", "SomethingElse")]) == Standing(cost_breached=True)


def test_policy_from_spec_with_token_budgets() -> None:
    spec = api.CostSLOSpec.model_validate(
        {
            "targetRef": {"name": "x"},
            "objective": {
                "maxCostPerRequest": "0.00015",
                "maxCostPerMillionInputTokens": "0.80",
                "maxCostPerMillionOutputTokens": "2.5",
            },
        }
    )
    policy = Policy.from_spec(spec)
    assert policy == dataclasses.replace(
        POLICY, max_cost_per_million_input_tokens=D("0.80"), max_cost_per_million_output_tokens=D("2.5")
    )
    assert policy.recovery_token_budget("output") == D("2.375")
    assert policy.recovery_token_budget("input") == D("0.76")
    assert POLICY.recovery_token_budget("output") is None


@pytest.mark.parametrize("side", ["input", "output"])
@pytest.mark.parametrize("bad", [D("-1"), D("NaN"), D("Infinity"), 2.5])
def test_policy_rejects_bad_token_budgets(side: TokenSide, bad: Any) -> None:
    with pytest.raises(ValueError, match=f"maxCostPerMillion{side.capitalize()}Tokens"):
        Policy(budget=BUDGET, **{f"max_cost_per_million_{side}_tokens": bad})


def test_reading_of_an_economics_cost_carries_the_token_costs() -> None:
    usage = Usage(
        window_seconds=3600,
        gpu_seconds=3600,
        replica_seconds=3600,
        requests=1000,
        delivered=1000,
        input_tokens=2_000_000,
        output_tokens=500_000,
    )
    cost = cost_of(usage, Prices(gpu_hourly=D("3")))
    assert cost.cost_per_million_input_tokens is not None
    assert cost.cost_per_million_output_tokens is not None
    got = WindowReading.of_cost(cost)
    assert got.cost_per_million_input_tokens == cost.cost_per_million_input_tokens
    assert got.cost_per_million_output_tokens == cost.cost_per_million_output_tokens


# --- policy and readings ----------------------------------------------------------------------------------


def test_policy_from_spec() -> None:
    spec = api.CostSLOSpec.model_validate(
        {
            "targetRef": {"name": "summariser"},
            "objective": {
                "revenuePerRequest": "0.002",
                "targetGrossMargin": "0.9",
                "latency": {"quantile": 0.99, "thresholdSeconds": 2.5},
            },
            "evaluation": {
                "windows": {"long": "6h", "short": "15m"},
                "minRequests": 50,
                "onMissingMetrics": "Allow",
                "hysteresis": 0.1,
            },
        }
    )
    assert Policy.from_spec(spec) == Policy(
        budget=D("0.0002"),
        latency_threshold_seconds=2.5,
        latency_quantile=0.99,
        min_requests=50,
        on_missing_metrics="Allow",
        hysteresis=0.1,
        long_window="6h",
        short_window="15m",
    )
    assert Policy.from_spec(spec).recovery_budget == D("0.00018")


def test_policy_from_spec_defaults() -> None:
    spec = api.CostSLOSpec.model_validate(
        {"targetRef": {"name": "x"}, "objective": {"maxCostPerRequest": "0.00015"}}
    )
    assert Policy.from_spec(spec) == POLICY


@pytest.mark.parametrize(
    "bad",
    [
        {"budget": D("-1")},
        {"budget": D("NaN")},
        {"latency_threshold_seconds": 0.0},
        {"latency_quantile": 1.0},
        {"min_requests": -1},
        {"on_missing_metrics": "Ignore"},
        {"hysteresis": 1.0},
    ],
)
def test_policy_rejects_what_the_crd_would(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Policy(**{"budget": BUDGET, **bad})


def test_reading_of_an_economics_cost() -> None:
    usage = Usage(window_seconds=3600, gpu_seconds=None, replica_seconds=3600, requests=1000, delivered=990)
    cost = cost_of(usage, Prices(gpu_hourly=D("3")))
    got = WindowReading.of_cost(cost, 1.5, "mean", missing=("no GPU price for ml/chat", NO_GPU_DATA))
    assert got == WindowReading(
        cost_per_request=None,
        requests=1000,
        latency_seconds=1.5,
        latency_kind="mean",
        missing=(*cost.missing, "no GPU price for ml/chat"),
    )
    assert NO_GPU_DATA in got.missing


def test_verdict_phases_are_api_phases() -> None:
    assert set(get_args(VerdictPhase)) <= set(get_args(api.Phase))
    assert set(get_args(VerdictPhase)).isdisjoint({"Pending", "RolloutBlocked", "InvalidSpec"})


# --- conditions over time ---------------------------------------------------------------------------------

T0, T1, T2 = "2024-05-01T12:00:00Z", "2024-05-01T12:01:00Z", "2024-05-01T12:02:00Z"


def test_merge_keeps_the_transition_time_while_a_status_holds() -> None:
    spec_valid = api.Condition(
        type="SpecValid", status="True", reason="Valid", message="", last_transition_time=T0
    )
    met = judge(reading(), reading(), POLICY)
    first = merge_conditions([spec_valid], met.conditions, T1, observed_generation=3)
    assert [c.type for c in first] == ["SpecValid", *CONDITION_TYPES]
    assert first[0] == spec_valid
    assert all(c.last_transition_time == T1 and c.observed_generation == 3 for c in first[1:])

    spike = judge(reading(), reading("0.0009"), POLICY)  # still Met, another reason and message
    second = merge_conditions(first, spike.conditions, T2)
    slo = next(c for c in second if c.type == SLO_MET)
    assert (slo.status, slo.reason, slo.last_transition_time) == ("True", "OneWindowOverBudget", T1)
    assert slo.message == spike.condition(SLO_MET).message
    assert slo.observed_generation == 3

    breach = judge(reading("0.0009"), reading("0.0009"), POLICY)
    third = {c.type: c for c in merge_conditions(second, breach.conditions, T2)}
    assert third[SLO_MET].last_transition_time == T2
    assert third[ROLLOUT_ALLOWED].last_transition_time == T2
    assert third[METRICS_AVAILABLE].last_transition_time == T1
    assert third["SpecValid"].last_transition_time == T0


def test_merge_keeps_one_condition_per_type() -> None:
    old = [
        api.Condition(type=SLO_MET, status="True", reason="WithinBudget", last_transition_time=T0),
        api.Condition(type=SLO_MET, status="False", reason="OverBudget", last_transition_time=T1),
    ]
    merged = merge_conditions(old, [VerdictCondition(SLO_MET, "True", "WithinBudget", "")], T2)
    assert len(merged) == 1
    assert merged[0].last_transition_time == T0


def test_merge_output_serialises_as_status() -> None:
    merged = merge_conditions([], judge(reading(), reading(), POLICY).conditions, T0)
    status = api.CostSLOStatus(conditions=merged).model_dump(by_alias=True, exclude_none=True)
    assert status["conditions"][0]["lastTransitionTime"] == T0


def test_merge_wants_an_iso_time() -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        merge_conditions([], [], "yesterday")


# --- properties -------------------------------------------------------------------------------------------


def mostly(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The values, or None one time in six: enough gaps to test the missing-data rules, not only them."""
    return st.tuples(values, st.integers(0, 5)).map(lambda pair: None if pair[1] == 0 else pair[0])


money = st.decimals(min_value=0, max_value=D("0.01"), places=7)
budgets = st.decimals(min_value=D("0.0000001"), max_value=D("0.01"), places=7)
seconds = st.floats(0, 60, allow_nan=False)
readings = st.builds(
    WindowReading,
    cost_per_request=mostly(money),
    requests=mostly(st.floats(0, 1e6, allow_nan=False)),
    latency_seconds=mostly(seconds),
    latency_kind=st.sampled_from(["quantile", "mean"]),
    missing=st.lists(st.sampled_from([NO_GPU_DATA, "no data for requests"]), max_size=2).map(tuple),
)
policies = st.builds(
    Policy,
    budget=budgets,
    latency_threshold_seconds=st.none() | st.floats(0.01, 60),
    latency_quantile=st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    min_requests=st.integers(0, 1000),
    on_missing_metrics=st.sampled_from(["Hold", "Allow"]),
    hysteresis=st.floats(0, 0.5),
)
standings = st.builds(Standing, st.booleans(), st.booleans())
CAMEL = re.compile(r"^[A-Z][A-Za-z]+$")


@given(readings, readings, policies, standings)
def test_every_verdict_is_well_formed(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> None:
    verdict = judge(long, short, policy, standing)
    assert verdict.phase in get_args(api.Phase)
    assert tuple(c.type for c in verdict.conditions) == CONDITION_TYPES
    assert all(CAMEL.match(c.reason) and c.message for c in verdict.conditions)
    assert verdict.reason and "\n" not in verdict.reason
    assert verdict.rollout_allowed == (verdict.condition(ROLLOUT_ALLOWED).status == "True")
    assert Standing.from_conditions(verdict.conditions) == verdict.standing
    if verdict.phase == "Breached":
        assert not verdict.rollout_allowed
        assert long.requests is not None and long.requests >= policy.min_requests
    if verdict.phase == "MetricsUnavailable":
        assert verdict.rollout_allowed == (policy.on_missing_metrics == "Allow")
        assert verdict.condition(METRICS_AVAILABLE).status == "False"
    if verdict.phase == "Met":
        assert all(c.status == "True" for c in verdict.conditions)


@given(readings, readings, policies, standings)
def test_never_met_when_a_cost_is_unknown(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> None:
    assume(long.cost_per_request is None or short.cost_per_request is None)
    assert judge(long, short, policy, standing).phase != "Met"


@given(readings, readings, policies)
def test_never_breached_while_either_window_is_within_budget_and_latency_is_fine(
    long: WindowReading, short: WindowReading, policy: Policy
) -> None:
    assume(any(r.cost_per_request is not None and r.cost_per_request <= policy.budget for r in (long, short)))
    threshold = policy.latency_threshold_seconds
    assume(
        threshold is None
        or any(r.latency_seconds is not None and r.latency_seconds <= threshold for r in (long, short))
    )
    assert judge(long, short, policy).phase != "Breached"


@given(readings, readings, policies, st.integers(0, 1000))
def test_a_breach_clears_once_the_long_window_is_under_the_margin(
    long: WindowReading, short: WindowReading, policy: Policy, per_mille: int
) -> None:
    policy = dataclasses.replace(policy, latency_threshold_seconds=None)
    # min(): the default 28-digit context may round a 40-digit recovery budget up by its last digit.
    at_or_under = min(policy.recovery_budget, policy.recovery_budget * per_mille / 1000)
    long = dataclasses.replace(long, cost_per_request=at_or_under)
    assert judge(long, short, policy, BREACHED).phase != "Breached"


@given(readings, readings, policies)
def test_a_breach_never_clears_inside_the_margin(
    long: WindowReading, short: WindowReading, policy: Policy
) -> None:
    assume(long.cost_per_request is not None and long.cost_per_request > policy.recovery_budget)
    verdict = judge(long, short, policy, BREACHED)
    assert verdict.phase != "Met"
    assert verdict.standing.cost_breached


@given(readings, readings, policies, standings, st.decimals(min_value=0, max_value=D("0.01"), places=7))
def test_raising_the_budget_never_turns_met_into_breached(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing, raise_by: Decimal
) -> None:
    before = judge(long, short, policy, standing)
    after = judge(long, short, dataclasses.replace(policy, budget=policy.budget + raise_by), standing)
    if before.phase == "Met":
        assert after.phase == "Met"
    if after.phase == "Breached" and after.condition(SLO_MET).status == "False":
        assert before.condition(SLO_MET).status == "False"


token_readings = st.builds(
    dataclasses.replace,
    readings,
    cost_per_million_input_tokens=mostly(st.decimals(min_value=0, max_value=10, places=3)),
    cost_per_million_output_tokens=mostly(st.decimals(min_value=0, max_value=10, places=3)),
)
token_policies = st.builds(
    dataclasses.replace,
    policies,
    max_cost_per_million_input_tokens=st.none() | st.decimals(min_value=D("0.001"), max_value=10, places=3),
    max_cost_per_million_output_tokens=st.none() | st.decimals(min_value=D("0.001"), max_value=10, places=3),
)
all_standings = st.builds(Standing, st.booleans(), st.booleans(), st.booleans(), st.booleans())


@given(token_readings, token_readings, token_policies, all_standings)
def test_every_verdict_with_token_budgets_is_well_formed(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> None:
    verdict = judge(long, short, policy, standing)
    assert tuple(c.type for c in verdict.conditions) == CONDITION_TYPES
    assert all(CAMEL.match(c.reason) and c.message for c in verdict.conditions)
    assert verdict.reason and "\n" not in verdict.reason
    assert verdict.rollout_allowed == (verdict.condition(ROLLOUT_ALLOWED).status == "True")
    assert Standing.from_conditions(verdict.conditions) == verdict.standing
    if verdict.phase == "Breached":
        assert long.requests is not None and long.requests >= policy.min_requests
    if verdict.phase == "Met":
        assert all(c.status == "True" for c in verdict.conditions)
    sides: tuple[TokenSide, ...] = ("input", "output")
    for side in sides:
        if policy.token_budget(side) is None:
            assert not verdict.standing.tokens_breached(side)
        elif any(r.cost_per_million_tokens(side) is None for r in (long, short)):
            assert verdict.phase != "Met"


@given(token_readings, token_readings, token_policies)
def test_never_breached_while_a_window_is_within_every_budget(
    long: WindowReading, short: WindowReading, policy: Policy
) -> None:
    policy = dataclasses.replace(policy, latency_threshold_seconds=None)
    assume(any(r.cost_per_request is not None and r.cost_per_request <= policy.budget for r in (long, short)))
    for side in ("input", "output"):
        budget = policy.token_budget(side)
        assume(
            budget is None
            or any((c := r.cost_per_million_tokens(side)) is not None and c <= budget for r in (long, short))
        )
    assert judge(long, short, policy).phase != "Breached"


@given(token_readings, token_readings, token_policies, st.sampled_from(["input", "output"]), st.data())
def test_a_token_breach_clears_only_once_the_long_window_is_under_the_margin(
    long: WindowReading, short: WindowReading, policy: Policy, side: TokenSide, data: st.DataObject
) -> None:
    budget = data.draw(st.decimals(min_value=D("0.001"), max_value=10, places=3))
    policy = dataclasses.replace(
        policy,
        budget=D(1),
        latency_threshold_seconds=None,
        max_cost_per_million_input_tokens=budget if side == "input" else None,
        max_cost_per_million_output_tokens=budget if side == "output" else None,
    )
    long = dataclasses.replace(long, cost_per_request=D(0))
    short = dataclasses.replace(short, cost_per_request=D(0))
    recover_at = policy.recovery_token_budget(side)
    assert recover_at is not None
    value = long.cost_per_million_tokens(side)
    standing = Standing(input_tokens_breached=side == "input", output_tokens_breached=side == "output")
    verdict = judge(long, short, policy, standing)
    if value is not None and value > recover_at:
        assert verdict.phase != "Met"
        assert verdict.standing.tokens_breached(side)
    elif (
        value is not None
        and short.cost_per_million_tokens(side) is not None
        and long.requests is not None
        and long.requests >= policy.min_requests
    ):
        assert not verdict.standing.tokens_breached(side)


@given(readings, readings, policies, standings)
def test_merging_the_same_verdict_again_changes_no_transition_time(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> None:
    conditions = judge(long, short, policy, standing).conditions
    first = merge_conditions([], conditions, T0)
    assert merge_conditions(first, conditions, T1) == first
