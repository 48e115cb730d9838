"""What each model server (vLLM, TGI, Triton, SGLang) and dcgm-exporter would expose, as data.

Names, types, labels and what each request adds follow the upstream scrapes in tests/corpus, which
tests/unit/test_corpus.py holds the simulator to. Bucket bounds follow upstream's where known; elsewhere
they are the simulator's choice, since queries only need `le` buckets to exist, not particular bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from costslo.exposition import Family, Histogram, labels_of
from costslo.simulator.profiles import PerformanceProfile
from costslo.simulator.serving import Request


@dataclass(frozen=True)
class Load:
    """Instantaneous load of a pod, for the gauges."""

    running: float
    waiting: float
    utilisation: float


def _always(_: Request) -> bool:
    return True


def _once(_: Request) -> float:
    return 1.0


def _no_labels(_: Request) -> dict[str, str]:
    return {}


def _prefilled(r: Request) -> bool:
    return not r.dropped


def _ok(r: Request) -> bool:
    return r.ok


def _failed(r: Request) -> bool:
    return not r.ok


def _delivered_with_tokens(r: Request) -> bool:
    return r.ok and r.output_tokens > 1


def _streaming(_: Request) -> dict[str, str]:
    return {"is_streaming": "true"}


@dataclass(frozen=True)
class Series:
    """One series family of a runtime and how a finished request or the load feeds it."""

    name: str
    kind: Literal["counter", "histogram", "gauge"]
    help: str
    value: Callable[[Request], float] = _once  # counter increment / histogram observation
    times: Callable[[Request], float] = _once  # how many observations of `value`
    when: Callable[[Request], bool] = _always
    labels: Callable[[Request], dict[str, str]] = _no_labels
    buckets: tuple[float, ...] = ()
    gauge: Callable[[Load], float] | None = None
    # Whether the runtime's own labels (vLLM's model_name and engine, ...) apply; the API server's HTTP
    # families carry only their own.
    base: bool = True


def _gauge(name: str, help_: str, read: Callable[[Load], float]) -> Series:
    return Series(name, "gauge", help_, gauge=read)


def _running(load: Load) -> float:
    return load.running


def _waiting(load: Load) -> float:
    return load.waiting


def _cache_usage(load: Load) -> float:
    # KV-cache fills with the batch: a little when idle, most of it near saturation.
    return min(1.0, 0.05 + 0.9 * load.utilisation)


@dataclass(frozen=True)
class RuntimeSpec:
    base_labels: Callable[[PerformanceProfile], dict[str, str]]
    series: tuple[Series, ...]
    # Series the server creates at 0 when it starts (family, labels over the base ones), as upstream does.
    at_start: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()


def _one_two_five(limit: int) -> tuple[float, ...]:
    out: list[float] = []
    exp = 1
    while True:
        for m in (1, 2, 5):
            if m * exp > limit:
                return tuple(out)
            out.append(float(m * exp))
        exp *= 10


def _exponential(start: float, factor: float, count: int) -> tuple[float, ...]:
    return tuple(round(start * factor**i, 6) for i in range(count))


VLLM_REQUEST_SECONDS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
VLLM_TTFT_SECONDS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
VLLM_ITL_SECONDS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
TOKENS = _one_two_five(10_000)
SECONDS = _exponential(0.001, 2.0, 18)  # 1 ms .. 131 s
SGLANG_E2E = (
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    2.0,
    4.0,
    6.0,
    8.0,
    10.0,
    20.0,
    40.0,
    60.0,
    80.0,
    100.0,
    200.0,
    400.0,
    800.0,
)
SGLANG_ITL: tuple[float, ...] = (
    0.002,
    0.004,
    0.006,
    0.008,
    0.01,
    0.015,
    0.02,
    0.025,
    0.03,
    0.035,
    0.04,
    0.06,
    0.08,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
    2.0,
)
SGLANG_TPOT = (*SGLANG_ITL, 4.0, 6.0, 8.0)


def _vllm() -> RuntimeSpec:
    def hist(
        name: str,
        help_: str,
        value: Callable[[Request], float],
        buckets: tuple[float, ...],
        when: Callable[[Request], bool] = _prefilled,
        times: Callable[[Request], float] = _once,
    ) -> Series:
        return Series(
            f"vllm:{name}", "histogram", help_, value=value, buckets=buckets, when=when, times=times
        )

    return RuntimeSpec(
        base_labels=lambda p: {"model_name": p.model_name, "engine": "0"},
        series=(
            # A client that disconnects or times out takes the engine's abort path, which records no
            # finished stats: aborts reach neither this counter nor the per-request histograms below.
            Series(
                "vllm:request_success_total",
                "counter",
                "Count of successfully processed requests.",
                when=_ok,
                labels=lambda r: {"finished_reason": r.finished_reason},
            ),
            # The API server sees every request; a disconnect still records 2xx (status codes grouped).
            Series(
                "http_requests_total",
                "counter",
                "Total number of requests by method, status and handler.",
                labels=lambda r: {"handler": "/v1/chat/completions", "method": "POST", "status": "2xx"},
                base=False,
            ),
            Series(
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                value=lambda r: r.input_tokens,
                when=_prefilled,
            ),
            # The simulator has no prefix cache: the families exist, and no token is ever a hit.
            *(
                Series(name, "counter", help_, value=lambda r: 0.0, when=_prefilled)
                for name, help_ in (
                    ("vllm:prompt_tokens_cached_total", "Number of cached prompt tokens (local + external)."),
                    ("vllm:prefix_cache_hits_total", "Prefix cache hits, in number of cached tokens."),
                )
            ),
            Series(
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                value=lambda r: r.output_tokens,
                when=_prefilled,
            ),
            hist(
                "e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                lambda r: r.e2e_seconds,
                VLLM_REQUEST_SECONDS,
                when=_ok,
            ),
            hist(
                "time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                lambda r: r.ttft_seconds,
                VLLM_TTFT_SECONDS,
            ),
            hist(
                "inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                lambda r: r.itl_seconds,
                VLLM_ITL_SECONDS,
                times=lambda r: max(0, r.output_tokens - 1),
            ),
            hist(
                "request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                lambda r: r.queue_seconds,
                VLLM_REQUEST_SECONDS,
                when=_ok,
            ),
            hist(
                "request_prefill_time_seconds",
                "Histogram of time spent in PREFILL phase for request.",
                lambda r: r.prefill_seconds,
                VLLM_REQUEST_SECONDS,
                when=_ok,
            ),
            hist(
                "request_decode_time_seconds",
                "Histogram of time spent in DECODE phase for request.",
                lambda r: r.decode_seconds,
                VLLM_REQUEST_SECONDS,
                when=_ok,
            ),
            hist(
                "request_inference_time_seconds",
                "Histogram of time spent in RUNNING phase for request.",
                lambda r: r.inference_seconds,
                VLLM_REQUEST_SECONDS,
                when=_ok,
            ),
            hist(
                "request_prompt_tokens",
                "Number of prefill tokens processed.",
                lambda r: r.input_tokens,
                TOKENS,
                when=_ok,
            ),
            hist(
                "request_generation_tokens",
                "Number of generation tokens processed.",
                lambda r: r.output_tokens,
                TOKENS,
                when=_ok,
            ),
            _gauge("vllm:num_requests_running", "Number of requests in model execution batches.", _running),
            _gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", _waiting),
            _gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", _cache_usage),
        ),
        at_start=tuple(
            ("vllm:request_success_total", (("finished_reason", reason),))
            for reason in ("stop", "length", "abort", "error", "repetition")
        ),
    )


def _tgi_forward(method: str, seconds: Callable[[Request], float]) -> Series:
    return Series(
        "tgi_batch_forward_duration",
        "histogram",
        "Batch forward duration per method (prefill or decode)",
        value=seconds,
        buckets=SECONDS,
        when=_prefilled,
        labels=lambda r: {"method": method},
    )


def _tgi() -> RuntimeSpec:
    return RuntimeSpec(
        base_labels=lambda p: {},
        series=(
            # /v1/chat/completions adds 2 per request: its own handler and the generate path it calls.
            Series("tgi_request_count", "counter", "Total number of requests", value=lambda r: 2.0),
            Series("tgi_request_success", "counter", "Number of successful requests", when=_ok),
            Series(
                "tgi_request_failure",
                "counter",
                "Number of failed requests",
                when=_failed,
                labels=lambda r: {"err": "overloaded" if r.dropped else "generation"},
            ),
            Series(
                "tgi_request_duration",
                "histogram",
                "Request duration",
                value=lambda r: r.e2e_seconds,
                buckets=SECONDS,
                when=_ok,
            ),
            Series(
                "tgi_request_queue_duration",
                "histogram",
                "Time spent in the queue",
                value=lambda r: r.queue_seconds,
                buckets=SECONDS,
                when=_ok,
            ),
            Series(
                "tgi_request_inference_duration",
                "histogram",
                "Request inference duration",
                value=lambda r: r.inference_seconds,
                buckets=SECONDS,
                when=_ok,
            ),
            Series(
                "tgi_request_mean_time_per_token_duration",
                "histogram",
                "Mean time per token per request",
                value=lambda r: r.itl_seconds,
                buckets=SECONDS,
                when=_ok,
            ),
            # The shards' forward time per batch call, here each request's share of the GPU's work.
            _tgi_forward("prefill", lambda r: r.prefill_gpu_seconds),
            _tgi_forward("decode", lambda r: r.gpu_seconds - r.prefill_gpu_seconds),
            # Recorded at validation, before the request can fail, so failed requests are in it too.
            Series(
                "tgi_request_input_length",
                "histogram",
                "Input token length per request",
                value=lambda r: r.input_tokens,
                buckets=TOKENS,
            ),
            Series(
                "tgi_request_generated_tokens",
                "histogram",
                "Generated tokens per request",
                value=lambda r: r.output_tokens,
                buckets=TOKENS,
                when=_ok,
            ),
            _gauge("tgi_queue_size", "Current queue size", _waiting),
            _gauge("tgi_batch_current_size", "Current batch size", _running),
        ),
    )


def _triton() -> RuntimeSpec:
    def us_counter(name: str, help_: str, value: Callable[[Request], float]) -> Series:
        return Series(name, "counter", help_, value=lambda r: value(r) * 1e6, when=_ok)

    return RuntimeSpec(
        base_labels=lambda p: {"model": p.model_name, "version": "1"},
        series=(
            Series(
                "nv_inference_request_success",
                "counter",
                "Number of successful inference requests, all batch sizes",
                when=_ok,
            ),
            Series(
                "nv_inference_request_failure",
                "counter",
                "Number of failed inference requests, all batch sizes",
                when=_failed,
                labels=lambda r: {"reason": "REJECTED" if r.dropped else "BACKEND"},
            ),
            Series("nv_inference_count", "counter", "Number of inferences performed", when=_ok),
            Series("nv_inference_exec_count", "counter", "Number of model executions performed", when=_ok),
            us_counter(
                "nv_inference_request_duration_us",
                "Cumulative inference request duration in microseconds",
                lambda r: r.e2e_seconds,
            ),
            us_counter(
                "nv_inference_queue_duration_us",
                "Cumulative inference queuing duration in microseconds",
                lambda r: r.queue_seconds,
            ),
            us_counter(
                "nv_inference_compute_input_duration_us",
                "Cumulative compute input duration in microseconds",
                lambda r: 0.0005,
            ),
            us_counter(
                "nv_inference_compute_infer_duration_us",
                "Cumulative compute inference duration in microseconds",
                lambda r: r.inference_seconds,
            ),
            us_counter(
                "nv_inference_compute_output_duration_us",
                "Cumulative inference compute output duration in microseconds",
                lambda r: 0.0005,
            ),
            _gauge(
                "nv_inference_pending_request_count",
                "Instantaneous number of pending requests awaiting execution per-model.",
                _waiting,
            ),
            Series(
                "nv_llm_input_token_len",
                "histogram",
                "TRT LLM input token length",
                value=lambda r: r.input_tokens,
                labels=lambda r: {"response_metric_type": "total_input_tokens"},
                buckets=TOKENS,
                when=_prefilled,
            ),
            Series(
                "nv_llm_output_token_len",
                "histogram",
                "TRT LLM output token length",
                value=lambda r: r.output_tokens,
                labels=lambda r: {"response_metric_type": "total_output_tokens"},
                buckets=TOKENS,
                when=_prefilled,
            ),
        ),
    )


def _sglang() -> RuntimeSpec:
    # A request aborted while queued (here: dropped) is counted as aborted and nowhere else; one aborted while
    # running finishes through the normal output path and is counted everywhere but the per-output-token
    # histogram, which only requests finished stop or length with more than one token reach.
    return RuntimeSpec(
        base_labels=lambda p: {"model_name": p.model_name, "engine_type": "unified"},
        series=(
            Series(
                "sglang:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                value=lambda r: r.input_tokens,
                when=_prefilled,
                labels=_streaming,
            ),
            Series(
                "sglang:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                value=lambda r: r.output_tokens,
                when=_prefilled,
                labels=_streaming,
            ),
            Series(
                "sglang:cached_tokens_total",
                "counter",
                "Number of cached prompt tokens.",
                value=lambda r: 0.0,
                when=_prefilled,
                labels=lambda r: {"cache_source": "device"},
            ),
            Series(
                "sglang:num_requests_total",
                "counter",
                "Number of requests processed.",
                when=_prefilled,
                labels=_streaming,
            ),
            Series(
                "sglang:num_aborted_requests_total", "counter", "Number of requests aborted.", when=_failed
            ),
            Series(
                "sglang:e2e_request_latency_seconds",
                "histogram",
                "Histogram of End-to-end request latency in seconds",
                value=lambda r: r.e2e_seconds,
                buckets=SGLANG_E2E,
                when=_prefilled,
                labels=_streaming,
            ),
            Series(
                "sglang:time_to_first_token_seconds",
                "histogram",
                "Histogram of time to first token in seconds.",
                value=lambda r: r.ttft_seconds,
                buckets=SGLANG_E2E,
                when=_prefilled,
                labels=_streaming,
            ),
            Series(
                "sglang:request_time_per_output_token_seconds",
                "histogram",
                "Histogram of request time per output token in seconds.",
                value=lambda r: r.itl_seconds,
                buckets=SGLANG_TPOT,
                when=_delivered_with_tokens,
                labels=_streaming,
            ),
            Series(
                "sglang:inter_token_latency_seconds",
                "histogram",
                "Histogram of inter-token latency in seconds.",
                value=lambda r: r.itl_seconds,
                buckets=SGLANG_ITL,
                when=_prefilled,
                times=lambda r: max(0, r.output_tokens - 1),
            ),
            _gauge("sglang:num_running_reqs", "The number of running requests.", _running),
            _gauge("sglang:num_queue_reqs", "The number of requests in the waiting queue.", _waiting),
            _gauge("sglang:token_usage", "The token usage.", _cache_usage),
        ),
    )


def _on_model(labels: Callable[[Request], dict[str, str]], model: str) -> Callable[[Request], dict[str, str]]:
    return lambda r: {**labels(r), "model": model}


def _triton_ensemble() -> RuntimeSpec:
    """The TensorRT-LLM ensemble layout: every model counts each request it runs in its own series."""
    steps = ("ensemble", "preprocessing", "tensorrt_llm", "postprocessing")
    reasons = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

    def model(name: str) -> Callable[[Request], dict[str, str]]:
        return lambda r: {"model": name}

    def failure(name: str, reason: Callable[[Request], str], count: float) -> Series:
        return Series(
            "nv_inference_request_failure",
            "counter",
            "Number of failed inference requests, all batch sizes",
            value=lambda r: count,
            when=_failed,
            labels=lambda r: {"model": name, "reason": reason(r)},
        )

    def us_counter(name: str, step: str, value: Callable[[Request], float]) -> Series:
        return Series(
            name, "counter", f"{name} of {step}", value=lambda r: value(r) * 1e6, when=_ok, labels=model(step)
        )

    # Preprocessing succeeds for every request that arrives; the ensemble, tensorrt_llm and postprocessing
    # only for those that are served. A failed request is one BACKEND (or REJECTED) failure of tensorrt_llm
    # and two OTHER failures of the ensemble: Triton reports it twice (its metrics guide says count=2).
    success_when = {"ensemble": _ok, "preprocessing": _always, "tensorrt_llm": _ok, "postprocessing": _ok}
    single = {s.name: s for s in _triton().series}
    series: list[Series] = [
        Series(
            "nv_inference_request_success",
            "counter",
            single["nv_inference_request_success"].help,
            when=success_when[step],
            labels=model(step),
        )
        for step in steps
    ]
    series += [
        failure("ensemble", lambda r: "OTHER", 2.0),
        failure("tensorrt_llm", lambda r: "REJECTED" if r.dropped else "BACKEND", 1.0),
        *[
            Series(name, "counter", single[name].help, when=success_when[step], labels=model(step))
            for name in ("nv_inference_count", "nv_inference_exec_count")
            for step in steps
        ],
        us_counter("nv_inference_request_duration_us", "ensemble", lambda r: r.e2e_seconds),
        us_counter("nv_inference_request_duration_us", "tensorrt_llm", lambda r: r.inference_seconds),
        us_counter("nv_inference_queue_duration_us", "tensorrt_llm", lambda r: r.queue_seconds),
        us_counter("nv_inference_compute_infer_duration_us", "tensorrt_llm", lambda r: r.inference_seconds),
        single["nv_inference_pending_request_count"],
        *[
            replace(s, labels=_on_model(s.labels, "tensorrt_llm"))
            for s in (single["nv_llm_input_token_len"], single["nv_llm_output_token_len"])
        ],
    ]
    return RuntimeSpec(
        base_labels=lambda p: {"model": "ensemble", "version": "1"},
        series=tuple(series),
        at_start=tuple(
            ("nv_inference_request_failure", (("model", step), ("reason", reason)))
            for step in steps
            for reason in reasons
        ),
    )


RUNTIMES: dict[str, RuntimeSpec] = {"vllm": _vllm(), "tgi": _tgi(), "triton": _triton(), "sglang": _sglang()}
TRITON_ENSEMBLE = _triton_ensemble()


@dataclass
class RuntimeExporter:
    """The series one pod's model server exposes, accumulated over its life."""

    spec: RuntimeSpec
    pod_labels: dict[str, str]
    profile: PerformanceProfile
    _families: dict[str, Family] = field(default_factory=dict)
    _base: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_pod(cls, profile: PerformanceProfile, pod_labels: Mapping[str, str]) -> RuntimeExporter:
        spec = (
            TRITON_ENSEMBLE if profile.runtime == "triton" and profile.ensemble else RUNTIMES[profile.runtime]
        )
        exporter = cls(spec, dict(pod_labels), profile)
        exporter._base = {**spec.base_labels(profile), **pod_labels}
        for s in spec.series:
            exporter._families[s.name] = Family(s.name, s.kind, s.help)
        for family, labels in spec.at_start:
            exporter._families[family].values[labels_of({**exporter._base, **dict(labels)})] = 0.0
        return exporter

    def record(self, request: Request) -> None:
        for s in self.spec.series:
            if s.kind == "gauge" or not s.when(request):
                continue
            fam = self._families[s.name]
            key = labels_of({**(self._base if s.base else self.pod_labels), **s.labels(request)})
            if s.kind == "counter":
                fam.values[key] = fam.values.get(key, 0.0) + s.value(request) * s.times(request)
            else:
                times = s.times(request)
                if times <= 0:
                    continue
                hist = fam.histograms.get(key)
                if hist is None:
                    hist = fam.histograms[key] = Histogram(s.buckets)
                hist.observe(s.value(request), times)

    def set_load(self, load: Load) -> None:
        key = labels_of(self._base)
        for s in self.spec.series:
            if s.gauge is not None:
                self._families[s.name].values[key] = s.gauge(load)

    def families(self) -> list[Family]:
        return list(self._families.values())
