"""Replica sizing: the load at the target utilisation, cost against latency, bounds, steps, cooldown."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costslo import api
from costslo.scaling import ScalingDecision, ScalingInputs, ScalingPolicy, decide, needed_replicas
from tests.support.costslos import valid_spec

pytestmark = pytest.mark.unit

D = Decimal
POLICY = ScalingPolicy(
    min_replicas=1, max_replicas=8, cooldown_seconds=600, target_utilisation=0.7, min_requests=100
)
HPA = "HorizontalPodAutoscaler chat"


def inputs(**changes: Any) -> ScalingInputs:
    """Four replicas, GPUs 35% busy, cost $0.000310 against a $0.000200 budget, latency 1s of 2.5s."""
    base = ScalingInputs(
        replicas=4,
        utilisation=0.35,
        requests_per_second=12.4,
        cost_per_request=D("0.00031"),
        budget=D("0.0002"),
        latency_seconds=1.0,
        latency_limit=2.5,
        requests=3720.0,
    )
    return dataclasses.replace(base, **changes)


def run(
    i: ScalingInputs,
    policy: ScalingPolicy = POLICY,
    last_action_time: float | None = None,
    now: float = 10_000.0,
    autoscaler: str | None = None,
) -> ScalingDecision:
    return decide(i, policy, last_action_time=last_action_time, now=now, autoscaler=autoscaler)


# --- the load at the target utilisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "utilisation", "target", "traffic", "needed"),
    [
        (4, 0.35, 0.7, True, 2),
        (5, 0.28, 0.7, True, 2),  # 1.4 busy replicas / 0.7 is 2.0000000000000004 in floats: still 2
        (3, 0.8, 0.8, True, 3),
        (4, 0.36, 0.7, True, 3),
        (3, 0.7, 0.7, True, 3),
        (4, 0.9, 0.7, True, 6),
        (4, 0.0, 0.7, True, 1),  # traffic needs a replica even when the GPUs read idle
        (4, 0.0, 0.7, False, 0),
        (10, 0.1, 1.0, True, 1),
    ],
)
def test_needed_replicas_are_busy_replicas_over_the_target(
    replicas: int, utilisation: float, target: float, traffic: bool, needed: int
) -> None:
    assert needed_replicas(replicas, utilisation, target, traffic) == needed


def test_policy_from_spec_reads_the_scaling_block_and_min_requests() -> None:
    spec = valid_spec()
    default = ScalingPolicy.from_spec(api.CostSLOSpec.model_validate(spec))
    assert default == ScalingPolicy(
        min_replicas=1, max_replicas=8, cooldown_seconds=600.0, target_utilisation=0.7, min_requests=100
    )
    spec["enforcement"]["scaling"] = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 5,
        "cooldown": "1m30s",
        "targetUtilisation": 0.6,
    }
    spec["evaluation"]["minRequests"] = 40
    custom = ScalingPolicy.from_spec(api.CostSLOSpec.model_validate(spec))
    assert custom == ScalingPolicy(
        min_replicas=2, max_replicas=5, cooldown_seconds=90.0, target_utilisation=0.6, min_requests=40
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_replicas": -1}, "minReplicas"),
        ({"min_replicas": 5, "max_replicas": 4}, "maxReplicas"),
        ({"max_replicas": 0, "min_replicas": 0}, "maxReplicas"),
        ({"cooldown_seconds": -1.0}, "cooldown"),
        ({"cooldown_seconds": math.inf}, "cooldown"),
        ({"target_utilisation": 0.0}, "target utilisation"),
        ({"target_utilisation": 1.2}, "target utilisation"),
        ({"min_requests": -1}, "minRequests"),
    ],
)
def test_policy_rejects_what_the_crd_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(POLICY, **changes)


def test_inputs_reject_a_negative_replica_count_and_a_bad_budget() -> None:
    with pytest.raises(ValueError, match="replicas"):
        inputs(replicas=-1)
    with pytest.raises(ValueError, match="budget"):
        inputs(budget=D("NaN"))


# --- nothing to recommend from -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"utilisation": None}, "no GPU utilisation in the window, so no recommendation"),
        ({"utilisation": math.nan}, "no GPU utilisation in the window, so no recommendation"),
        ({"requests": None}, "no request count in the window, so no recommendation"),
        ({"cost_per_request": None}, "no cost per request in the window, so no recommendation"),
        ({"latency_seconds": None}, "no latency in the window, so no recommendation"),
        (
            {"utilisation": None, "cost_per_request": None},
            "no GPU utilisation or cost per request in the window, so no recommendation",
        ),
        (
            {"requests": 12.0},
            "only 12 requests in the window, fewer than minRequests 100, so no recommendation",
        ),
        # 99.96 must not read as 100.0, which is not fewer than 100.
        (
            {"requests": 99.96},
            "only 99.96 requests in the window, fewer than minRequests 100, so no recommendation",
        ),
        (
            {"replicas": 0},
            "the Deployment's 0 replicas are under minReplicas 1; scaling from 0 to 1",
        ),
    ],
)
def test_no_data_no_recommendation(changes: dict[str, Any], reason: str) -> None:
    d = run(inputs(**changes))
    assert d.recommended_replicas is None
    assert d.reason == reason
    assert not d.infeasible and d.held_by is None
    # At 0, under minReplicas 1, the Deployment goes to the bound whatever the data; else nothing moves.
    assert d.scale_to == (1 if changes == {"replicas": 0} else None)


def test_scaled_to_zero_with_a_zero_minimum_is_left_alone() -> None:
    d = run(inputs(replicas=0), dataclasses.replace(POLICY, min_replicas=0))
    assert d == ScalingDecision(
        None, None, "the Deployment has 0 replicas, so nothing is measured to recommend from", False, None
    )


def test_without_a_latency_objective_latency_is_not_needed() -> None:
    d = run(inputs(latency_seconds=None, latency_limit=None))
    assert (d.recommended_replicas, d.scale_to) == (2, 2)
    assert "latency" not in d.reason


# --- cost over the budget ------------------------------------------------------------------------------


def test_cost_over_budget_with_idle_gpus_scales_down_to_the_load() -> None:
    d = run(inputs())
    assert d == ScalingDecision(
        recommended_replicas=2,
        scale_to=2,
        reason=(
            "cost $0.000310 per request is over the budget $0.000200 with GPUs 35% busy; 2 replicas carry "
            "the 12.4 requests/s at the 70% target utilisation, at about $0.000155 per request, within the "
            "budget; scaling from 4 to 2"
        ),
        infeasible=False,
        held_by=None,
    )


def test_scaling_down_says_when_the_cost_stays_over_budget() -> None:
    d = run(inputs(cost_per_request=D("0.0005"), utilisation=0.5))  # 3 replicas: about $0.000375
    assert (d.recommended_replicas, d.scale_to) == (3, 3)
    assert "at about $0.000375 per request, still over the budget" in d.reason


def test_cost_over_budget_with_busy_gpus_is_not_for_scaling_to_fix() -> None:
    d = run(inputs(utilisation=0.9))
    assert d == ScalingDecision(
        recommended_replicas=4,
        scale_to=None,
        reason=(
            "cost $0.000310 per request is over the budget $0.000200 although GPUs are 90% busy: "
            "scaling cannot fix it (a cheaper model or GPU can)"
        ),
        infeasible=False,
        held_by=None,
    )


def test_cost_over_budget_at_min_replicas_says_so() -> None:
    d = run(inputs(replicas=2, utilisation=0.1), dataclasses.replace(POLICY, min_replicas=2))
    assert (d.recommended_replicas, d.scale_to, d.infeasible) == (2, None, False)
    assert d.reason.endswith("with GPUs 10% busy, but the Deployment is already at minReplicas 2")


def test_a_cost_just_over_budget_never_reads_as_the_budget() -> None:
    d = run(inputs(cost_per_request=D("0.000200000001")))
    assert d.reason.startswith("cost $0.000200000001 per request is over the budget $0.000200000000 ")
    assert run(inputs(cost_per_request=D("0.00020"))).reason.startswith(
        "cost $0.000200 per request is within the budget $0.000200"
    )


# --- latency over its limit ----------------------------------------------------------------------------


def test_latency_over_with_cost_headroom_scales_up() -> None:
    d = run(inputs(cost_per_request=D("0.00012"), latency_seconds=3.1, utilisation=0.9))
    assert d == ScalingDecision(
        recommended_replicas=6,
        scale_to=6,
        reason=(
            "latency 3.1s is over the limit 2.5s with GPUs 90% busy; 6 replicas (60% busy) would cost about "
            "$0.000180 per request, within the budget $0.000200; scaling from 4 to 6"
        ),
        infeasible=False,
        held_by=None,
    )


def test_latency_over_adds_at_least_one_replica() -> None:
    d = run(inputs(cost_per_request=D("0.0001"), latency_seconds=3.1, utilisation=0.35))
    assert (d.recommended_replicas, d.scale_to) == (5, 5)


def test_latency_over_without_cost_headroom_is_infeasible() -> None:
    d = run(inputs(cost_per_request=D("0.00018"), latency_seconds=3.1, utilisation=0.9))
    assert d == ScalingDecision(
        recommended_replicas=6,
        scale_to=None,
        reason=(
            "latency 3.1s is over the limit 2.5s with GPUs 90% busy, but 6 replicas would cost about "
            "$0.000270 per request, over the budget $0.000200: cost and latency cannot both hold"
        ),
        infeasible=True,
        held_by=None,
    )


def test_latency_over_at_max_replicas_stays() -> None:
    d = run(inputs(replicas=8, cost_per_request=D("0.0001"), latency_seconds=3.1))
    assert d == ScalingDecision(
        8,
        None,
        "latency 3.1s is over the limit 2.5s with GPUs 35% busy, but the Deployment is already at "
        "maxReplicas 8",
        False,
        None,
    )
    both = run(inputs(replicas=8, latency_seconds=3.1))
    assert both.infeasible and both.scale_to is None
    assert both.reason.endswith("cost and latency cannot both hold")


def test_cost_and_latency_both_over_is_infeasible() -> None:
    d = run(inputs(latency_seconds=3.1))
    assert d == ScalingDecision(
        recommended_replicas=5,
        scale_to=None,
        reason=(
            "cost $0.000310 per request is over the budget $0.000200 and latency 3.1s is over the limit 2.5s "
            "with GPUs 35% busy: fewer replicas would be slower and more would cost more (5 replicas about "
            "$0.000388 per request), so cost and latency cannot both hold"
        ),
        infeasible=True,
        held_by=None,
    )


# --- both within ---------------------------------------------------------------------------------------


def test_both_within_reports_the_recommendation_and_moves_nothing() -> None:
    d = run(inputs(cost_per_request=D("0.00012")))
    assert d == ScalingDecision(
        recommended_replicas=2,
        scale_to=None,
        reason=(
            "cost $0.000120 per request is within the budget $0.000200 and latency 1s within the limit 2.5s "
            "with GPUs 35% busy; 2 replicas would carry the 12.4 requests/s at the 70% target utilisation"
        ),
        infeasible=False,
        held_by=None,
    )


# --- bounds, steps, cooldown, autoscalers --------------------------------------------------------------


def test_out_of_bounds_goes_to_the_bound_whatever_the_data_and_cooldown() -> None:
    over = run(inputs(replicas=12, utilisation=None), last_action_time=9_999.0)
    assert (over.recommended_replicas, over.scale_to) == (None, 8)
    assert over.reason == "the Deployment's 12 replicas are over maxReplicas 8; scaling from 12 to 8"
    under = run(inputs(replicas=1), dataclasses.replace(POLICY, min_replicas=3))
    assert (under.recommended_replicas, under.scale_to) == (3, 3)
    assert under.reason == "the Deployment's 1 replica is under minReplicas 3; scaling from 1 to 3"
    sized = run(inputs(replicas=9, utilisation=0.35))
    assert sized.reason == (
        "the Deployment's 9 replicas are over maxReplicas 8 (the load alone would size it at 5); "
        "scaling from 9 to 8"
    )


def test_a_step_at_most_halves_the_replicas() -> None:
    d = run(inputs(replicas=8, utilisation=0.05))
    assert (d.recommended_replicas, d.scale_to) == (1, 4)
    assert d.reason.endswith("; scaling from 8 to 4, one step toward 1")
    assert run(inputs(replicas=3, utilisation=0.05)).scale_to == 2  # ceil(3 / 2)


def test_a_step_at_most_doubles_the_replicas() -> None:
    policy = dataclasses.replace(POLICY, max_replicas=16, target_utilisation=0.25)
    d = run(inputs(replicas=2, utilisation=1.0, cost_per_request=D("0.00001"), latency_seconds=3.1), policy)
    assert (d.recommended_replicas, d.scale_to) == (8, 4)
    assert d.reason.endswith("; scaling from 2 to 4, one step toward 8")


def test_cooldown_holds_the_step_and_keeps_the_recommendation() -> None:
    d = run(inputs(), last_action_time=100.0, now=340.0)
    assert (d.recommended_replicas, d.scale_to, d.infeasible) == (2, None, False)
    assert d.reason.endswith("; cooling down: next step allowed in 360s")
    assert run(inputs(), last_action_time=100.0, now=339.5).reason.endswith("next step allowed in 361s")
    # Once the cooldown has passed, the step is taken.
    assert run(inputs(), last_action_time=100.0, now=700.0).scale_to == 2
    # Nothing to do, nothing to cool down from.
    quiet = run(inputs(cost_per_request=D("0.0001")), last_action_time=100.0, now=340.0)
    assert "cooling" not in quiet.reason


def test_an_autoscaler_owning_the_replicas_gets_a_recommendation_only() -> None:
    d = run(inputs(), autoscaler=HPA)
    assert (d.recommended_replicas, d.scale_to, d.held_by) == (2, None, HPA)
    assert d.reason.endswith(
        "; HorizontalPodAutoscaler chat owns the replicas, so this is a recommendation only"
    )
    assert "scaling from" not in d.reason
    bounds = run(inputs(replicas=12), autoscaler="ScaledObject chat")
    assert (bounds.scale_to, bounds.held_by) == (None, "ScaledObject chat")
    assert bounds.reason.startswith("the Deployment's 12 replicas are over maxReplicas 8")
    infeasible = run(inputs(latency_seconds=3.1), autoscaler=HPA)
    assert infeasible.infeasible and infeasible.scale_to is None


# --- properties ----------------------------------------------------------------------------------------

policies = st.builds(
    lambda low, span, cooldown, target, min_requests: ScalingPolicy(
        min_replicas=low,
        max_replicas=max(low + span, 1),
        cooldown_seconds=cooldown,
        target_utilisation=target,
        min_requests=min_requests,
    ),
    st.integers(0, 20),
    st.integers(0, 40),
    st.floats(0, 3600),
    st.floats(0.01, 1.0),
    st.integers(0, 1000),
)
money = st.decimals(min_value=0, max_value=1, places=8, allow_nan=False, allow_infinity=False)
scaling_inputs = st.builds(
    ScalingInputs,
    replicas=st.integers(0, 100),
    utilisation=st.none() | st.floats(0, 1.2),
    requests_per_second=st.none() | st.floats(0, 1e4),
    cost_per_request=st.none() | money,
    budget=money,
    latency_seconds=st.none() | st.floats(0, 60),
    latency_limit=st.none() | st.floats(0.01, 60),
    requests=st.none() | st.floats(0, 1e6),
)


@given(scaling_inputs, policies, st.none() | st.floats(0, 10_000), st.floats(0, 10_000))
def test_scale_to_stays_in_bounds_and_moves_one_step(
    i: ScalingInputs, policy: ScalingPolicy, last: float | None, now: float
) -> None:
    d = decide(i, policy, last_action_time=last, now=now)
    if d.recommended_replicas is not None:
        assert policy.min_replicas <= d.recommended_replicas <= policy.max_replicas
    if d.scale_to is None:
        return
    assert policy.min_replicas <= d.scale_to <= policy.max_replicas
    assert d.scale_to != i.replicas
    if policy.min_replicas <= i.replicas <= policy.max_replicas:
        assert math.ceil(i.replicas / 2) <= d.scale_to <= i.replicas * 2
        assert not d.infeasible
        cooling = last is not None and now - last < policy.cooldown_seconds
        assert not cooling
    else:
        assert d.scale_to == (
            policy.min_replicas if i.replicas < policy.min_replicas else policy.max_replicas
        )


@given(scaling_inputs, policies, st.none() | st.floats(0, 10_000), st.floats(0, 10_000))
def test_an_autoscaler_is_never_fought(
    i: ScalingInputs, policy: ScalingPolicy, last: float | None, now: float
) -> None:
    held = decide(i, policy, last_action_time=last, now=now, autoscaler=HPA)
    free = decide(i, policy, last_action_time=last, now=now)
    assert held.scale_to is None and held.held_by == HPA
    assert (held.recommended_replicas, held.infeasible) == (free.recommended_replicas, free.infeasible)
    assert held.reason.endswith(f"; {HPA} owns the replicas, so this is a recommendation only")
