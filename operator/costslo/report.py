"""`costslo report`: the cost of every inference workload Prometheus knows of, read-only.

Queries per run: one to find which runtimes are present, two for workloads (kube-state-metrics), one per
quantity per runtime present, and with a price catalog one for pod placement. None of that grows with the
number of workloads.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from costslo import economics, views
from costslo.economics import CostBreakdown, Prices, Projection
from costslo.metrics.promql import duration, namespace_matcher
from costslo.metrics.window import (
    Latency,
    PodKey,
    Querier,
    Samples,
    WindowSamples,
    fetch_window,
    merge_missing,
)
from costslo.pricing import GpuPrice, PriceCatalog, PricingError, gpu_price, weighted_gpu_price
from costslo.runtimes import (
    LATENCY_QUANTITY,
    RUNTIMES,
    LabelConfig,
    LatencyMetric,
    Quantity,
    RuntimePreset,
    has_model_label,
    with_models,
)
from costslo.usage import gap, usage_of
from costslo.workloads import Workload, discover

RUNTIME_MARKERS = {name: preset.marker for name, preset in RUNTIMES.items() if preset.marker}


def _preset(runtime: str, models: tuple[str, ...]) -> RuntimePreset:
    preset = RUNTIMES[runtime]
    return with_models(preset, models) if models and has_model_label(preset) else preset


class ReportError(RuntimeError):
    """Nothing to report, with a sentence saying what to check."""


@dataclass(frozen=True)
class ReportOptions:
    window_seconds: float = 3600.0
    namespaces: Collection[str] | None = None
    at: float | None = None
    runtime: str = "auto"
    models: tuple[str, ...] = ()  # served models to read, where a runtime's series name them
    labels: LabelConfig = field(default_factory=LabelConfig)
    latency_metric: LatencyMetric = "e2e"
    quantile: float = 0.95
    gpu_hourly: Decimal | None = None
    catalog: PriceCatalog | None = None
    node_labels: Mapping[str, Mapping[str, str]] | None = None  # node name -> labels, when known
    prices: Prices = field(default_factory=Prices)  # per-replica, supporting, energy, token weight


@dataclass(frozen=True)
class RevisionRow:
    pod_template_hash: str
    cost: CostBreakdown
    projection: Projection
    latency: Latency | None


@dataclass(frozen=True)
class WorkloadRow:
    workload: Workload
    runtime: str
    price: GpuPrice | None
    cost: CostBreakdown
    latency: Latency | None
    revisions: tuple[RevisionRow, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Report:
    window_seconds: float
    at: float
    queries: int
    rows: tuple[WorkloadRow, ...]
    covered_seconds: float | None = (
        None  # rates are over this span where Prometheus holds less than the window
    )
    coverage: str | None = None  # "over the last 1m15s: Prometheus holds no older data", or None

    @property
    def complete(self) -> bool:
        """Every quantity of every workload was measured (nothing in any `missing`)."""
        return all(not r.missing for r in self.rows)


def detect_runtimes(client: Querier, opts: ReportOptions, at: float) -> list[str]:
    """The runtimes with series in scope during the window (one query)."""
    if opts.runtime != "auto":
        return [opts.runtime]
    names = "|".join(RUNTIME_MARKERS.values())
    ns = namespace_matcher(opts.labels.runtime.namespace, opts.namespaces)
    window = duration(opts.window_seconds)
    found = client.query(f'count by (__name__) (last_over_time({{__name__=~"{names}",{ns}}}[{window}]))', at)
    present = {s.labels.get("__name__") for s in found}
    return [rt for rt, marker in RUNTIME_MARKERS.items() if marker in present]


def _pod_nodes(client: Querier, opts: ReportOptions, at: float) -> dict[tuple[str, str], str]:
    labels = opts.labels.kube_state
    ns = namespace_matcher(labels.namespace, opts.namespaces)
    answer = client.query(
        f"max by ({labels.namespace}, {labels.pod}, node) "
        f'(max_over_time(kube_pod_info{{{ns},node!=""}}[{duration(opts.window_seconds)}]))',
        at,
    )
    return {(s.labels[labels.namespace], s.labels[labels.pod]): s.labels["node"] for s in answer}


def _price(
    workload: Workload, samples: WindowSamples, opts: ReportOptions, nodes: Mapping[tuple[str, str], str]
) -> GpuPrice:
    if opts.gpu_hourly is not None:
        return gpu_price({}, slo_gpu_hourly=opts.gpu_hourly)
    if opts.catalog is None:
        raise PricingError("no GPU price: pass --gpu-hourly or --price-catalog")
    parts: list[tuple[GpuPrice, float]] = []
    for pod in workload.pods:
        node = nodes.get(pod)
        if node is None:
            continue
        node_labels = (opts.node_labels or {}).get(node)
        if node_labels is None:
            raise PricingError(
                f"no labels for node {node} (pod {pod[0]}/{pod[1]}): pass --kubeconfig so nodes can be read"
            )
        held = samples.pods[pod].gpu_seconds if pod in samples.pods else None
        parts.append((gpu_price(node_labels, catalog=opts.catalog), held or 0.0))
    if not parts:
        raise PricingError(f"no node known for the pods of {workload.ref}")
    try:
        return weighted_gpu_price(parts)
    except ValueError as exc:  # e.g. no GPU-seconds to weigh the prices by
        raise PricingError(f"cannot price the GPUs of {workload.ref}: {exc}") from None


def _cost(samples: Samples, window: float, prices: Prices) -> CostBreakdown:
    return economics.cost_of(usage_of(samples, window), prices)


def _missing_for(
    pods: Sequence[PodKey],
    samples: Samples,
    window: WindowSamples,
    latency_metric: LatencyMetric,
    prices: Prices,
) -> list[str]:
    def needed(q: Quantity) -> bool:
        return gap(q, samples, prices) or (q == LATENCY_QUANTITY[latency_metric] and q in window.missing)

    return list(window.gaps(pods, needed, scope_wide=True))


def build(client: Querier, opts: ReportOptions) -> Report:
    """Measures and costs every workload with inference or GPU series in scope."""
    at = opts.at if opts.at is not None else time.time()
    before = getattr(client, "queries", 0)
    runtimes = detect_runtimes(client, opts, at)
    if not runtimes:
        scope = "every namespace" if opts.namespaces is None else ", ".join(sorted(opts.namespaces))
        raise ReportError(
            f"no model-server series ({', '.join(RUNTIME_MARKERS.values())}) in {scope} over the last "
            f"{duration(opts.window_seconds)}: check that the servers are scraped (PodMonitor or "
            "ServiceMonitor) and the --namespace and --window"
        )
    workloads = discover(client, opts.window_seconds, opts.namespaces, at, opts.labels.kube_state)
    nodes = _pod_nodes(client, opts, at) if opts.gpu_hourly is None and opts.catalog is not None else {}
    windows = [
        fetch_window(
            client,
            _preset(rt, opts.models),
            opts.labels,
            opts.window_seconds,
            opts.namespaces,
            at,
            latency_metrics=(opts.latency_metric,),
        )
        for rt in runtimes
    ]
    rows: list[WorkloadRow] = []
    for workload in workloads:
        # A workload belongs to the runtime whose series its pods carry; pods with GPUs but no runtime
        # series still show up (under the first runtime), with the missing request counts said.
        window = next(
            (
                w
                for w in windows
                # A pod left out for serving several models still says whose series it carries.
                if any(
                    (w.pods.get(p) and w.pods[p].finished is not None) or p in w.several_models
                    for p in workload.pods
                )
            ),
            None,
        )
        if window is None:
            window = windows[0]
            if not any(window.pods.get(p) and window.pods[p].gpu_seconds for p in workload.pods):
                continue
        samples = window.total(workload.pods)
        try:
            price: GpuPrice | None = _price(workload, window, opts, nodes)
            priced: list[str] = []
        except PricingError as exc:
            price, priced = None, [str(exc)]
        prices = _with_gpu_price(opts.prices, price)
        missing = [*_missing_for(workload.pods, samples, window, opts.latency_metric, prices), *priced]
        cost = _cost(samples, window.covered_seconds, prices)
        latency = samples.latency(opts.latency_metric, opts.quantile)
        if latency is None and not any(m.startswith("no data for") and "latency" in m for m in missing):
            missing.append(f"no data for {opts.latency_metric} latency of {workload.ref}")
        revisions = []
        for r in workload.revisions:
            rev_samples = window.total(r.pods)
            rev_usage = usage_of(rev_samples, window.covered_seconds)
            revisions.append(
                RevisionRow(
                    r.pod_template_hash,
                    economics.cost_of(rev_usage, prices),
                    # Behind one Service every revision gets the same traffic per pod, so a heavier revision
                    # shows its cost as GPU work per request: projected at the workload's utilisation.
                    economics.project(rev_usage, prices, fleet_utilisation=cost.utilisation),
                    rev_samples.latency(opts.latency_metric, opts.quantile),
                )
            )
        rows.append(
            WorkloadRow(
                workload,
                window.runtime,
                price,
                cost,
                latency,
                tuple(revisions),
                merge_missing([*missing, *cost.missing]),
            )
        )
    queries = getattr(client, "queries", 0) - before
    # Every window ends at the same instant and reads the same record of scrapes: one span for the report.
    covered = min(w.covered_seconds for w in windows)
    return Report(opts.window_seconds, at, queries, tuple(rows), covered, windows[0].coverage_note())


def _with_gpu_price(prices: Prices, price: GpuPrice | None) -> Prices:
    return replace(prices, gpu_hourly=price.hourly if price is not None else None)


def to_json(report: Report) -> dict[str, Any]:
    """camelCase, as in CostSLO status."""
    return {
        "window": duration(report.window_seconds),
        "coveredSeconds": report.covered_seconds,
        "coverage": report.coverage,
        "at": report.at,
        "queries": report.queries,
        "workloads": [
            {
                "namespace": r.workload.namespace,
                "kind": r.workload.kind,
                "name": r.workload.name,
                "runtime": r.runtime,
                "gpuHourly": views.plain(r.price.hourly) if r.price else None,
                "gpuPriceSource": r.price.source if r.price else None,
                "current": {
                    **views.current_fields(r.cost),
                    "latencySeconds": views.plain(r.latency.seconds) if r.latency else None,
                    "latencyKind": r.latency.kind if r.latency else None,
                },
                "terms": views.plain(r.cost),
                "revisions": [
                    {
                        "podTemplateHash": rev.pod_template_hash,
                        "costPerRequest": views.plain(rev.cost.cost_per_request),
                        "projectedCostPerRequest": views.plain(rev.projection.cost_per_request),
                        "busyGpuSecondsPerRequest": views.plain(rev.projection.busy_gpu_seconds_per_request),
                        "requests": views.plain(rev.cost.requests),
                        "latencySeconds": views.plain(rev.latency.seconds) if rev.latency else None,
                    }
                    for rev in r.revisions
                ],
                "missing": list(r.missing),
            }
            for r in report.rows
        ],
    }
