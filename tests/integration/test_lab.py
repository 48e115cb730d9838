"""The lab behaves like a GPU cluster: Deployments roll out on fake GPU nodes, and Prometheus sees
kube-state-metrics' GPU requests and the simulator's vLLM and DCGM series for those pods."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.lab import Lab, deployment_available, wait_for
from tests.support.workloads import inference_deployment

OFFERED_RPS = 30.0


def replica_sets(lab: Lab, ns: str, app: str) -> dict[str, Any]:
    sets = lab.apps.list_namespaced_replica_set(ns, label_selector=f"app={app}").items
    return {rs.metadata.labels["pod-template-hash"]: rs for rs in sets}


Serving = tuple[str, str, float]  # namespace, Deployment, monotonic time it became Available


@pytest.fixture(scope="module")
def serving(lab: Lab) -> Iterator[Serving]:
    """A 3-replica vLLM Deployment on fake H100s under a steady offered load."""
    with lab.namespace("serving") as ns:
        lab.apps.create_namespaced_deployment(ns, inference_deployment("chat", offered_rps=OFFERED_RPS))
        wait_for("chat to become Available", lambda: deployment_available(lab, ns, "chat", 3), timeout=90)
        yield ns, "chat", time.monotonic()


def test_gpu_deployment_becomes_available_on_fake_gpu_nodes(lab: Lab, serving: Serving) -> None:
    ns, name, _ = serving
    pods = lab.core.list_namespaced_pod(ns, label_selector=f"app={name}").items
    assert len(pods) == 3
    nodes = {n.metadata.name: n for n in lab.core.list_node().items}
    for p in pods:
        assert p.status.phase == "Running"
        node = nodes[p.spec.node_name]
        assert node.metadata.labels["nvidia.com/gpu.product"].startswith("NVIDIA-")
        assert int(node.status.allocatable["nvidia.com/gpu"]) >= 1
        assert p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"


def test_template_change_rolls_out_and_pause_freezes_it_half_way(lab: Lab) -> None:
    with lab.namespace("rollout") as ns:
        lab.apps.create_namespaced_deployment(ns, inference_deployment("summariser"))
        wait_for(
            "first revision Available", lambda: deployment_available(lab, ns, "summariser", 3), timeout=90
        )
        (first_hash,) = replica_sets(lab, ns, "summariser")

        # A model swap whose pods take 6 s to load, so the rollout is slow enough to catch half-way.
        patch = {
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            "simulator.costslo.dev/profile": "llama-3.1-70b-h100",
                            "simulator.costslo.dev/load-time": "6s",
                        }
                    }
                }
            }
        }
        lab.apps.patch_namespaced_deployment("summariser", ns, patch)
        new_hash = wait_for(
            "a new ReplicaSet",
            lambda: next(iter(set(replica_sets(lab, ns, "summariser")) - {first_hash}), None),
            timeout=30,
        )
        lab.apps.patch_namespaced_deployment("summariser", ns, {"spec": {"paused": True}})

        def counts() -> tuple[int, int]:
            sets = replica_sets(lab, ns, "summariser")
            return sets[first_hash].spec.replicas, sets[new_hash].spec.replicas

        frozen = counts()
        assert frozen[1] < 3, "the rollout finished before it could be paused"
        time.sleep(15)  # over twice the pods' load time: an unpaused rollout would have moved on
        assert counts() == frozen
        d = lab.apps.read_namespaced_deployment("summariser", ns)
        assert d.spec.paused and d.status.updated_replicas == frozen[1]

        lab.apps.patch_namespaced_deployment("summariser", ns, {"spec": {"paused": False}})
        wait_for(
            "the rollout to complete",
            lambda: deployment_available(lab, ns, "summariser", 3) and counts() == (0, 3),
            timeout=120,
        )


def test_gpu_requests_from_kube_state_metrics_are_in_prometheus(lab: Lab, serving: Serving) -> None:
    ns, name, _ = serving
    promql = f'kube_pod_container_resource_requests{{namespace="{ns}",resource="nvidia_com_gpu"}}'
    result = wait_for(
        "GPU requests in Prometheus", lambda: len(r := lab.query(promql)) == 3 and r, timeout=60
    )
    for series in result:
        assert series["metric"]["unit"] == "integer"
        assert series["metric"]["pod"].startswith(f"{name}-")
        assert series["metric"]["container"] == "vllm"
        assert series["metric"]["node"].startswith("gpu-")
        assert float(series["value"][1]) == 1.0


def test_simulator_series_are_in_prometheus_with_the_exporters_labels(lab: Lab, serving: Serving) -> None:
    ns, name, _ = serving
    vllm = wait_for(
        "vLLM series",
        lambda: (
            len(r := lab.query(f'vllm:request_success_total{{namespace="{ns}",finished_reason="stop"}}')) == 3
            and r
        ),
        timeout=60,
    )
    pods = {p.metadata.name for p in lab.core.list_namespaced_pod(ns, label_selector=f"app={name}").items}
    assert {s["metric"]["pod"] for s in vllm} == pods
    for s in vllm:
        assert s["metric"]["model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
        assert s["metric"]["container"] == "vllm" and s["metric"]["engine"] == "0"
        assert s["metric"]["job"] == "inference-runtime"

    # As with dcgm-exporter's own chart, the GPU's pod arrives as exported_pod.
    dcgm = wait_for(
        "DCGM series",
        lambda: len(r := lab.query(f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{exported_namespace="{ns}"}}')) == 3 and r,
        timeout=60,
    )
    assert {s["metric"]["exported_pod"] for s in dcgm} == pods
    for s in dcgm:
        m = s["metric"]
        assert m["exported_container"] == "vllm" and m["pod"] == "nvidia-dcgm-exporter"
        assert m["modelName"].startswith("NVIDIA ") and m["UUID"].startswith("GPU-")
        assert m["Hostname"].startswith("gpu-") and 0.0 < float(s["value"][1]) < 1.0

    for metric in (
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:request_prefill_time_seconds_sum",
        "vllm:generation_tokens_total",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_FB_USED",
    ):
        assert lab.query(f'count({metric}{{namespace="{ns}"}} or {metric}{{exported_namespace="{ns}"}})')


def test_request_rate_matches_the_offered_load(lab: Lab, serving: Serving) -> None:
    ns, _, ready_at = serving
    # rate() over 1m needs a whole minute of samples taken after every pod was ready.
    time.sleep(max(0.0, ready_at + 75 - time.monotonic()))
    # The API server counts every request that ended; the engine's counter leaves out aborted ones.
    result = lab.query(
        f'sum(rate(http_requests_total{{namespace="{ns}",handler="/v1/chat/completions"}}[1m]))'
    )
    assert float(result[0]["value"][1]) == pytest.approx(OFFERED_RPS, rel=0.05)
    truth = [p for p in lab.truth()["pods"] if p["namespace"] == ns]
    assert sum(p["offeredRps"] for p in truth) == pytest.approx(OFFERED_RPS)
