"""Facts read off raw Kubernetes objects: who controls them, how many GPUs a pod asks for, revision hashes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from costslo.runtimes import DEFAULT_GPU_RESOURCES, GpuResource, gpus_per_unit

GPU_RESOURCE = "nvidia.com/gpu"


def controller_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner, if any."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["kind"]), str(ref["name"])
    return None


def whole(quantity: Any) -> int:
    """A whole-number resource quantity such as a GPU count; 0 when absent or not a whole number."""
    try:
        return int(str(quantity or 0))
    except ValueError:
        return 0


def gpus_requested(
    pod_spec: Mapping[str, Any], resources: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES
) -> float:
    """GPUs the pod's containers ask for (limits, else requests: the device plugin uses limits), a MIG slice
    or a time-sliced replica counted as the share of a GPU its resource is (as the cost queries count it)."""
    total = 0.0
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        asked = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        for resource, quantity in asked.items():
            share = gpus_per_unit(resource, resources)
            if share is not None:
                total += whole(quantity) * share
    return total


def template_hash(replicaset: str, deployment: str) -> str:
    """The pod-template-hash in a ReplicaSet's name: a Deployment names them <deployment>-<hash>."""
    prefix = f"{deployment}-"
    return replicaset[len(prefix) :] if replicaset.startswith(prefix) else replicaset
