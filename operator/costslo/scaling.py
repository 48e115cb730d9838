"""Replica sizing for a CostSLO: how many replicas hold cost and latency, and the one step to take now.

Pure: the short window's readings, the Deployment's replicas and the spec's scaling policy in, a
`ScalingDecision` out; no I/O, no Kubernetes. The rules (README.md, "Scaling"):

- The replicas the load needs are the busy replicas (replicas x GPU busy fraction) divided by the target
  utilisation, rounded up, at least one while there is traffic, and clamped into [minReplicas, maxReplicas].
  Without a GPU busy fraction, a request count, a cost per request, or the latency when a latency objective
  is set, or with fewer than minRequests requests in the window, there is nothing to recommend from.
- Cost over the budget with latency within its limit: idle GPUs make the cost, so scale down to the replicas
  the load needs. Where the load needs every replica there is, scaling is not the lever (a cheaper model or
  GPU is), and that is said rather than done.
- Latency over its limit with the cost within budget: scale up, to the replicas the load needs and at least
  one more, provided the cost per request, which grows with the replicas, stays within budget. Otherwise, or
  when the cost is already over budget too, cost and latency cannot both hold: Infeasible, and nothing moves.
- Both within: nothing moves; the recommendation is reported.
- A Deployment outside [minReplicas, maxReplicas] is brought to the nearer bound at once, whatever the data
  and the cooldown say.
- One step at a time: a step at most halves the replicas (never below ceil(replicas / 2)) or doubles them;
  after a step, the next waits out the cooldown.
- Where a HorizontalPodAutoscaler or a KEDA ScaledObject owns the replicas, nothing moves: the decision is
  reported as a recommendation only, so that two controllers do not fight over one field.

A projected cost per request assumes the cost scales with the replicas at the same traffic, which holds
where GPU-hours make the cost; the projection is an estimate, and the reasons say "about".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext

from costslo import api
from costslo.verdict import dollars, request_count, seconds

# Exact arithmetic on budgets of up to twelve digits, whatever the caller did to the thread's context.
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)
# Busy replicas over the target are rounded before ceil(), so 4 x 0.35 / 0.7 is 2 and not 3.
_SIZING_DIGITS = 9


@dataclass(frozen=True)
class ScalingInputs:
    """What the short window measured of the target, and its objectives; None where a value is unknown."""

    replicas: int  # the Deployment's spec.replicas now
    utilisation: float | None  # fleet GPU busy fraction in the short window
    requests_per_second: float | None  # finished requests per second in the short window
    cost_per_request: Decimal | None  # observed, short window
    budget: Decimal  # budget per delivered request
    latency_seconds: float | None  # the objective's latency in the short window
    latency_limit: float | None  # None when the CostSLO has no latency objective
    requests: float | None  # finished requests in the window (for min_requests)

    def __post_init__(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 0:
            raise ValueError(f"replicas must be an integer >= 0, got {self.replicas!r}")
        if not isinstance(self.budget, Decimal) or not self.budget.is_finite() or self.budget < 0:
            raise ValueError(f"budget must be a finite Decimal >= 0, got {self.budget!r}")
        limit = self.latency_limit
        if limit is not None and (not math.isfinite(limit) or limit <= 0):
            raise ValueError(f"latency limit must be a number of seconds > 0, got {limit!r}")


@dataclass(frozen=True)
class ScalingPolicy:
    """The scaling settings of a CostSLO, as the sizing uses them."""

    min_replicas: int = 1
    max_replicas: int = 8
    cooldown_seconds: float = 600.0
    target_utilisation: float = 0.7
    min_requests: int = 100

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"minReplicas must be >= 0, got {self.min_replicas!r}")
        if self.max_replicas < 1 or self.max_replicas < self.min_replicas:
            raise ValueError(
                f"maxReplicas {self.max_replicas!r} must be >= 1 and >= minReplicas {self.min_replicas}"
            )
        if not math.isfinite(self.cooldown_seconds) or self.cooldown_seconds < 0:
            raise ValueError(f"cooldown must be a number of seconds >= 0, got {self.cooldown_seconds!r}")
        if not 0 < self.target_utilisation <= 1:
            raise ValueError(f"target utilisation must be in (0, 1], got {self.target_utilisation!r}")
        if self.min_requests < 0:
            raise ValueError(f"minRequests must be >= 0, got {self.min_requests!r}")

    @classmethod
    def from_spec(cls, spec: api.CostSLOSpec) -> ScalingPolicy:
        """The policy of a CostSLO spec: its scaling bounds, cooldown and target, and its minRequests."""
        scaling = spec.enforcement.scaling
        return cls(
            min_replicas=scaling.min_replicas,
            max_replicas=scaling.max_replicas,
            cooldown_seconds=api.parse_duration(scaling.cooldown).total_seconds(),
            target_utilisation=scaling.target_utilisation,
            min_requests=spec.evaluation.min_requests,
        )

    def clamp(self, replicas: int) -> int:
        """The replicas brought into [minReplicas, maxReplicas]."""
        return min(max(replicas, self.min_replicas), self.max_replicas)


@dataclass(frozen=True)
class ScalingDecision:
    """What the sizing recommends, what to set now, and why."""

    recommended_replicas: int | None  # None when there is no data to recommend from
    scale_to: int | None  # replicas to set now; None = do not touch the Deployment
    reason: str  # a full sentence a person can act on, with the numbers
    infeasible: bool  # cost and latency cannot both hold
    held_by: str | None  # e.g. "HorizontalPodAutoscaler chat" when an autoscaler owns replicas


@dataclass(frozen=True)
class _Assessment:
    """The recommendation before bounds, cooldown and autoscalers have their say."""

    recommended: int | None
    target: int | None  # where the replicas should go; None = stay
    infeasible: bool
    reason: str


def decide(
    inputs: ScalingInputs,
    policy: ScalingPolicy,
    *,
    last_action_time: float | None,
    now: float,
    autoscaler: str | None = None,
) -> ScalingDecision:
    """The replicas to recommend and the step to take now (times in seconds since the epoch)."""
    replicas = inputs.replicas
    assessment = _assess(inputs, policy)
    if assessment.recommended is not None:
        # Outside the bounds, "stay as you are" is the nearer bound.
        assessment = replace(assessment, recommended=policy.clamp(assessment.recommended))
    bound = policy.clamp(replicas)
    reason = assessment.reason
    scale_to: int | None
    if bound != replicas:
        # Outside the bounds the spec sets: back to the nearer bound at once, in one move.
        reason = _bounds_reason(replicas, bound, policy, assessment)
        scale_to = bound
    elif assessment.target is None or assessment.target == replicas:
        scale_to = None
    else:
        scale_to = _one_step(replicas, assessment.target)
        if last_action_time is not None and autoscaler is None:
            remaining = policy.cooldown_seconds - max(now - last_action_time, 0.0)
            if remaining > 0:
                scale_to = None
                reason += f"; cooling down: next step allowed in {math.ceil(remaining)}s"

    if autoscaler is not None:
        return ScalingDecision(
            recommended_replicas=assessment.recommended,
            scale_to=None,
            reason=f"{reason}; {autoscaler} owns the replicas, so this is a recommendation only",
            infeasible=assessment.infeasible,
            held_by=autoscaler,
        )
    if scale_to is not None:
        reason += f"; scaling from {replicas} to {scale_to}"
        if bound == replicas and scale_to != assessment.target:
            reason += f", one step toward {assessment.target}"
    return ScalingDecision(
        recommended_replicas=assessment.recommended,
        scale_to=scale_to,
        reason=reason,
        infeasible=assessment.infeasible,
        held_by=None,
    )


def needed_replicas(replicas: int, utilisation: float, target_utilisation: float, traffic: bool) -> int:
    """Busy replicas over the target utilisation, rounded up; at least one while there is traffic."""
    busy = round(replicas * utilisation / target_utilisation, _SIZING_DIGITS)
    needed = math.ceil(busy)
    return max(needed, 1) if traffic else needed


def _one_step(replicas: int, target: int) -> int:
    """At most halve (never below ceil(replicas / 2)) or double the replicas in one step."""
    if target < replicas:
        return max(target, math.ceil(replicas / 2))
    return min(target, replicas * 2)


def _assess(inputs: ScalingInputs, policy: ScalingPolicy) -> _Assessment:
    replicas = inputs.replicas
    unusable = _no_data(inputs, policy)
    if unusable is not None:
        return _Assessment(None, None, False, unusable)
    utilisation, cost, requests = inputs.utilisation, inputs.cost_per_request, inputs.requests
    assert utilisation is not None and cost is not None and requests is not None
    rate = inputs.requests_per_second if _usable(inputs.requests_per_second) else None
    traffic = requests > 0 or (rate is not None and rate > 0)
    raw = needed_replicas(replicas, utilisation, policy.target_utilisation, traffic)
    needed = policy.clamp(raw)
    target = f"{policy.target_utilisation * 100:.10g}%"
    busy = f"GPUs {_percent(utilisation)} busy"
    load = "the load" if rate is None else f"the {rate:.3g} requests/s"

    cost_over = cost > inputs.budget
    limit, latency = inputs.latency_limit, inputs.latency_seconds
    latency_over = limit is not None and latency is not None and latency > limit

    if latency_over:
        assert limit is not None and latency is not None
        seconds, limit_text = _seconds_pair(latency, limit)
        latency_text = f"latency {seconds} is over the limit {limit_text}"
        recommended = policy.clamp(max(needed, replicas + 1))
        if recommended <= replicas:
            at_max = f"the Deployment is already at maxReplicas {policy.max_replicas}"
            if cost_over:
                cost_text, budget_text = _money_pair(cost, inputs.budget)
                return _Assessment(
                    replicas,
                    None,
                    True,
                    f"{latency_text} and cost {cost_text} per request is over the budget {budget_text} with "
                    f"{busy}, and {at_max}: cost and latency cannot both hold",
                )
            return _Assessment(replicas, None, False, f"{latency_text} with {busy}, but {at_max}")
        projected = _projected(cost, replicas, recommended)
        projected_busy = _percent(replicas * utilisation / recommended)
        if cost_over:
            cost_text, budget_text = _money_pair(cost, inputs.budget)
            projected_text, _ = _money_pair(projected, inputs.budget)
            return _Assessment(
                recommended,
                None,
                True,
                f"cost {cost_text} per request is over the budget {budget_text} and {latency_text} with "
                f"{busy}: fewer replicas would be slower and more would cost more ({_replicas(recommended)} "
                f"about {projected_text} per request), so cost and latency cannot both hold",
            )
        projected_text, budget_text = _money_pair(projected, inputs.budget)
        if projected > inputs.budget:
            return _Assessment(
                recommended,
                None,
                True,
                f"{latency_text} with {busy}, but {_replicas(recommended)} would cost about {projected_text} "
                f"per request, over the budget {budget_text}: cost and latency cannot both hold",
            )
        return _Assessment(
            recommended,
            recommended,
            False,
            f"{latency_text} with {busy}; {_replicas(recommended)} ({projected_busy} busy) would cost about "
            f"{projected_text} per request, within the budget {budget_text}",
        )

    if cost_over:
        cost_text, budget_text = _money_pair(cost, inputs.budget)
        over = f"cost {cost_text} per request is over the budget {budget_text}"
        if needed < replicas:
            projected = _projected(cost, replicas, needed)
            projected_text, _ = _money_pair(projected, inputs.budget)
            side = "still over the budget" if projected > inputs.budget else "within the budget"
            return _Assessment(
                needed,
                needed,
                False,
                f"{over} with {busy}; {_replicas(needed)} {_carry(needed)} {load} at the "
                f"{target} target utilisation, "
                f"at about {projected_text} per request, {side}",
            )
        if raw < replicas:
            return _Assessment(
                replicas,
                None,
                False,
                f"{over} with {busy}, but the Deployment is already at minReplicas {policy.min_replicas}",
            )
        return _Assessment(
            replicas,
            None,
            False,
            f"{over} although GPUs are {_percent(utilisation)} busy: scaling cannot fix it "
            "(a cheaper model or GPU can)",
        )

    cost_text, budget_text = _money_pair(cost, inputs.budget)
    within = f"cost {cost_text} per request is within the budget {budget_text}"
    if limit is not None and latency is not None:
        seconds, limit_text = _seconds_pair(latency, limit)
        within += f" and latency {seconds} within the limit {limit_text}"
    return _Assessment(
        needed,
        None,
        False,
        f"{within} with {busy}; {_replicas(needed)} would carry {load} at the {target} target utilisation",
    )


def _no_data(inputs: ScalingInputs, policy: ScalingPolicy) -> str | None:
    """Why there is nothing to recommend from, or None when there is."""
    if inputs.replicas == 0:
        return "the Deployment has 0 replicas, so nothing is measured to recommend from"
    requests = inputs.requests
    if _usable(requests) and requests is not None and requests < policy.min_requests:
        return (
            f"only {request_count(requests, policy.min_requests)} in the window, fewer than minRequests "
            f"{policy.min_requests:,}, so no recommendation"
        )
    missing: list[str] = []
    if not _usable(inputs.utilisation):
        missing.append("GPU utilisation")
    if not _usable(requests):
        missing.append("request count")
    cost = inputs.cost_per_request
    if not (isinstance(cost, Decimal) and cost.is_finite() and cost >= 0):
        missing.append("cost per request")
    if inputs.latency_limit is not None and not _usable(inputs.latency_seconds):
        missing.append("latency")
    if missing:
        return f"no {_or(missing)} in the window, so no recommendation"
    return None


def _bounds_reason(replicas: int, bound: int, policy: ScalingPolicy, assessment: _Assessment) -> str:
    if replicas < bound:
        text = (
            f"the Deployment's {_replicas(replicas)} {_are(replicas)} under minReplicas {policy.min_replicas}"
        )
    else:
        text = (
            f"the Deployment's {_replicas(replicas)} {_are(replicas)} over maxReplicas {policy.max_replicas}"
        )
    if assessment.recommended is not None and assessment.recommended != bound:
        text += f" (the load alone would size it at {assessment.recommended})"
    return text


def _projected(cost: Decimal, replicas: int, to: int) -> Decimal:
    """The cost per request at `to` replicas, the traffic unchanged: the cost grows with the replicas."""
    with localcontext(_CONTEXT):
        return cost * Decimal(to) / Decimal(replicas)


def _usable(value: float | None) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


def _replicas(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"


def _carry(n: int) -> str:
    return "carries" if n == 1 else "carry"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _or(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


# -- numbers in sentences -----------------------------------------------------------------------------


def _money_pair(measured: Decimal, limit: Decimal) -> tuple[str, str]:
    cost, budget = dollars([measured], [limit])
    return cost, budget


def _seconds_pair(measured: float, limit: float) -> tuple[str, str]:
    latency, threshold = seconds([measured], [limit])
    return latency, threshold


def _percent(fraction: float) -> str:
    """A fraction as a percentage: whole percents from 10% up, two significant digits under."""
    value = fraction * 100
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.2g}%"
