"""What the simulator needs to know of the cluster: pods, who owns them, their GPUs and their load."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from costslo import kubeclient
from costslo.inventory import hash_of
from costslo.kubeobjects import GPU_RESOURCE, controller_of, gpus_requested, whole
from costslo.simulator.profiles import OFFERED_LOAD_ANNOTATION

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"

# (namespace, owner kind, owner name): the pods that share one Service's traffic.
Group = tuple[str, str, str]


@dataclass(frozen=True)
class PodView:
    uid: str
    namespace: str
    name: str
    container: str
    node: str | None
    gpus: int
    ready: bool
    annotations: Mapping[str, str]
    group: Group
    replicaset: str | None
    pod_template_hash: str | None


@dataclass(frozen=True)
class NodeView:
    name: str
    gpus: int
    product: str
    memory_mib: float


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
        views.append(
            PodView(
                uid=meta["uid"],
                namespace=ns,
                name=name,
                container=containers[0]["name"] if containers else "",
                node=pod.get("spec", {}).get("nodeName"),
                gpus=gpus_requested(pod.get("spec") or {}),
                ready=_is_ready(pod),
                annotations=annotations,
                group=group,
                replicaset=replicaset,
                pod_template_hash=hash_of(meta.get("labels") or {}),
            )
        )

    node_views: dict[str, NodeView] = {}
    for n in nodes:
        meta, status = n["metadata"], n.get("status", {})
        labels = meta.get("labels") or {}
        gpus = whole(status.get("capacity", {}).get(GPU_RESOURCE, 0))
        node_views[meta["name"]] = NodeView(
            name=meta["name"],
            gpus=gpus,
            product=labels.get(GPU_PRODUCT_LABEL, "NVIDIA-H100-80GB-HBM3"),
            memory_mib=float(labels.get(GPU_MEMORY_LABEL, 81559)),
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
