"""The operator's own metrics (prefix costslo_), on its HTTP API's /metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from costslo import api

PHASES: tuple[str, ...] = get_args(api.Phase)


class Telemetry:
    """One registry per operator, so tests and several loops in one process do not share counters."""

    def __init__(self, active: bool = True) -> None:
        self.registry = CollectorRegistry()
        labels = ("namespace", "name")
        self.cost = Gauge(
            "costslo_cost_per_request",
            "Cost per delivered request, USD (current window).",
            labels,
            registry=self.registry,
        )
        self.budget = Gauge(
            "costslo_budget_per_request", "Budget per delivered request, USD.", labels, registry=self.registry
        )
        self.per_million = Gauge(
            "costslo_cost_per_million_tokens",
            "Cost per million tokens, USD.",
            (*labels, "direction"),
            registry=self.registry,
        )
        self.latency = Gauge(
            "costslo_latency_seconds",
            "The objective's latency quantile, seconds.",
            labels,
            registry=self.registry,
        )
        self.phase = Gauge(
            "costslo_phase",
            "1 for the CostSLO's current phase, 0 for the others.",
            (*labels, "phase"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "costslo_evaluation_duration_seconds", "Time one evaluation cycle takes.", registry=self.registry
        )
        self.active = Gauge(
            "costslo_active",
            "1 on the instance that evaluates and acts, 0 on a standby (whose CostSLO series are dropped).",
            registry=self.registry,
        )
        self.active.set(1 if active else 0)
        self.queries = Counter("costslo_prometheus_queries", "PromQL queries sent.", registry=self.registry)
        self.writes = Counter("costslo_status_writes", "CostSLO status writes.", registry=self.registry)
        self.actions = Counter("costslo_actions", "Actions taken.", ("action",), registry=self.registry)

    def observe(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Sets the gauges of one CostSLO from its new status."""
        current = status.get("current") or {}
        for gauge, value in (
            (self.cost, current.get("costPerRequest")),
            (self.budget, status.get("budget")),
            (self.latency, current.get("latencySeconds")),
        ):
            if value is not None:
                gauge.labels(namespace, name).set(float(value))
        for direction, key in (
            ("input", "costPerMillionInputTokens"),
            ("output", "costPerMillionOutputTokens"),
        ):
            if current.get(key) is not None:
                self.per_million.labels(namespace, name, direction).set(float(current[key]))
        for phase in PHASES:
            self.phase.labels(namespace, name, phase).set(1.0 if status.get("phase") == phase else 0.0)

    def forget(self, namespace: str, name: str) -> None:
        """Drops a deleted CostSLO's series."""
        for gauge in (self.cost, self.budget, self.latency):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        for direction in ("input", "output"):
            with contextlib.suppress(KeyError):
                self.per_million.remove(namespace, name, direction)
        for phase in PHASES:
            with contextlib.suppress(KeyError):
                self.phase.remove(namespace, name, phase)

    def stand_by(self) -> None:
        """A standby's figures would go stale behind the Service: it exports none until it acts again."""
        self.active.set(0)
        for gauge in (self.cost, self.budget, self.latency, self.per_million, self.phase):
            gauge.clear()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
