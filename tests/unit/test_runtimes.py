"""Runtime presets: every quantity renders to PromQL over series the exporters really expose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from costslo.metrics.promql import quote
from costslo.metrics.queries import plan_window
from costslo.runtimes import (
    COUNTER_QUANTITIES,
    DESCRIPTIONS,
    LATENCY_METRICS,
    RUNTIMES,
    CustomQueryError,
    LabelConfig,
    MeanLatency,
    PodLabels,
    Quantity,
    custom_preset,
    custom_query_keys,
    mig_compute_share,
    parse_gpu_resource,
    preset_for,
    validate_custom_query,
)
from tests.support import corpus
from tests.support.promtool import Case, evaluate

pytestmark = pytest.mark.unit

ML = {"ml"}

# Series the presets read that the corpus scrapes do not show: older names of renamed histograms (served by
# releases before the one each scrape follows) and Triton's first-response histogram, which exists only with
# --metrics-config histogram_latencies=true.
OLDER_OR_OPTIONAL = {
    "vllm:time_per_output_token_seconds": "histogram",
    "sglang:time_per_output_token_seconds": "histogram",
    "nv_inference_first_response_histogram_ms": "histogram",
}

_SELECTOR_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_NAME_REGEX = re.compile(r'__name__=~"([^"]*)"')


def families(runtime: str) -> dict[str, str]:
    """Series family -> type as upstream exports it: the runtime's corpus scrape and the shared exporters'."""
    known: dict[str, str] = {}
    scrapes = (corpus.RUNTIME_SCRAPES[runtime], *corpus.RUNTIME_VARIANTS.get(runtime, ()))
    for name in (*scrapes, corpus.DCGM_SCRAPE, corpus.KUBE_STATE_SCRAPE):
        known.update(corpus.load(name).families)
    known.update(OLDER_OR_OPTIONAL)
    return known


def series_names(promql: str) -> set[str]:
    names = set(_SELECTOR_NAME.findall(promql))
    for alternatives in _NAME_REGEX.findall(promql):
        names.update(n.replace("\\\\", "") for n in alternatives.split("|"))
    return names


def family_of(name: str, known: dict[str, str]) -> tuple[str, str]:
    """(family, suffix) for a sample name: histograms and summaries expose _bucket, _sum and _count."""
    if name in known:
        return name, ""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and known.get(name.removesuffix(suffix)) in ("histogram", "summary"):
            return name.removesuffix(suffix), suffix
    raise AssertionError(f"{name} is not a series the exporters expose")


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_quantity_reads_series_the_exporters_expose(runtime: str) -> None:
    known = families(runtime)
    plan = plan_window(RUNTIMES[runtime], LabelConfig(), 3600, ML, latency_metrics=LATENCY_METRICS)
    assert plan, runtime
    for query in plan:
        names = series_names(query.promql)
        assert names, query.promql
        for name in names:
            family, suffix = family_of(name, known)
            kind = known[family]
            if "increase(" in query.promql and name in query.series:
                # increase() only on counters or a histogram's cumulative _sum/_count
                assert kind == "counter" or suffix in ("_sum", "_count"), (query.quantity, name)
            if query.part == "buckets" and name in query.series:
                assert suffix == "_bucket" and "rate(" in query.promql, (query.quantity, name)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_runtime_answers_the_essentials(runtime: str) -> None:
    preset = RUNTIMES[runtime]
    for quantity in (Quantity.FINISHED, Quantity.DELIVERED, Quantity.FAILED, Quantity.OUTPUT_TOKENS):
        assert preset.supports(quantity), (runtime, quantity)
    assert "e2e" in preset.latency
    quantities = {
        q.quantity for q in plan_window(preset, LabelConfig(), 300, ML, latency_metrics=LATENCY_METRICS)
    }
    for quantity in Quantity:
        assert (quantity in quantities) == preset.supports(quantity), (runtime, quantity)
        assert quantity in DESCRIPTIONS


_HANDLERS = (
    "/classify|/invocations|/pooling|/rerank|/score|/v1/audio/transcriptions|/v1/audio/translations|"
    "/v1/chat/completions|/v1/completions|/v1/embeddings|/v1/messages|/v1/rerank|/v1/responses|/v1/score|"
    "/v2/rerank"
)
_VLLM_REQUESTS = (
    f'(sum by (namespace, pod) (increase(http_requests_total{{namespace="ml",handler=~"{_HANDLERS}"}}[1h])) '
    'or sum by (namespace, pod) (increase(vllm:request_success_total{namespace="ml"}[1h])))'
)
_VLLM_DELIVERED = (
    "sum by (namespace, pod) (increase(vllm:request_success_total"
    '{namespace="ml",finished_reason=~"length|repetition|stop"}[1h]))'
)
VLLM_1H = {
    Quantity.FINISHED: _VLLM_REQUESTS,
    Quantity.DELIVERED: _VLLM_DELIVERED,
    Quantity.FAILED: f"clamp_min({_VLLM_REQUESTS} - {_VLLM_DELIVERED}, 0)",
    Quantity.INPUT_TOKENS: 'sum by (namespace, pod) (increase(vllm:prompt_tokens_total{namespace="ml"}[1h]))',
    Quantity.OUTPUT_TOKENS: (
        'sum by (namespace, pod) (increase(vllm:generation_tokens_total{namespace="ml"}[1h]))'
    ),
    Quantity.LATENCY_E2E: (
        'sum by (namespace, pod, le) (rate(vllm:e2e_request_latency_seconds_bucket{namespace="ml"}[1h]))'
    ),
    Quantity.REPLICA_SECONDS: (
        'sum_over_time((max by (namespace, pod) (kube_pod_info{node!="",namespace="ml"}) '
        'unless on (namespace, pod) (kube_pod_status_phase{phase=~"Failed|Succeeded",namespace="ml"} == 1))'
        "[1h:5s]) * 3600 / scalar(count_over_time(vector(1)[1h:5s]))"
    ),
}


def test_gpus_are_every_gpu_resource_at_its_share() -> None:
    plan = {q.quantity: q.promql for q in plan_window(RUNTIMES["vllm"], LabelConfig(), 3600, ML)}
    current = plan[Quantity.CURRENT_GPUS]
    assert current.startswith(
        "(sum by (namespace, pod) (max by (namespace, pod, container, resource) "
        '(kube_pod_container_resource_requests{resource="nvidia_com_gpu",node!="",namespace="ml"}) or '
    )
    finished = (
        'unless on (namespace, pod) (kube_pod_status_phase{phase=~"Failed|Succeeded",namespace="ml"} == 1)'
    )
    # A pod without a GPU request: the devices dcgm-exporter maps to it through DRA; finished pods neither.
    assert ") or on (namespace, pod) (sum by (namespace, pod, GPU_I_PROFILE) (" in current
    assert current.endswith(f")) {finished}")
    assert 'resource=~"nvidia_com_mig_3g_.*",node!="",namespace="ml"}) * 0.42857142857142855' in current
    assert plan[Quantity.GPU_SECONDS] == (
        f"sum_over_time(({current})[1h:5s]) * 3600 / scalar(count_over_time(vector(1)[1h:5s]))"
    )
    shared = LabelConfig.from_modes(gpu_resource_overrides={"nvidia.com/gpu.shared": 0.25})
    with_shared = next(
        q.promql
        for q in plan_window(RUNTIMES["vllm"], shared, 300, ML)
        if q.quantity is Quantity.CURRENT_GPUS
    )
    assert 'resource="nvidia_com_gpu_shared",node!="",namespace="ml"}) * 0.25 or' in with_shared


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("nvidia.com/gpu.shared=0.25", ("nvidia.com/gpu.shared", 0.25)),
        (" amd.com/gpu =1", ("amd.com/gpu", 1.0)),
    ],
)
def test_gpu_resource_flags(text: str, parsed: tuple[str, float]) -> None:
    assert parse_gpu_resource(text) == parsed


@pytest.mark.parametrize("text", ["nvidia.com/gpu.shared", "=1", "x=0", "x=-1", "x=inf", "x=nan", "x=a"])
def test_bad_gpu_resource_flags_say_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="NAME=GPUS"):
        parse_gpu_resource(text)


def test_vllm_queries() -> None:
    plan = {q.quantity: q.promql for q in plan_window(RUNTIMES["vllm"], LabelConfig(), 3600, ML)}
    for quantity, expected in VLLM_1H.items():
        assert plan[quantity] == expected, quantity


def test_renamed_histogram_falls_back_per_pod() -> None:
    plan = plan_window(RUNTIMES["vllm"], LabelConfig(), 300, ML, latency_metrics=["itl"])
    [itl] = [q for q in plan if q.quantity is Quantity.LATENCY_ITL]
    new = 'sum by (namespace, pod, le) (rate(vllm:inter_token_latency_seconds_bucket{namespace="ml"}[5m]))'
    old = 'sum by (namespace, pod, le) (rate(vllm:time_per_output_token_seconds_bucket{namespace="ml"}[5m]))'
    assert itl.promql == f"{new} or ({old} unless on (namespace, pod) ({new}))"


def test_vllm_failures_are_every_request_the_engine_did_not_deliver() -> None:
    plan = {q.quantity: q for q in plan_window(RUNTIMES["vllm"], LabelConfig(), 300, ML)}
    assert 'finished_reason=~"length|repetition|stop"' in plan[Quantity.DELIVERED].promql
    failed = plan[Quantity.FAILED].promql
    assert failed.startswith("clamp_min((sum by (namespace, pod) (increase(http_requests")
    assert "finished_reason" not in plan[Quantity.FINISHED].promql
    assert plan[Quantity.FAILED].series == ("http_requests_total", "vllm:request_success_total")


def test_tgi_failures_count_zero_before_the_first_one() -> None:
    plan = {q.quantity: q.promql for q in plan_window(RUNTIMES["tgi"], LabelConfig(), 300, ML)}
    assert plan[Quantity.FAILED] == (
        '(sum by (namespace, pod) (increase(tgi_request_failure{namespace="ml"}[5m])) '
        'or sum by (namespace, pod) (increase(tgi_request_success{namespace="ml"}[5m])) * 0)'
    )
    success = 'sum by (namespace, pod) (increase(tgi_request_success{namespace="ml"}[5m]))'
    failure = 'sum by (namespace, pod) (increase(tgi_request_failure{namespace="ml"}[5m]))'
    # One family at a time: increase() drops the name, and families with the same labels would collide.
    assert plan[Quantity.FINISHED] == f"({success} + {failure} or {success} or {failure})"
    assert plan[Quantity.INPUT_TOKENS].startswith(
        "sum by (namespace, pod) (increase(tgi_request_input_length_sum"
    )


def test_sglang_delivered_never_subtracts_aborts() -> None:
    plan = {q.quantity: q.promql for q in plan_window(RUNTIMES["sglang"], LabelConfig(), 300, ML)}
    delivered = "sglang:request_time_per_output_token_seconds_count"
    assert plan[Quantity.DELIVERED] == (
        f'sum by (namespace, pod) (increase({delivered}{{namespace="ml"}}[5m]))'
    )
    assert " - " not in plan[Quantity.FINISHED] + plan[Quantity.DELIVERED] + plan[Quantity.FAILED]


def test_triton_latency_is_a_mean_in_seconds() -> None:
    preset = preset_for("triton", models=["ensemble"])
    e2e = preset.latency["e2e"]
    assert isinstance(e2e, MeanLatency)
    assert "mean, not quantile" in e2e.note
    plan = [q for q in plan_window(preset, LabelConfig(), 300, ML) if q.quantity is Quantity.LATENCY_E2E]
    assert [(q.part, q.promql) for q in plan] == [
        (
            "mean_total",
            "sum by (namespace, pod) "
            '(increase(nv_inference_request_duration_us{namespace="ml",model="ensemble"}[5m])) / 1000000',
        ),
        (
            "mean_count",
            "sum by (namespace, pod) "
            '(increase(nv_inference_request_success{namespace="ml",model="ensemble"}[5m]))',
        ),
    ]
    finished = next(q for q in plan_window(preset, LabelConfig(), 300, ML) if q.quantity is Quantity.FINISHED)
    success = 'increase(nv_inference_request_success{namespace="ml",model="ensemble"}[5m])'
    assert finished.promql.startswith(f"(sum by (namespace, pod) ({success}) + ")
    assert not preset.supports(Quantity.PREFILL_SECONDS)


def test_a_triton_pod_of_several_models_is_read_for_the_named_ones_only() -> None:
    unnamed = {q.quantity: q for q in plan_window(RUNTIMES["triton"], LabelConfig(), 300, ML)}
    guard = (
        "unless on (namespace, pod) (count by (namespace, pod) (count by (namespace, pod, model) "
        '(last_over_time(nv_inference_request_success{namespace="ml"}[5m]))) > 1))'
    )
    assert unnamed[Quantity.FINISHED].promql.endswith(guard)
    # The delivered answer also names each pod left out, with how many models it served.
    several = guard.removeprefix("unless on (namespace, pod) ").removesuffix(")")
    assert unnamed[Quantity.DELIVERED].promql.endswith(
        f'{guard} or label_replace({several}, "costslo_several_models", "true", "", ""))'
    )
    assert "spec.serving.models" in unnamed[Quantity.DELIVERED].hint
    # Token lengths come from the tensorrt_llm model alone, whichever model the clients call.
    assert "unless" not in unnamed[Quantity.INPUT_TOKENS].promql
    named = {
        q.quantity: q for q in plan_window(preset_for("triton", models=["ensemble"]), LabelConfig(), 300, ML)
    }
    assert "unless" not in named[Quantity.DELIVERED].promql
    assert "model" not in named[Quantity.INPUT_TOKENS].promql
    assert preset_for("triton", models=["b", "a", "a"]).key == "triton[a,b]"
    assert RUNTIMES["triton"].key == "triton"
    # vLLM's HTTP counter names no model: with models named, requests are the engine's count of them.
    vllm = {
        q.quantity: q.promql for q in plan_window(preset_for("vllm", models=["chat"]), LabelConfig(), 300, ML)
    }
    assert "http_requests_total" not in vllm[Quantity.FINISHED] + vllm[Quantity.FAILED]
    assert 'vllm:request_success_total{namespace="ml",model_name="chat"}' in vllm[Quantity.FINISHED]
    with pytest.raises(ValueError, match="tgi series carry no model label"):
        preset_for("tgi", models=["x"])
    with pytest.raises(CustomQueryError, match="models are not read for runtime custom"):
        preset_for(
            "custom", {"finished": "a{$__pods}[$__window]", "delivered": "b{$__pods}[$__window]"}, ["x"]
        )


def test_gpu_busy_prefers_the_profiling_ratio_per_gpu() -> None:
    labels = LabelConfig.from_modes(gpu="exported")
    [busy] = [
        q for q in plan_window(RUNTIMES["vllm"], labels, 300, ML) if q.quantity is Quantity.BUSY_GPU_SECONDS
    ]
    sel = 'exported_namespace="ml",exported_pod!=""'
    dev = "(gpu, UUID, uuid, GPU_I_ID, Hostname, hostname)"
    gr, util = "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"

    def split(name: str, read: str = "{}", markers: tuple[str, ...] = ("vgpu", "dra_driver_name")) -> str:
        # A time-sliced GPU's copy per pod (vgpu) and a DRA device's copy per pod: each an even part.
        whole = read.format(name + "{" + ",".join([sel, *(f'{m}=""' for m in markers)]) + "}")
        parts = [
            read.format(name + "{" + f'{sel},{m}!=""' + "}")
            + f' / on {dev} group_left count by {dev} ({name}{{{m}!=""}})'
            for m in markers
        ]
        return " or ".join([whole, *parts])

    # Utilisation's vgpu copies are per process (each pod its own part): only DRA copies are split.
    util_split = split(util, "{} / 100", ("dra_driver_name",))
    assert busy.promql == (
        "sum_over_time((sum by (exported_namespace, exported_pod, GPU_I_PROFILE) ("
        f"{split(gr)} or (({util_split}) unless on {dev} {gr}{{{sel}}})"
        "))[5m:5s]) * 300 / scalar(count_over_time(vector(1)[5m:5s]))"
    )
    assert busy.group == PodLabels("exported_namespace", "exported_pod")
    # A MIG instance's ratio is of the instance: the answer keeps its profile to weigh it by its share.
    assert busy.weight_label == "GPU_I_PROFILE"


@pytest.mark.parametrize(
    ("profile", "share"),
    [
        ("", 1.0),
        ("3g.40gb", 3 / 7),
        ("1g.10gb+me", 1 / 7),
        ("7g.80gb", 1.0),
        ("1g.6gb", 1 / 4),
        ("4g.24gb", 1.0),
        ("2g.12gb+me", 2 / 4),
        ("1g.12gb", 1 / 7),
        ("odd", 1.0),
    ],
)
def test_a_mig_instance_is_its_share_of_the_gpu(profile: str, share: float) -> None:
    assert mig_compute_share(profile) == pytest.approx(share)


def test_gpu_auto_mode_takes_the_first_pod_label_a_series_carries() -> None:
    [busy] = [
        q
        for q in plan_window(RUNTIMES["vllm"], LabelConfig(), 300, ML)
        if q.quantity is Quantity.BUSY_GPU_SECONDS
    ]
    text = busy.promql
    assert 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{exported_namespace="ml",exported_pod!=""}' in text
    assert 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{pod_namespace="ml",pod_name!="",exported_pod=""}' in text
    assert 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace="ml",pod!="",exported_pod="",pod_name=""}' in text
    # exported_* is applied outermost, so it wins over pod_namespace/pod_name.
    assert text.index('"exported_pod", "(.+)")') > text.index('"pod_name", "(.+)")')
    assert busy.group == PodLabels("namespace", "pod")


def test_kubernetes_sd_labels() -> None:
    labels = LabelConfig.from_modes(runtime="kubernetes-sd", gpu="old-namespace")
    plan = {q.quantity: q for q in plan_window(RUNTIMES["vllm"], labels, 300, ML)}
    finished = plan[Quantity.DELIVERED]
    assert finished.promql == (
        "sum by (kubernetes_namespace, kubernetes_pod_name) (increase(vllm:request_success_total"
        '{kubernetes_namespace="ml",finished_reason=~"length|repetition|stop"}[5m]))'
    )
    assert finished.group == PodLabels("kubernetes_namespace", "kubernetes_pod_name")
    assert plan[Quantity.BUSY_GPU_SECONDS].group == PodLabels("pod_namespace", "pod_name")
    assert "label_replace" not in plan[Quantity.BUSY_GPU_SECONDS].promql


def test_label_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="label name"):
        PodLabels("namespace", "pod-name")
    with pytest.raises(ValueError, match="different labels"):
        PodLabels("pod", "pod")
    with pytest.raises(ValueError, match="unknown DCGM label mode"):
        LabelConfig.from_modes(gpu="guess")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        LabelConfig(gpu=())


def test_the_number_of_queries_does_not_grow_with_the_scope() -> None:
    preset = RUNTIMES["vllm"]
    one = plan_window(preset, LabelConfig(), 300, {"ml"}, latency_metrics=LATENCY_METRICS)
    many = plan_window(
        preset, LabelConfig(), 300, {f"team-{i}" for i in range(200)}, latency_metrics=LATENCY_METRICS
    )
    everywhere = plan_window(preset, LabelConfig(), 300, None, latency_metrics=LATENCY_METRICS)
    assert len(one) == len(many) == len(everywhere)
    assert 'namespace!=""' in everywhere[0].promql


def test_hostile_namespace_cannot_escape_its_matcher() -> None:
    plan = plan_window(RUNTIMES["vllm"], LabelConfig(), 300, {'ml"} or vector(1) #'})
    assert plan[0].promql.endswith(
        "or sum by (namespace, pod) "
        '(increase(vllm:request_success_total{namespace="ml\\"} or vector(1) #"}[5m])))'
    )


def test_window_and_step() -> None:
    plan = {q.quantity: q.promql for q in plan_window(RUNTIMES["vllm"], LabelConfig(), 86400, ML)}
    assert "[1d" not in plan[Quantity.GPU_SECONDS]
    assert "[24h:2m]) * 86400 / scalar(count_over_time(vector(1)[24h:2m]))" in plan[Quantity.GPU_SECONDS]
    with pytest.raises(ValueError, match="cannot exceed the window"):
        plan_window(RUNTIMES["vllm"], LabelConfig(), 60, ML, step_seconds=120)
    with pytest.raises(ValueError, match="selects nothing"):
        plan_window(RUNTIMES["vllm"], LabelConfig(), 60, set())


# --- custom runtime -------------------------------------------------------------------------------------

CUSTOM = {
    "finished": "increase(app_requests_total{$__pods}[$__window])",
    "delivered": 'increase(app_requests_total{$__pods, code=~"2.."}[$__window])',
    "output_tokens": 'increase(app_tokens_total{$__pods,kind="out"}[$__window])',
    "latency_e2e": "rate(app_latency_seconds_bucket{$__pods}[$__window])",
    "latency_ttft_sum": "increase(app_ttft_seconds_sum{$__pods}[$__window])",
    "latency_ttft_count": "increase(app_ttft_seconds_count{$__pods}[$__window])",
}


def test_custom_queries_are_wrapped_per_pod() -> None:
    preset = custom_preset(CUSTOM)
    plan = {
        (q.quantity, q.part): q.promql
        for q in plan_window(preset, LabelConfig(), 300, {"a", "b"}, latency_metrics=LATENCY_METRICS)
    }
    assert plan[(Quantity.FINISHED, "value")] == (
        'sum by (namespace, pod) (increase(app_requests_total{namespace=~"a|b"}[5m]))'
    )
    assert plan[(Quantity.DELIVERED, "value")] == (
        'sum by (namespace, pod) (increase(app_requests_total{namespace=~"a|b", code=~"2.."}[5m]))'
    )
    # Without a failed query, failed = finished - delivered.
    assert plan[(Quantity.FAILED, "value")] == (
        f"{plan[(Quantity.FINISHED, 'value')]} - {plan[(Quantity.DELIVERED, 'value')]}"
    )
    assert plan[(Quantity.LATENCY_E2E, "buckets")] == (
        'sum by (namespace, pod, le) (rate(app_latency_seconds_bucket{namespace=~"a|b"}[5m]))'
    )
    assert (Quantity.LATENCY_TTFT, "mean_total") in plan
    assert (Quantity.INPUT_TOKENS, "value") not in plan
    assert not preset.supports(Quantity.INPUT_TOKENS)


def test_custom_placeholders_expand_with_hostile_namespaces() -> None:
    plan = plan_window(custom_preset(CUSTOM), LabelConfig(), 300, {'x"}[1h]) or up{a="'})
    assert 'app_requests_total{namespace="x\\"}[1h]) or up{a=\\""}[5m]' in plan[0].promql


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("finished", "", "is empty"),
        (
            "finished",
            "increase(app_requests_total[$__window])",
            "must select the pods in scope with \\$__pods",
        ),
        ("finished", "increase(app_requests_total{$__pods}[1h])", "\\[\\$__window\\]"),
        ("finished", "increase(app_requests_total[$__window]) and $__pods", "inside a selector's braces"),
        ("finished", "increase(app_requests_total{$__pods}) $__window", "as a range"),
        ("finished", "increase(app_requests_total{$__pods}[$__range])", "unknown placeholder \\$__range"),
        ("finished", "increase(app_requests_total{$__pods}[$__window]", "missing a closing"),
        ("finished", "increase(app_requests_total{$__pods}[$__window]))", "unmatched"),
        ("finished", 'increase(app{$__pods}[$__window]) + on() vector(1) == "b', "unterminated"),
        ("finished", "increase(app{$__pods}[$__window]) # note", "comment"),
        ("finished", 'increase(app{$__pods,a="$__window"}[$__window])', "inside a string"),
    ],
)
def test_bad_custom_queries_say_how_to_fix_them(key: str, text: str, message: str) -> None:
    with pytest.raises(CustomQueryError, match=message):
        validate_custom_query(key, text)


# Attacks from namespace team-a on team-b's series, each refused with the part that reaches outside.
CROSS_NAMESPACE = [
    # The one that worked before: team-b's count relabelled as team-a's pod.
    (
        "increase(x{$__pods}[$__window]) or label_replace(label_replace(sum(increase("
        'vllm:request_success_total{namespace="team-b"}[$__window])),"namespace","team-a","",""),'
        '"pod","t-abc-1","","")',
        "rewrites the label 'pod'",
    ),
    # The same without the relabelling: its selector alone is refused.
    (
        "increase(x{$__pods}[$__window]) or sum(increase("
        'vllm:request_success_total{namespace="team-b"}[$__window]))',
        "vllm:request_success_total is not limited",
    ),
    ('increase(x{$__pods}[$__window]) + on() group_left sum(y{namespace="team-b"})', "y is not limited"),
    ("increase(x{$__pods}[$__window]) * on() group_left scalar(sum(z))", "z is not limited"),
    ('increase({__name__="x",$__pods}[$__window]) or {namespace="team-b"}', "a selector is not limited"),
    ('increase(x{$__pods or namespace="team-b"}[$__window])', "each `or` group"),
    ("max_over_time((sum(x{$__pods}) + sum(up))[$__window:1m])", "up is not limited"),
    ('label_replace(increase(x{$__pods}[$__window]), "namespace", "team-b", "", "")', "rewrites the label"),
    ('label_join(increase(x{$__pods}[$__window]), "pod", ",", "a")', "rewrites the label 'pod'"),
    ('count_values("exported_pod", increase(x{$__pods}[$__window]))', "count_values"),
    ('info(increase(x{$__pods}[$__window]), {k8s_cluster_name=~".+"})', "info()"),
    ("increase(x{$__pods}[$__window]) +", "not PromQL"),
    # Writing the placeholder's stand-in by hand: a reserved label, never taken for $__pods.
    (
        "increase(foo{$__pods}[$__window]) * 0 + scalar(sum(increase("
        'bar_total{__costslo_pods__="",namespace="victim"}[$__window])))',
        "reserved label __costslo_pods__",
    ),
    # The parser's own panics and deep nesting are a refused query, never an exception that escapes.
    ("increase(foo{$__pods}[$__window] offset NaN)", "not PromQL"),
    ("-" * 1000 + "increase(foo{$__pods}[$__window])", "nests deeper than 64 levels"),
]


@pytest.mark.parametrize(("text", "message"), CROSS_NAMESPACE, ids=range(len(CROSS_NAMESPACE)))
def test_custom_queries_cannot_reach_outside_their_namespace(text: str, message: str) -> None:
    with pytest.raises(CustomQueryError, match=re.escape(message)):
        validate_custom_query("finished", text)


def test_confined_custom_queries_may_still_join_and_relabel_their_own_series() -> None:
    for text in (
        "sum by (namespace, pod) (increase(x{$__pods}[$__window])) * on (namespace, pod) group_left (model) "
        "max by (namespace, pod, model) (y{$__pods})",
        'label_replace(increase(x{$__pods}[$__window]), "route", "$1", "handler", "/v1/(.*)")',
        'increase(x{$__pods, namespace=~".+"}[$__window]) unless on (pod) (z{$__pods} == 0)',
    ):
        assert validate_custom_query("finished", text).text == text


def test_strings_may_hold_dollars_and_hashes() -> None:
    text = 'label_replace(increase(app{$__pods,a="#1"}[$__window]), "x", "$1", "pod", "(.*)")'
    assert validate_custom_query("finished", text).text == text


def test_custom_preset_checks_keys() -> None:
    with pytest.raises(CustomQueryError, match="needs queries for delivered"):
        custom_preset({"finished": CUSTOM["finished"]})
    with pytest.raises(CustomQueryError, match="unknown custom query key\\(s\\) requests"):
        custom_preset({**CUSTOM, "requests": CUSTOM["finished"]})
    with pytest.raises(CustomQueryError, match="not both"):
        custom_preset(
            {**CUSTOM, "latency_e2e_sum": CUSTOM["finished"], "latency_e2e_count": CUSTOM["finished"]}
        )
    with pytest.raises(CustomQueryError, match="go together"):
        custom_preset(
            {
                "finished": CUSTOM["finished"],
                "delivered": CUSTOM["delivered"],
                "latency_itl_sum": CUSTOM["finished"],
            }
        )
    assert set(custom_query_keys()) >= {q.value for q in COUNTER_QUANTITIES}


def test_preset_for() -> None:
    assert preset_for("vllm") is RUNTIMES["vllm"]
    assert preset_for("custom", CUSTOM).name == "custom"
    with pytest.raises(CustomQueryError, match="needs queries"):
        preset_for("custom")
    with pytest.raises(CustomQueryError, match="only read for runtime custom"):
        preset_for("vllm", CUSTOM)
    with pytest.raises(ValueError, match="unknown runtime 'onnx'"):
        preset_for("onnx")


# --- evaluated by Prometheus' engine (promtool, offline) ------------------------------------------------


def test_every_rendered_query_is_valid_promql(tmp_path: Path) -> None:
    cases: list[Case] = []
    for preset in [*RUNTIMES.values(), custom_preset(CUSTOM)]:
        for runtime_mode, gpu_mode in (
            ("pod-monitor", "auto"),
            ("kubernetes-sd", "exported"),
            ("pod-monitor", "old-namespace"),
        ):
            labels = LabelConfig.from_modes(runtime_mode, gpu_mode)  # type: ignore[arg-type]
            for scope in (ML, None, {"a", 'b"}.*'}):
                plan = plan_window(preset, labels, 3600, scope, latency_metrics=LATENCY_METRICS)
                cases += [(q.promql, []) for q in plan]
    evaluate(tmp_path, [("up", "1x10")], cases)


def _labels(**labels: str) -> str:
    return "{" + ",".join(f"{k}={quote(v)}" for k, v in labels.items()) + "}"


def test_vllm_window_measures_what_the_series_say(tmp_path: Path) -> None:
    """Every vLLM window quantity on synthetic series sampled every 15 s, evaluated at 10m over 5m."""
    pod_a = {"namespace": "ml", "pod": "a", "container": "vllm"}
    pod_b, pod_c = {**pod_a, "pod": "b"}, {**pod_a, "pod": "c"}
    exporter = {"namespace": "gpu-operator", "pod": "dcgm-exporter-x", "container": "exporter"}
    exported_a = {"exported_namespace": "ml", "exported_pod": "a"}
    series: list[tuple[str, str]] = [
        # 5 requests per scrape: 3 stop, 1 length, 1 abort -> 100 finished, 80 delivered, 20 failed in 5 min
        *[
            (f"vllm:request_success_total{_labels(**pod_a, finished_reason=r)}", f"0+{n}x100")
            for r, n in (("stop", 3), ("length", 1), ("abort", 1))
        ],
        (f"vllm:prompt_tokens_total{_labels(**pod_a)}", "0+300x100"),
        # cache hits: a under the current name, b only under the older one, c under both (counted once)
        (f"vllm:prompt_tokens_cached_total{_labels(**pod_a)}", "0+200x100"),
        (f"vllm:prefix_cache_hits_total{_labels(**pod_b)}", "0+50x100"),
        (f"vllm:prompt_tokens_cached_total{_labels(**pod_c)}", "0+10x100"),
        (f"vllm:prefix_cache_hits_total{_labels(**pod_c)}", "0+10x100"),
        (f"vllm:generation_tokens_total{_labels(**pod_a)}", "0+100x100"),
        # a serves the new ITL name, b only the old one, c both (the old one must not count)
        *[
            (f"{name}_bucket{_labels(**pod, le=le)}", f"0+{15 * n * factor}x100")
            for le, n in (("0.5", 1), ("1.0", 3), ("+Inf", 5))
            for name, pod, factor in (
                ("vllm:e2e_request_latency_seconds", pod_a, 1),
                ("vllm:inter_token_latency_seconds", pod_a, 1),
                ("vllm:time_per_output_token_seconds", pod_b, 2),
                ("vllm:inter_token_latency_seconds", pod_c, 1),
                ("vllm:time_per_output_token_seconds", pod_c, 7),
            )
        ],
        # a: 2 GPUs reported by two kube-state-metrics replicas; b: not scheduled; c: failed; d: from 6m45s
        *[
            (
                "kube_pod_container_resource_requests"
                + _labels(**pod, node=node, resource="nvidia_com_gpu", unit="integer", instance=instance),
                values,
            )
            for pod, node, instance, values in (
                (pod_a, "n1", "ksm-0", "2x100"),
                (pod_a, "n1", "ksm-1", "2x100"),
                (pod_b, "", "ksm-0", "1x100"),
                (pod_c, "n1", "ksm-0", "1x100"),
                ({**pod_a, "pod": "d"}, "n1", "ksm-0", "_x27 1x72"),
            )
        ],
        *[
            (f"kube_pod_info{_labels(namespace='ml', pod=p, node=node, instance=i)}", values)
            for p, node, i, values in (
                ("a", "n1", "ksm-0", "1x100"),
                ("a", "n1", "ksm-1", "1x100"),
                ("b", "", "ksm-0", "1x100"),
                ("c", "n1", "ksm-0", "1x100"),
                ("d", "n1", "ksm-0", "_x27 1x72"),
            )
        ],
        (f"kube_pod_status_phase{_labels(namespace='ml', pod='c', phase='Failed')}", "1x100"),
        (f"kube_pod_status_phase{_labels(namespace='ml', pod='a', phase='Failed')}", "0x100"),
        (f"kube_pod_status_phase{_labels(namespace='ml', pod='a', phase='Running')}", "1x100"),
        # GPUs under each spelling: exported_* (ratio, and one with utilisation only), plain, old names,
        # and one no pod holds (it keeps the exporter's own labels)
        (
            f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{_labels(**exporter, gpu='0', **exported_a)}",
            "0.5x100",
        ),
        (
            f"DCGM_FI_DEV_GPU_UTIL{_labels(**exporter, gpu='0', exported_namespace='ml', exported_pod='a')}",
            "50x100",
        ),
        (
            f"DCGM_FI_DEV_GPU_UTIL{_labels(**exporter, gpu='1', exported_namespace='ml', exported_pod='a')}",
            "30x100",
        ),
        (f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{_labels(namespace='ml', pod='e', gpu='2')}", "1x100"),
        (
            f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{_labels(**exporter, gpu='3', pod_namespace='ml', pod_name='f')}",
            "0.25x100",
        ),
        (f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{_labels(**exporter, gpu='4')}", "0.9x100"),
        (
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
            + _labels(**exporter, gpu="0", exported_namespace="ml", exported_pod="a"),
            "1000000+15000x100",
        ),
    ]
    a, b, c = '{namespace="ml",pod="a"}', '{namespace="ml",pod="b"}', '{namespace="ml",pod="c"}'
    d, e, f = '{namespace="ml",pod="d"}', '{namespace="ml",pod="e"}', '{namespace="ml",pod="f"}'

    def buckets(pod: str, factor: int) -> list[tuple[str, float]]:
        # 15 n observations per 15 s scrape: n per second
        return [(pod[:-1] + f',le="{le}"}}', n * factor) for le, n in (("0.5", 1), ("1.0", 3), ("+Inf", 5))]

    expected: dict[Quantity, list[tuple[str, float]]] = {
        Quantity.FINISHED: [(a, 100)],
        Quantity.DELIVERED: [(a, 80)],
        Quantity.FAILED: [(a, 20)],
        Quantity.INPUT_TOKENS: [(a, 6000)],
        Quantity.CACHED_INPUT_TOKENS: [(a, 4000), (b, 1000), (c, 200)],
        Quantity.OUTPUT_TOKENS: [(a, 2000)],
        Quantity.LATENCY_E2E: buckets(a, 1),
        Quantity.LATENCY_ITL: [*buckets(a, 1), *buckets(b, 2), *buckets(c, 1)],
        # d existed for 195 s of the window: counted to within one 5 s step
        Quantity.GPU_SECONDS: [(a, 600), (d, 200)],
        Quantity.REPLICA_SECONDS: [(a, 300), (d, 200)],
        Quantity.BUSY_GPU_SECONDS: [(a, (0.5 + 0.3) * 300), (e, 300), (f, 0.25 * 300)],
        Quantity.ENERGY_JOULES: [(a, 300)],  # 15 J per 15 s
        Quantity.CURRENT_GPUS: [(a, 2), (d, 1)],
    }
    plan = plan_window(RUNTIMES["vllm"], LabelConfig(), 300, ML, latency_metrics=["e2e", "itl"])
    assert {q.quantity for q in plan} == set(expected)
    evaluate(tmp_path, series, [(q.promql, expected[q.quantity]) for q in plan])
