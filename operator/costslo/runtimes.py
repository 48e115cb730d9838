"""Runtime presets as data: which series of vLLM, TGI, Triton, SGLang (or the user's own PromQL) answer
each quantity the cost model needs, plus the GPU and kube-state-metrics series every runtime shares.

Adding a runtime adds an entry to RUNTIMES and a test. The PromQL text is produced from these entries by
`costslo.metrics.queries`, with the namespace/pod labels of a `LabelConfig`, so the same preset works for
PodMonitor scrapes, raw kubernetes_sd_configs, and dcgm-exporter with or without `exported_` labels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from costslo.metrics.confine import PODS_PLACEHOLDER, WINDOW_PLACEHOLDER, ConfinementError, check_confined
from costslo.metrics.promql import Matcher, check_label_name, check_metric_name


class Quantity(StrEnum):
    """Everything one window fetch measures per pod."""

    FINISHED = "finished"
    DELIVERED = "delivered"
    FAILED = "failed"
    INPUT_TOKENS = "input_tokens"
    CACHED_INPUT_TOKENS = "cached_input_tokens"
    OUTPUT_TOKENS = "output_tokens"
    PREFILL_SECONDS = "prefill_seconds"
    DECODE_SECONDS = "decode_seconds"
    LATENCY_E2E = "latency_e2e"
    LATENCY_TTFT = "latency_ttft"
    LATENCY_ITL = "latency_itl"
    GPU_SECONDS = "gpu_seconds"
    REPLICA_SECONDS = "replica_seconds"
    BUSY_GPU_SECONDS = "busy_gpu_seconds"
    ENERGY_JOULES = "energy_joules"
    CURRENT_GPUS = "current_gpus"


DESCRIPTIONS: dict[Quantity, str] = {
    Quantity.FINISHED: "finished requests",
    Quantity.DELIVERED: "delivered (successful) requests",
    Quantity.FAILED: "failed requests",
    Quantity.INPUT_TOKENS: "input tokens",
    Quantity.CACHED_INPUT_TOKENS: "input tokens served from the prefix cache",
    Quantity.OUTPUT_TOKENS: "output tokens",
    Quantity.PREFILL_SECONDS: "prefill time",
    Quantity.DECODE_SECONDS: "decode time",
    Quantity.LATENCY_E2E: "end-to-end latency",
    Quantity.LATENCY_TTFT: "time to first token",
    Quantity.LATENCY_ITL: "inter-token latency",
    Quantity.GPU_SECONDS: "provisioned GPU time",
    Quantity.REPLICA_SECONDS: "replica time",
    Quantity.BUSY_GPU_SECONDS: "busy GPU time",
    Quantity.ENERGY_JOULES: "GPU energy",
    Quantity.CURRENT_GPUS: "GPUs allocated now",
}

# Quantities a runtime preset answers (the rest come from DCGM and kube-state-metrics for every runtime).
COUNTER_QUANTITIES: tuple[Quantity, ...] = (
    Quantity.FINISHED,
    Quantity.DELIVERED,
    Quantity.FAILED,
    Quantity.INPUT_TOKENS,
    Quantity.CACHED_INPUT_TOKENS,
    Quantity.OUTPUT_TOKENS,
    Quantity.PREFILL_SECONDS,
    Quantity.DECODE_SECONDS,
)

LatencyMetric = Literal["e2e", "ttft", "itl"]
LATENCY_METRICS: tuple[LatencyMetric, ...] = ("e2e", "ttft", "itl")
LATENCY_QUANTITY: dict[LatencyMetric, Quantity] = {
    "e2e": Quantity.LATENCY_E2E,
    "ttft": Quantity.LATENCY_TTFT,
    "itl": Quantity.LATENCY_ITL,
}


# --- expression data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelScope:
    """Which served models a family's series are read for: the label naming the model, and the models.

    No models named: every model of a pod. Where `one_per_pod` names a family (Triton's success counter), a
    pod for which that family names several models is left out of every quantity instead, because a request
    passing through an ensemble is counted once by every model it runs: summing them would multiply the
    requests, and which one the clients call cannot be told from the series. Naming the model
    (spec.serving.models) counts it alone.
    """

    label: str
    models: tuple[str, ...] = ()
    one_per_pod: str | None = None

    def __post_init__(self) -> None:
        check_label_name(self.label)

    def matchers(self) -> tuple[Matcher, ...]:
        return (Matcher.one_of(self.label, self.models),) if self.models else ()


@dataclass(frozen=True)
class CounterSum:
    """increase() over the window of one or more counter families, summed per pod.

    `zero_with` names a counter the server exports from its start: labelled counters such as
    `tgi_request_failure{err}` appear only after their first increment, and a pod whose server is up but has
    not failed yet has zero failures, not unknown ones. `model` says which served models count (families
    without a model label, such as the API server's HTTP counter, have none).
    """

    names: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()
    unit_divisor: float = 1.0
    zero_with: str | None = None
    model: ModelScope | None = None

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a counter needs at least one series name")
        for name in (*self.names, *([self.zero_with] if self.zero_with else [])):
            check_metric_name(name)
        if self.unit_divisor <= 0:
            raise ValueError("unit_divisor must be positive")


@dataclass(frozen=True)
class CounterDifference:
    """minuend - subtrahend per pod, for runtimes that count all requests and the failed ones only.

    `floor_zero` clamps at zero where the two counters are taken at slightly different moments or count
    different things (HTTP requests and engine sequences), so noise never reads as negative requests.
    """

    minuend: CounterExpr
    subtrahend: CounterExpr
    floor_zero: bool = False


@dataclass(frozen=True)
class CounterFallback:
    """`preferred` for every pod that exports it, `fallback` for the others (PromQL `or`, matched per pod)."""

    preferred: CounterExpr
    fallback: CounterExpr


@dataclass(frozen=True)
class CustomQuery:
    """User PromQL for one quantity, per series: `$__pods` inside a selector's braces, `$__window` as a range.

    The operator wraps it in `sum by (<namespace label>, <pod label>)` (adding `le` for histogram buckets), so
    the expression must keep the runtime's namespace and pod labels, e.g.
    `increase(my_requests_total{$__pods,code="200"}[$__window])`.
    """

    key: str
    text: str


CounterExpr = CounterSum | CounterDifference | CounterFallback | CustomQuery


@dataclass(frozen=True)
class HistogramLatency:
    """A latency histogram; `names` are base names, the first a pod exposes wins (renames across versions)."""

    names: tuple[str, ...]
    le_unit_divisor: float = 1.0  # 1000 for a histogram whose buckets are in milliseconds
    model: ModelScope | None = None

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a histogram needs at least one series name")
        for name in self.names:
            check_metric_name(name)


@dataclass(frozen=True)
class CustomHistogramLatency:
    """User PromQL giving per-series bucket rates that keep the `le` label."""

    query: CustomQuery


@dataclass(frozen=True)
class MeanLatency:
    """Mean latency = Σ duration ÷ count: all a runtime without a latency histogram allows.

    This is a mean, not a quantile; callers report it as such and never compare it with a quantile threshold
    as if it were one.
    """

    total_seconds: CounterExpr
    count: CounterExpr
    note: str


LatencySource = HistogramLatency | CustomHistogramLatency | MeanLatency


@dataclass(frozen=True)
class RuntimePreset:
    """Where one runtime's quantities come from; a quantity it lacks is absent from the mappings."""

    name: str
    counters: Mapping[Quantity, CounterExpr]
    latency: Mapping[LatencyMetric, LatencySource]
    notes: Mapping[Quantity, str] = field(default_factory=dict)
    # A series only this runtime exports: where a pod has it, that pod runs this runtime (`costslo report`).
    marker: str | None = None
    models: tuple[str, ...] = ()  # the served models read (spec.serving.models); empty: all
    hint: str = ""  # what else to check when a runtime series returns nothing

    @property
    def key(self) -> str:
        """Presets with the same key issue the same queries (and share one fetch)."""
        return f"{self.name}[{','.join(self.models)}]" if self.models else self.name

    def supports(self, quantity: Quantity) -> bool:
        """Whether this runtime exposes anything for `quantity` (GPU and pod quantities: always)."""
        if quantity in COUNTER_QUANTITIES:
            return quantity in self.counters
        for metric, q in LATENCY_QUANTITY.items():
            if q is quantity:
                return metric in self.latency
        return True


# --- the table ---------------------------------------------------------------------------------------

VLLM_DELIVERED_REASONS = ("stop", "length", "repetition")
# The API server's routes that hand requests to the engine (vllm/entrypoints at v0.34.0). Batch, render,
# tokenize and admin routes are left out: they are not one inference request each.
VLLM_INFERENCE_HANDLERS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/embeddings",
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/score",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/score",
    "/pooling",
    "/classify",
    "/invocations",
)


def _vllm() -> RuntimePreset:
    finished = "vllm:request_success_total"
    model = ModelScope("model_name")
    delivered = CounterSum(
        (finished,), (Matcher.one_of("finished_reason", VLLM_DELIVERED_REASONS),), model=model
    )
    # A client that disconnects or times out takes the engine's abort path, which records no finished stats,
    # and a request refused before the engine (400 while rendering, 503 at the queue limit) never reaches
    # it: only the API server's HTTP counter sees every request that ended. Its status codes are grouped and
    # a disconnect still records 2xx, so failures are all requests minus the engine's delivered ones.
    requests = CounterFallback(
        CounterSum(("http_requests_total",), (Matcher.one_of("handler", VLLM_INFERENCE_HANDLERS),)),
        CounterSum((finished,), model=model),
    )
    return RuntimePreset(
        name="vllm",
        marker=finished,
        counters={
            Quantity.FINISHED: requests,
            Quantity.DELIVERED: delivered,
            Quantity.FAILED: CounterDifference(requests, delivered, floor_zero=True),
            Quantity.INPUT_TOKENS: CounterSum(("vllm:prompt_tokens_total",), model=model),
            # Part of prompt_tokens_total, not added to it; the two families count the same hits, so one is
            # read (prefix_cache_hits_total on releases before prompt_tokens_cached_total).
            Quantity.CACHED_INPUT_TOKENS: CounterFallback(
                CounterSum(("vllm:prompt_tokens_cached_total",), model=model),
                CounterSum(("vllm:prefix_cache_hits_total",), model=model),
            ),
            Quantity.OUTPUT_TOKENS: CounterSum(("vllm:generation_tokens_total",), model=model),
            # No prefill/decode time: vLLM's request_prefill/decode_time_seconds are each request's wall
            # clock, and under continuous batching every running request's decode time counts the same GPU
            # step, so their ratio says little about GPU work (2 % prefill where the work is 29 %). The
            # token-weighted split over computed input tokens is the better estimate.
        },
        latency={
            "e2e": HistogramLatency(("vllm:e2e_request_latency_seconds",), model=model),
            "ttft": HistogramLatency(("vllm:time_to_first_token_seconds",), model=model),
            # Renamed in 0.11; the old name is still served by older releases.
            "itl": HistogramLatency(
                ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"), model=model
            ),
        },
        notes={
            Quantity.FINISHED: "http_requests_total of the inference routes (else the engine's count)",
            Quantity.DELIVERED: "finished_reason stop, length or repetition",
            Quantity.FAILED: "every other request that ended: aborts, disconnects, 4xx, 5xx",
            Quantity.INPUT_TOKENS: "every prompt token the engine took: cache hits, aborted requests",
        },
    )


TGI_FORWARD = "tgi_batch_forward_duration_sum"
SGLANG_FORWARD = "sglang:forward_execution_seconds_total"
SGLANG_PREFILL_CATEGORIES = ("extend", "split_prefill")


def _tgi() -> RuntimePreset:
    success, failure = "tgi_request_success", "tgi_request_failure"
    return RuntimePreset(
        name="tgi",
        marker=success,
        counters={
            # Not tgi_request_count: /v1/chat/completions adds 2 to it, /chat_tokenize 1, /v1/completions 1
            # plus 1 per prompt. Every inference request ends in exactly one success or one failure{err}.
            Quantity.FINISHED: CounterSum((success, failure)),
            Quantity.DELIVERED: CounterSum((success,)),
            Quantity.FAILED: CounterSum((failure,), zero_with=success),
            Quantity.INPUT_TOKENS: CounterSum(("tgi_request_input_length_sum",)),
            Quantity.OUTPUT_TOKENS: CounterSum(("tgi_request_generated_tokens_sum",)),
            # The shards' model forward time per batch call: GPU time by phase, each step counted once.
            Quantity.PREFILL_SECONDS: CounterSum((TGI_FORWARD,), (Matcher.equal("method", "prefill"),)),
            Quantity.DECODE_SECONDS: CounterSum((TGI_FORWARD,), (Matcher.equal("method", "decode"),)),
        },
        latency={
            "e2e": HistogramLatency(("tgi_request_duration",)),
            "itl": HistogramLatency(("tgi_request_mean_time_per_token_duration",)),
        },
        notes={
            Quantity.FINISHED: "tgi_request_success + tgi_request_failure (not tgi_request_count)",
            Quantity.INPUT_TOKENS: "recorded after validation, so it includes requests that later failed",
            Quantity.OUTPUT_TOKENS: "successful requests only",
            Quantity.LATENCY_ITL: "quantile of each request's mean time per token",
            Quantity.PREFILL_SECONDS: "GPU time; a chunked prefill call also decodes the batch",
        },
    )


def _triton() -> RuntimePreset:
    success, failure = "nv_inference_request_success", "nv_inference_request_failure"
    model = ModelScope("model", one_per_pod=success)
    return RuntimePreset(
        name="triton",
        marker=success,
        counters={
            Quantity.FINISHED: CounterSum((success, failure), model=model),
            Quantity.DELIVERED: CounterSum((success,), model=model),
            Quantity.FAILED: CounterSum((failure,), zero_with=success, model=model),
            # Observed by the tensorrt_llm model alone, whichever model the clients call: never narrowed.
            Quantity.INPUT_TOKENS: CounterSum(("nv_llm_input_token_len_sum",)),
            Quantity.OUTPUT_TOKENS: CounterSum(("nv_llm_output_token_len_sum",)),
        },
        latency={
            "e2e": MeanLatency(
                total_seconds=CounterSum(
                    ("nv_inference_request_duration_us",), unit_divisor=1e6, model=model
                ),
                count=CounterSum((success,), model=model),
                note="mean, not quantile: Triton exposes request duration only as a cumulative counter",
            ),
            # Only when Triton runs with histogram metrics enabled; buckets are in milliseconds.
            "ttft": HistogramLatency(
                ("nv_inference_first_response_histogram_ms",), le_unit_divisor=1000, model=model
            ),
        },
        notes={
            Quantity.FAILED: "an ensemble counts each failed request twice (upstream documents count=2)",
            Quantity.INPUT_TOKENS: "TensorRT-LLM backend only; includes prompts the executor refused",
            Quantity.OUTPUT_TOKENS: "TensorRT-LLM backend only",
            Quantity.LATENCY_E2E: "mean, not quantile",
        },
        hint=(
            "a pod serving several models (an ensemble and its steps) is read only for the models named in "
            "spec.serving.models (costslo report --runtime triton --model), since each step counts every "
            "request again"
        ),
    )


def _sglang() -> RuntimePreset:
    total = "sglang:num_requests_total"
    # Observed once per request that finished stop or length with more than one output token: the only
    # count of delivered requests. num_requests_total - num_aborted_requests_total is not one: a request
    # aborted while queued is counted as aborted but never in num_requests_total, so the difference
    # undercounts and goes negative under overload.
    delivered = "sglang:request_time_per_output_token_seconds_count"
    aborted = "sglang:num_aborted_requests_total"
    model = ModelScope("model_name")
    return RuntimePreset(
        name="sglang",
        marker=total,
        counters={
            Quantity.FINISHED: CounterSum((delivered, aborted), model=model),
            Quantity.DELIVERED: CounterSum((delivered,), model=model),
            Quantity.FAILED: CounterSum((aborted,), zero_with=total, model=model),
            Quantity.INPUT_TOKENS: CounterSum(("sglang:prompt_tokens_total",), model=model),
            Quantity.CACHED_INPUT_TOKENS: CounterSum(("sglang:cached_tokens_total",), model=model),
            Quantity.OUTPUT_TOKENS: CounterSum(("sglang:generation_tokens_total",), model=model),
            # GPU time of the forward passes by mode, only with SGLANG_ENABLE_METRICS_DEVICE_TIMER=1; every
            # other category but idle (decode, speculative drafting and verifying) serves output tokens.
            Quantity.PREFILL_SECONDS: CounterSum(
                (SGLANG_FORWARD,), (Matcher.one_of("category", SGLANG_PREFILL_CATEGORIES),), model=model
            ),
            Quantity.DECODE_SECONDS: CounterSum(
                (SGLANG_FORWARD,),
                (Matcher("category", "!~", "|".join((*SGLANG_PREFILL_CATEGORIES, "idle"))),),
                model=model,
            ),
        },
        latency={
            "e2e": HistogramLatency(("sglang:e2e_request_latency_seconds",), model=model),
            "ttft": HistogramLatency(("sglang:time_to_first_token_seconds",), model=model),
            "itl": HistogramLatency(
                ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"), model=model
            ),
        },
        notes={
            Quantity.FINISHED: "delivered + aborted",
            Quantity.DELIVERED: "stop or length with more than one output token",
            Quantity.FAILED: "aborted, whether queued or running",
            Quantity.PREFILL_SECONDS: "GPU time, with SGLANG_ENABLE_METRICS_DEVICE_TIMER=1 only",
        },
    )


RUNTIMES: dict[str, RuntimePreset] = {p.name: p for p in (_vllm(), _tgi(), _triton(), _sglang())}


# --- shared GPU and pod series ------------------------------------------------------------------------

GPU_BUSY_RATIO = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"  # 0..1, works on MIG
GPU_UTIL_PERCENT = "DCGM_FI_DEV_GPU_UTIL"  # 0..100, the fallback where profiling metrics are off
# What "busy" means. The graphics engine counts a GPU busy while any kernel runs, which overstates useful
# work; SM activity (not in dcgm-exporter's default counters) and tensor-pipe activity are stricter. Only
# the default falls back to GPU_UTIL: a stricter signal that is absent is reported missing, not replaced.
GpuBusySignal = Literal["gr-engine", "sm", "tensor"]
GPU_BUSY_SIGNALS: dict[GpuBusySignal, str] = {
    "gr-engine": GPU_BUSY_RATIO,
    "sm": "DCGM_FI_PROF_SM_ACTIVE",
    "tensor": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
}
GPU_ENERGY_MILLIJOULES = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
# A GPU allocated through Dynamic Resource Allocation has no resource request: dcgm-exporter (with
# --kubernetes-enable-dra) labels its series with the pod and dra_* labels. Default counters say which
# devices a pod holds: the profiling ratio is there for MIG instances, utilisation for GPUs without
# profiling, energy for both (framebuffer fields go missing on some MIG instances).
GPU_HELD = (GPU_BUSY_RATIO, GPU_UTIL_PERCENT, GPU_ENERGY_MILLIJOULES)
DRA_DRIVER_LABEL = "dra_driver_name"
POD_RESOURCE_REQUESTS = "kube_pod_container_resource_requests"
POD_INFO = "kube_pod_info"
POD_PHASE = "kube_pod_status_phase"
GPU_RESOURCE = "nvidia_com_gpu"
# Pods in these phases hold no GPU and cost nothing, yet kube-state-metrics keeps reporting them (evicted
# pods linger until garbage-collected).
FINISHED_POD_PHASES = ("Succeeded", "Failed")


# --- GPU resources -------------------------------------------------------------------------------------


def ksm_resource(name: str) -> str:
    """A resource name as kube-state-metrics writes it in the `resource` label (nvidia.com/mig-3g.40gb ->
    nvidia_com_mig_3g_40gb)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


@dataclass(frozen=True)
class GpuResource:
    """Extended resources whose units hold GPU time, and how many GPUs one unit is.

    `names` are resource names as pods request them; `pattern` is an RE2 pattern over kube-state-metrics'
    spelling of them, less the `excluded` names, for a family such as every MIG profile of one size.
    """

    gpus: float
    names: tuple[str, ...] = ()
    pattern: str | None = None
    excluded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.gpus > 0:
            raise ValueError(f"a GPU resource must hold a positive number of GPUs, not {self.gpus}")
        if bool(self.names) == bool(self.pattern):
            raise ValueError("a GPU resource has either names or a pattern")

    def matchers(self) -> tuple[Matcher, ...]:
        if self.names:
            return (Matcher.one_of("resource", [ksm_resource(n) for n in self.names]),)
        assert self.pattern is not None
        excluded = [ksm_resource(n) for n in self.excluded]
        return (
            Matcher("resource", "=~", self.pattern),
            *([Matcher.none_of("resource", excluded)] if excluded else []),
        )


# A MIG slice is a share of its GPU's compute: Ng of 7 slices on A100, H100, H200 and B200, of 4 on the A30,
# whose profiles are the only ones named 1g.6gb, 2g.12gb and 4g.24gb. The `+me` variants (media
# extensions) are the same share.
_A30_MIG = {1: ("1g.6gb", "1g.6gb+me"), 2: ("2g.12gb", "2g.12gb+me"), 4: ("4g.24gb",)}
_MIG_SIZES = (1, 2, 3, 4, 7)
DEFAULT_GPU_RESOURCES: tuple[GpuResource, ...] = (
    GpuResource(1.0, names=("nvidia.com/gpu",)),
    *(
        GpuResource(n / 4, names=tuple(f"nvidia.com/mig-{p}" for p in profiles))
        for n, profiles in _A30_MIG.items()
    ),
    *(
        GpuResource(
            n / 7,
            pattern=f"nvidia_com_mig_{n}g_.*",
            excluded=tuple(f"nvidia.com/mig-{p}" for p in _A30_MIG.get(n, ())),
        )
        for n in _MIG_SIZES
    ),
)


MIG_PROFILE_LABEL = "GPU_I_PROFILE"  # dcgm-exporter's label on a MIG instance's series


def mig_compute_share(profile: str) -> float:
    """The share of its GPU a MIG instance's profile (GPU_I_PROFILE, e.g. 3g.40gb) is: DCGM's profiling
    ratios of an instance are relative to the instance, so busy GPU time is the ratio times this share.
    A series without the label is a whole GPU."""
    match = re.fullmatch(r"(\d+)g\.(\d+)gb(?:\+me)?", profile)
    if not profile or match is None:
        return 1.0
    slices = int(match.group(1))
    a30 = any(profile.removesuffix("+me") == p.removesuffix("+me") for p in _A30_MIG.get(slices, ()))
    return min(1.0, slices / (4 if a30 else 7))


def gpus_per_unit(resource: str, resources: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES) -> float | None:
    """How many GPUs one unit of a resource (as a pod asks for it) is; None when it holds no GPU."""
    label = ksm_resource(resource)
    for r in resources:
        if r.names and label in {ksm_resource(n) for n in r.names}:
            return r.gpus
        if (
            r.pattern
            and re.fullmatch(r.pattern, label)
            and label not in {ksm_resource(n) for n in r.excluded}
        ):
            return r.gpus
    return None


def gpu_resources(overrides: Mapping[str, float] | None = None) -> tuple[GpuResource, ...]:
    """The defaults, with `overrides` (resource name -> GPUs per unit) taking precedence, e.g. a
    time-sliced `nvidia.com/gpu.shared` with 4 replicas per GPU is 0.25."""
    if not overrides:
        return DEFAULT_GPU_RESOURCES
    chosen = set(overrides)
    sanitised = {ksm_resource(n) for n in chosen}
    out = [GpuResource(float(gpus), names=(name,)) for name, gpus in sorted(overrides.items())]
    for r in DEFAULT_GPU_RESOURCES:
        if r.names:
            kept = tuple(n for n in r.names if ksm_resource(n) not in sanitised)
            if kept:
                out.append(replace(r, names=kept))
        else:
            assert r.pattern is not None
            taken = sorted(n for n in chosen if re.fullmatch(r.pattern, ksm_resource(n)))
            out.append(replace(r, excluded=tuple(dict.fromkeys((*r.excluded, *taken)))))
    return tuple(out)


def parse_gpu_resource(text: str) -> tuple[str, float]:
    """`nvidia.com/gpu.shared=0.25` -> ("nvidia.com/gpu.shared", 0.25), with a sentence when malformed."""
    name, sep, value = text.partition("=")
    try:
        gpus = float(value)
    except ValueError:
        gpus = float("nan")
    if not sep or not name.strip() or not gpus > 0 or gpus == float("inf"):
        raise ValueError(
            f"a GPU resource is NAME=GPUS with GPUS the positive number of GPUs one unit holds, e.g. "
            f"nvidia.com/gpu.shared=0.25; not {text!r}"
        )
    return name.strip(), gpus


# --- label plumbing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodLabels:
    """The two labels that carry a series' Kubernetes namespace and pod."""

    namespace: str
    pod: str

    def __post_init__(self) -> None:
        check_label_name(self.namespace)
        check_label_name(self.pod)
        if self.namespace == self.pod:
            raise ValueError(f"namespace and pod must be different labels, both are {self.pod!r}")


POD_MONITOR = PodLabels("namespace", "pod")
KUBERNETES_SD = PodLabels("kubernetes_namespace", "kubernetes_pod_name")
DCGM_EXPORTED = PodLabels("exported_namespace", "exported_pod")
DCGM_OLD_NAMESPACE = PodLabels("pod_namespace", "pod_name")

RuntimeLabelMode = Literal["pod-monitor", "kubernetes-sd"]
GpuLabelMode = Literal["auto", "exported", "plain", "old-namespace"]

RUNTIME_LABEL_MODES: dict[RuntimeLabelMode, PodLabels] = {
    "pod-monitor": POD_MONITOR,
    "kubernetes-sd": KUBERNETES_SD,
}
# Every label name results are attributed to pods by: a custom query may not write any of them.
POD_LABEL_NAMES = frozenset(
    name
    for labels in (POD_MONITOR, KUBERNETES_SD, DCGM_EXPORTED, DCGM_OLD_NAMESPACE)
    for name in (labels.namespace, labels.pod)
)
# In precedence order. "auto" takes the GPU's pod from the first pair a series carries: dcgm-exporter
# scraped with honorLabels false (its Helm chart) renames the GPU's pod to exported_*, while `pod` then names
# the exporter itself; --use-old-namespace gives pod_namespace/pod_name; honorLabels true keeps namespace/pod.
GPU_LABEL_MODES: dict[GpuLabelMode, tuple[PodLabels, ...]] = {
    "auto": (DCGM_EXPORTED, DCGM_OLD_NAMESPACE, POD_MONITOR),
    "exported": (DCGM_EXPORTED,),
    "plain": (POD_MONITOR,),
    "old-namespace": (DCGM_OLD_NAMESPACE,),
}


@dataclass(frozen=True)
class LabelConfig:
    """Which labels name the namespace and pod on runtime, DCGM and kube-state-metrics series.

    `gpu` lists label pairs in precedence order: each GPU series is attributed to the first pair it carries
    (pod label non-empty) and `label_replace` moves it onto the last pair's labels. Normalising inside the
    query, rather than probing which spelling exists and remembering it, keeps one query per quantity with
    no state to go stale, and serves clusters where both spellings occur (two dcgm-exporter set-ups, or a
    migration between them). The cost: with honorLabels false, a GPU no pod holds still carries the
    exporter's own namespace/pod and is attributed to the exporter pod, which is never a target.
    """

    runtime: PodLabels = POD_MONITOR
    gpu: tuple[PodLabels, ...] = GPU_LABEL_MODES["auto"]
    kube_state: PodLabels = POD_MONITOR
    # Which values of kube-state-metrics' `resource` label are GPUs, and how many GPUs a unit holds.
    gpu_resources: tuple[GpuResource, ...] = DEFAULT_GPU_RESOURCES
    gpu_busy: GpuBusySignal = "gr-engine"

    def __post_init__(self) -> None:
        if not self.gpu:
            raise ValueError("at least one namespace/pod label pair is needed for DCGM series")
        if len(set(self.gpu)) != len(self.gpu):
            raise ValueError("the DCGM namespace/pod label pairs repeat")

    @classmethod
    def from_modes(
        cls,
        runtime: RuntimeLabelMode = "pod-monitor",
        gpu: GpuLabelMode = "auto",
        gpu_resource_overrides: Mapping[str, float] | None = None,
        gpu_busy: GpuBusySignal = "gr-engine",
    ) -> LabelConfig:
        """A configuration from the named scrape set-ups (and GPU resources beyond the defaults)."""
        if runtime not in RUNTIME_LABEL_MODES:
            raise ValueError(
                f"unknown runtime label mode {runtime!r}; use one of {', '.join(RUNTIME_LABEL_MODES)}"
            )
        if gpu not in GPU_LABEL_MODES:
            raise ValueError(f"unknown DCGM label mode {gpu!r}; use one of {', '.join(GPU_LABEL_MODES)}")
        if gpu_busy not in GPU_BUSY_SIGNALS:
            raise ValueError(
                f"unknown GPU busy signal {gpu_busy!r}; use one of {', '.join(GPU_BUSY_SIGNALS)}"
            )
        return cls(
            runtime=RUNTIME_LABEL_MODES[runtime],
            gpu=GPU_LABEL_MODES[gpu],
            gpu_resources=gpu_resources(gpu_resource_overrides),
            gpu_busy=gpu_busy,
        )

    @property
    def gpu_output(self) -> PodLabels:
        """The labels GPU query results carry (the last, fallback pair)."""
        return self.gpu[-1]


# --- custom runtime ------------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$__([A-Za-z_]\w*)")
_KNOWN_PLACEHOLDERS = {PODS_PLACEHOLDER[3:], WINDOW_PLACEHOLDER[3:]}
_CLOSERS = {"(": ")", "[": "]", "{": "}"}
REQUIRED_CUSTOM_KEYS: tuple[Quantity, ...] = (Quantity.FINISHED, Quantity.DELIVERED)


class CustomQueryError(ValueError):
    """A custom runtime query that cannot work, with a sentence saying how to fix it."""


def custom_query_keys() -> tuple[str, ...]:
    """Every key a custom runtime accepts."""
    keys: list[str] = [q.value for q in COUNTER_QUANTITIES]
    for metric in LATENCY_METRICS:
        keys += [f"latency_{metric}", f"latency_{metric}_sum", f"latency_{metric}_count"]
    return tuple(keys)


def validate_custom_query(key: str, text: str) -> CustomQuery:
    """Checks placeholders and bracket balance of one custom query (Prometheus checks the rest)."""
    if not text.strip():
        raise CustomQueryError(f"custom query {key} is empty")
    depth: list[str] = []
    has_pods = has_window = False
    i, quote_char = 0, ""
    while i < len(text):
        ch = text[i]
        if quote_char:
            if ch == "\\" and quote_char != "`":
                i += 2
                continue
            if ch == quote_char:
                quote_char = ""
            elif _PLACEHOLDER.match(text, i):
                raise CustomQueryError(
                    f"custom query {key} has a placeholder inside a string at character {i + 1}"
                )
        elif ch in "\"'`":
            quote_char = ch
        elif ch in _CLOSERS:
            depth.append(_CLOSERS[ch])
        elif ch in _CLOSERS.values():
            if not depth or depth.pop() != ch:
                raise CustomQueryError(f"custom query {key} has an unmatched {ch!r} at character {i + 1}")
        elif ch == "#":
            # A PromQL comment would swallow whatever the operator appends after the expression.
            raise CustomQueryError(f"custom query {key} contains a comment (#); remove it")
        elif ch == "$":
            match = _PLACEHOLDER.match(text, i)
            if match:
                name = match.group(1)
                if name not in _KNOWN_PLACEHOLDERS:
                    raise CustomQueryError(
                        f"custom query {key} uses unknown placeholder $__{name}; "
                        f"use {PODS_PLACEHOLDER} (pod matchers) and {WINDOW_PLACEHOLDER} (window)"
                    )
                if f"$__{name}" == PODS_PLACEHOLDER:
                    if not depth or depth[-1] != "}":
                        raise CustomQueryError(
                            f"custom query {key} must use {PODS_PLACEHOLDER} inside a selector's braces, "
                            f"e.g. my_requests_total{{{PODS_PLACEHOLDER}}}"
                        )
                    has_pods = True
                else:
                    if not depth or depth[-1] != "]":
                        raise CustomQueryError(
                            f"custom query {key} must use {WINDOW_PLACEHOLDER} as a range, "
                            f"e.g. [{WINDOW_PLACEHOLDER}]"
                        )
                    has_window = True
                i = match.end()
                continue
        i += 1
    if quote_char:
        raise CustomQueryError(f"custom query {key} has an unterminated {quote_char} string")
    if depth:
        raise CustomQueryError(f"custom query {key} is missing a closing {depth[-1]!r}")
    if not has_pods:
        raise CustomQueryError(
            f"custom query {key} must select the pods in scope with {PODS_PLACEHOLDER}, "
            f"e.g. increase(my_requests_total{{{PODS_PLACEHOLDER}}}[{WINDOW_PLACEHOLDER}])"
        )
    if not has_window:
        raise CustomQueryError(
            f"custom query {key} must measure over the evaluation window with [{WINDOW_PLACEHOLDER}], "
            f"e.g. increase(my_requests_total{{{PODS_PLACEHOLDER}}}[{WINDOW_PLACEHOLDER}])"
        )
    try:
        check_confined(key, text, POD_LABEL_NAMES)
    except ConfinementError as exc:
        raise CustomQueryError(str(exc)) from None
    return CustomQuery(key, text.strip())


def custom_preset(queries: Mapping[str, str]) -> RuntimePreset:
    """A preset from user PromQL per quantity; finished and delivered are required."""
    known = set(custom_query_keys())
    unknown = sorted(set(queries) - known)
    if unknown:
        raise CustomQueryError(
            f"unknown custom query key(s) {', '.join(unknown)}; accepted: {', '.join(custom_query_keys())}"
        )
    missing = [q.value for q in REQUIRED_CUSTOM_KEYS if q.value not in queries]
    if missing:
        raise CustomQueryError(f"a custom runtime needs queries for {' and '.join(missing)}")
    parsed = {key: validate_custom_query(key, text) for key, text in queries.items()}
    counters: dict[Quantity, CounterExpr] = {
        q: parsed[q.value] for q in COUNTER_QUANTITIES if q.value in parsed
    }
    if Quantity.FAILED not in counters:
        counters[Quantity.FAILED] = CounterDifference(
            counters[Quantity.FINISHED], counters[Quantity.DELIVERED]
        )
    latency: dict[LatencyMetric, LatencySource] = {}
    for metric in LATENCY_METRICS:
        buckets = parsed.get(f"latency_{metric}")
        total = parsed.get(f"latency_{metric}_sum")
        count = parsed.get(f"latency_{metric}_count")
        if buckets is not None and (total is not None or count is not None):
            raise CustomQueryError(
                f"give either latency_{metric} (histogram bucket rates) or latency_{metric}_sum and "
                f"latency_{metric}_count (a mean), not both"
            )
        if (total is None) != (count is None):
            raise CustomQueryError(f"latency_{metric}_sum and latency_{metric}_count go together; give both")
        if buckets is not None:
            latency[metric] = CustomHistogramLatency(buckets)
        elif total is not None and count is not None:
            latency[metric] = MeanLatency(total, count, note="mean, not quantile: custom sum ÷ count")
    return RuntimePreset(name="custom", counters=counters, latency=latency)


def preset_for(
    runtime: str, queries: Mapping[str, str] | None = None, models: Sequence[str] = ()
) -> RuntimePreset:
    """The preset for a runtime name; `custom` builds one from `queries`; `models` selects served models."""
    if runtime == "custom":
        if not queries:
            raise CustomQueryError("runtime custom needs queries (at least finished and delivered)")
        if models:
            raise CustomQueryError("models are not read for runtime custom: select them in its queries")
        return custom_preset(queries)
    if queries:
        raise CustomQueryError(f"queries are only read for runtime custom, not {runtime}")
    try:
        preset = RUNTIMES[runtime]
    except KeyError:
        raise ValueError(
            f"unknown runtime {runtime!r}; use one of {', '.join([*RUNTIMES, 'custom'])}"
        ) from None
    return with_models(preset, models) if models else preset


def with_models(preset: RuntimePreset, models: Sequence[str]) -> RuntimePreset:
    """The preset reading only the named served models' series (families without a model label unchanged)."""
    chosen = tuple(sorted(set(models)))
    if any(not m for m in chosen):
        raise ValueError("a model name cannot be empty")
    if not has_model_label(preset):
        raise ValueError(f"{preset.name} series carry no model label, so no model can be selected")

    def scoped(scope: ModelScope | None) -> ModelScope | None:
        return None if scope is None else replace(scope, models=chosen)

    def counter(expr: CounterExpr) -> CounterExpr:
        if isinstance(expr, CounterSum):
            return replace(expr, model=scoped(expr.model))
        if isinstance(expr, CounterDifference):
            return replace(expr, minuend=counter(expr.minuend), subtrahend=counter(expr.subtrahend))
        if isinstance(expr, CounterFallback):
            if isinstance(expr.preferred, CounterSum) and expr.preferred.model is None:
                # A family that names no model (vLLM's HTTP counter) cannot be narrowed to the named ones:
                # what does name them is read alone.
                return counter(expr.fallback)
            return replace(expr, preferred=counter(expr.preferred), fallback=counter(expr.fallback))
        return expr

    def latency(source: LatencySource) -> LatencySource:
        if isinstance(source, HistogramLatency):
            return replace(source, model=scoped(source.model))
        if isinstance(source, MeanLatency):
            return replace(source, total_seconds=counter(source.total_seconds), count=counter(source.count))
        return source

    return replace(
        preset,
        counters={q: counter(e) for q, e in preset.counters.items()},
        latency={m: latency(s) for m, s in preset.latency.items()},
        models=chosen,
    )


def has_model_label(preset: RuntimePreset) -> bool:
    """Whether the runtime's series name the served model (so `with_models` can select)."""
    return bool(_model_labels(preset))


def _model_labels(preset: RuntimePreset) -> set[str]:
    labels: set[str] = set()

    def visit(expr: CounterExpr) -> None:
        if isinstance(expr, CounterSum) and expr.model:
            labels.add(expr.model.label)
        elif isinstance(expr, CounterDifference):
            visit(expr.minuend)
            visit(expr.subtrahend)
        elif isinstance(expr, CounterFallback):
            visit(expr.preferred)
            visit(expr.fallback)

    for expr in preset.counters.values():
        visit(expr)
    return labels
