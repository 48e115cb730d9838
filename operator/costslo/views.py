"""Costs as people and tools read them: the camelCase fields of CostSLO status, for status, JSON, tables."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from costslo.economics import CostBreakdown


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
        "requestsPerSecond": plain(cost.requests_per_second),
        "failureRate": plain(cost.failure_rate),
        "gpus": plain(cost.gpus),
        "gpuUtilisation": plain(cost.utilisation),
        "idleCostFraction": plain(cost.idle_cost_fraction),
        "hourlyCost": plain(cost.hourly_cost),
        "grossMargin": plain(cost.gross_margin),
    }
