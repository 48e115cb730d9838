"""What the simulator needs to know of the cluster: pods, who owns them, their GPUs and their load."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from costslo import kubeclient
from costslo.inventory import hash_of
from costslo.kubeobjects import GPU_RESOURCE, controller_of, whole
from costslo.simulator.profiles import OFFERED_LOAD_ANNOTATION

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
# GPU feature discovery's count of time-slicing replicas per GPU; the device plugin advertises them as
# nvidia.com/gpu.shared when it renames shared GPUs.
GPU_REPLICAS_LABEL = "nvidia.com/gpu.replicas"
SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"
_MIG_RESOURCE = re.compile(r"nvidia\.com/mig-(\d+)g\.(\d+)gb(?:\+me)?")
_A30_MIG = {(1, 6), (2, 12), (4, 24)}  # the A30 has 4 compute slices; the other MIG GPUs 7


def unit_share(resource: str, replicas: int = 1) -> float | None:
    """The share of one physical GPU's compute a unit of `resource` gives; None: not a GPU resource."""
    if resource == GPU_RESOURCE:
        return 1.0
    if resource == SHARED_GPU_RESOURCE:
        return 1.0 / max(1, replicas)
    mig = _MIG_RESOURCE.fullmatch(resource)
    if mig is None:
        return None
    slices, memory = int(mig.group(1)), int(mig.group(2))
    return slices / (4 if (slices, memory) in _A30_MIG else 7)


def gpu_units(pod_spec: Mapping[str, Any]) -> dict[str, int]:
    """Units of each GPU resource the pod's containers ask for (limits, else requests)."""
    units: dict[str, int] = {}
    for c in pod_spec.get("containers") or []:
        res = c.get("resources") or {}
        asked = {**(res.get("requests") or {}), **(res.get("limits") or {})}
        for resource, quantity in asked.items():
            if unit_share(resource) is not None and whole(quantity) > 0:
                units[resource] = units.get(resource, 0) + whole(quantity)
    return units


# (namespace, owner kind, owner name): the pods that share one Service's traffic.
Group = tuple[str, str, str]


@dataclass(frozen=True)
class PodView:
    uid: str
    namespace: str
    name: str
    container: str
    node: str | None
    gpus: float  # GPU-equivalents: a MIG slice or a time-sliced replica is its share of a GPU
    ready: bool
    annotations: Mapping[str, str]
    group: Group
    replicaset: str | None
    pod_template_hash: str | None
    units: Mapping[str, int] = field(default_factory=dict)  # GPU resource -> units held


@dataclass(frozen=True)
class NodeView:
    name: str
    gpus: int  # whole GPUs (nvidia.com/gpu)
    product: str
    memory_mib: float
    units: Mapping[str, int] = field(default_factory=dict)  # every GPU resource the node advertises
    replicas: int = 1  # time-slicing replicas per GPU


@dataclass(frozen=True)
class ClusterView:
    pods: list[PodView] = field(default_factory=list)
    nodes: dict[str, NodeView] = field(default_factory=dict)
    offered_rps: dict[Group, float] = field(default_factory=dict)


def _is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def _offered(annotations: Mapping[str, str]) -> float | None:
    raw = annotations.get(OFFERED_LOAD_ANNOTATION)
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def build_view(
    pods: list[dict[str, Any]],
    replicasets: list[dict[str, Any]],
    deployments: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    rollouts: Sequence[dict[str, Any]] = (),
) -> ClusterView:
    """Joins raw API objects into the simulator's view (pure, so it is tested without a cluster)."""
    rs_owner: dict[tuple[str, str], tuple[str, str]] = {}
    for rs in replicasets:
        meta = rs["metadata"]
        owner = controller_of(meta)
        if owner:
            rs_owner[(meta["namespace"], meta["name"])] = owner
    offered: dict[Group, float] = {}
    for kind, workloads in (("Deployment", deployments), ("Rollout", rollouts)):
        for d in workloads:
            meta = d["metadata"]
            rps = _offered(meta.get("annotations") or {})
            if rps is not None:
                offered[(meta["namespace"], kind, meta["name"])] = rps

    node_views: dict[str, NodeView] = {}
    for n in nodes:
        meta, status = n["metadata"], n.get("status", {})
        labels = meta.get("labels") or {}
        capacity = status.get("capacity", {})
        node_views[meta["name"]] = NodeView(
            name=meta["name"],
            gpus=whole(capacity.get(GPU_RESOURCE, 0)),
            product=labels.get(GPU_PRODUCT_LABEL, "NVIDIA-H100-80GB-HBM3"),
            memory_mib=float(labels.get(GPU_MEMORY_LABEL, 81559)),
            units={r: whole(q) for r, q in capacity.items() if unit_share(r) is not None and whole(q) > 0},
            replicas=max(1, whole(labels.get(GPU_REPLICAS_LABEL, 1))),
        )

    views: list[PodView] = []
    for pod in pods:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        ns, name = meta["namespace"], meta["name"]
        owner = controller_of(meta)
        replicaset = owner[1] if owner and owner[0] == "ReplicaSet" else None
        if replicaset and (ns, replicaset) in rs_owner:
            kind, oname = rs_owner[(ns, replicaset)]
            group: Group = (ns, kind, oname)
        else:
            group = (ns, "Pod", name)
            rps = _offered(annotations)
            if rps is not None:
                offered[group] = rps
        containers = pod.get("spec", {}).get("containers", [])
        node_name = pod.get("spec", {}).get("nodeName")
        units = gpu_units(pod.get("spec") or {})
        replicas = node_views[node_name].replicas if node_name in node_views else 1
        views.append(
            PodView(
                uid=meta["uid"],
                namespace=ns,
                name=name,
                container=containers[0]["name"] if containers else "",
                node=node_name,
                gpus=sum(n * (unit_share(r, replicas) or 0.0) for r, n in units.items()),
                ready=_is_ready(pod),
                annotations=annotations,
                group=group,
                replicaset=replicaset,
                pod_template_hash=hash_of(meta.get("labels") or {}),
                units=units,
            )
        )

    return ClusterView(pods=views, nodes=node_views, offered_rps=offered)


class ClusterReader:
    """Lists the objects the view is built from (plain lists: the lab is small and this stays simple)."""

    def __init__(self, kubeconfig: str | None) -> None:
        from kubernetes import client

        api_client = kubeclient.api_client(kubeconfig)
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def _items(response: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def read(self) -> ClusterView:
        """One consistent-enough snapshot of pods, ReplicaSets, Deployments, Rollouts and nodes."""
        raw: dict[str, Any] = {"_preload_content": False, "_request_timeout": 10}
        return build_view(
            self._items(self._core.list_pod_for_all_namespaces(**raw)),
            self._items(self._apps.list_replica_set_for_all_namespaces(**raw)),
            self._items(self._apps.list_deployment_for_all_namespaces(**raw)),
            self._items(self._core.list_node(**raw)),
            self._rollouts(raw),
        )

    def _rollouts(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """Argo Rollouts' Rollouts, where its CRD is installed (the offered load may sit on them)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._items(
                self._custom.list_cluster_custom_object("argoproj.io", "v1alpha1", "rollouts", **raw)
            )
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
