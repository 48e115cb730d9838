"""The SLO verdict of one evaluation: two windows, minimum traffic, hysteresis and the missing-data policy.

Pure: readings of the long and the short window and the spec's policy in, a `Verdict` out; no I/O, no
Kubernetes. The rules (README.md, "The operator"):

- An objective (cost per delivered request; the cost per 1M input or output tokens and the latency budget
  when they are set) is breached only when both windows are over its limit: the short window alone is a
  spike, the long window alone is an excess that has already ended. A value exactly at the limit is within
  it.
- A breach needs at least minRequests finished requests in the long window; fewer is InsufficientTraffic,
  and no action is taken.
- Once breached, an objective recovers only when the long window is at or under limit x (1 - hysteresis),
  so that a value hovering at the limit does not flap. Which objectives stand breached is the `Standing`;
  it is written into the conditions themselves (`Standing.from_conditions` reads it back), so an operator
  restart or an evaluation without data does not forget a breach. The money objectives share the SLOMet
  condition, whose reason names each one that stands breached, joined by "And"
  (OverBudgetAndOutputTokenBudgetExceeded); latency has LatencyMet to itself.
- A value the verdict needs that is absent or not a number makes MetricsUnavailable, never Met; the spec's
  onMissingMetrics decides whether rollouts wait (Hold) or proceed (Allow). A breach the data does show
  (cost over budget in both windows while latency is missing) is still Breached.

A window without a single request has no cost per request or per token and no latency; while the long
window is under minRequests that is no traffic, not missing metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import Literal, Protocol, TypeVar, get_args

from costslo import api
from costslo.economics import CostBreakdown, as_decimal

LatencyKind = Literal["quantile", "mean"]
TokenSide = Literal["input", "output"]
TOKEN_SIDES: tuple[TokenSide, ...] = ("input", "output")
OnMissingMetrics = Literal["Hold", "Allow"]
# The phases a verdict decides; Pending, RolloutBlocked and InvalidSpec are set by other layers.
VerdictPhase = Literal["Met", "Breached", "InsufficientTraffic", "MetricsUnavailable"]
ConditionStatus = Literal["True", "False", "Unknown"]

SLO_MET = "SLOMet"
LATENCY_MET = "LatencyMet"
METRICS_AVAILABLE = "MetricsAvailable"
ROLLOUT_ALLOWED = "RolloutAllowed"
CONDITION_TYPES = (SLO_MET, LATENCY_MET, METRICS_AVAILABLE, ROLLOUT_ALLOWED)

METRICS_UNAVAILABLE = "MetricsUnavailable"
INSUFFICIENT_TRAFFIC = "InsufficientTraffic"
# An objective that cannot be judged while it stands breached says so in its reason: that is how the breach
# survives the evaluations without data, and how recovery still has to clear the hysteresis margin after.
METRICS_UNAVAILABLE_AFTER_BREACH = "MetricsUnavailableAfterBreach"
INSUFFICIENT_TRAFFIC_AFTER_BREACH = "InsufficientTrafficAfterBreach"
_AFTER_BREACH = frozenset({METRICS_UNAVAILABLE_AFTER_BREACH, INSUFFICIENT_TRAFFIC_AFTER_BREACH})
# The parts of a reason that name several objectives of one condition.
_AND = "And"

# Exact arithmetic on budgets of up to twelve digits, whatever the caller did to the thread's context.
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class WindowReading:
    """What one window measured of the target; None where a value could not be had, and the reasons why."""

    cost_per_request: Decimal | None
    requests: float | None  # finished requests, failures included
    latency_seconds: float | None = None
    latency_kind: LatencyKind = "quantile"  # "mean" where no latency histogram answered
    missing: tuple[str, ...] = ()  # why the request count or a cost is None
    latency_missing: tuple[str, ...] = ()  # why latency_seconds is None
    cost_per_million_input_tokens: Decimal | None = None
    cost_per_million_output_tokens: Decimal | None = None

    @classmethod
    def of_cost(
        cls,
        cost: CostBreakdown,
        latency_seconds: float | None = None,
        latency_kind: LatencyKind = "quantile",
        latency_missing: tuple[str, ...] = (),
        missing: tuple[str, ...] = (),
    ) -> WindowReading:
        """The reading of a window costed by economics, with its latency and any further missing reasons."""
        return cls(
            cost_per_request=cost.cost_per_request,
            requests=cost.requests,
            latency_seconds=latency_seconds,
            latency_kind=latency_kind,
            missing=cost.missing + tuple(m for m in missing if m not in cost.missing),
            latency_missing=latency_missing,
            cost_per_million_input_tokens=cost.cost_per_million_input_tokens,
            cost_per_million_output_tokens=cost.cost_per_million_output_tokens,
        )

    def cost_per_million_tokens(self, side: TokenSide) -> Decimal | None:
        """The cost per 1M input or output tokens."""
        if side == "input":
            return self.cost_per_million_input_tokens
        return self.cost_per_million_output_tokens


@dataclass(frozen=True)
class Policy:
    """The objective and evaluation settings of a CostSLO, as the verdict uses them."""

    budget: Decimal
    latency_threshold_seconds: float | None = None
    latency_quantile: float = 0.95
    min_requests: int = 100
    on_missing_metrics: OnMissingMetrics = "Hold"
    hysteresis: float = 0.05
    long_window: str = "1h"
    short_window: str = "5m"
    max_cost_per_million_input_tokens: Decimal | None = None
    max_cost_per_million_output_tokens: Decimal | None = None

    def __post_init__(self) -> None:
        for name, value in (
            ("budget", self.budget),
            ("maxCostPerMillionInputTokens", self.max_cost_per_million_input_tokens),
            ("maxCostPerMillionOutputTokens", self.max_cost_per_million_output_tokens),
        ):
            if (value is not None or name == "budget") and not _usable_money(value):
                raise ValueError(f"{name} must be a finite Decimal >= 0, got {value!r}")
        threshold = self.latency_threshold_seconds
        if threshold is not None and (not math.isfinite(threshold) or threshold <= 0):
            raise ValueError(f"latency threshold must be a number of seconds > 0, got {threshold!r}")
        if not 0 < self.latency_quantile < 1:
            raise ValueError(f"latency quantile must be in (0, 1), got {self.latency_quantile!r}")
        if self.min_requests < 0:
            raise ValueError(f"minRequests must be >= 0, got {self.min_requests!r}")
        if self.on_missing_metrics not in get_args(OnMissingMetrics):
            raise ValueError(f"onMissingMetrics must be Hold or Allow, got {self.on_missing_metrics!r}")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"hysteresis must be a fraction in [0, 1), got {self.hysteresis!r}")

    @classmethod
    def from_spec(cls, spec: api.CostSLOSpec) -> Policy:
        """The policy of a CostSLO spec: its budget, latency objective and evaluation settings."""
        latency = spec.objective.latency
        evaluation = spec.evaluation
        return cls(
            budget=spec.objective.to_economics().budget,
            latency_threshold_seconds=None if latency is None else latency.threshold_seconds,
            latency_quantile=0.95 if latency is None else latency.quantile,
            min_requests=evaluation.min_requests,
            on_missing_metrics=evaluation.on_missing_metrics,
            hysteresis=evaluation.hysteresis,
            long_window=evaluation.windows.long,
            short_window=evaluation.windows.short,
            max_cost_per_million_input_tokens=spec.objective.max_cost_per_million_input_tokens,
            max_cost_per_million_output_tokens=spec.objective.max_cost_per_million_output_tokens,
        )

    @property
    def recovery_budget(self) -> Decimal:
        """The long window's cost per request at or under which a cost breach recovers: budget x (1 - h)."""
        return self._recovery(self.budget)

    def token_budget(self, side: TokenSide) -> Decimal | None:
        """The budget per 1M input or output tokens; None where the objective sets none."""
        if side == "input":
            return self.max_cost_per_million_input_tokens
        return self.max_cost_per_million_output_tokens

    def recovery_token_budget(self, side: TokenSide) -> Decimal | None:
        """The long window's cost per 1M tokens at or under which a token breach recovers: budget x (1-h)."""
        budget = self.token_budget(side)
        return None if budget is None else self._recovery(budget)

    def _recovery(self, budget: Decimal) -> Decimal:
        with localcontext(_CONTEXT):
            return budget * (1 - as_decimal(self.hysteresis, "hysteresis"))

    @property
    def recovery_latency(self) -> float | None:
        """The long window's latency at or under which a latency breach recovers: threshold x (1 - h)."""
        threshold = self.latency_threshold_seconds
        return None if threshold is None else threshold * (1 - self.hysteresis)


class _ConditionLike(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class Standing:
    """Which objectives stand breached: recovery from a breach must clear the hysteresis margin."""

    cost_breached: bool = False
    latency_breached: bool = False
    input_tokens_breached: bool = False
    output_tokens_breached: bool = False

    @classmethod
    def from_conditions(cls, conditions: Iterable[_ConditionLike]) -> Standing:
        """The standing that earlier conditions (api.Condition or VerdictCondition) record."""
        by_type: dict[str, _ConditionLike] = {}
        for condition in conditions:
            by_type.setdefault(condition.type, condition)
        money = _money_breached(by_type.get(SLO_MET))
        return cls(
            cost_breached="request" in money,
            latency_breached=_stands_breached(by_type.get(LATENCY_MET)),
            input_tokens_breached="input" in money,
            output_tokens_breached="output" in money,
        )

    def tokens_breached(self, side: TokenSide) -> bool:
        """Whether the budget per 1M input or output tokens stands breached."""
        return self.input_tokens_breached if side == "input" else self.output_tokens_breached


def _stands_breached(condition: _ConditionLike | None) -> bool:
    return condition is not None and (condition.status == "False" or condition.reason in _AFTER_BREACH)


def _money_breached(condition: _ConditionLike | None) -> set[_MoneyObjective]:
    """Which money objectives an SLOMet condition records as breached: those its reason names."""
    if condition is None:
        return set()
    named = {_STANDS_BREACHED[p] for p in condition.reason.split(_AND) if p in _STANDS_BREACHED}
    if condition.status == "False" and not named:
        named.add("request")  # a breach whose reason names no objective is one of cost per request
    return named


@dataclass(frozen=True)
class VerdictCondition:
    """One status condition as the verdict decides it; timestamps are added by `merge_conditions`."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """The outcome of one evaluation: phase, whether rollouts may proceed, why, and the conditions."""

    phase: VerdictPhase
    rollout_allowed: bool
    reason: str
    conditions: tuple[VerdictCondition, ...]
    standing: Standing  # to pass to the next evaluation; the conditions record the same

    def condition(self, type_: str) -> VerdictCondition:
        """The condition of one type (SLOMet, LatencyMet, MetricsAvailable, RolloutAllowed)."""
        for condition in self.conditions:
            if condition.type == type_:
                return condition
        raise KeyError(type_)


# -- judging one objective ----------------------------------------------------------------------------

Outcome = Literal["over", "still_over", "recovering", "recovered", "one_window", "within"]
_BREACHED: frozenset[Outcome] = frozenset({"over", "still_over", "recovering"})
_COST_REASONS: dict[Outcome, str] = {
    "over": "OverBudget",
    "still_over": "OverBudget",
    "recovering": "Recovering",
    "recovered": "Recovered",
    "one_window": "OneWindowOverBudget",
    "within": "WithinBudget",
}
_LATENCY_REASONS: dict[Outcome, str] = {
    "over": "OverThreshold",
    "still_over": "OverThreshold",
    "recovering": "Recovering",
    "recovered": "Recovered",
    "one_window": "OneWindowOverThreshold",
    "within": "WithinThreshold",
}


def _token_reasons(side: TokenSide) -> dict[Outcome, str]:
    budget = f"{side.capitalize()}TokenBudget"
    return {
        "over": f"{budget}Exceeded",
        "still_over": f"{budget}Exceeded",
        "recovering": f"{budget}Recovering",
        "recovered": f"{budget}Recovered",
        "one_window": f"OneWindowOver{budget}",
        "within": f"Within{budget}",
    }


_TOKEN_REASONS: dict[TokenSide, dict[Outcome, str]] = {side: _token_reasons(side) for side in TOKEN_SIDES}

# The money objectives that share SLOMet, and what their reasons say while they cannot be judged after a
# breach: MetricsUnavailableAfterBreach (cost per request), InsufficientTrafficAfterOutputTokenBreach, ...
_MoneyObjective = Literal["request", "input", "output"]
_AFTER_NAMES: dict[_MoneyObjective, str] = {"request": "", "input": "InputToken", "output": "OutputToken"}


def _after_breach(base: str, objective: _MoneyObjective) -> str:
    return f"{base}After{_AFTER_NAMES[objective]}Breach"


def _standing_reasons() -> dict[str, _MoneyObjective]:
    """Each part of an SLOMet reason that says a money objective stands breached, and which one."""
    reasons: dict[str, _MoneyObjective] = {}
    tables: list[tuple[_MoneyObjective, dict[Outcome, str]]] = [
        ("request", _COST_REASONS),
        *((side, _TOKEN_REASONS[side]) for side in TOKEN_SIDES),
    ]
    for objective, table in tables:
        reasons.update((table[kind], objective) for kind in _BREACHED)
        reasons.update(
            (_after_breach(base, objective), objective)
            for base in (METRICS_UNAVAILABLE, INSUFFICIENT_TRAFFIC)
        )
    return reasons


_STANDS_BREACHED = _standing_reasons()

N = TypeVar("N", Decimal, float)


def outcome(long: N, short: N, limit: N, recover_at: N, breached: bool) -> Outcome:
    """How an objective stands: both windows over limit breach it; the long one at recover_at clears it."""
    if breached:
        if long <= recover_at:
            return "recovered"
        if long > limit:
            return "over" if short > limit else "still_over"
        return "recovering"
    if long > limit and short > limit:
        return "over"
    if long > limit or short > limit:
        return "one_window"
    return "within"


@dataclass(frozen=True)
class _Figures:
    """One objective's numbers, rendered for a sentence."""

    subject: str  # "cost per request", "p95 latency"
    limit_name: str  # "budget", "threshold"
    long: str
    short: str
    limit: str
    recover_at: str
    long_window: str
    short_window: str
    hysteresis: float
    count: str = ""  # after the numbers: " over 5,234 requests"
    note: str = ""  # at the end: that a latency is only a mean


def _message(kind: Outcome, f: _Figures, long_over: bool) -> str:
    both = f"({f.long_window}: {f.long}, {f.short_window}: {f.short}){f.count}"
    short_only = f"({f.short_window}: {f.short}){f.count}"
    margin = f"the {f.limit_name} {f.limit} less the {_percent(f.hysteresis)} hysteresis"
    in_long = f"{f.subject} {f.long} in the {f.long_window} window"
    if kind == "over":
        text = f"{f.subject} {f.long} is over the {f.limit_name} {f.limit} in both windows {both}"
    elif kind == "still_over":
        text = (
            f"{in_long} is still over the {f.limit_name} {f.limit} {short_only}, "
            f"so the breach stands until it is at or under {f.recover_at}"
        )
    elif kind == "recovering":
        text = (
            f"{in_long} is under the {f.limit_name} {f.limit} {short_only} but not yet at or under "
            f"{f.recover_at}, {margin}, so the breach stands"
        )
    elif kind == "recovered":
        to = margin if f.hysteresis > 0 else f"the {f.limit_name}"
        text = f"{in_long} is back at or under {f.recover_at}, {to} {short_only}"
    elif kind == "one_window":
        (over, over_value), (other, other_value) = (
            ((f.long_window, f.long), (f.short_window, f.short))
            if long_over
            else ((f.short_window, f.short), (f.long_window, f.long))
        )
        text = (
            f"{f.subject} is over the {f.limit_name} {f.limit} only in the {over} window "
            f"({over}: {over_value}, {other}: {other_value}){f.count}, which is not a breach"
        )
    else:
        text = f"{f.subject} {f.long} is within the {f.limit_name} {f.limit} in both windows {both}"
    return text + f.note


# -- what is missing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """A value the verdict needs and cannot use."""

    subject: str  # "request count", "cost per request", "p95 latency"
    window: str
    why: str  # "" when the reading gave no reason


@dataclass(frozen=True)
class _Gaps:
    """What the verdict needs and cannot use, by what it keeps from being judged."""

    requests: tuple[_Problem, ...]
    cost: tuple[_Problem, ...]
    latency: tuple[_Problem, ...]
    idle: tuple[str, ...]  # windows with no request at all while traffic is under minRequests
    input_tokens: tuple[_Problem, ...] = ()
    output_tokens: tuple[_Problem, ...] = ()

    @property
    def all(self) -> tuple[_Problem, ...]:
        """Every problem, requests first."""
        return self.requests + self.money + self.latency

    @property
    def money(self) -> tuple[_Problem, ...]:
        """The problems with costs: per request, then per 1M input and output tokens."""
        return self.cost + self.input_tokens + self.output_tokens

    def tokens(self, side: TokenSide) -> tuple[_Problem, ...]:
        """The problems with the cost per 1M input or output tokens."""
        return self.input_tokens if side == "input" else self.output_tokens


def _gaps(long: WindowReading, short: WindowReading, policy: Policy, traffic_low: bool) -> _Gaps:
    windows = ((policy.long_window, long), (policy.short_window, short))
    # Under minRequests, a window without a single request has no cost or latency by definition: that is
    # no traffic, not missing metrics. With enough traffic, a silent short window is a gap like any other.
    measured = [(label, r) for label, r in windows if not (traffic_low and r.requests == 0)]
    latency_subject = f"p{_percent_number(policy.latency_quantile)} latency"
    return _Gaps(
        requests=()
        if _usable_number(long.requests)
        else (_Problem("request count", policy.long_window, _why(long.requests, long.missing)),),
        cost=tuple(
            _Problem("cost per request", label, _why(r.cost_per_request, r.missing))
            for label, r in measured
            if not _usable_money(r.cost_per_request)
        ),
        latency=()
        if policy.latency_threshold_seconds is None
        else tuple(
            _Problem(latency_subject, label, _why(r.latency_seconds, r.latency_missing))
            for label, r in measured
            if not _usable_number(r.latency_seconds)
        ),
        idle=tuple(label for label, r in windows if traffic_low and r.requests == 0),
        input_tokens=_token_gaps("input", measured, policy),
        output_tokens=_token_gaps("output", measured, policy),
    )


def _token_gaps(
    side: TokenSide, measured: Sequence[tuple[str, WindowReading]], policy: Policy
) -> tuple[_Problem, ...]:
    if policy.token_budget(side) is None:
        return ()
    return tuple(
        _Problem(_token_subject(side), label, _why(r.cost_per_million_tokens(side), r.missing))
        for label, r in measured
        if not _usable_money(r.cost_per_million_tokens(side))
    )


def _token_subject(side: TokenSide) -> str:
    return f"cost per 1M {side} tokens"


def _why(value: object, reasons: tuple[str, ...]) -> str:
    if value is None:
        return ", ".join(reasons)
    return f"{value} is not a usable value"


def _describe(problems: Sequence[_Problem]) -> str:
    groups: dict[tuple[str, str], list[str]] = {}
    for p in problems:
        groups.setdefault((p.subject, p.why), []).append(p.window)
    parts = []
    for (subject, why), windows in groups.items():
        where = f"the {' and '.join(windows)} window{'s' if len(windows) > 1 else ''}"
        parts.append(f"no usable {subject} in {where}" + (f" ({why})" if why else ""))
    return "; ".join(parts)


def _usable_money(value: Decimal | None) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value >= 0


def _usable_number(value: float | None) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


# -- the verdict --------------------------------------------------------------------------------------


def judge(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing | None = None
) -> Verdict:
    """The verdict of one evaluation from both windows' readings and what the previous one left standing."""
    standing = standing or Standing()
    counted = _usable_number(long.requests)
    enough = counted and long.requests is not None and long.requests >= policy.min_requests
    gaps = _gaps(long, short, policy, traffic_low=counted and not enough)
    cost = _judge_cost(long, short, policy, standing) if enough and not gaps.cost else None
    tokens = {
        side: _judge_tokens(side, long, short, policy, standing) if enough and not gaps.tokens(side) else None
        for side in TOKEN_SIDES
    }
    latency = _judge_latency(long, short, policy, standing) if enough and not gaps.latency else None
    judgements = [j for j in (cost, *tokens.values(), latency) if j is not None]
    breaches = [j[1] for j in judgements if j[0] in _BREACHED]

    phase: VerdictPhase
    if breaches:
        phase = "Breached"  # a breach the data shows stands even where other data is missing
    elif gaps.all:
        phase = "MetricsUnavailable"
    elif not enough:
        phase = "InsufficientTraffic"
    else:
        phase = "Met"

    traffic = "" if enough or not counted else _traffic_message(long.requests, policy)
    slo = _objective_condition(
        SLO_MET,
        _money_objectives(cost, tokens, policy, standing),
        gaps.requests + gaps.money,
        traffic,
        policy,
    )
    if policy.latency_threshold_seconds is None:
        latency_met = VerdictCondition(
            LATENCY_MET, "True", "NoLatencyObjective", "no latency objective is set"
        )
    else:
        objective = _Objective(
            judgement=latency,
            reasons=_LATENCY_REASONS,
            was_breached=standing.latency_breached,
            subject="latency",
            recover_at=_seconds([], [policy.recovery_latency or 0.0])[0],
        )
        latency_met = _objective_condition(
            LATENCY_MET, [objective], gaps.requests + gaps.latency, traffic, policy
        )

    if phase == "Breached":
        reason = "; ".join(breaches)
    elif phase == "MetricsUnavailable":
        reason = (
            f"cannot judge the SLO: {_describe(gaps.all)}; {_MISSING_CONSEQUENCE[policy.on_missing_metrics]}"
        )
    elif phase == "InsufficientTraffic":
        reason = traffic
    else:
        reason = "; ".join(j[1] for j in judgements)
    rollout = _rollout_condition(phase, policy.on_missing_metrics, reason)
    return Verdict(
        phase=phase,
        rollout_allowed=rollout.status == "True",
        reason=reason,
        conditions=(slo, latency_met, _metrics_condition(gaps), rollout),
        standing=Standing.from_conditions((slo, latency_met)),
    )


_MISSING_CONSEQUENCE: dict[OnMissingMetrics, str] = {
    "Hold": "rollouts wait until the data returns (onMissingMetrics: Hold)",
    "Allow": "rollouts proceed unchecked (onMissingMetrics: Allow)",
}


def _rollout_condition(phase: VerdictPhase, on_missing: OnMissingMetrics, reason: str) -> VerdictCondition:
    if phase == "Breached":
        return VerdictCondition(ROLLOUT_ALLOWED, "False", "SLOBreached", f"rollouts wait: {reason}")
    if phase == "MetricsUnavailable":
        status: ConditionStatus = "True" if on_missing == "Allow" else "False"
        return VerdictCondition(
            ROLLOUT_ALLOWED, status, f"OnMissingMetrics{on_missing}", _MISSING_CONSEQUENCE[on_missing]
        )
    if phase == "InsufficientTraffic":
        return VerdictCondition(ROLLOUT_ALLOWED, "True", INSUFFICIENT_TRAFFIC, f"nothing is held: {reason}")
    return VerdictCondition(ROLLOUT_ALLOWED, "True", "SLOMet", "the SLO is met")


_Judgement = tuple[Outcome, str]  # the outcome and its sentence
_NAMES_RECOVERY: frozenset[Outcome] = frozenset({"still_over", "recovering", "recovered"})


def _judge_cost(long: WindowReading, short: WindowReading, policy: Policy, standing: Standing) -> _Judgement:
    assert long.cost_per_request is not None and short.cost_per_request is not None
    assert long.requests is not None
    values = (long.cost_per_request, short.cost_per_request, policy.budget, policy.recovery_budget)
    kind = outcome(*values, breached=standing.cost_breached)
    texts = _dollars(values[:2], values[2:] if kind in _NAMES_RECOVERY else values[2:3])
    figures = _figures("cost per request", "budget", texts, policy)
    figures = replace(figures, count=f" over {_requests(long.requests, policy.min_requests)}")
    return kind, _message(kind, figures, values[0] > values[2])


def _judge_tokens(
    side: TokenSide, long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> _Judgement | None:
    budget, recover_at = policy.token_budget(side), policy.recovery_token_budget(side)
    if budget is None or recover_at is None:
        return None
    long_cost, short_cost = long.cost_per_million_tokens(side), short.cost_per_million_tokens(side)
    assert long_cost is not None and short_cost is not None
    values = (long_cost, short_cost, budget, recover_at)
    kind = outcome(*values, breached=standing.tokens_breached(side))
    texts = _dollars(values[:2], values[2:] if kind in _NAMES_RECOVERY else values[2:3])
    return kind, _message(
        kind, _figures(_token_subject(side), "budget", texts, policy), values[0] > values[2]
    )


def _judge_latency(
    long: WindowReading, short: WindowReading, policy: Policy, standing: Standing
) -> _Judgement | None:
    threshold, recover_at = policy.latency_threshold_seconds, policy.recovery_latency
    if threshold is None or recover_at is None:
        return None
    assert long.latency_seconds is not None and short.latency_seconds is not None
    values = (long.latency_seconds, short.latency_seconds, threshold, recover_at)
    kind = outcome(*values, breached=standing.latency_breached)
    texts = _seconds(values[:2], values[2:] if kind in _NAMES_RECOVERY else values[2:3])
    quantile = f"p{_percent_number(policy.latency_quantile)}"
    means = [
        w for w, r in ((policy.long_window, long), (policy.short_window, short)) if r.latency_kind == "mean"
    ]
    subject, note = f"{quantile} latency", ""
    # A mean hides the slow tail that a quantile objective is about: say so wherever a mean stands in.
    if len(means) == 2:
        subject = "mean latency"
        note = f"; it is only a mean, not the {quantile}, as no latency histogram answered"
    elif means:
        note = f"; the {means[0]} figure is only a mean, not the {quantile}, as no latency histogram answered"
    figures = replace(_figures(subject, "threshold", texts, policy), note=note)
    return kind, _message(kind, figures, values[0] > values[2])


def _figures(subject: str, limit_name: str, texts: Sequence[str], policy: Policy) -> _Figures:
    return _Figures(
        subject=subject,
        limit_name=limit_name,
        long=texts[0],
        short=texts[1],
        limit=texts[2],
        recover_at=texts[3] if len(texts) > 3 else "",
        long_window=policy.long_window,
        short_window=policy.short_window,
        hysteresis=policy.hysteresis,
    )


@dataclass(frozen=True)
class _Objective:
    """One objective of a condition as this evaluation found it."""

    judgement: _Judgement | None  # None where it could not be judged
    reasons: dict[Outcome, str]
    was_breached: bool
    subject: str  # named where a condition has several objectives
    recover_at: str  # the long window's value that ends a breach, as the sentence writes it
    after: _MoneyObjective = "request"  # which AfterBreach reason it takes while it cannot be judged


def _money_objectives(
    cost: _Judgement | None,
    tokens: dict[TokenSide, _Judgement | None],
    policy: Policy,
    standing: Standing,
) -> list[_Objective]:
    """The objectives of SLOMet: cost per request, then each per-token budget that is set."""
    objectives = [
        _Objective(
            judgement=cost,
            reasons=_COST_REASONS,
            was_breached=standing.cost_breached,
            subject="cost per request",
            recover_at=_dollars([], [policy.recovery_budget])[0],
        )
    ]
    for side in TOKEN_SIDES:
        recover_at = policy.recovery_token_budget(side)
        if recover_at is not None:
            objectives.append(
                _Objective(
                    judgement=tokens[side],
                    reasons=_TOKEN_REASONS[side],
                    was_breached=standing.tokens_breached(side),
                    subject=_token_subject(side),
                    recover_at=_dollars([], [recover_at])[0],
                    after=side,
                )
            )
    return objectives


# Which reason a condition met on several objectives gives: the most telling.
_MET_ORDER: tuple[Outcome, ...] = ("recovered", "one_window", "within")


def _objective_condition(
    type_: str,
    objectives: Sequence[_Objective],
    problems: Sequence[_Problem],
    traffic: str,
    policy: Policy,
) -> VerdictCondition:
    """One condition over its objectives: False if one is breached, else Unknown if one cannot be judged.

    The reason names every objective that stands breached, so that `Standing.from_conditions` reads them
    all back; a condition that is met gives the reason of its most telling objective.
    """
    base = METRICS_UNAVAILABLE if problems else INSUFFICIENT_TRAFFIC
    judged = [(o, o.judgement) for o in objectives if o.judgement is not None]
    unjudged = [o for o in objectives if o.judgement is None]
    messages = [message for _, (_, message) in judged]
    if unjudged:
        messages.append(f"cannot judge: {_describe(problems)}" if problems else traffic)
    for o in unjudged:
        if o.was_breached:
            what = "it" if len(objectives) == 1 else o.subject
            messages.append(
                f"{what} stays breached until the {policy.long_window} window is at or under {o.recover_at}"
            )
    message = "; ".join(messages)

    standing = []
    for o in objectives:
        if o.judgement is None:
            if o.was_breached:
                standing.append(_after_breach(base, o.after))
        elif o.judgement[0] in _BREACHED:
            standing.append(o.reasons[o.judgement[0]])
    if any(j[0] in _BREACHED for _, j in judged):
        return VerdictCondition(type_, "False", _AND.join(standing), message)
    if unjudged:
        return VerdictCondition(type_, "Unknown", _AND.join(standing) or base, message)
    o, (kind, _) = min(judged, key=lambda oj: _MET_ORDER.index(oj[1][0]))
    return VerdictCondition(type_, "True", o.reasons[kind], message)


def _metrics_condition(gaps: _Gaps) -> VerdictCondition:
    if gaps.all:
        return VerdictCondition(METRICS_AVAILABLE, "False", METRICS_UNAVAILABLE, _describe(gaps.all))
    if gaps.idle:
        where = f"the {' and '.join(gaps.idle)} window{'s' if len(gaps.idle) > 1 else ''}"
        message = f"no requests in {where}, so nothing to measure there; nothing else is missing"
    else:
        message = "every value the verdict needs has data"
    return VerdictCondition(METRICS_AVAILABLE, "True", "MetricsPresent", message)


def _traffic_message(requests: float | None, policy: Policy) -> str:
    assert requests is not None
    return (
        f"{_requests(requests, policy.min_requests)} in the {policy.long_window} window "
        f"{'is' if requests == 1 else 'are'} fewer than minRequests ({policy.min_requests:,}), "
        "too few to judge, so no action is taken"
    )


# -- conditions over time -----------------------------------------------------------------------------


def merge_conditions(
    previous: Iterable[api.Condition],
    new: Iterable[VerdictCondition],
    now: str,
    observed_generation: int | None = None,
) -> list[api.Condition]:
    """The previous conditions with the new ones applied; lastTransitionTime moves only when a status does."""
    try:
        datetime.fromisoformat(now)
    except ValueError:
        raise ValueError(f"now must be an ISO-8601 time such as 2024-05-01T12:00:00Z, got {now!r}") from None
    updates = {c.type: c for c in new}
    merged: list[api.Condition] = []
    seen: set[str] = set()
    for old in previous:
        if old.type in seen:
            continue  # two conditions of one type: the first is the one kubectl shows, keep it alone
        seen.add(old.type)
        update = updates.get(old.type)
        if update is None:
            merged.append(old)  # set by another layer (SpecValid, ...): not ours to change
            continue
        merged.append(
            _condition(
                update,
                old.last_transition_time if old.status == update.status else now,
                old.observed_generation if observed_generation is None else observed_generation,
            )
        )
    merged.extend(_condition(c, now, observed_generation) for c in updates.values() if c.type not in seen)
    return merged


def _condition(c: VerdictCondition, since: str, generation: int | None) -> api.Condition:
    return api.Condition(
        type=c.type,
        status=c.status,
        reason=c.reason,
        message=c.message,
        last_transition_time=since,
        observed_generation=generation,
    )


# -- numbers in sentences -----------------------------------------------------------------------------


def _distinct(measured: Sequence[object], limits: Sequence[object], texts: Sequence[str]) -> bool:
    """Whether no measured value reads like a different limit (two windows may read alike: same digits)."""
    n = len(measured)
    return all(
        texts[i] != texts[n + j] or m == lim for i, m in enumerate(measured) for j, lim in enumerate(limits)
    )


def _dollars(measured: Sequence[Decimal], limits: Sequence[Decimal]) -> list[str]:
    """Amounts to three significant digits of the smallest, limits exact, more if one reads like a limit."""
    # One scale lines the numbers up ($0.000182 against $0.000150); a limit is what a person wrote or can
    # work out, so it is never rounded; and a cost over the budget must never read as equal to it.
    values = [*measured, *limits]
    places = max([2, *(2 - v.adjusted() for v in values if v != 0)])
    exact = max(_places(v) for v in values)
    with localcontext(_CONTEXT):
        while True:
            scales = [places] * len(measured) + [max(places, _places(v.normalize())) for v in limits]
            texts = [f"${v.quantize(Decimal(1).scaleb(-p)):f}" for v, p in zip(values, scales, strict=True)]
            if places >= exact or _distinct(measured, limits, texts):
                return texts
            places += 1


def dollars(measured: Sequence[Decimal], limits: Sequence[Decimal]) -> list[str]:
    """Money for sentences, as the verdict writes it: measured values never read like their limits."""
    return _dollars(measured, limits)


def request_count(n: float, min_requests: int) -> str:
    """A request count for sentences: a fractional one stays on its side of minRequests."""
    return _requests(n, min_requests)


def seconds(measured: Sequence[float], limits: Sequence[float]) -> list[str]:
    """Durations for sentences, as the verdict writes them."""
    return _seconds(measured, limits)


def _places(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def _seconds(measured: Sequence[float], limits: Sequence[float]) -> list[str]:
    """Durations to three significant digits (limits to six), more where one would read like a limit."""
    texts: list[str] = []
    for digits in range(3, 18):
        texts = [f"{v:.{digits}g}s" for v in measured] + [f"{v:.{max(digits, 6)}g}s" for v in limits]
        if _distinct(measured, limits, texts):
            break
    return texts


def _requests(n: float, min_requests: int) -> str:
    """A request count; a fractional one (from increase()) keeps enough digits to stay on its side of min."""
    noun = "request" if n == 1 else "requests"
    if n == int(n):
        return f"{int(n):,} {noun}"
    text = ""
    for digits in range(1, 10):
        text = f"{n:,.{digits}f}"
        if (float(text.replace(",", "")) >= min_requests) == (n >= min_requests):
            break
    return f"{text} {noun}"


def _percent_number(fraction: float) -> str:
    return f"{fraction * 100:.10g}"


def _percent(fraction: float) -> str:
    return f"{_percent_number(fraction)}%"
