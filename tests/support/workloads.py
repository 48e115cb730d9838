"""Manifests of the workloads tests deploy into the lab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PROFILE = "simulator.costslo.dev/profile"
OFFERED = "simulator.costslo.dev/offered-rps"
LOAD_TIME = "simulator.costslo.dev/load-time"


def inference_deployment(
    name: str,
    *,
    replicas: int = 3,
    profile: str = "llama-3.1-8b-h100",
    gpus: int = 1,
    offered_rps: float = 10.0,
    load_time: str | None = None,
    max_surge: int | str = 1,
    max_unavailable: int | str = 0,
) -> dict[str, Any]:
    """A vLLM-style Deployment on fake GPU nodes, served by the simulator."""
    pod_annotations = {PROFILE: profile}
    if load_time:
        pod_annotations[LOAD_TIME] = load_time
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {OFFERED: str(offered_rps)}, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": max_surge, "maxUnavailable": max_unavailable},
            },
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                "spec": {
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "args": ["--model", "meta-llama/Llama-3.1-8B-Instruct"],
                            "resources": {
                                "limits": {"nvidia.com/gpu": str(gpus)},
                                "requests": {"cpu": "4", "memory": "32Gi", "nvidia.com/gpu": str(gpus)},
                            },
                        }
                    ],
                },
            },
        },
    }


def inference_rollout(name: str, steps: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The same workload as an Argo Rollouts Rollout with a canary strategy of the given steps."""
    rollout = inference_deployment(name, **options)
    rollout["apiVersion"], rollout["kind"] = "argoproj.io/v1alpha1", "Rollout"
    rollout["spec"]["strategy"] = {"canary": {"steps": steps}}
    return rollout


def served_by(
    runtime: str, name: str, replicas: int, offered_rps: float, overrides: str, **kwargs: Any
) -> dict[str, Any]:
    d = inference_deployment(name, replicas=replicas, offered_rps=offered_rps, **kwargs)
    annotations = d["spec"]["template"]["metadata"]["annotations"]
    annotations["simulator.costslo.dev/runtime"] = runtime
    annotations["simulator.costslo.dev/profile-overrides"] = overrides
    return d


def on_l4(d: dict[str, Any]) -> dict[str, Any]:
    d["spec"]["template"]["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-L4"}
    return d


def holding(resource: str, d: dict[str, Any]) -> dict[str, Any]:
    """The Deployment asking for one unit of another GPU resource (a MIG slice, a time-sliced replica)."""
    res = d["spec"]["template"]["spec"]["containers"][0]["resources"]
    for part in ("limits", "requests"):
        res[part].pop("nvidia.com/gpu")
        res[part][resource] = "1"
    return d


# Each runtime with failures the way its exporter shows them: vLLM's aborts only in the API server's HTTP
# count, SGLang's queued aborts outside num_requests_total, TGI's request count inflated by its chat route,
# a Triton ensemble whose four models each count every request (read for the model clients call).
DEPLOYMENTS: dict[str, Callable[[], dict[str, Any]]] = {
    "vllm": lambda: served_by("vllm", "chat", 2, 16.0, '{"failureRate": 0.03}'),
    "tgi": lambda: on_l4(
        served_by("tgi", "embedder", 2, 5.0, '{"failureRate": 0.03}', profile="mistral-7b-l4")
    ),
    "sglang": lambda: served_by("sglang", "server", 1, 8.0, '{"failureRate": 0.05}'),
    "triton": lambda: served_by("triton", "server", 1, 8.0, '{"failureRate": 0.05}'),
    "ensemble": lambda: served_by("triton", "server", 1, 8.0, '{"failureRate": 0.05, "ensemble": true}'),
    # 3/7 of an H100, and two replicas sharing one L4 time-sliced two ways.
    "mig": lambda: holding(
        "nvidia.com/mig-3g.40gb", served_by("vllm", "server", 1, 6.0, '{"failureRate": 0.03}')
    ),
    "shared": lambda: holding(
        "nvidia.com/gpu.shared",
        served_by("vllm", "server", 2, 2.0, '{"failureRate": 0.03}', profile="mistral-7b-l4"),
    ),
}
