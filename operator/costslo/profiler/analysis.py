"""From measured steps to money: capacity, capacity within the latency budget, cost per request and per
million tokens at each step (the same arithmetic as `costslo estimate`), and the budget and replicas that
would hold.

Capacity is the most finished requests per second any step sustained: closed-loop clients at a high enough
concurrency keep the server saturated, so throughput levels off there. A step's cost is one steady hour at
its throughput on GPUs whose capacity is that saturated throughput, so the idle share at low concurrency is
paid, as it would be in production.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from costslo import economics, views
from costslo.profiler.load import Step

MAX_FAILURE_RATE = 0.1


@dataclass(frozen=True)
class Settings:
    gpus: float
    gpu_hourly: Decimal
    latency_budget_seconds: float | None
    quantile: float = 0.95
    target_utilisation: float = 0.7  # the operator's scaling default: headroom for bursts
    target_rps: float | None = None


def _estimate(
    settings: Settings, step: Step, capacity: float, rps: float | None = None
) -> economics.Estimate:
    return economics.estimate(
        gpu_hourly=settings.gpu_hourly,
        gpus=settings.gpus,
        requests_per_second=step.finished_per_second if rps is None else rps,
        capacity_per_gpu=capacity / settings.gpus,
        failure_rate=step.failure_rate,
        input_tokens=step.mean_tokens("input"),
        output_tokens=step.mean_tokens("output"),
    )


def quantile_label(q: float) -> str:
    """0.95 -> 'p95', 0.995 -> 'p99.5'."""
    return f"p{q * 100:g}"


def _round_up(value: Decimal, digits: int = 2) -> Decimal:
    """Up to `digits` significant digits: a budget just above what was measured."""
    if value <= 0:
        return value
    exponent = value.adjusted() - digits + 1
    return value.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_CEILING).normalize()


def summarise(steps: Sequence[Step], settings: Settings) -> dict[str, Any]:
    """The report as data (camelCase, money as decimal strings): what JSON output prints as is."""
    # A step that fails more than MAX_FAILURE_RATE of its requests (say, fast 429s) is no operating point:
    # its throughput is not work the server can deliver.
    measured = [s for s in steps if s.delivered and s.failure_rate <= MAX_FAILURE_RATE]
    if not measured:
        errors = sorted({e for s in steps for e in s.errors})
        why = f": {errors[0]}" if errors else ""
        raise ValueError(f"no step delivered {1 - MAX_FAILURE_RATE:.0%} of its requests{why}")
    capacity = max(s.finished_per_second for s in measured)
    # Saturated when the last doubling of concurrency or so no longer raised throughput much.
    ordered = sorted(measured, key=lambda s: s.concurrency)
    reached = len(ordered) >= 2 and ordered[-1].finished_per_second <= 1.15 * ordered[-2].finished_per_second
    q = settings.quantile
    rows = []
    for s in steps:
        est = _estimate(settings, s, capacity) if s.finished else None
        rows.append(
            {
                "concurrency": s.concurrency,
                "requests": s.finished,
                "failed": s.finished - s.delivered,
                "seconds": round(s.wall_seconds, 3),
                "requestsPerSecond": s.finished_per_second,
                "deliveredPerSecond": s.delivered_per_second,
                "latencySeconds": {"p50": s.quantile(0.5), quantile_label(q): s.quantile(q)},
                "ttftSeconds": {"p50": s.quantile(0.5, "ttft"), quantile_label(q): s.quantile(q, "ttft")},
                "meanInputTokens": s.mean_tokens("input"),
                "meanOutputTokens": s.mean_tokens("output"),
                "gpu": None
                if s.gpu is None
                else {
                    "gpus": s.gpu.gpus,
                    "utilisationPercent": s.gpu.utilisation_percent,
                    "engineActive": s.gpu.engine_active,
                    "powerWatts": s.gpu.power_watts,
                },
                "costPerRequest": views.plain(est.cost.cost_per_request) if est else None,
                "costPerMillionInputTokens": views.plain(est.cost.cost_per_million_input_tokens)
                if est
                else None,
                "costPerMillionOutputTokens": views.plain(est.cost.cost_per_million_output_tokens)
                if est
                else None,
                "errors": s.errors[:3],
            }
        )
    budget = settings.latency_budget_seconds
    within = [s for s in measured if budget is None or ((lat := s.quantile(q)) is not None and lat <= budget)]
    best = max(within, key=lambda s: s.finished_per_second, default=None)
    out: dict[str, Any] = {
        "gpus": settings.gpus,
        "gpuHourly": views.plain(settings.gpu_hourly),
        "quantile": q,
        "latencyBudgetSeconds": budget,
        "capacityRequestsPerSecond": capacity,
        "capacityReached": reached,
        "steps": rows,
    }
    if best is None:
        out["atBudget"] = None
        out["suggestion"] = (
            f"no step kept {quantile_label(q)} latency within {budget}s, even at concurrency "
            f"{min(s.concurrency for s in measured)}: the budget is below what one request takes here"
        )
        return out
    at_budget = _estimate(settings, best, capacity, best.finished_per_second)
    # Run at the target utilisation of what fits the latency budget: the operator's scaling aims there.
    planned_rps = settings.target_utilisation * best.finished_per_second
    planned = _estimate(settings, best, best.finished_per_second, planned_rps)
    planned_cost = planned.cost.cost_per_request
    out["atBudget"] = {
        "concurrency": best.concurrency,
        "requestsPerSecond": best.finished_per_second,
        "latencySeconds": best.quantile(q),
        "costPerRequest": views.plain(at_budget.cost.cost_per_request),
        "costPerMillionInputTokens": views.plain(at_budget.cost.cost_per_million_input_tokens),
        "costPerMillionOutputTokens": views.plain(at_budget.cost.cost_per_million_output_tokens),
        "failureRate": best.failure_rate,
        "meanInputTokens": best.mean_tokens("input"),
        "meanOutputTokens": best.mean_tokens("output"),
    }
    suggestion: dict[str, Any] = {
        "targetUtilisation": settings.target_utilisation,
        "requestsPerSecondPerReplica": planned_rps,
        "costPerRequest": views.plain(planned_cost),
        "maxCostPerRequest": views.plain(_round_up(planned_cost)) if planned_cost is not None else None,
    }
    if settings.target_rps is not None:
        suggestion["replicas"] = max(1, math.ceil(settings.target_rps / planned_rps))
        suggestion["forRequestsPerSecond"] = settings.target_rps
    out["suggestion"] = suggestion
    return out
