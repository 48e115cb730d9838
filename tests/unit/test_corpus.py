"""The presets read upstream's scrapes right, and the simulator exports what upstream exports.

The reference is `tests/corpus/`: one scrape per exporter and release, written from upstream's source and
headed by the files it follows (see tests/support/corpus.py). Prometheus' own engine (promtool) evaluates
each preset's queries over the series a scrape becomes, and the figures must be the scrape's `expect`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from costslo.exposition import render
from costslo.metrics.queries import plan_window
from costslo.runtimes import (
    GPU_ENERGY_MILLIJOULES,
    RUNTIMES,
    SGLANG_FORWARD,
    GpuLabelMode,
    LabelConfig,
    Quantity,
    RuntimePreset,
    preset_for,
)
from costslo.simulator.exporters import Load, RuntimeExporter
from costslo.simulator.serving import RequestSampler
from tests.support import corpus
from tests.support.corpus import Sample, Scrape
from tests.support.promtool import evaluate
from tests.unit.test_simulator_exporters import profile

pytestmark = pytest.mark.unit

ML = {"ml"}
TARGET = {"namespace": "ml", "pod": "server-0", "container": "server"}
POD = '{namespace="ml",pod="server-0"}'
EXPORTER_TARGET = {"namespace": "gpu-operator", "pod": "dcgm-exporter-x7k2p", "container": "exporter"}
WINDOW_SECONDS = 300
FIGURES = {
    "finished": Quantity.FINISHED,
    "delivered": Quantity.DELIVERED,
    "failed": Quantity.FAILED,
    "input_tokens": Quantity.INPUT_TOKENS,
    "cached_input_tokens": Quantity.CACHED_INPUT_TOKENS,
    "output_tokens": Quantity.OUTPUT_TOKENS,
    "prefill_seconds": Quantity.PREFILL_SECONDS,
    "decode_seconds": Quantity.DECODE_SECONDS,
}


def rounded(promql: str) -> str:
    """To a thousandth: a counter ramp of scraped values leaves float noise in the last digits."""
    return f"round({promql}, 0.001)"


def cases(promql: str, expected: list[tuple[str, float]]) -> tuple[str, list[tuple[str, float]]]:
    return rounded(promql), [(labels, round(value, 3)) for labels, value in expected]


def pod(namespace: str, name: str) -> str:
    return f'{{namespace="{namespace}",pod="{name}"}}'


def check_counts(
    tmp_path: Path, runtime: str | RuntimePreset, scrape: Scrape, expected: dict[Quantity, float | None]
) -> None:
    """Fails unless the preset's queries over the scrape give exactly `expected` for the target pod (None:
    no value at all)."""
    preset = RUNTIMES[runtime] if isinstance(runtime, str) else runtime
    plan = {q.quantity: q for q in plan_window(preset, LabelConfig(), WINDOW_SECONDS, ML)}
    checks = [cases(plan[q].promql, [] if value is None else [(POD, value)]) for q, value in expected.items()]
    evaluate(tmp_path, corpus.as_series([(scrape, TARGET)]), checks, eval_time=corpus.EVAL_TIME)


def expected_figures(scrape: Scrape, leave_out: tuple[str, ...] = ()) -> dict[Quantity, float | None]:
    return {FIGURES[k]: v for k, v in scrape.expect[""].items() if k in FIGURES and k not in leave_out}


def without(scrape: Scrape, family: str) -> Scrape:
    return replace(scrape, samples=tuple(s for s in scrape.samples if not s.name.startswith(family)))


def scaled(scrape: Scrape, name: str, value: float) -> Scrape:
    return replace(
        scrape, samples=tuple(replace(s, value=value) if s.name == name else s for s in scrape.samples)
    )


# --- the corpus itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", corpus.files(), ids=lambda p: p.name)
def test_every_scrape_says_what_it_follows(path: Path) -> None:
    scrape = corpus.load(path)
    assert scrape.corpus, path
    assert re.search(r"\d+\.\d+", scrape.upstream) and "commit" in scrape.upstream, scrape.upstream
    assert scrape.follows and scrape.scenario and scrape.quirks and scrape.expect
    histograms: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = defaultdict(list)
    counts: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in scrape.samples:
        assert s.kind != "untyped", f"{s.name} has no # TYPE line"
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if s.name.endswith("_bucket") and s.kind == "histogram":
            histograms[(s.name.removesuffix("_bucket"), key)].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count") and s.kind == "histogram":
            counts[(s.name.removesuffix("_count"), key)] = s.value
    for (family, key), buckets in histograms.items():
        bounds = [le for le, _ in buckets]
        values = [v for _, v in sorted(buckets)]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, (family, key)
        assert values == sorted(values), f"{family}{dict(key)}: buckets are not cumulative"
        assert values[-1] == counts[(family, key)], f"{family}{dict(key)}: +Inf bucket is not the count"


# --- each preset against its runtime's scrape ----------------------------------------------------------


@pytest.mark.parametrize("runtime", ["vllm", "tgi", "sglang"])
def test_requests_and_tokens_as_upstream_counts_them(tmp_path: Path, runtime: str) -> None:
    scrape = corpus.load(corpus.RUNTIME_SCRAPES[runtime])
    check_counts(tmp_path, runtime, scrape, expected_figures(scrape))


def test_vllm_client_aborts_and_rejections_are_failures(tmp_path: Path) -> None:
    """Disconnects take the engine's abort path (no finished stats); a 400 never reaches the engine."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["vllm"])
    engine = sum(s.value for s in scrape.family("vllm:request_success_total"))
    assert engine == 17  # what a reader of the engine's counter alone would call every request
    check_counts(
        tmp_path, "vllm", scrape, {Quantity.FINISHED: 20, Quantity.DELIVERED: 17, Quantity.FAILED: 3}
    )


def test_vllm_without_the_http_counter_falls_back_to_the_engine(tmp_path: Path) -> None:
    scrape = without(corpus.load(corpus.RUNTIME_SCRAPES["vllm"]), "http_")
    check_counts(
        tmp_path, "vllm", scrape, {Quantity.FINISHED: 17, Quantity.DELIVERED: 17, Quantity.FAILED: 0}
    )


def test_gpu_time_by_phase_is_read_where_the_server_measures_it(tmp_path: Path) -> None:
    """TGI's batch forward time and SGLang's device timer are GPU time by phase; SGLang's series exist only
    with SGLANG_ENABLE_METRICS_DEVICE_TIMER=1, and a DP-attention worker's idle passes serve no token."""
    tgi = corpus.load(corpus.RUNTIME_SCRAPES["tgi"])
    phases = {Quantity.PREFILL_SECONDS: 0.608242, Quantity.DECODE_SECONDS: 11.53644}
    check_counts(tmp_path, "tgi", tgi, phases)
    timed = corpus.load(corpus.SGLANG_DEVICE_TIMER_SCRAPE)
    decode = next(s for s in timed.family(SGLANG_FORWARD) if s.labels["category"] == "decode")
    idle = replace(decode, labels={**decode.labels, "category": "idle"})
    timed = replace(timed, samples=(*timed.samples, idle))
    check_counts(tmp_path, "sglang", timed, expected_figures(timed))
    untimed = corpus.load(corpus.RUNTIME_SCRAPES["sglang"])
    check_counts(tmp_path, "sglang", untimed, {Quantity.PREFILL_SECONDS: None, Quantity.DECODE_SECONDS: None})


def test_vllm_per_request_phase_times_are_not_read_as_gpu_time() -> None:
    """vLLM's request_prefill/decode_time_seconds are wall clock per request: under batching every running
    request's decode time counts the same GPU step (here 0.51 s of prefill against 26.9 s of decode for 17
    requests whose computed prompt tokens outweigh the output's), so the split is left to the tokens."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["vllm"])
    assert scrape.family("vllm:request_prefill_time_seconds_sum")
    assert not RUNTIMES["vllm"].supports(Quantity.PREFILL_SECONDS)
    assert not RUNTIMES["vllm"].supports(Quantity.DECODE_SECONDS)


def test_sglang_aborts_in_the_queue_never_make_delivered_negative(tmp_path: Path) -> None:
    """Queued aborts count as aborted but never in num_requests_total: total - aborted undercounts."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["sglang"])
    check_counts(tmp_path, "sglang", scrape, {Quantity.DELIVERED: 17, Quantity.FAILED: 4})
    # Overload: 40 clients give up in the queue. num_requests_total - aborted would read 18 - 40.
    overloaded = scaled(scrape, "sglang:num_aborted_requests_total", 40)
    check_counts(
        tmp_path, "sglang", overloaded, {Quantity.FINISHED: 57, Quantity.DELIVERED: 17, Quantity.FAILED: 40}
    )


def test_tgi_request_count_is_not_a_request_count(tmp_path: Path) -> None:
    """/v1/chat/completions adds 2 to tgi_request_count and /chat_tokenize 1: 29 for 19 requests."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["tgi"])
    assert sum(s.value for s in scrape.family("tgi_request_count")) == 29
    check_counts(tmp_path, "tgi", scrape, {Quantity.FINISHED: 19, Quantity.DELIVERED: 17, Quantity.FAILED: 2})


def test_tgi_failures_are_zero_before_the_first_one(tmp_path: Path) -> None:
    """tgi_request_failure{err} appears only after a first failure: a pod without one has none."""
    scrape = without(corpus.load(corpus.RUNTIME_SCRAPES["tgi"]), "tgi_request_failure")
    check_counts(tmp_path, "tgi", scrape, {Quantity.FINISHED: 17, Quantity.FAILED: 0})


def check_left_out(tmp_path: Path, scrape: Scrape, models: int) -> None:
    """Unnamed, a pod serving several models has no request count, and the delivered answer marks it."""
    plan = {q.quantity: q for q in plan_window(RUNTIMES["triton"], LabelConfig(), WINDOW_SECONDS, ML)}
    marked = POD.replace("}", ',costslo_several_models="true"}')
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, TARGET)]),
        [
            cases(plan[Quantity.FINISHED].promql, []),
            cases(plan[Quantity.DELIVERED].promql, [(marked, models)]),
        ],
        eval_time=corpus.EVAL_TIME,
    )


def test_triton_ensemble_steps_never_multiply_the_requests(tmp_path: Path) -> None:
    """Every model of an ensemble counts each request it runs: 74 successes for 20 requests. Unnamed, the
    pod is not measured (the gap is named); naming the model clients call counts each request once."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["triton"])
    assert sum(s.value for s in scrape.family("nv_inference_request_success")) == 74
    check_left_out(tmp_path, scrape, models=4)
    truth = scrape.expect[""]
    check_counts(
        tmp_path,
        preset_for("triton", models=["ensemble"]),
        scrape,
        {
            Quantity.DELIVERED: truth["delivered"],
            # Triton counts each failed ensemble request twice (docs/user_guide/metrics.md: count=2), and
            # the token histograms include the prompts the executor refused: both documented in metrics.md.
            Quantity.FAILED: 2 * truth["failed"],
            Quantity.FINISHED: truth["delivered"] + 2 * truth["failed"],
            Quantity.INPUT_TOKENS: 29136,
            Quantity.OUTPUT_TOKENS: truth["output_tokens"],
        },
    )


def test_triton_before_the_reason_label_reads_the_same(tmp_path: Path) -> None:
    """Before Triton 2.48 the failure counter had only model and version, the success counter's labels:
    read in one selector, increase() would make them collide and fail the query for every tenant."""
    scrape = corpus.load(corpus.RUNTIME_SCRAPES["triton"])
    failures: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for s in scrape.family("nv_inference_request_failure"):
        failures[tuple(sorted((k, v) for k, v in s.labels.items() if k != "reason"))] += s.value
    old = without(scrape, "nv_inference_request_failure")
    old = replace(
        old,
        samples=old.samples
        + tuple(Sample("nv_inference_request_failure", dict(k), v, "counter") for k, v in failures.items()),
    )
    named = preset_for("triton", models=["ensemble"])
    check_counts(tmp_path, named, old, {Quantity.FINISHED: 22, Quantity.DELIVERED: 18, Quantity.FAILED: 4})
    # Unnamed, the several-models pod is left out of every quantity, failures too: never zero failures.
    check_counts(tmp_path, "triton", old, {Quantity.FAILED: None})
    check_counts(tmp_path, "triton", without(old, "nv_inference_request_failure"), {Quantity.FAILED: None})


# --- GPUs: dcgm-exporter and kube-state-metrics -------------------------------------------------------


def busy_seconds(scrape: Scrape) -> list[tuple[str, float]]:
    """BUSY_GPU_SECONDS per pod the scrape expects a busy ratio for: ratio x GPUs x window."""
    return [
        (pod(*who.split("/")), figures["busy_ratio"] * figures["gpus"] * WINDOW_SECONDS)
        for who, figures in scrape.expect.items()
        if "busy_ratio" in figures
    ]


def renamed_label(scrape: Scrape, old: str, new: str) -> Scrape:
    def rename(s: Sample) -> Sample:
        return replace(s, labels={(new if k == old else k): v for k, v in s.labels.items()})

    return replace(scrape, samples=tuple(rename(s) for s in scrape.samples))


@pytest.mark.parametrize("honor_labels", [False, True], ids=["exported-labels", "honor-labels"])
@pytest.mark.parametrize("hostname", ["Hostname", "hostname"])
def test_dcgm_busy_time_whatever_the_host_label_and_scrape_mode(
    tmp_path: Path, honor_labels: bool, hostname: str
) -> None:
    """`Hostname` is `hostname` on dcgm-exporter's main branch and every series carries the driver version:
    neither may change what is read. An idle GPU (no pod labels) is no pod's."""
    scrape = corpus.load(corpus.DCGM_SCRAPE)
    assert all("DCGM_FI_DRIVER_VERSION" in s.labels and "Hostname" in s.labels for s in scrape.samples)
    scrape = renamed_label(scrape, "Hostname", hostname)
    plan = {q.quantity: q for q in plan_window(RUNTIMES["vllm"], LabelConfig(), WINDOW_SECONDS, ML)}
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, EXPORTER_TARGET)], honor_labels=honor_labels),
        [cases(plan[Quantity.BUSY_GPU_SECONDS].promql, busy_seconds(scrape))],
        eval_time=corpus.EVAL_TIME,
    )


def check_mig_and_shared(
    tmp_path: Path,
    scrape: Scrape,
    quantity: Quantity,
    per_pod: dict[str, float],
    scale: float,
    honor_labels: bool,
) -> None:
    """The MIG corpus read for one quantity: each MIG pod its own value per profile (the reader then weighs
    the profile: test_window.py), each of the two pods sharing a time-sliced GPU half of the GPU's value."""
    [query] = [
        q for q in plan_window(RUNTIMES["vllm"], LabelConfig(), WINDOW_SECONDS, ML) if q.quantity is quantity
    ]
    mig = ',GPU_I_PROFILE="3g.40gb"}'
    expected = [
        *((pod("ml", p).replace("}", mig), per_pod[p] * scale) for p in ("embed-a", "embed-b")),
        *((pod("ml", p), per_pod[p] / 2 * scale) for p in ("shared-a", "shared-b")),
    ]
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, EXPORTER_TARGET)], honor_labels=honor_labels),
        [cases(query.promql, expected)],
        eval_time=corpus.EVAL_TIME,
    )
    assert query.weight_label == "GPU_I_PROFILE"


@pytest.mark.parametrize("honor_labels", [False, True], ids=["exported-labels", "honor-labels"])
def test_mig_instances_and_time_sliced_copies_are_busy_for_their_part(
    tmp_path: Path, honor_labels: bool
) -> None:
    """A MIG instance's ratio is of the instance (weighed by its profile when read: test_window.py). Each
    pod's copy of a time-sliced GPU carries the whole GPU's ratio (0.48): split between the two copies, and
    the per-process utilisation beside it (with pod_uid) is not added on top."""
    scrape = corpus.load(corpus.DCGM_MIG_SCRAPE)
    ratio = {s.labels["pod"]: s.value for s in scrape.family("DCGM_FI_PROF_GR_ENGINE_ACTIVE")}
    assert ratio["shared-a"] == ratio["shared-b"] == 0.48
    check_mig_and_shared(tmp_path, scrape, Quantity.BUSY_GPU_SECONDS, ratio, WINDOW_SECONDS, honor_labels)


@pytest.mark.parametrize("honor_labels", [False, True], ids=["exported-labels", "honor-labels"])
def test_a_gpu_s_energy_is_shared_by_its_instances_and_pods(tmp_path: Path, honor_labels: bool) -> None:
    """dcgm-exporter repeats the whole GPU's energy on each MIG instance and on each pod's copy of a
    time-sliced GPU: a pod is charged its instance's share, or an even part of the shared GPU, never the
    whole GPU once per neighbour."""
    scrape = corpus.load(corpus.DCGM_MIG_SCRAPE)
    energy = {s.labels["pod"]: s.value for s in scrape.family("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")}
    assert energy["embed-a"] == energy["embed-b"] and energy["shared-a"] == energy["shared-b"]
    check_mig_and_shared(tmp_path, scrape, Quantity.ENERGY_JOULES, energy, 1 / 1000, honor_labels)


@pytest.mark.parametrize("signal", ["tensor", "sm"])
def test_a_stricter_busy_signal_is_read_or_reported_missing(tmp_path: Path, signal: str) -> None:
    """Tensor-pipe activity is in dcgm-exporter's default counters, SM activity is not: absent, it is no
    data, never replaced by the looser graphics-engine or utilisation figures."""
    scrape = corpus.load(corpus.DCGM_SCRAPE)
    field = {"tensor": "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "sm": "DCGM_FI_PROF_SM_ACTIVE"}[signal]
    held = [s.value for s in scrape.family(field) if s.labels.get("pod") == "chat-a"]
    labels = LabelConfig.from_modes(gpu_busy=signal)  # type: ignore[arg-type]
    [busy] = [
        q
        for q in plan_window(RUNTIMES["vllm"], labels, WINDOW_SECONDS, ML)
        if q.quantity is Quantity.BUSY_GPU_SECONDS
    ]
    assert busy.series == (field,)
    expected = [(pod("ml", "chat-a"), held[0] * WINDOW_SECONDS)] if held else []
    assert bool(held) == (signal == "tensor")
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, EXPORTER_TARGET)]),
        [cases(busy.promql, expected)],
        eval_time=corpus.EVAL_TIME,
    )


@pytest.mark.parametrize(
    ("overrides", "embed_a"),
    [({}, 3 / 7), ({"nvidia.com/mig-3g.40gb": 0.5}, 0.5)],
    ids=["mig-share", "mig-override"],
)
def test_kube_state_metrics_gpus_whole_mig_and_shared(
    tmp_path: Path, overrides: dict[str, float], embed_a: float
) -> None:
    """A MIG slice is its share of the GPU (3g of 7), a time-sliced replica the share configured for it.
    A GPU claimed through DRA has no resource request: kube-state-metrics cannot see it."""
    scrape = corpus.load(corpus.KUBE_STATE_SCRAPE)
    assert scrape.expect["ml/embed-a"]["gpus"] == pytest.approx(3 / 7)
    ksm_target = {"namespace": "monitoring", "pod": "kube-state-metrics-0", "container": "kube-state-metrics"}
    labels = LabelConfig.from_modes(gpu_resource_overrides={"nvidia.com/gpu.shared": 0.5, **overrides})
    plan = {q.quantity: q for q in plan_window(RUNTIMES["vllm"], labels, WINDOW_SECONDS, ML)}
    expected = [
        (pod("ml", "chat-a"), scrape.expect["ml/chat-a"]["gpus"]),
        (pod("ml", "embed-a"), embed_a),
        (pod("ml", "shared-a"), scrape.expect["ml/shared-a"]["gpus"]),
    ]
    # kube-state-metrics is scraped with honorLabels: its namespace/pod labels are the pods'.
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, ksm_target)], honor_labels=True),
        [
            cases(plan[Quantity.CURRENT_GPUS].promql, expected),
            cases(plan[Quantity.GPU_SECONDS].promql, [(p, g * WINDOW_SECONDS) for p, g in expected]),
        ],
        eval_time=corpus.EVAL_TIME,
    )


@pytest.mark.parametrize(
    ("gpu_labels", "honor_labels"),
    [("auto", False), ("auto", True), ("exported", False)],
    ids=["exported-labels", "honor-labels", "exported-mode"],
)
def test_gpus_allocated_through_dra_are_found_in_dcgm_exporter_s_series(
    tmp_path: Path, gpu_labels: GpuLabelMode, honor_labels: bool
) -> None:
    """A GPU claimed through DRA has no resource request, so kube-state-metrics cannot see it: dcgm-exporter
    (--kubernetes-enable-dra) labels the device's series with the pod. Two pods sharing one claim get a copy
    each and half the GPU; pods with a request are read from kube-state-metrics alone."""
    ksm, dra = corpus.load(corpus.KUBE_STATE_SCRAPE), corpus.load(corpus.DCGM_DRA_SCRAPE)
    assert not [
        s
        for s in ksm.family("kube_pod_container_resource_requests")
        if s.labels["pod"] == "dra-a" and "gpu" in s.labels["resource"]
    ]
    ksm_target = {"namespace": "monitoring", "pod": "kube-state-metrics-0", "container": "kube-state-metrics"}
    labels = LabelConfig.from_modes(gpu=gpu_labels, gpu_resource_overrides={"nvidia.com/gpu.shared": 0.5})
    plan = {q.quantity: q for q in plan_window(RUNTIMES["vllm"], labels, WINDOW_SECONDS, ML)}
    # kube-state-metrics' scrape expects dra-a's GPU too, though it cannot show it: the DRA scrape does.
    gpus = {who: figures["gpus"] for who, figures in (*ksm.expect.items(), *dra.expect.items())}
    expected = [(pod(*who.split("/")), g) for who, g in gpus.items()]
    assert (pod("ml", "dra-a"), 1.0) in expected and (pod("ml", "batch-b"), 0.5) in expected
    series = corpus.as_series([(ksm, ksm_target)], honor_labels=True)
    series += corpus.as_series([(dra, EXPORTER_TARGET)], honor_labels=honor_labels)
    evaluate(
        tmp_path,
        series,
        [
            cases(plan[Quantity.CURRENT_GPUS].promql, expected),
            cases(plan[Quantity.GPU_SECONDS].promql, [(p, g * WINDOW_SECONDS) for p, g in expected]),
            # Busy time keeps dcgm-exporter's labels (exported_* in the exported mode): same figures.
            *(
                [cases(plan[Quantity.BUSY_GPU_SECONDS].promql, busy_seconds(dra))]
                if gpu_labels == "auto"
                else []
            ),
        ],
        eval_time=corpus.EVAL_TIME,
    )


def test_a_gpu_shared_through_one_dra_claim_splits_its_energy(tmp_path: Path) -> None:
    """Each pod's copy of a shared DRA device carries the whole GPU's energy: each pod is charged half."""
    scrape = corpus.load(corpus.DCGM_DRA_SCRAPE)
    energy = {s.labels["pod"]: s.value for s in scrape.family(GPU_ENERGY_MILLIJOULES) if "pod" in s.labels}
    assert energy["batch-a"] == energy["batch-b"]
    [query] = [
        q
        for q in plan_window(RUNTIMES["vllm"], LabelConfig(), WINDOW_SECONDS, ML)
        if q.quantity is Quantity.ENERGY_JOULES
    ]
    expected = [(pod("ml", p), energy[p] / 1000 / (2 if p.startswith("batch") else 1)) for p in energy]
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, EXPORTER_TARGET)]),
        [cases(query.promql, expected)],
        eval_time=corpus.EVAL_TIME,
    )


# --- the simulator against the same scrapes ------------------------------------------------------------


SIMULATED = [*sorted(corpus.RUNTIME_SCRAPES), "triton-ensemble"]


def simulated(name: str) -> tuple[dict[str, str], list[Sample], int]:
    """A simulated pod's scrape after 300 requests and one dropped, and how many were delivered."""
    runtime, _, layout = name.partition("-")
    p = profile(runtime).model_copy(update={"ensemble": layout == "ensemble"})
    exporter = RuntimeExporter.for_pod(p, TARGET)
    sampler = RequestSampler(p, seed=5)
    requests = [sampler.served(0.5, 1) for _ in range(300)] + [sampler.dropped()]
    for r in requests:
        exporter.record(r)
    exporter.set_load(Load(running=3, waiting=1, utilisation=0.5))
    families, samples = corpus.parse(render(exporter.families()))
    return families, samples, sum(r.ok for r in requests)


@pytest.mark.parametrize("name", SIMULATED)
def test_the_simulator_exports_what_upstream_exports(name: str) -> None:
    """Same family names, types and label names as the upstream scrape; every family a preset reads that
    upstream exports, the simulator exports too, so the lab exercises it."""
    runtime = name.partition("-")[0]
    reference = corpus.load(corpus.RUNTIME_SCRAPES[runtime])
    families, samples, _ = simulated(name)
    for family, kind in families.items():
        if family not in reference.families:
            # The corpus keeps what a reader of requests, tokens and time needs; load gauges may go beyond it.
            assert kind == "gauge", f"the simulator exports {family} ({kind}), which {runtime} does not"
            continue
        assert kind == reference.families[family], family
        simulated_labels = {k for s in samples if s.name.startswith(family) for k in s.labels}
        assert simulated_labels - set(TARGET) - {"le"} == reference.label_names(family), family
    plan = plan_window(
        RUNTIMES[runtime], LabelConfig(), WINDOW_SECONDS, ML, latency_metrics=("e2e", "ttft", "itl")
    )
    read = {name for q in plan for name in q.series}
    exported = {s.name for s in samples}
    for name in read:
        if name in {s.name for s in reference.samples}:
            assert name in exported, (
                f"{runtime}: the preset reads {name}, which the simulator does not export"
            )


def test_the_simulated_ensemble_counts_like_triton(tmp_path: Path) -> None:
    """The ensemble pod's models are upstream's, each counting the requests it runs; named, the client-facing
    model gives the delivered requests exactly."""
    families, samples, delivered = simulated("triton-ensemble")
    reference = corpus.load(corpus.RUNTIME_SCRAPES["triton"])
    models = {s.labels["model"] for s in samples if s.name == "nv_inference_request_success"}
    assert models == {s.labels["model"] for s in reference.family("nv_inference_request_success")}
    scrape = Scrape(Path("simulated"), "", "", "", "", (), {}, families, tuple(samples))
    check_left_out(tmp_path, scrape, models=len(models))
    check_counts(tmp_path, preset_for("triton", models=["ensemble"]), scrape, {Quantity.DELIVERED: delivered})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Time-sliced: the `vgpu` copies of utilisation are per process, each pod its own part (45 and 15 of
        # the device's 60), read as they are; MIG instances export no utilisation at all.
        (corpus.DCGM_MIG_SCRAPE, {"shared-a": 0.45, "shared-b": 0.15}),
        # DRA: every copy repeats the device's utilisation (58 %): split between the two pods sharing it.
        (corpus.DCGM_DRA_SCRAPE, {"dra-a": 0.79, "batch-a": 0.29, "batch-b": 0.29}),
    ],
    ids=["time-sliced", "dra"],
)
def test_utilisation_stands_in_where_profiling_is_off(
    tmp_path: Path, name: str, expected: dict[str, float]
) -> None:
    scrape = without(corpus.load(name), "DCGM_FI_PROF_")
    [busy] = [
        q
        for q in plan_window(RUNTIMES["vllm"], LabelConfig(), WINDOW_SECONDS, ML)
        if q.quantity is Quantity.BUSY_GPU_SECONDS
    ]
    evaluate(
        tmp_path,
        corpus.as_series([(scrape, EXPORTER_TARGET)]),
        [cases(busy.promql, [(pod("ml", p), share * WINDOW_SECONDS) for p, share in expected.items()])],
        eval_time=corpus.EVAL_TIME,
    )


def test_a_pod_gone_before_the_window_ends_keeps_its_part_of_a_shared_gpu_s_energy(tmp_path: Path) -> None:
    """batch-b's copy of the shared GPU's energy stops at 6m (the pod deleted); over the window ending at 10m
    it still had its part: the copies are counted over the window, not at its end."""
    scrape = corpus.load(corpus.DCGM_DRA_SCRAPE)
    series = corpus.as_series([(scrape, EXPORTER_TARGET)])
    energy = [
        i for i, (sel, _) in enumerate(series) if sel.startswith(GPU_ENERGY_MILLIJOULES) and "batch-b" in sel
    ]
    [i] = energy
    per_step = float(series[i][1].split("+")[1].split("x")[0])
    series[i] = (series[i][0], f"0+{per_step!r}x24 stale")  # 0 .. 6m, then gone
    [query] = [
        q
        for q in plan_window(RUNTIMES["vllm"], LabelConfig(), WINDOW_SECONDS, ML)
        if q.quantity is Quantity.ENERGY_JOULES
    ]
    # Samples at 5m15s .. 6m inside the window: 3 steps, extrapolated by 15 s to its start and 7.5 s past
    # the last sample (increase()), half of it for batch-b; batch-a's whole window, half of it.
    batch_b = 3 * per_step * 67.5 / 45 / 2 / 1000
    batch_a = 20 * per_step / 2 / 1000
    dra_a = (
        next(s.value for s in scrape.family(GPU_ENERGY_MILLIJOULES) if s.labels.get("pod") == "dra-a") / 1000
    )
    evaluate(
        tmp_path,
        series,
        [
            cases(
                query.promql,
                [
                    (pod("ml", "dra-a"), dra_a),
                    (pod("ml", "batch-a"), batch_a),
                    (pod("ml", "batch-b"), batch_b),
                ],
            )
        ],
        eval_time=corpus.EVAL_TIME,
    )
