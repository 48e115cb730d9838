"""The window fetch reads each query's answer per pod, sums pods into groups and names what is missing.

Answers come from a stub that returns canned samples per PromQL text: this tests the reading of results,
not PromQL (the lab's Prometheus evaluates the same queries in integration tests).
"""

from __future__ import annotations

import math

import pytest

from costslo.metrics.prometheus import Sample
from costslo.metrics.queries import WindowQuery, coverage_query, plan_window
from costslo.metrics.window import MeanParts, Samples, WindowSamples, fetch_window, merge_missing, total
from costslo.runtimes import RUNTIMES, LabelConfig, LatencyMetric, Quantity, RuntimePreset

pytestmark = pytest.mark.unit

AT = 1_700_000_000.0
A1, A2, B1 = ("ml", "chat-a-1"), ("ml", "chat-a-2"), ("ml", "chat-b-1")


class StubPrometheus:
    """Canned answers by quantity and part; records what was asked."""

    def __init__(
        self,
        plan: tuple[WindowQuery, ...],
        answers: dict[tuple[Quantity, str], list[Sample]],
        covered_share: float | None = None,
    ) -> None:
        self.by_text = {q.promql: answers.get((q.quantity, q.part), []) for q in plan}
        # What share of the window Prometheus holds scrapes for; None: it cannot say (no `up` series).
        share = [] if covered_share is None else [Sample({}, covered_share)]
        self.by_text[coverage_query(300, 5)] = share
        self.asked: list[tuple[str, float | None]] = []

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.asked.append((promql, at))
        return self.by_text[promql]


def pod(key: tuple[str, str], value: float, ns: str = "namespace", name: str = "pod", **extra: str) -> Sample:
    return Sample({ns: key[0], name: key[1], **extra}, value)


def buckets(key: tuple[str, str], cumulative: list[tuple[str, float]]) -> list[Sample]:
    return [pod(key, v, le=le) for le, v in cumulative]


def fetch(
    preset: RuntimePreset,
    answers: dict[tuple[Quantity, str], list[Sample]],
    labels: LabelConfig | None = None,
    latency: tuple[LatencyMetric, ...] = ("e2e",),
    covered_share: float | None = 1.0,
) -> tuple[StubPrometheus, WindowSamples]:
    labels = labels or LabelConfig()
    plan = plan_window(preset, labels, 300, {"ml"}, latency_metrics=latency)
    stub = StubPrometheus(plan, answers, covered_share)
    return stub, fetch_window(stub, preset, labels, 300, {"ml"}, at=AT, latency_metrics=latency)


VLLM_ANSWERS: dict[tuple[Quantity, str], list[Sample]] = {
    (Quantity.FINISHED, "value"): [pod(A1, 100), pod(A2, 50), pod(B1, 40)],
    (Quantity.DELIVERED, "value"): [pod(A1, 90), pod(A2, 50), pod(B1, 30)],
    (Quantity.FAILED, "value"): [pod(A1, 10), pod(A2, -1e-9), pod(B1, 10)],
    (Quantity.INPUT_TOKENS, "value"): [pod(A1, 80_000), pod(A2, 40_000), pod(B1, 32_000)],
    (Quantity.CACHED_INPUT_TOKENS, "value"): [pod(A1, 60_000), pod(A2, math.nan)],
    (Quantity.LATENCY_E2E, "buckets"): [
        *buckets(A1, [("0.5", 0.0), ("1", 0.1), ("2", 0.3), ("+Inf", 0.3)]),
        *buckets(A2, [("0.5", 0.1), ("1", 0.1), ("2", 0.1), ("+Inf", 0.1)]),
        *buckets(B1, [("0.5", 0.0), ("1", 0.0), ("2", 0.0), ("+Inf", 0.0)]),
    ],
    (Quantity.GPU_SECONDS, "value"): [pod(A1, 300), pod(A2, 300), pod(B1, 600)],
    (Quantity.REPLICA_SECONDS, "value"): [pod(A1, 300), pod(A2, 300), pod(B1, 300), pod(("ml", "idle"), 300)],
    (Quantity.BUSY_GPU_SECONDS, "value"): [pod(A1, 150), pod(A2, 60), pod(B1, 480)],
    (Quantity.CURRENT_GPUS, "value"): [pod(A1, 1), pod(A2, 1), pod(B1, 2), Sample({"namespace": "ml"}, 8)],
}


def test_per_pod_values() -> None:
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS)
    assert window.pods[A1] == Samples(
        finished=100,
        delivered=90,
        failed=10,
        input_tokens=80_000,
        cached_input_tokens=60_000,
        gpu_seconds=300,
        replica_seconds=300,
        busy_gpu_seconds=150,
        current_gpus=1,
        latency_buckets={"e2e": ((0.5, 0.0), (1.0, 0.1), (2.0, 0.3), (math.inf, 0.3))},
    )
    assert window.pods[A2].failed == 0.0  # extrapolation noise below zero
    assert window.pods[A2].cached_input_tokens is None  # NaN is no value
    assert window.pods[("ml", "idle")].replica_seconds == 300
    assert ("ml", "") not in window.pods  # a series without a pod label belongs to no pod


def test_one_query_per_quantity_all_at_the_same_instant() -> None:
    stub, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS, latency=("e2e", "ttft", "itl"))
    assert window.queries == len(stub.asked) == 15  # 14 quantities and the span Prometheus holds
    assert {at for _, at in stub.asked} == {AT}
    assert window.at == AT
    assert window.window_seconds == 300 and window.step_seconds == 5


def test_missing_quantities_say_what_to_check() -> None:
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS)
    assert set(window.missing) == {Quantity.OUTPUT_TOKENS, Quantity.ENERGY_JOULES}
    assert window.missing[Quantity.OUTPUT_TOKENS] == (
        "no data for output tokens: no vllm:generation_tokens_total series in namespace ml over the last 5m; "
        "check that the vllm server is scraped and its series carry the namespace/pod labels"
    )
    assert window.missing[Quantity.ENERGY_JOULES].startswith(
        "no data for GPU energy: no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series in namespace ml"
    )
    assert "dcgm-exporter" in window.missing[Quantity.ENERGY_JOULES]
    # vLLM's per-request phase times are wall clock, not GPU time: never read.
    assert window.unsupported == {Quantity.PREFILL_SECONDS, Quantity.DECODE_SECONDS}


def test_quantities_missing_for_one_cause_share_its_sentence() -> None:
    _, window = fetch(RUNTIMES["vllm"], {})
    merged = merge_missing([*window.missing.values(), "no data for requests", "no data for requests"])
    counts = [m for m in merged if "no http_requests_total or vllm:request_success_total series" in m]
    assert counts == [
        "no data for finished requests and failed requests: "
        "no http_requests_total or vllm:request_success_total series in namespace ml over the last 5m; "
        "check that the vllm server is scraped and its series carry the namespace/pod labels"
    ]
    assert sum("no http_requests_total or" in m for m in merged) == 1
    assert merged.count("no data for requests") == 1  # a sentence of another shape stays, once


def test_groups_of_pods_add_up() -> None:
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS)
    revision_a = window.total([A1, A2, A2])
    assert (revision_a.finished, revision_a.delivered, revision_a.failed) == (150, 140, 10)
    assert revision_a.cached_input_tokens == 60_000  # one pod had it
    assert revision_a.output_tokens is None  # no pod had it
    assert revision_a.gpu_seconds == 600 and revision_a.busy_gpu_seconds == 210
    # Buckets are summed before the quantile: 0.4 requests/s, p50 at rank 0.2 lies in (1, 2].
    assert revision_a.latency_buckets["e2e"] == ((0.5, 0.1), (1.0, 0.2), (2.0, 0.4), (math.inf, 0.4))
    p50 = revision_a.latency("e2e", 0.5)
    assert p50 is not None and p50.kind == "quantile" and p50.quantile == 0.5
    assert p50.seconds == pytest.approx(1.0)
    assert window.total([B1]).latency("e2e", 0.95) is None  # no traffic, no latency
    assert window.total([("ml", "gone")]) == Samples()


def test_total_of_nothing_is_all_none() -> None:
    assert total([]) == Samples()


def test_triton_reports_a_mean_and_converts_milliseconds() -> None:
    answers = {
        (Quantity.FINISHED, "value"): [pod(A1, 10)],
        (Quantity.LATENCY_E2E, "mean_total"): [pod(A1, 12.0), pod(A2, 3.0)],
        (Quantity.LATENCY_E2E, "mean_count"): [pod(A1, 10), pod(A2, 0)],
        (Quantity.LATENCY_TTFT, "buckets"): buckets(A1, [("100", 5), ("500", 10), ("+Inf", 10)]),
    }
    _, window = fetch(RUNTIMES["triton"], answers, latency=("e2e", "ttft", "itl"))
    assert window.latency_kinds == {"e2e": "mean", "ttft": "quantile"}
    assert window.pods[A1].latency_means == {"e2e": MeanParts(12.0, 10)}
    mean = window.pods[A1].latency("e2e", 0.95)
    assert mean is not None and (mean.seconds, mean.kind, mean.quantile) == (1.2, "mean", None)
    assert window.pods[A2].latency("e2e", 0.95) is None  # no requests, no mean
    assert window.total([A1, A2]).latency_means["e2e"] == MeanParts(15.0, 10)
    assert window.pods[A1].latency_buckets["ttft"] == ((0.1, 5), (0.5, 10), (math.inf, 10))
    assert {Quantity.PREFILL_SECONDS, Quantity.DECODE_SECONDS, Quantity.LATENCY_ITL} <= window.unsupported
    assert Quantity.LATENCY_ITL not in window.missing


def test_results_are_read_from_the_configured_labels() -> None:
    labels = LabelConfig.from_modes(runtime="kubernetes-sd", gpu="exported")
    answers = {
        (Quantity.FINISHED, "value"): [
            pod(A1, 7, "kubernetes_namespace", "kubernetes_pod_name", namespace="x")
        ],
        (Quantity.BUSY_GPU_SECONDS, "value"): [pod(A1, 30, "exported_namespace", "exported_pod")],
        (Quantity.GPU_SECONDS, "value"): [pod(A1, 300)],
    }
    _, window = fetch(RUNTIMES["vllm"], answers, labels=labels)
    assert window.pods[A1].finished == 7
    assert window.pods[A1].busy_gpu_seconds == 30
    assert window.pods[A1].gpu_seconds == 300
    assert list(window.pods) == [A1]


def test_a_window_prometheus_fully_holds_is_the_whole_window() -> None:
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS)
    assert window.covered_seconds == 300 and not window.partial and window.coverage_note() is None


def test_a_window_prometheus_holds_part_of_is_that_part() -> None:
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS, covered_share=0.25)
    assert window.covered_seconds == 75 and window.partial
    assert window.coverage_note() == "over the last 1m15s: Prometheus holds no older data"


@pytest.mark.parametrize("share", [None, 0.0, 0.99])
def test_unknown_or_nearly_full_coverage_is_the_whole_window(share: float | None) -> None:
    # No `up` series (it cannot be told), or within one subquery step of the whole window.
    _, window = fetch(RUNTIMES["vllm"], VLLM_ANSWERS, covered_share=share)
    assert window.covered_seconds == 300 and window.coverage_note() is None


def test_a_mig_instance_is_busy_for_its_share_of_the_gpu() -> None:
    """DCGM's ratios of a MIG instance are of the instance: each is weighed by its profile's share."""
    answers = {
        **VLLM_ANSWERS,
        (Quantity.BUSY_GPU_SECONDS, "value"): [
            pod(A1, 150),  # a whole GPU
            pod(A2, 70, GPU_I_PROFILE="3g.40gb"),  # 0.7 x 3/7
            pod(A2, 35, GPU_I_PROFILE="1g.10gb"),  # and a second instance: 0.35 x 1/7
            pod(B1, 80, GPU_I_PROFILE="2g.12gb"),  # an A30 slice: 2 of 4
        ],
    }
    _, window = fetch(RUNTIMES["vllm"], answers)
    assert window.pods[A1].busy_gpu_seconds == 150
    assert window.pods[A2].busy_gpu_seconds == pytest.approx(70 * 3 / 7 + 35 / 7)
    assert window.pods[B1].busy_gpu_seconds == pytest.approx(40)
    # A profile priced at another share is busy at that share too, so utilisation can reach 100%.
    labels = LabelConfig.from_modes(gpu_resource_overrides={"nvidia.com/mig-3g.40gb": 0.5})
    _, window = fetch(RUNTIMES["vllm"], answers, labels=labels)
    assert window.pods[A2].busy_gpu_seconds == pytest.approx(70 * 0.5 + 35 / 7)


def test_a_pod_serving_several_models_leaves_its_group_without_a_request_count() -> None:
    """Triton's guard leaves out a pod whose success counter names several models: its GPU time must not be
    priced against the other pods' requests, so any group holding it has no request count, and says why."""
    answers = {
        (Quantity.FINISHED, "value"): [pod(A1, 100)],
        (Quantity.DELIVERED, "value"): [pod(A1, 90), pod(A2, 4, costslo_several_models="true")],
        (Quantity.GPU_SECONDS, "value"): [pod(A1, 300), pod(A2, 300)],
    }
    _, window = fetch(RUNTIMES["triton"], answers)
    assert window.several_models == {A2: 4}
    assert A2 not in window.pods or window.pods[A2].delivered is None
    alone = window.total([A1])
    assert (alone.finished, alone.delivered) == (100, 90)
    both = window.total([A1, A2])
    assert (both.finished, both.delivered, both.failed) == (None, None, None)
    assert both.gpu_seconds == 600
    gaps = window.gaps([A1, A2], lambda q: getattr(both, q.value, None) is None)
    assert gaps[0].startswith("no data for requests: pod chat-a-2 served several models; ")
    assert "spec.serving.models" in gaps[0]
    # The generic "no series" sentences of the request counts would be wrong here: not repeated.
    assert not any(g.startswith(("no data for finished", "no data for delivered")) for g in gaps)
    assert window.gaps([A1], lambda q: False) == ()
