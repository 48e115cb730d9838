"""The simulator exposes each runtime's series with the exporters' exact names, types and labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costslo.exposition import Histogram, render
from costslo.gpu.dcgm import GpuReading, dcgm_families
from costslo.simulator.exporters import Load, RuntimeExporter
from costslo.simulator.profiles import PerformanceProfile
from costslo.simulator.serving import RequestSampler

pytestmark = pytest.mark.unit

POD = {"namespace": "ml", "pod": "summariser-7d9c-abcde", "container": "server"}


def profile(runtime: str) -> PerformanceProfile:
    return PerformanceProfile.model_validate(
        {
            "runtime": runtime,
            "modelName": "meta-llama/Llama-3.1-8B-Instruct",
            "prefillTokensPerSecond": 40000,
            "decodeTokensPerSecond": 4000,
            "meanInputTokens": 800,
            "meanOutputTokens": 200,
            "failureRate": 0.1,
        }
    )


def exposition(runtime: str, n: int = 200) -> str:
    p = profile(runtime)
    exporter = RuntimeExporter.for_pod(p, POD)
    sampler = RequestSampler(p, seed=3)
    for _ in range(n):
        exporter.record(sampler.served(0.5, 1))
    exporter.record(sampler.dropped())
    exporter.set_load(Load(running=3, waiting=1, utilisation=0.5))
    return render(exporter.families())


def parsed(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    out = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = (fam.type, [(s.name, s.labels, s.value) for s in fam.samples])
    return out


def sample_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}


def test_vllm_series_names_types_and_labels() -> None:
    text = exposition("vllm")
    names = sample_names(text)
    for n in [
        "vllm:request_success_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_count",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:request_prefill_time_seconds_sum",
        "vllm:request_decode_time_seconds_sum",
        "vllm:request_queue_time_seconds_sum",
        "vllm:request_inference_time_seconds_sum",
        "vllm:request_prompt_tokens_bucket",
        "vllm:request_generation_tokens_bucket",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
    ]:
        assert n in names, n
    fams = parsed(text)
    assert fams["vllm:request_success"][0] == "counter"
    assert fams["vllm:e2e_request_latency_seconds"][0] == "histogram"
    success = [
        (s[1]["finished_reason"], s[2]) for s in fams["vllm:request_success"][1] if s[0].endswith("_total")
    ]
    # Every reason exists from the start; aborts take the engine's abort path and are never counted.
    assert {r for r, _ in success} == {"stop", "length", "abort", "error", "repetition"}
    assert dict(success)["abort"] == 0
    labels = fams["vllm:num_requests_running"][1][0][1]
    assert labels == {"engine": "0", "model_name": "meta-llama/Llama-3.1-8B-Instruct", **POD}
    # Delivered requests are in request_success_total and the e2e histogram; the API server counts all 201.
    delivered = sum(v for _, v in success)
    e2e_count = next(
        v for name, _, v in fams["vllm:e2e_request_latency_seconds"][1] if name.endswith("_count")
    )
    [(_, http_labels, http)] = [s for s in fams["http_requests"][1] if s[0] == "http_requests_total"]
    assert http_labels == {"handler": "/v1/chat/completions", "method": "POST", "status": "2xx", **POD}
    assert delivered == e2e_count < http == 201


def test_tgi_and_triton_counters_have_no_total_suffix() -> None:
    tgi = sample_names(exposition("tgi"))
    assert {
        "tgi_request_count",
        "tgi_request_success",
        "tgi_request_failure",
        "tgi_request_duration_bucket",
        "tgi_request_input_length_sum",
        "tgi_request_generated_tokens_sum",
        "tgi_queue_size",
        "tgi_batch_current_size",
    } <= tgi
    assert not any(n.endswith("_total") for n in tgi)
    triton_text = exposition("triton")
    triton = sample_names(triton_text)
    assert {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_pending_request_count",
    } <= triton
    assert 'model="meta-llama/Llama-3.1-8B-Instruct"' in triton_text and 'version="1"' in triton_text
    assert 'reason="REJECTED"' in triton_text  # the dropped request


def test_triton_durations_are_microseconds() -> None:
    p = profile("triton")
    exporter = RuntimeExporter.for_pod(p, POD)
    r = RequestSampler(p.model_copy(update={"failure_rate": 0.0}), seed=5).served(0.2, 1)
    exporter.record(r)
    fams = parsed(render(exporter.families()))
    ((_, _, value),) = fams["nv_inference_request_duration_us"][1]
    assert value == pytest.approx(r.e2e_seconds * 1e6)


def test_sglang_series() -> None:
    names = sample_names(exposition("sglang"))
    assert {
        "sglang:prompt_tokens_total",
        "sglang:generation_tokens_total",
        "sglang:num_requests_total",
        "sglang:num_aborted_requests_total",
        "sglang:e2e_request_latency_seconds_bucket",
        "sglang:time_to_first_token_seconds_bucket",
        "sglang:inter_token_latency_seconds_bucket",
        "sglang:num_running_reqs",
        "sglang:num_queue_reqs",
        "sglang:token_usage",
    } <= names


def test_dcgm_series_carry_gpu_and_pod_labels() -> None:
    gpu = GpuReading.from_busy(
        index=3,
        uuid="GPU-1234",
        model_name="NVIDIA H100 80GB HBM3",
        hostname="gpu-h100-a",
        busy=0.42,
        memory_used_mib=70000,
        memory_total_mib=81559,
        power_watts=350,
        energy_mj=1.5e6,
        pod=POD,
    )
    idle = GpuReading.from_busy(
        index=4,
        uuid="GPU-5678",
        model_name="NVIDIA H100 80GB HBM3",
        hostname="gpu-h100-a",
        busy=0,
        memory_used_mib=0,
        memory_total_mib=81559,
        power_watts=60,
        energy_mj=1e6,
        pod={},
    )
    fams = parsed(render(dcgm_families([gpu, idle])))
    assert fams["DCGM_FI_DEV_GPU_UTIL"][0] == "gauge"
    assert fams["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0] == "counter"
    busy = {s[1]["gpu"]: (s[1], s[2]) for s in fams["DCGM_FI_PROF_GR_ENGINE_ACTIVE"][1]}
    labels, value = busy["3"]
    assert value == pytest.approx(0.42)
    assert labels["pod"] == POD["pod"] and labels["namespace"] == "ml" and labels["container"] == "server"
    assert {"UUID", "pci_bus_id", "device", "modelName", "Hostname"} <= labels.keys()
    assert "pod" not in busy["4"][0]
    util = {s[1]["gpu"]: s[2] for s in fams["DCGM_FI_DEV_GPU_UTIL"][1]}
    assert util["3"] == 42.0


def test_label_values_are_escaped() -> None:
    nasty = {"namespace": "ml", "pod": 'a"b\\c\nd', "container": "x"}
    exporter = RuntimeExporter.for_pod(profile("vllm"), nasty)
    exporter.set_load(Load(1, 0, 0.1))
    fams = parsed(render(exporter.families()))
    assert fams["vllm:num_requests_running"][1][0][1]["pod"] == 'a"b\\c\nd'


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram([1.0, 2.0, 5.0])
    for v in (0.5, 1.0, 1.5, 3.0, 9.0):
        h.observe(v)
    h.observe(1.2, times=10)
    assert h.cumulative() == [("1.0", 2.0), ("2.0", 13.0), ("5.0", 14.0), ("+Inf", 15.0)]
    assert h.sum == pytest.approx(0.5 + 1.0 + 1.5 + 3.0 + 9.0 + 12.0)
