"""Costs as people and tools read them: the camelCase fields of CostSLO status, for status, JSON, tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from costslo.economics import CostBreakdown, as_decimal
from costslo.verdict import dollars


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def plain(value: Any) -> Any:
    """JSON-ready: Decimals as fixed-point strings (money stays exact), floats to 6 significant digits."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {camel(f.name): plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def current_fields(cost: CostBreakdown) -> dict[str, Any]:
    """The headline numbers, named as in status.current."""
    return {
        "costPerRequest": plain(cost.cost_per_request),
        "costPerMillionInputTokens": plain(cost.cost_per_million_input_tokens),
        "costPerMillionOutputTokens": plain(cost.cost_per_million_output_tokens),
        "cachedInputFraction": plain(cost.cached_input_fraction),
        "requestsPerSecond": plain(cost.requests_per_second),
        "failureRate": plain(cost.failure_rate),
        "gpus": plain(cost.gpus),
        "gpuUtilisation": plain(cost.utilisation),
        "idleCostFraction": plain(cost.idle_cost_fraction),
        "hourlyCost": plain(cost.hourly_cost),
        "grossMargin": plain(cost.gross_margin),
    }


def _latency_text(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def display(current: Mapping[str, Any], budget: str | None) -> dict[str, str]:
    """status.display: the figures of status.current and the budget as a person reads them at a glance
    ($0.000331, 12.97s, 34%), for `kubectl get` columns. The exact values stay in status.current."""
    money_keys = ("costPerRequest", "projectedCostPerRequest")
    measured = {k: as_decimal(current[k], k) for k in money_keys if current.get(k) is not None}
    limits = [as_decimal(budget, "budget")] if budget is not None else []
    # One scale for the costs and the budget, so that they line up and an overrun never reads as equal.
    texts = dollars(list(measured.values()), limits) if measured or limits else []
    out = dict(zip(measured, texts, strict=False))
    if limits:
        out["budget"] = texts[-1]
    latency = current.get("latencySeconds")
    if latency is not None:
        out["latency"] = _latency_text(float(latency))
    for key, template in (("requestsPerSecond", "{:.3g}"), ("gpus", "{:.3g}")):
        if current.get(key) is not None:
            out[key] = template.format(float(current[key]))
    if current.get("gpuUtilisation") is not None:
        out["gpuUtilisation"] = f"{100 * float(current['gpuUtilisation']):.0f}%"
    if current.get("hourlyCost") is not None:
        out["hourlyCost"] = f"${as_decimal(current['hourlyCost'], 'hourlyCost'):.2f}/h"
    return out
