"""The PromQL of every quantity of one window: one query per quantity, grouped by namespace and pod.

Queries select pods by namespace only, never by pod name, and group by (namespace, pod): the caller sums the
pods of any target or revision afterwards, so the number of queries does not depend on how many Deployments
are evaluated, and no query grows with them.

Time integrals (provisioned GPU-seconds, replica-seconds, busy GPU-seconds) are subqueries of the instant
value, `sum_over_time((X)[W:step])`, scaled by W / (number of subquery points). Sampling at a fixed step makes
the result independent of each job's scrape interval (counting raw samples would need it), and dividing by
the counted points rather than multiplying by the step keeps the result exact whether the engine's subquery
range is left-open (Prometheus 3) or closed (Prometheus 2, Thanos and Mimir of that lineage). A pod that
starts or stops inside the window is counted to within one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from costslo.metrics.confine import PODS_PLACEHOLDER, WINDOW_PLACEHOLDER
from costslo.metrics.promql import (
    Matcher,
    duration,
    matchers_text,
    namespace_matcher,
    number,
    quote,
    selector,
)
from costslo.runtimes import (
    COUNTER_QUANTITIES,
    DRA_DRIVER_LABEL,
    FINISHED_POD_PHASES,
    GPU_BUSY_RATIO,
    GPU_BUSY_SIGNALS,
    GPU_ENERGY_MILLIJOULES,
    GPU_HELD,
    GPU_RESOURCE,
    GPU_UTIL_PERCENT,
    LATENCY_QUANTITY,
    MIG_PROFILE_LABEL,
    POD_INFO,
    POD_PHASE,
    POD_RESOURCE_REQUESTS,
    CounterDifference,
    CounterExpr,
    CounterFallback,
    CounterSum,
    CustomHistogramLatency,
    CustomQuery,
    HistogramLatency,
    LabelConfig,
    LatencyMetric,
    MeanLatency,
    ModelScope,
    PodLabels,
    Quantity,
    RuntimePreset,
)

QueryPart = Literal["value", "buckets", "mean_total", "mean_count"]

# Marks the pods the delivered-requests answer leaves out because each serves several models (the value is
# how many): the reader tells "not counted" from "no series", and never prices such a pod's GPU time against
# the other pods' requests.
SEVERAL_MODELS_LABEL = "costslo_several_models"

MIN_STEP_SECONDS = 5.0
DEFAULT_LATENCY_METRICS: tuple[LatencyMetric, ...] = ("e2e",)
MAX_POINTS_PER_SERIES = 720


@dataclass(frozen=True)
class WindowQuery:
    """One PromQL query of a window fetch and how to read its answer."""

    quantity: Quantity
    part: QueryPart
    promql: str
    group: PodLabels  # the labels that carry namespace and pod in the answer
    series: tuple[str, ...]  # the series families it reads, for "no data" messages
    hint: str  # what to check when it returns nothing
    instant: bool = False  # a value now rather than over the window
    le_unit_divisor: float = 1.0
    # A label the answer keeps besides namespace and pod, whose value weighs each sample before the pod's
    # samples are added up (a MIG instance's busy ratio times its share of the GPU).
    weight_label: str | None = None


def default_step(window_seconds: float) -> float:
    """Subquery resolution: 5 s, coarser for long windows so a series has at most 720 points."""
    step = max(MIN_STEP_SECONDS, float(math.ceil(window_seconds / MAX_POINTS_PER_SERIES)))
    return min(step, window_seconds)


@dataclass(frozen=True)
class _Context:
    labels: LabelConfig
    namespaces: frozenset[str] | None
    window_seconds: float
    window: str
    step: str


def _by(group: PodLabels, *extra: str) -> str:
    return ", ".join((group.namespace, group.pod, *extra))


def _increase_per_pod(names: tuple[str, ...], matchers: list[Matcher], ctx: _Context) -> str:
    """The increase of one or more counter families, summed per pod.

    Families are summed one by one: increase() drops the metric name, so two families whose series carry
    the same labels (Triton's success and failure counters before the `reason` label) would collide in one
    selector. `A + B or A or B` keeps a pod that has only one of them, as a family without series yet.
    """
    g = ctx.labels.runtime
    sums = [f"sum by ({_by(g)}) (increase({selector(n, matchers)}[{ctx.window}]))" for n in names]
    text = sums[0]
    for more in sums[1:]:
        text = f"({text} + {more} or {text} or {more})"
    return text


def _custom_text(query: CustomQuery, ctx: _Context) -> str:
    pods = matchers_text([namespace_matcher(ctx.labels.runtime.namespace, ctx.namespaces)])
    return query.text.replace(PODS_PLACEHOLDER, pods).replace(WINDOW_PLACEHOLDER, ctx.window)


def _counter(expr: CounterExpr, ctx: _Context) -> tuple[str, bool]:
    """PromQL for a counter expression, and whether it needs parentheses as an operand."""
    g = ctx.labels.runtime
    if isinstance(expr, CustomQuery):
        return f"sum by ({_by(g)}) ({_custom_text(expr, ctx)})", False
    if isinstance(expr, CounterDifference):
        minuend, _ = _counter(expr.minuend, ctx)
        subtrahend, compound = _counter(expr.subtrahend, ctx)
        text = f"{minuend} - {f'({subtrahend})' if compound else subtrahend}"
        return (f"clamp_min({text}, 0)", False) if expr.floor_zero else (text, True)
    if isinstance(expr, CounterFallback):
        # `or` binds loosest of all operators: parenthesised, the result is one operand of whatever follows.
        preferred, _ = _counter(expr.preferred, ctx)
        fallback, _ = _counter(expr.fallback, ctx)
        return f"({preferred} or {fallback})", False
    scope = namespace_matcher(g.namespace, ctx.namespaces)
    models = expr.model.matchers() if expr.model else ()
    text = _increase_per_pod(expr.names, [scope, *expr.matchers, *models], ctx)
    compound = False
    if expr.unit_divisor != 1:
        text, compound = f"{text} / {number(expr.unit_divisor)}", True
    if expr.zero_with:
        baseline = selector(expr.zero_with, [scope, *models])
        text = f"({text} or sum by ({_by(g)}) (increase({baseline}[{ctx.window}])) * 0)"
        compound = False
    if expr.model and expr.model.one_per_pod and not expr.model.models:
        text = f"({text} unless on ({_by(g)}) {_several_models(expr.model, scope, ctx)})"
        compound = False
    return text, compound


def _several_models(model: ModelScope, scope: Matcher, ctx: _Context) -> str:
    """The pods whose `model.one_per_pod` family names more than one model in the window."""
    g = ctx.labels.runtime
    assert model.one_per_pod is not None
    series = f"last_over_time({selector(model.one_per_pod, [scope])}[{ctx.window}])"
    return f"(count by ({_by(g)}) (count by ({_by(g, model.label)}) ({series})) > 1)"


def _with_left_out_pods(text: str, expr: CounterExpr, ctx: _Context) -> str:
    """`text`, plus one series marked SEVERAL_MODELS_LABEL per pod the several-models guard leaves out."""
    model = expr.model if isinstance(expr, CounterSum) else None
    if model is None or not model.one_per_pod or model.models:
        return text
    scope = namespace_matcher(ctx.labels.runtime.namespace, ctx.namespaces)
    left_out = _several_models(model, scope, ctx)
    return f'({text} or label_replace({left_out}, "{SEVERAL_MODELS_LABEL}", "true", "", ""))'


def _counter_series(expr: CounterExpr) -> tuple[str, ...]:
    if isinstance(expr, CustomQuery):
        return (f"custom query {expr.key}",)
    if isinstance(expr, CounterDifference):
        return tuple(dict.fromkeys(_counter_series(expr.minuend) + _counter_series(expr.subtrahend)))
    if isinstance(expr, CounterFallback):
        return tuple(dict.fromkeys(_counter_series(expr.preferred) + _counter_series(expr.fallback)))
    return expr.names


def _histogram(source: HistogramLatency | CustomHistogramLatency, ctx: _Context) -> str:
    g = ctx.labels.runtime
    if isinstance(source, CustomHistogramLatency):
        return f"sum by ({_by(g, 'le')}) ({_custom_text(source.query, ctx)})"
    scope = namespace_matcher(g.namespace, ctx.namespaces)
    model = source.model
    models = model.matchers() if model else ()

    def buckets(name: str) -> str:
        text = f"sum by ({_by(g, 'le')}) (rate({selector(name + '_bucket', [scope, *models])}[{ctx.window}]))"
        if model and model.one_per_pod and not model.models:
            text = f"({text} unless on ({_by(g)}) {_several_models(model, scope, ctx)})"
        return text

    text = buckets(source.names[0])
    for name in source.names[1:]:
        # A renamed histogram: take the older name only for pods that do not expose the newer one, so a
        # release serving both is not counted twice and bucket layouts never mix within a pod.
        text = f"{text} or ({buckets(name)} unless on ({_by(g)}) ({text}))"
    return text


def _gpu_series(render: Callable[[str], str], ctx: _Context) -> str:
    """Per-GPU series attributed to the first label pair each carries, relabelled onto the last pair."""
    pairs = ctx.labels.gpu
    branches = []
    for i, pair in enumerate(pairs):
        matchers = [
            namespace_matcher(pair.namespace, ctx.namespaces),
            Matcher.present(pair.pod),
            *(Matcher.absent(earlier.pod) for earlier in pairs[:i]),
        ]
        branches.append(render(matchers_text(matchers)))
    text = branches[0] if len(branches) == 1 else " or ".join(f"({b})" for b in branches)
    out = pairs[-1]
    # Innermost first, so the pair with the highest precedence is applied last and wins.
    for pair in reversed(pairs[:-1]):
        text = (
            f'label_replace(label_replace({text}, {quote(out.namespace)}, "$1", {quote(pair.namespace)}, '
            f'"(.+)"), {quote(out.pod)}, "$1", {quote(pair.pod)}, "(.+)")'
        )
    return text


def _integrate(expr: str, ctx: _Context) -> str:
    points = f"count_over_time(vector(1)[{ctx.window}:{ctx.step}])"
    return (
        f"sum_over_time(({expr})[{ctx.window}:{ctx.step}]) * {number(ctx.window_seconds)} / scalar({points})"
    )


def coverage_query(window_seconds: float, step_seconds: float) -> str:
    """The fraction of the window's subquery points at which Prometheus holds any scrape at all.

    `up` is written by Prometheus itself for every target it scrapes, so its absence before some instant
    means Prometheus holds no older data (a new server, or retention shorter than the window), whatever
    the workloads did. The answer is one number with no labels: it says nothing about any namespace.
    """
    window, step = duration(window_seconds), duration(step_seconds)
    return (
        f"count_over_time(count(up)[{window}:{step}]) / scalar(count_over_time(vector(1)[{window}:{step}]))"
    )


def _finished_pods(ctx: _Context) -> str:
    k = ctx.labels.kube_state
    scope = namespace_matcher(k.namespace, ctx.namespaces)
    return f"({selector(POD_PHASE, [Matcher.one_of('phase', FINISHED_POD_PHASES), scope])} == 1)"


def _allocated_gpus(ctx: _Context) -> str:
    """GPUs requested by each scheduled, unfinished pod (deduplicated across kube-state-metrics replicas),
    a MIG slice or a time-sliced replica counted as its share of a GPU; for a pod without a GPU request, the
    GPUs allocated to it through DRA."""
    k = ctx.labels.kube_state
    scope = namespace_matcher(k.namespace, ctx.namespaces)
    branches = []
    for resource in ctx.labels.gpu_resources:
        requests = selector(POD_RESOURCE_REQUESTS, [*resource.matchers(), Matcher.present("node"), scope])
        branch = f"max by ({_by(k, 'container', 'resource')}) ({requests})"
        branches.append(branch if resource.gpus == 1 else f"{branch} * {number(resource.gpus)}")
    # The resources never overlap, and each branch keeps `resource`: `or` only joins them.
    requested = f"sum by ({_by(k)}) ({' or '.join(branches)})"
    allocated = f"({requested} or on ({_by(k)}) {_dra_gpus(ctx)})"
    return f"{allocated} unless on ({_by(k)}) {_finished_pods(ctx)}"


def _dra_gpus(ctx: _Context) -> str:
    """GPUs allocated through DRA per pod, from the devices dcgm-exporter maps to it. A device several pods
    share through one claim carries a copy per pod and container: each copy is an even part of it. A MIG
    instance keeps its profile, weighed when read as its busy time is."""
    held = f"{Matcher.one_of('__name__', GPU_HELD)},{Matcher.present(DRA_DRIVER_LABEL)}"
    # One per copy, whichever of the families it has: `group without ()` keeps every label but the name.
    copies = f"count by ({_DEVICE_LABELS}) (group without () ({{{held}}}))"

    def render(m: str) -> str:
        return f"group without () ({{{m},{held}}}) / on ({_DEVICE_LABELS}) group_left {copies}"

    g, k = ctx.labels.gpu_output, ctx.labels.kube_state
    text = f"sum by ({_by(g, MIG_PROFILE_LABEL)}) ({_gpu_series(render, ctx)})"
    if g != k:
        # Onto kube-state-metrics' label names, so that `or` matches a pod in both.
        for source, target in ((g.namespace, k.namespace), (g.pod, k.pod)):
            text = f'label_replace({text}, {quote(target)}, "$1", {quote(source)}, "(.*)")'
        text = f"sum by ({_by(k, MIG_PROFILE_LABEL)}) ({text})"
    return f"({text})"


def _running_pods(ctx: _Context) -> str:
    k = ctx.labels.kube_state
    scope = namespace_matcher(k.namespace, ctx.namespaces)
    info = selector(POD_INFO, [Matcher.present("node"), scope])
    return f"max by ({_by(k)}) ({info}) unless on ({_by(k)}) {_finished_pods(ctx)}"


# The labels that tell one GPU (or MIG instance) from another, whatever dcgm-exporter's flags.
_DEVICE_LABELS = "gpu, UUID, uuid, GPU_I_ID, Hostname, hostname"


# Labels that mark a pod's copy of a device's series, each copy carrying the whole device's value.
_COPY_MARKERS = ("vgpu", DRA_DRIVER_LABEL)


def _split_copies(
    name: str,
    m: str,
    read: Callable[[str], str],
    markers: tuple[str, ...] = _COPY_MARKERS,
    over: _Context | None = None,
) -> str:
    """`read` of a DCGM family per device, each pod's copy of a time-sliced GPU (`vgpu`) or of a GPU
    allocated through DRA (several pods may share one claim) an even part. `over` counts the copies over
    that context's window rather than at its end, for a read over the whole window (a pod gone before the
    end still had its part)."""
    whole = ",".join(str(Matcher.absent(marker)) for marker in markers)
    text = read(f"{name}{{{m},{whole}}}")
    for marker in markers:
        copy = Matcher.present(marker)
        copies = f"count by ({_DEVICE_LABELS}) ({selector(name, [copy])})"
        if over is not None:
            copies = f"max_over_time(({copies})[{over.window}:{over.step}])"
        text += f" or {read(f'{name}{{{m},{copy}}}')} / on ({_DEVICE_LABELS}) group_left {copies}"
    return text


def _busy_gpus(ctx: _Context) -> str:
    # Per GPU: the profiling ratio where DCGM has it, else utilisation in percent. Matched on the device,
    # not on every label: a series may carry labels the other lacks (pod_uid on per-process utilisation).
    # A time-sliced GPU's copy per pod (`vgpu`) carries the whole GPU's activity: split evenly, so that the
    # pods sharing it add up to the GPU, whatever namespaces they are in.
    def render(m: str) -> str:
        busy = GPU_BUSY_SIGNALS[ctx.labels.gpu_busy]
        text = _split_copies(busy, m, lambda sel: sel)
        if busy != GPU_BUSY_RATIO:
            return text
        # Only DRA copies repeat the device's utilisation: dcgm-exporter fills a time-sliced GPU's `vgpu`
        # copies of it per process, each pod its own part.
        util = _split_copies(GPU_UTIL_PERCENT, m, lambda sel: f"{sel} / 100", markers=(DRA_DRIVER_LABEL,))
        return f"{text} or (({util}) unless on ({_DEVICE_LABELS}) {busy}{{{m}}})"

    return f"sum by ({_by(ctx.labels.gpu_output, MIG_PROFILE_LABEL)}) ({_gpu_series(render, ctx)})"


def _busy_series(labels: LabelConfig) -> tuple[str, ...]:
    busy = GPU_BUSY_SIGNALS[labels.gpu_busy]
    return (busy, GPU_UTIL_PERCENT) if busy == GPU_BUSY_RATIO else (busy,)


def _energy(ctx: _Context) -> str:
    """Energy per pod. dcgm-exporter repeats a GPU's energy on each of its MIG instances (weighed by their
    share when read, as busy time is) and on each pod's copy of a time-sliced GPU (`vgpu`), which is split
    evenly between the copies here."""
    e = GPU_ENERGY_MILLIJOULES

    def render(m: str) -> str:
        return _split_copies(e, m, lambda sel: f"increase({sel}[{ctx.window}])", over=ctx)

    return f"sum by ({_by(ctx.labels.gpu_output, MIG_PROFILE_LABEL)}) ({_gpu_series(render, ctx)}) / 1000"


def _context(
    labels: LabelConfig, window_seconds: float, namespaces: Collection[str] | None, step_seconds: float
) -> _Context:
    scope = None if namespaces is None else frozenset(namespaces)
    if scope is not None:
        namespace_matcher("namespace", scope)  # rejects an empty scope or empty names up front
    return _Context(labels, scope, window_seconds, duration(window_seconds), duration(step_seconds))


def plan_window(
    preset: RuntimePreset,
    labels: LabelConfig,
    window_seconds: float,
    namespaces: Collection[str] | None,
    *,
    latency_metrics: Collection[LatencyMetric] = DEFAULT_LATENCY_METRICS,
    step_seconds: float | None = None,
) -> tuple[WindowQuery, ...]:
    """Every query of one window fetch, for all pods in `namespaces` (None: every namespace)."""
    step = default_step(window_seconds) if step_seconds is None else step_seconds
    if step > window_seconds:
        raise ValueError(f"the subquery step ({step}s) cannot exceed the window ({window_seconds}s)")
    ctx = _context(labels, window_seconds, namespaces, step)
    runtime, gpu, kube = labels.runtime, labels.gpu_output, labels.kube_state
    runtime_hint = (
        f"check that the {preset.name} server is scraped and its series carry the "
        f"{runtime.namespace}/{runtime.pod} labels" + (f"; {preset.hint}" if preset.hint else "")
    )
    pairs = ", ".join(f"{p.namespace}/{p.pod}" for p in labels.gpu)
    gpu_hint = f"check that dcgm-exporter runs with Kubernetes pod mapping and its series carry {pairs}"
    kube_hint = f"check that kube-state-metrics is scraped with {kube.namespace}/{kube.pod} labels"
    plan: list[WindowQuery] = []
    for quantity in COUNTER_QUANTITIES:
        expr = preset.counters.get(quantity)
        if expr is not None:
            text, _ = _counter(expr, ctx)
            if quantity is Quantity.DELIVERED:
                text = _with_left_out_pods(text, expr, ctx)
            plan.append(WindowQuery(quantity, "value", text, runtime, _counter_series(expr), runtime_hint))
    for metric in dict.fromkeys(latency_metrics):
        quantity = LATENCY_QUANTITY[metric]
        source = preset.latency.get(metric)
        if source is None:
            continue
        if isinstance(source, MeanLatency):
            parts: tuple[tuple[QueryPart, CounterExpr], ...] = (
                ("mean_total", source.total_seconds),
                ("mean_count", source.count),
            )
            for part, expr in parts:
                text, _ = _counter(expr, ctx)
                plan.append(WindowQuery(quantity, part, text, runtime, _counter_series(expr), runtime_hint))
        else:
            series = (
                (f"custom query {source.query.key}",)
                if isinstance(source, CustomHistogramLatency)
                else tuple(f"{n}_bucket" for n in source.names)
            )
            divisor = source.le_unit_divisor if isinstance(source, HistogramLatency) else 1.0
            plan.append(
                WindowQuery(
                    quantity,
                    "buckets",
                    _histogram(source, ctx),
                    runtime,
                    series,
                    runtime_hint,
                    le_unit_divisor=divisor,
                )
            )
    requests_series = (
        f'{POD_RESOURCE_REQUESTS}{{resource=~"{GPU_RESOURCE}|nvidia_com_mig_.*"}}',
        *(f'{name}{{{DRA_DRIVER_LABEL}!=""}}' for name in GPU_HELD),
    )
    gpus_hint = (
        f"{kube_hint}; a GPU resource other than nvidia.com/gpu or a MIG slice needs "
        "--gpu-resource NAME=GPUS (Helm prometheus.gpuResources); GPUs allocated through DRA need "
        "dcgm-exporter with --kubernetes-enable-dra"
    )
    plan += [
        WindowQuery(
            Quantity.GPU_SECONDS,
            "value",
            _integrate(_allocated_gpus(ctx), ctx),
            kube,
            requests_series,
            gpus_hint,
            weight_label=MIG_PROFILE_LABEL,
        ),
        WindowQuery(
            Quantity.REPLICA_SECONDS,
            "value",
            _integrate(_running_pods(ctx), ctx),
            kube,
            (POD_INFO,),
            kube_hint,
        ),
        WindowQuery(
            Quantity.BUSY_GPU_SECONDS,
            "value",
            _integrate(_busy_gpus(ctx), ctx),
            gpu,
            _busy_series(labels),
            gpu_hint,
            weight_label=MIG_PROFILE_LABEL,
        ),
        WindowQuery(
            Quantity.ENERGY_JOULES,
            "value",
            _energy(ctx),
            gpu,
            (GPU_ENERGY_MILLIJOULES,),
            gpu_hint,
            weight_label=MIG_PROFILE_LABEL,
        ),
        WindowQuery(
            Quantity.CURRENT_GPUS,
            "value",
            _allocated_gpus(ctx),
            kube,
            requests_series,
            gpus_hint,
            instant=True,
            weight_label=MIG_PROFILE_LABEL,
        ),
    ]
    return tuple(plan)
