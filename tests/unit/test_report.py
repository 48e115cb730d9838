"""`costslo report` on canned Prometheus answers: grouping, what counts as missing, pricing gaps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from costslo import report
from costslo.economics import Prices
from costslo.metrics.prometheus import Sample
from costslo.pricing import load_catalog
from costslo.workloads import discover

pytestmark = pytest.mark.unit

POD_A, POD_B, POD_C = "chat-7d9c5-aaaaa", "chat-7d9c5-bbbbb", "chat-5f6b8-ccccc"


def pod(name: str, value: float, **extra: str) -> Sample:
    return Sample({"namespace": "ml", "pod": name, **extra}, value)


class Canned:
    """Answers each query by the first rule whose fragments all occur in it; counts queries."""

    def __init__(self, rules: list[tuple[tuple[str, ...], list[Sample]]]) -> None:
        self.rules = rules
        self.queries = 0

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.queries += 1
        for fragments, answer in self.rules:
            if all(f in promql for f in fragments):
                return answer
        return []


OWNERS: list[tuple[tuple[str, ...], list[Sample]]] = [
    (
        ("kube_pod_owner",),
        [
            pod(POD_A, 1, owner_kind="ReplicaSet", owner_name="chat-7d9c5"),
            pod(POD_B, 1, owner_kind="ReplicaSet", owner_name="chat-7d9c5"),
            pod(POD_C, 1, owner_kind="ReplicaSet", owner_name="chat-5f6b8"),
            pod("db-0", 1, owner_kind="StatefulSet", owner_name="db"),
            pod("debug", 1, owner_kind="<none>", owner_name="<none>"),
        ],
    ),
    (
        ("kube_replicaset_owner",),
        [
            Sample({"namespace": "ml", "replicaset": rs, "owner_kind": "Deployment", "owner_name": "chat"}, 1)
            for rs in ("chat-7d9c5", "chat-5f6b8")
        ],
    ),
]

PODS = (POD_A, POD_B, POD_C)


def serving_rules(gpu_series: bool = True) -> list[tuple[tuple[str, ...], list[Sample]]]:
    rules: list[tuple[tuple[str, ...], list[Sample]]] = [
        (("count by (__name__)",), [Sample({"__name__": "vllm:request_success_total"}, 3)]),
        *OWNERS,
        (("finished_reason=~",), [pod(p, 99) for p in PODS]),
        (("finished_reason!~",), [pod(p, 1) for p in PODS]),
        (("vllm:request_success_total",), [pod(p, 100) for p in PODS]),
        (("vllm:prompt_tokens_total",), [pod(p, 80_000) for p in PODS]),
        (("vllm:generation_tokens_total",), [pod(p, 20_000) for p in PODS]),
        (
            ("e2e_request_latency_seconds_bucket",),
            [pod(p, rate, le=le) for p in PODS for le, rate in (("1", 0.5), ("5", 1.5), ("+Inf", 1.6))],
        ),
        (("kube_pod_info",), [pod(p, 3600.0) for p in PODS]),
        (("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "vgpu"), [pod(p, 1800.0) for p in PODS]),  # busy, not DRA GPUs
        # Energy and the GPU count at the window's end are deliberately absent: the report uses neither.
    ]
    if gpu_series:
        rules.insert(
            2, (("sum_over_time", "kube_pod_container_resource_requests"), [pod(p, 3600.0) for p in PODS])
        )
    return rules


def test_discover_groups_pods_into_workloads_and_revisions() -> None:
    workloads = {w.ref: w for w in discover(Canned(OWNERS), 3600, {"ml"})}
    chat = workloads["ml/Deployment/chat"]
    assert {r.pod_template_hash: len(r.pods) for r in chat.revisions} == {"7d9c5": 2, "5f6b8": 1}
    assert workloads["ml/StatefulSet/db"].pods == (("ml", "db-0"),)
    assert workloads["ml/Pod/debug"].pods == (("ml", "debug"),)


def test_report_is_complete_without_quantities_it_does_not_use() -> None:
    client = Canned(serving_rules())
    result = report.build(client, report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2")))
    (row,) = result.rows
    assert row.workload.name == "chat" and row.runtime == "vllm"
    # 3 pods x 1 GPU-hour at $2 over 297 delivered requests.
    assert row.cost.cost_per_request == pytest.approx(Decimal(6) / Decimal(297))
    assert row.cost.utilisation == pytest.approx(0.5)
    assert row.missing == () and result.complete
    assert {r.pod_template_hash for r in row.revisions} == {"7d9c5", "5f6b8"}
    assert result.queries == client.queries


def test_replica_time_missing_is_no_gap_without_a_per_replica_price() -> None:
    # kube_pod_info absent: replica time unmeasured. No per-replica price: no figure needs it.
    rules = [r for r in serving_rules() if r[0] != ("kube_pod_info",)]
    result = report.build(
        Canned(rules), report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2"))
    )
    (row,) = result.rows
    assert row.missing == () and result.complete
    assert row.cost.cost_per_request == pytest.approx(Decimal(6) / Decimal(297))
    assert row.cost.replicas is None  # unknown, not zero


def test_replica_time_missing_is_a_named_gap_when_a_per_replica_price_needs_it() -> None:
    rules = [r for r in serving_rules() if r[0] != ("kube_pod_info",)]
    opts = report.ReportOptions(
        namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2"), prices=Prices(per_replica_hourly=Decimal("0.5"))
    )
    (row,) = report.build(Canned(rules), opts).rows
    assert any(m.startswith("no data for replica time: no kube_pod_info") for m in row.missing), row.missing
    assert row.cost.cost_per_request is None  # never priced as if replicas were free
    # Measured, it is priced: 3 pods x 1 hour x $0.5 on top of the GPUs.
    (priced,) = report.build(Canned(serving_rules()), opts).rows
    assert priced.missing == ()
    assert priced.cost.cost_per_request == pytest.approx(Decimal("7.5") / Decimal(297))


def test_unknown_gpu_allocation_is_no_cost_not_a_cheap_one() -> None:
    result = report.build(
        Canned(serving_rules(gpu_series=False)),
        report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2")),
    )
    (row,) = result.rows
    assert row.cost.cost_per_request is None and row.cost.utilisation is None
    assert any(m.startswith("no data for GPUs allocated") for m in row.missing), row.missing
    assert not result.complete


def test_a_price_catalog_without_node_labels_is_a_named_gap() -> None:
    catalog = load_catalog('gpuProducts: {NVIDIA-H100-80GB-HBM3: "3.00"}')
    rules = [
        (("kube_pod_info", "max_over_time"), [pod(p, 1, node="gpu-h100-a") for p in PODS]),
        *serving_rules(),
    ]
    result = report.build(Canned(rules), report.ReportOptions(namespaces={"ml"}, at=1e9, catalog=catalog))
    (row,) = result.rows
    assert row.cost.cost_per_request is None
    assert any("pass --kubeconfig" in m for m in row.missing)
    priced = report.build(
        Canned(rules),
        report.ReportOptions(
            namespaces={"ml"},
            at=1e9,
            catalog=catalog,
            node_labels={"gpu-h100-a": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        ),
    )
    assert priced.rows[0].price is not None and priced.rows[0].price.hourly == Decimal("3.00")


def test_no_runtime_in_scope_is_an_error_with_a_hint() -> None:
    with pytest.raises(report.ReportError, match="check that the servers are scraped"):
        report.build(Canned(OWNERS), report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2")))


def test_a_report_over_a_young_prometheus_rates_over_what_it_holds() -> None:
    # Prometheus holds 75 s of the hour: 100 requests per pod and one GPU per pod over those 75 s.
    rules = [
        (("count(up)",), [Sample({}, 75 / 3600)]),
        (("sum_over_time", "kube_pod_container_resource_requests"), [pod(p, 75.0) for p in PODS]),
        *serving_rules(),
    ]
    result = report.build(
        Canned(rules), report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2"))
    )
    (row,) = result.rows
    assert result.coverage == "over the last 1m15s: Prometheus holds no older data"
    assert result.covered_seconds == pytest.approx(75)
    assert row.cost.requests_per_second == pytest.approx(300 / 75)
    assert row.cost.gpus == pytest.approx(3)
    assert row.cost.hourly_cost == pytest.approx(Decimal(6), rel=Decimal("1e-9"))  # 3 GPUs at $2
    # The cost per request never depended on the span.
    assert row.cost.cost_per_request == pytest.approx(Decimal(3 * 75 * 2) / 3600 / 297)
    assert report.to_json(result)["coverage"] == result.coverage


def test_a_triton_workload_serving_several_models_says_so_beside_another_runtime() -> None:
    """Its pods are left out of every request count, yet the row is Triton's, with the sentence to act on,
    not the first runtime's 'no series' sentences."""
    rules: list[tuple[tuple[str, ...], list[Sample]]] = [
        (
            ("count by (__name__)",),
            [
                Sample({"__name__": "vllm:request_success_total"}, 3),
                Sample({"__name__": "nv_inference_request_success"}, 3),
            ],
        ),
        *OWNERS,
        (("costslo_several_models",), [pod(p, 4, costslo_several_models="true") for p in PODS]),
        (("sum_over_time", "kube_pod_container_resource_requests"), [pod(p, 3600.0) for p in PODS]),
        (("kube_pod_info",), [pod(p, 3600.0) for p in PODS]),
    ]
    result = report.build(
        Canned(rules), report.ReportOptions(namespaces={"ml"}, at=1e9, gpu_hourly=Decimal("2"))
    )
    (row,) = result.rows
    assert row.runtime == "triton" and row.cost.cost_per_request is None
    assert any("served several models" in m and "spec.serving.models" in m for m in row.missing), row.missing
    assert not any("http_requests_total" in m for m in row.missing)
