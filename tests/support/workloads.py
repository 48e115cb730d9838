"""Manifests of the workloads tests deploy into the lab."""

from __future__ import annotations

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
