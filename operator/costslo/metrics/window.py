"""One window of measurements for every pod in scope, fetched with one query per quantity.

The answer is per (namespace, pod); callers add up the pods of a target or of one revision with
`WindowSamples.total`, including latency buckets, so a quantile of any group of pods needs no extra query.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from costslo.api import duration_text
from costslo.metrics.histogram import Bucket, histogram_quantile, merge_buckets
from costslo.metrics.prometheus import Sample
from costslo.metrics.promql import duration
from costslo.metrics.queries import (
    DEFAULT_LATENCY_METRICS,
    SEVERAL_MODELS_LABEL,
    WindowQuery,
    coverage_query,
    default_step,
    plan_window,
)
from costslo.runtimes import (
    COUNTER_QUANTITIES,
    DESCRIPTIONS,
    LATENCY_METRICS,
    LATENCY_QUANTITY,
    LabelConfig,
    LatencyMetric,
    MeanLatency,
    Quantity,
    RuntimePreset,
    gpus_per_unit,
    mig_compute_share,
)

PodKey = tuple[str, str]  # (namespace, pod)
LatencyKind = Literal["quantile", "mean"]

_SCALARS: tuple[Quantity, ...] = (
    *COUNTER_QUANTITIES,
    Quantity.GPU_SECONDS,
    Quantity.REPLICA_SECONDS,
    Quantity.BUSY_GPU_SECONDS,
    Quantity.ENERGY_JOULES,
    Quantity.CURRENT_GPUS,
)


class Querier(Protocol):
    """What the fetch needs of a client: instant queries."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """Samples of `promql` evaluated at `at`."""
        ...


@dataclass(frozen=True)
class MeanParts:
    """Σ latency seconds and the request count behind it, for runtimes without a latency histogram."""

    total_seconds: float
    count: float

    @property
    def mean(self) -> float | None:
        """Mean seconds per request, None without requests."""
        return self.total_seconds / self.count if self.count > 0 else None


@dataclass(frozen=True)
class Latency:
    """A latency figure and what it is: a quantile of a histogram, or (Triton, custom) only a mean."""

    seconds: float
    kind: LatencyKind
    quantile: float | None  # the q asked for; None for a mean


@dataclass(frozen=True)
class Samples:
    """Measurements of one pod, or the sum over a group of pods; None where no series answered."""

    finished: float | None = None
    delivered: float | None = None
    failed: float | None = None
    input_tokens: float | None = None
    cached_input_tokens: float | None = None  # part of input_tokens, served from the prefix cache
    output_tokens: float | None = None
    prefill_seconds: float | None = None
    decode_seconds: float | None = None
    gpu_seconds: float | None = None  # provisioned: GPUs * seconds alive
    replica_seconds: float | None = None  # pod-seconds alive (scheduled, not finished)
    busy_gpu_seconds: float | None = None  # GPUs * busy fraction * seconds
    energy_joules: float | None = None
    current_gpus: float | None = None  # at the end of the window
    latency_buckets: Mapping[LatencyMetric, tuple[Bucket, ...]] = field(default_factory=dict)  # (le, rate/s)
    latency_means: Mapping[LatencyMetric, MeanParts] = field(default_factory=dict)

    def latency(self, metric: LatencyMetric, q: float) -> Latency | None:
        """The q-quantile of `metric` where a histogram exists, else its mean; None without data."""
        buckets = self.latency_buckets.get(metric)
        if buckets is not None:
            value = histogram_quantile(q, buckets)
            return None if value is None else Latency(value, "quantile", q)
        parts = self.latency_means.get(metric)
        mean = parts.mean if parts is not None else None
        return None if mean is None else Latency(mean, "mean", None)


def _samples(
    values: Mapping[Quantity, float | None],
    buckets: Mapping[LatencyMetric, tuple[Bucket, ...]],
    means: Mapping[LatencyMetric, MeanParts],
) -> Samples:
    return Samples(
        finished=values.get(Quantity.FINISHED),
        delivered=values.get(Quantity.DELIVERED),
        failed=values.get(Quantity.FAILED),
        input_tokens=values.get(Quantity.INPUT_TOKENS),
        cached_input_tokens=values.get(Quantity.CACHED_INPUT_TOKENS),
        output_tokens=values.get(Quantity.OUTPUT_TOKENS),
        prefill_seconds=values.get(Quantity.PREFILL_SECONDS),
        decode_seconds=values.get(Quantity.DECODE_SECONDS),
        gpu_seconds=values.get(Quantity.GPU_SECONDS),
        replica_seconds=values.get(Quantity.REPLICA_SECONDS),
        busy_gpu_seconds=values.get(Quantity.BUSY_GPU_SECONDS),
        energy_joules=values.get(Quantity.ENERGY_JOULES),
        current_gpus=values.get(Quantity.CURRENT_GPUS),
        latency_buckets=dict(buckets),
        latency_means=dict(means),
    )


def _sum_optional(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) if present else None


def total(samples: Iterable[Samples]) -> Samples:
    """The sum of several pods' samples; a quantity is None only when no pod had it."""
    group = list(samples)
    scalars = {q: _sum_optional(getattr(s, q.value) for s in group) for q in _SCALARS}
    buckets: dict[LatencyMetric, tuple[Bucket, ...]] = {}
    means: dict[LatencyMetric, MeanParts] = {}
    for metric in LATENCY_METRICS:
        with_buckets = [s.latency_buckets[metric] for s in group if metric in s.latency_buckets]
        if with_buckets:
            buckets[metric] = tuple(merge_buckets(with_buckets))
        with_means = [s.latency_means[metric] for s in group if metric in s.latency_means]
        if with_means:
            means[metric] = MeanParts(
                math.fsum(m.total_seconds for m in with_means), math.fsum(m.count for m in with_means)
            )
    return _samples(scalars, buckets, means)


@dataclass(frozen=True)
class WindowSamples:
    """Every pod's measurements over one window, and what could not be measured."""

    runtime: str
    window_seconds: float
    at: float  # unix seconds the window ends at
    step_seconds: float
    pods: Mapping[PodKey, Samples]
    latency_kinds: Mapping[LatencyMetric, LatencyKind]
    missing: Mapping[Quantity, str]  # queried, but Prometheus returned no series: "no data for …"
    unsupported: frozenset[Quantity]  # the runtime exposes nothing for these
    queries: int  # PromQL queries this fetch issued
    # The span at the window's end that Prometheus holds data for: rates, GPUs, replicas and hourly cost are
    # over it. The whole window where Prometheus is older than the window, or where that cannot be told.
    covered_seconds: float
    # Per quantity asked, what a group of pods without a value lacks, in words that name no namespace (a
    # fetch serves several tenants): "no data for delivered requests: no X series for its pods ...".
    absent_for_pods: Mapping[Quantity, str] = field(default_factory=dict)
    # Pods whose requests are not counted because each serves several models (how many), and what to do.
    several_models: Mapping[PodKey, float] = field(default_factory=dict)
    several_models_hint: str = ""

    @property
    def partial(self) -> bool:
        """Prometheus holds less than the window (by more than one subquery step: see _covered_seconds)."""
        return self.covered_seconds < self.window_seconds

    def coverage_note(self) -> str | None:
        """'over the last 1m15s: Prometheus holds no older data' where the window is not fully covered."""
        if not self.partial:
            return None
        return f"over the last {duration_text(self.covered_seconds)}: Prometheus holds no older data"

    def total(self, pods: Iterable[PodKey]) -> Samples:
        """The sum over the given pods (a target or one revision); pods without samples add nothing.

        Where a pod's requests were not counted (it serves several models), the group's request counts are
        unknown: its GPU time would otherwise be priced against the other pods' requests alone.
        """
        group = list(dict.fromkeys(pods))
        summed = total(self.pods[p] for p in group if p in self.pods)
        if any(p in self.several_models for p in group):
            summed = replace(summed, finished=None, delivered=None, failed=None)
        return summed

    def gaps(
        self, pods: Iterable[PodKey], needed: Callable[[Quantity], bool], scope_wide: bool = False
    ) -> tuple[str, ...]:
        """What a group of pods lacks, of the quantities `needed` says a figure needs, in sentences that name
        only these pods: "for its pods", or with `scope_wide` the fetch's own sentence where nothing in its
        scope had the quantity (a report over namespaces its reader may see)."""
        group = list(pods)
        left_out = self.left_out(group)
        said = [left_out] if left_out else []
        for q, for_pods in self.absent_for_pods.items():
            if (left_out and q in REQUEST_QUANTITIES) or not needed(q):
                continue
            said.append(self.missing.get(q, for_pods) if scope_wide else for_pods)
        return tuple(said)

    def left_out(self, pods: Iterable[PodKey]) -> str | None:
        """Why the requests of these pods are not counted, where some serve several models."""
        left = sorted({p[1] for p in pods if p in self.several_models})
        if not left:
            return None
        names = f"pod {left[0]}" if len(left) == 1 else f"pods {', '.join(left)}"
        return f"no data for requests: {names} served several models; {self.several_models_hint}"


REQUEST_QUANTITIES = (Quantity.FINISHED, Quantity.DELIVERED, Quantity.FAILED)


def _scope(namespaces: Collection[str] | None) -> str:
    if namespaces is None:
        return "in any namespace"
    names = sorted(namespaces)
    return f"in namespace {names[0]}" if len(names) == 1 else f"in namespaces {', '.join(names)}"


def _absent_reason(query: WindowQuery, where: str, window_seconds: float) -> str:
    series = " or ".join(query.series)
    when = "now" if query.instant else f"over the last {duration(window_seconds)}"
    what = DESCRIPTIONS[query.quantity]
    return f"no data for {what}: no {series} series {where} {when}; {query.hint}"


_NO_DATA = re.compile(r"no data for (?P<what>[^:]+): (?P<why>.+)", re.DOTALL)


def merge_missing(reasons: Iterable[str]) -> tuple[str, ...]:
    """Say each cause once: "no data for finished requests and failed requests: no X series ...".

    Several quantities read from one series share its sentence word for word; repeated, it buries the one
    thing to fix. Other sentences stay as they are, in their first place, without duplicates.
    """
    merged: dict[str, list[str]] = {}
    for reason in reasons:
        match = _NO_DATA.fullmatch(reason)
        key, what = (match["why"], match["what"]) if match else (reason, None)
        whats = merged.setdefault(key, [])
        if what is not None and what not in whats:
            whats.append(what)
    return tuple(f"no data for {_and(whats)}: {why}" if whats else why for why, whats in merged.items())


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _instance_share(profile: str, labels: LabelConfig) -> float:
    """The GPUs a MIG instance of this profile is, as its resource is priced (`--gpu-resource` included), so
    that busy and provisioned time use one share; a series without a profile is a whole GPU."""
    if not profile:
        return 1.0
    return gpus_per_unit(f"nvidia.com/mig-{profile}", labels.gpu_resources) or mig_compute_share(profile)


def _usable(value: float) -> bool:
    return not math.isnan(value) and not math.isinf(value)


def fetch_window(
    client: Querier,
    preset: RuntimePreset,
    labels: LabelConfig,
    window_seconds: float,
    namespaces: Collection[str] | None,
    at: float | None = None,
    *,
    latency_metrics: Collection[LatencyMetric] = DEFAULT_LATENCY_METRICS,
    step_seconds: float | None = None,
) -> WindowSamples:
    """Measures every pod in `namespaces` (None: all) over the window ending at `at` (None: now).

    A query that fails raises PrometheusError rather than leaving its quantity out: "Prometheus is down"
    and "this series does not exist" call for different actions, and only the second belongs in `missing`.
    """
    step = default_step(window_seconds) if step_seconds is None else step_seconds
    plan = plan_window(
        preset, labels, window_seconds, namespaces, latency_metrics=latency_metrics, step_seconds=step
    )
    # Every query is evaluated at the same instant, so the quantities describe the same window.
    end = time.time() if at is None else at
    scalars: dict[Quantity, dict[PodKey, float]] = {}
    buckets: dict[LatencyMetric, dict[PodKey, dict[float, float]]] = {}
    mean_parts: dict[tuple[LatencyMetric, str], dict[PodKey, float]] = {}
    missing: dict[Quantity, str] = {}
    several: dict[PodKey, float] = {}
    metric_of = {q: m for m, q in LATENCY_QUANTITY.items()}
    for query in plan:
        answer = client.query(query.promql, end)
        if not answer:
            missing.setdefault(query.quantity, _absent_reason(query, _scope(namespaces), window_seconds))
            continue
        for sample in answer:
            key = (sample.labels.get(query.group.namespace, ""), sample.labels.get(query.group.pod, ""))
            if not key[0] or not key[1] or not _usable(sample.value):
                continue
            # Extrapolated increases can dip just below zero; none of these quantities can be negative.
            value = max(0.0, sample.value)
            if SEVERAL_MODELS_LABEL in sample.labels:
                several[key] = value
            elif query.part == "value":
                pod_values = scalars.setdefault(query.quantity, {})
                if query.weight_label is None:
                    pod_values[key] = value
                else:
                    weight = _instance_share(sample.labels.get(query.weight_label, ""), labels)
                    pod_values[key] = pod_values.get(key, 0.0) + value * weight
            elif query.part == "buckets":
                le_text = sample.labels.get("le")
                try:
                    le = float(le_text) / query.le_unit_divisor if le_text is not None else math.nan
                except ValueError:
                    continue
                if math.isnan(le):
                    continue
                per_pod = buckets.setdefault(metric_of[query.quantity], {}).setdefault(key, {})
                per_pod[le] = per_pod.get(le, 0.0) + value
            else:
                mean_parts.setdefault((metric_of[query.quantity], query.part), {})[key] = value

    pods: set[PodKey] = {k for values in scalars.values() for k in values}
    pods |= {k for values in buckets.values() for k in values}
    pods |= {k for values in mean_parts.values() for k in values}
    result: dict[PodKey, Samples] = {}
    for key in sorted(pods):
        pod_buckets = {
            m: tuple(sorted(per_pod[key].items())) for m, per_pod in buckets.items() if key in per_pod
        }
        pod_means: dict[LatencyMetric, MeanParts] = {}
        for (metric, part), values in mean_parts.items():
            if part != "mean_total" or key not in values:
                continue
            count = mean_parts.get((metric, "mean_count"), {}).get(key)
            if count is not None:
                pod_means[metric] = MeanParts(values[key], count)
        result[key] = _samples({q: scalars.get(q, {}).get(key) for q in _SCALARS}, pod_buckets, pod_means)

    covered = _covered_seconds(client, window_seconds, step, end)
    kinds: dict[LatencyMetric, LatencyKind] = {
        m: "mean" if isinstance(preset.latency[m], MeanLatency) else "quantile"
        for m in dict.fromkeys(latency_metrics)
        if m in preset.latency
    }
    asked = {
        *(q for q in Quantity if q not in LATENCY_QUANTITY.values()),
        *(LATENCY_QUANTITY[m] for m in latency_metrics),
    }
    return WindowSamples(
        runtime=preset.name,
        window_seconds=window_seconds,
        at=end,
        step_seconds=step,
        pods=result,
        latency_kinds=kinds,
        missing=missing,
        absent_for_pods={q.quantity: _absent_reason(q, "for its pods", window_seconds) for q in plan},
        several_models=several,
        several_models_hint=preset.hint,
        unsupported=frozenset(q for q in asked if not preset.supports(q)),
        queries=len(plan) + 1,
        covered_seconds=covered,
    )


def _covered_seconds(client: Querier, window_seconds: float, step: float, end: float) -> float:
    """How much of the window, at its end, Prometheus holds data for; the whole window when unknown."""
    answer = [s.value for s in client.query(coverage_query(window_seconds, step), end) if _usable(s.value)]
    if not answer or answer[0] <= 0:
        return window_seconds
    # Each point stands for one step; a span within a step of the whole window is the whole window.
    covered = min(1.0, answer[0]) * window_seconds
    return window_seconds if covered >= window_seconds - step else covered
