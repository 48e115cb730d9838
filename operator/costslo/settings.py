"""Operator settings, from `costslo run` flags (or their environment variables)."""

from __future__ import annotations

from dataclasses import dataclass, field

from costslo.metrics.prometheus import PrometheusConfig
from costslo.pricing import PriceCatalog
from costslo.runtimes import LabelConfig
from costslo.standby import Peering


@dataclass(frozen=True)
class OperatorSettings:
    prometheus: PrometheusConfig
    interval_seconds: float = 30.0
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    labels: LabelConfig = field(default_factory=LabelConfig)
    price_catalog: PriceCatalog | None = None
    kubeconfig: str | None = None
    http_host: str = "0.0.0.0"
    http_port: int = 8081  # /verdict
    peering: Peering | None = None  # None: the only instance
