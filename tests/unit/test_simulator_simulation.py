"""The simulated fleet: load sharing, model swaps, ground truth and pod lifecycle, on a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costslo.exposition import render
from costslo.simulator.cluster import ClusterView, build_view
from costslo.simulator.profiles import ProfileCatalog, ProfileError
from costslo.simulator.simulation import Simulation

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(
    name: str,
    rs: str,
    profile: str = "llama-3.1-8b-h100",
    gpus: int = 1,
    ready: bool = True,
    node: str | None = "gpu-h100-a",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    annotations = {"simulator.costslo.dev/profile": profile}
    if overrides:
        annotations["simulator.costslo.dev/profile-overrides"] = json.dumps(overrides)
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "annotations": annotations,
            "labels": {"pod-template-hash": rs.rsplit("-", 1)[-1]},
            "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "server", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def rs(name: str, deploy: str = "summariser") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "ownerReferences": [{"kind": "Deployment", "name": deploy, "controller": True}],
        }
    }


def deployment(rps: float, name: str = "summariser") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ml",
            "annotations": {"simulator.costslo.dev/offered-rps": str(rps)},
        }
    }


NODES = [
    {
        "metadata": {"name": "gpu-h100-a", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "status": {"capacity": {"nvidia.com/gpu": "8"}},
    }
]


def view(pods: list[dict[str, Any]], rps: float = 12.0) -> ClusterView:
    sets = {p["metadata"]["ownerReferences"][0]["name"] for p in pods}
    return build_view(pods, [rs(s) for s in sets], [deployment(rps)], NODES)


def run(sim: Simulation, clock: Clock, seconds: float, dt: float = 0.5) -> None:
    for _ in range(round(seconds / dt)):
        clock.now += dt
        sim.advance(dt)


def by_pod(sim: Simulation) -> dict[str, dict[str, Any]]:
    return {p["pod"]: p for p in sim.truth()["pods"]}


def test_view_joins_pods_to_their_deployment() -> None:
    v = view([pod("a", "summariser-abc"), pod("b", "summariser-abc", gpus=2, ready=False)])
    assert [p.group for p in v.pods] == [("ml", "Deployment", "summariser")] * 2
    assert [p.gpus for p in v.pods] == [1, 2]
    assert [p.ready for p in v.pods] == [True, False]
    assert v.pods[0].pod_template_hash == "abc"
    assert v.offered_rps == {("ml", "Deployment", "summariser"): 12.0}
    assert v.nodes["gpu-h100-a"].gpus == 8


def test_load_is_shared_by_ready_pods_and_counted_exactly() -> None:
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(
        view(
            [pod("a", "summariser-abc"), pod("b", "summariser-abc"), pod("c", "summariser-abc", ready=False)],
            rps=12.0,
        )
    )
    run(sim, clock, 100)
    truth = by_pod(sim)
    assert truth["a"]["requests"]["finished"] == pytest.approx(600, abs=1)
    assert truth["b"]["requests"]["finished"] == pytest.approx(600, abs=1)
    assert truth["c"]["requests"]["finished"] == 0
    # A pod that is not ready still holds its GPU: provisioned but idle.
    assert truth["c"]["provisionedGpuSeconds"] == pytest.approx(100)
    assert truth["c"]["busyGpuSeconds"] == 0
    a = truth["a"]
    assert a["requests"]["delivered"] + a["requests"]["failed"] == a["requests"]["finished"]
    assert a["busyGpuSeconds"] == pytest.approx(600 * 0.07, rel=0.05)
    assert a["utilisation"] == pytest.approx(6 * 0.07)


def test_a_heavier_revision_does_more_gpu_work_per_request() -> None:
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(
        view(
            [
                pod("old", "summariser-abc"),
                pod("new", "summariser-def", profile="llama-3.1-70b-h100", gpus=4),
            ],
            rps=8.0,
        )
    )
    run(sim, clock, 60)
    t = by_pod(sim)
    old = t["old"]["busyGpuSeconds"] / t["old"]["requests"]["finished"]
    new = t["new"]["busyGpuSeconds"] / t["new"]["requests"]["finished"]
    assert t["old"]["requests"]["finished"] == pytest.approx(t["new"]["requests"]["finished"], abs=1)
    assert new / old == pytest.approx(0.3222 / 0.07, rel=0.1)
    assert t["new"]["podTemplateHash"] == "def"


def test_exposition_matches_ground_truth() -> None:
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(view([pod("a", "summariser-abc")], rps=5.0))
    run(sim, clock, 40)
    truth = by_pod(sim)["a"]
    samples = {}
    for fam in text_string_to_metric_families(render(sim.runtime_families())):
        for s in fam.samples:
            samples.setdefault(s.name, 0.0)
            samples[s.name] += s.value
    assert samples["http_requests_total"] == truth["requests"]["finished"] == 200
    assert samples["vllm:request_success_total"] == truth["requests"]["delivered"]
    assert samples["vllm:prompt_tokens_total"] == truth["tokens"]["input"]
    assert samples["vllm:generation_tokens_total"] == truth["tokens"]["output"]
    # The per-request phase histograms hold the delivered requests only, like vLLM's.
    assert samples["vllm:request_prefill_time_seconds_count"] == truth["requests"]["delivered"]
    assert 0 < samples["vllm:request_prefill_time_seconds_sum"] < truth["prefillSeconds"]


def test_vanished_pods_stop_exposing_but_keep_their_truth() -> None:
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(view([pod("a", "summariser-abc"), pod("b", "summariser-abc")]))
    run(sim, clock, 10)
    sim.apply(view([pod("b", "summariser-abc")]))
    run(sim, clock, 10)
    truth = by_pod(sim)
    assert truth["a"]["deleted"] and not truth["b"]["deleted"]
    text = render(sim.runtime_families())
    assert 'pod="a"' not in text and 'pod="b"' in text
    dcgm = render(sim.dcgm_families())
    assert 'pod="a"' not in dcgm
    # The freed GPU is still on the node, now without a pod.
    assert dcgm.count("DCGM_FI_DEV_GPU_UTIL{") == 8


def test_unknown_profiles_are_skipped_not_fatal() -> None:
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(view([pod("a", "summariser-abc", profile="no-such-model"), pod("b", "summariser-abc")]))
    run(sim, clock, 2)
    assert set(by_pod(sim)) == {"b"}
    with pytest.raises(ProfileError, match="unknown profile"):
        ProfileCatalog.load().resolve({"simulator.costslo.dev/profile": "no-such-model"})


def test_overrides_change_single_fields() -> None:
    p = ProfileCatalog.load().resolve(
        {
            "simulator.costslo.dev/profile": "llama-3.1-8b-h100",
            "simulator.costslo.dev/profile-overrides": '{"failureRate": 0.2}',
            "simulator.costslo.dev/runtime": "tgi",
        }
    )
    assert p is not None and p.failure_rate == 0.2 and p.runtime == "tgi"
    with pytest.raises(ProfileError):
        ProfileCatalog.load().resolve(
            {
                "simulator.costslo.dev/profile": "llama-3.1-8b-h100",
                "simulator.costslo.dev/profile-overrides": '{"failureRate": 2}',
            }
        )


def test_latency_truth_is_the_exact_quantile_of_finished_requests() -> None:
    clock = Clock()
    wall = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock, wall_clock=wall)
    sim.apply(view([pod("a", "summariser-abc")], rps=10.0))
    for _ in range(40):
        clock.now += 0.5
        wall.now += 0.5
        sim.advance(0.5)
    everything = sim.latency_quantile("ml", 0, wall.now, 0.95)
    assert everything["count"] == 200
    recent = sim.latency_quantile("ml", wall.now - 10, wall.now, 0.5)
    assert recent["count"] == 100
    values = sorted(e for _, e in next(iter(sim.live_pods())).latencies)
    assert everything["seconds"] == values[189]  # nearest rank: ceil(0.95 * 200) = 190th value
    assert sim.latency_quantile("other", 0, wall.now, 0.95) == {"count": 0, "seconds": None}


def test_mig_slices_and_time_sliced_replicas_are_their_share_of_a_gpu() -> None:
    """A 3g.40gb MIG slice is 3/7 of an H100, a replica of a GPU time-sliced two ways half of one; dcgm-
    exporter shows the slice as its own instance and the shared GPU once per pod (vgpu), whole."""
    nodes = [
        {
            "metadata": {"name": "gpu-mig", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
            "status": {"capacity": {"nvidia.com/mig-3g.40gb": "4"}},
        },
        {
            "metadata": {
                "name": "gpu-shared",
                "labels": {"nvidia.com/gpu.product": "NVIDIA-L4-SHARED", "nvidia.com/gpu.replicas": "2"},
            },
            "status": {"capacity": {"nvidia.com/gpu.shared": "4"}},
        },
    ]
    pods = [pod("m", "summariser-abc", node="gpu-mig"), pod("s1", "summariser-abc", node="gpu-shared")]
    pods.append(pod("s2", "summariser-abc", node="gpu-shared"))
    pods[0]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/mig-3g.40gb": "1"}}
    for p in pods[1:]:
        p["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu.shared": "1"}}
    clock = Clock()
    sim = Simulation(ProfileCatalog.load(), clock=clock)
    sim.apply(build_view(pods, [rs("summariser-abc")], [deployment(3.0)], nodes))
    run(sim, clock, 10)
    truth = by_pod(sim)
    assert truth["m"]["gpus"] == pytest.approx(3 / 7)
    assert truth["m"]["provisionedGpuSeconds"] == pytest.approx(10 * 3 / 7)
    assert truth["s1"]["gpus"] == truth["s2"]["gpus"] == 0.5
    samples = [
        (s.name, s.labels)
        for fam in text_string_to_metric_families(render(sim.dcgm_families()))
        for s in fam.samples
        if s.name == "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
    ]
    mig = [labels for _, labels in samples if labels.get("pod") == "m"]
    assert [(m["GPU_I_PROFILE"], m["gpu"]) for m in mig] == [("3g.40gb", "0")]
    assert not any(labels.get("pod") == "m" for name, labels in samples if "GPU_UTIL" in name)
    shared = sorted(
        (labels["pod"], labels["vgpu"], labels["gpu"]) for _, labels in samples if "vgpu" in labels
    )
    assert shared == [("s1", "0", "0"), ("s2", "1", "0")]  # both replicas of physical GPU 0
    # 4 MIG instances on 2 GPUs, 3 of them held by no pod; 4 replicas on 2 GPUs, GPU 1's held by none.
    assert len([1 for _, labels in samples if "pod" not in labels]) == 3 + 1
