"""Who is who in the cluster: pods -> ReplicaSet -> Deployment or Rollout, GPUs per pod, revisions.

Fed by watch events (handlers.py) and read by the evaluator; no I/O of its own, so it is tested without a
cluster. Deleted pods are kept for a while: a window's cost includes pods that served in it and are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from costslo.kubeobjects import controller_of, gpus_requested, template_hash
from costslo.rollout import OVERRIDE_ANNOTATION, DeploymentState, Revision
from costslo.runtimes import DEFAULT_GPU_RESOURCES, GpuResource

TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Argo Rollouts labels and numbers its ReplicaSets in its own names.
ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"
ROLLOUT_REVISION_ANNOTATION = "rollout.argoproj.io/revision"
_HASH_LABELS = (TEMPLATE_HASH_LABEL, ROLLOUT_HASH_LABEL)
WORKLOAD_KINDS = ("Deployment", "Rollout")


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    replicaset: str | None
    gpus: float  # GPU-equivalents: a MIG slice is its share of a GPU
    node: str | None
    deleted_at: float | None = None


@dataclass(frozen=True)
class _ReplicaSet:
    owner: tuple[str, str] | None  # (kind, name) of the Deployment or Rollout
    revision: Revision


@dataclass(frozen=True)
class _Workload:
    paused: bool
    template: Mapping[str, Any]
    annotations: Mapping[str, str]
    replicas: int
    progress_deadline_seconds: float = 600.0


def without_hash_label(template: Mapping[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's pod template as the Deployment wrote it: the controller adds only the hash label."""
    meta = dict(template.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in _HASH_LABELS}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    return {**template, "metadata": meta}


@dataclass(frozen=True)
class RevisionPods:
    pod_template_hash: str
    revision: str | None
    pods: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TargetPods:
    """A workload's pods in the window, by revision; `found` is False when the workload is unknown."""

    found: bool
    revisions: tuple[RevisionPods, ...]

    @property
    def pods(self) -> tuple[tuple[str, str], ...]:
        return tuple(p for r in self.revisions for p in r.pods)


class Inventory:
    """The latest known state of pods, ReplicaSets, Deployments and Rollouts."""

    def __init__(
        self,
        retention_seconds: float = 2 * 3600,
        clock: Callable[[], float] = time.time,
        gpu_resources: Sequence[GpuResource] = DEFAULT_GPU_RESOURCES,
    ) -> None:
        self._gpu_resources = tuple(gpu_resources)
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self._rs_owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, rs) -> (kind, name)
        self._rs_revision: dict[tuple[str, str], str | None] = {}
        self._workloads: dict[tuple[str, str, str], _Workload] = {}  # (ns, kind, name)
        self._replicasets: dict[tuple[str, str], _ReplicaSet] = {}
        self._node_labels: dict[str, dict[str, str]] = {}
        self._autoscalers: dict[tuple[str, str], tuple[str, str, str]] = {}  # (ns, hpa) -> (kind, name, who)
        self._retention = retention_seconds
        self._clock = clock

    # -- events ----------------------------------------------------------------------------------------
    def pod(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta, spec = body["metadata"], body.get("spec") or {}
        key = (str(meta["namespace"]), str(meta["name"]))
        if deleted or meta.get("deletionTimestamp"):
            known = self._pods.get(key)
            if known is not None and known.deleted_at is None:
                self._pods[key] = PodInfo(**{**known.__dict__, "deleted_at": self._clock()})
            return
        owner = controller_of(meta)
        self._pods[key] = PodInfo(
            namespace=key[0],
            name=key[1],
            replicaset=owner[1] if owner and owner[0] == "ReplicaSet" else None,
            gpus=gpus_requested(spec, self._gpu_resources),
            node=spec.get("nodeName"),
        )

    def replicaset(self, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """Records a ReplicaSet; True when it is new or its revision moved (a new revision, or an old one
        brought back by a rollback), which the rollout gate answers at once."""
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        key = (str(meta["namespace"]), str(meta["name"]))
        owner = controller_of(meta)
        # Deleted ReplicaSets stay known: their pods may still count in the window.
        if owner is not None:
            self._rs_owner[key] = owner
        revision = revision_of(meta.get("annotations") or {})
        self._rs_revision[key] = revision
        known = self._replicasets.get(key)
        new = known is None or known.revision.number != whole_revision(revision)
        if deleted:
            self._replicasets.pop(key, None)
            return False
        workload = owner if owner and owner[0] in WORKLOAD_KINDS else None
        labels = meta.get("labels") or {}
        self._replicasets[key] = _ReplicaSet(
            workload,
            Revision(
                pod_template_hash=str(
                    hash_of(labels) or template_hash(key[1], workload[1] if workload else "")
                ),
                number=whole_revision(revision),
                template=without_hash_label(spec.get("template") or {}),
                replicas=int(spec.get("replicas") or 0),
                ready_replicas=int(status.get("readyReplicas") or 0),
            ),
        )
        return new

    def deployment(self, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """Records a Deployment; True when its template, pause or override changed: the gate's business."""
        return self.workload("Deployment", body, deleted)

    def rollout(self, body: Mapping[str, Any], deleted: bool = False) -> bool:
        """Records an Argo Rollouts Rollout, as a Deployment (spec.template is absent with a workloadRef)."""
        return self.workload("Rollout", body, deleted)

    def workload(self, kind: str, body: Mapping[str, Any], deleted: bool = False) -> bool:
        meta, spec = body["metadata"], body.get("spec") or {}
        key = (str(meta["namespace"]), kind, str(meta["name"]))
        before = self._workloads.get(key)
        if deleted:
            self._workloads.pop(key, None)
            return False
        else:
            self._workloads[key] = _Workload(
                paused=bool(spec.get("paused")),
                template=spec.get("template") or {},
                annotations=dict(meta.get("annotations") or {}),
                replicas=1 if spec.get("replicas") is None else int(spec["replicas"]),
                progress_deadline_seconds=float(spec.get("progressDeadlineSeconds") or 600),
            )
        after = self._workloads[key]
        # Only what the gate reads: our own annotation writes and the controller's revision bumps must
        # not wake a full evaluation cycle.
        return before is None or (
            before.paused,
            before.template,
            before.annotations.get(OVERRIDE_ANNOTATION),
        ) != (after.paused, after.template, after.annotations.get(OVERRIDE_ANNOTATION))

    def node(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        name = str(body["metadata"]["name"])
        if deleted:
            self._node_labels.pop(name, None)
        else:
            self._node_labels[name] = dict(body["metadata"].get("labels") or {})

    def autoscaler_object(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        """A HorizontalPodAutoscaler; KEDA's ScaledObjects create one each, so this sees them as well."""
        meta, spec = body["metadata"], body.get("spec") or {}
        key = (str(meta["namespace"]), str(meta["name"]))
        ref = spec.get("scaleTargetRef") or {}
        if deleted or ref.get("kind") not in WORKLOAD_KINDS:
            self._autoscalers.pop(key, None)
            return
        owner = controller_of(meta)
        who = (
            f"KEDA ScaledObject {owner[1]}"
            if owner and owner[0] == "ScaledObject"
            else f"HorizontalPodAutoscaler {key[1]}"
        )
        self._autoscalers[key] = (str(ref["kind"]), str(ref.get("name")), who)

    def autoscaler(self, namespace: str, kind: str, name: str) -> str | None:
        """Who owns the workload's replicas besides us, if anyone."""
        for (ns, _), (target_kind, target, who) in sorted(list(self._autoscalers.items())):
            if ns == namespace and (target_kind, target) == (kind, name):
                return who
        return None

    def forget_old(self) -> None:
        """Drops pods deleted longer ago than the retention (the longest window in use)."""
        cutoff = self._clock() - self._retention
        for key in [
            k for k, p in list(self._pods.items()) if p.deleted_at is not None and p.deleted_at < cutoff
        ]:
            del self._pods[key]

    # -- queries ---------------------------------------------------------------------------------------
    def node_of(self, pod: tuple[str, str]) -> str | None:
        info = self._pods.get(pod)
        return info.node if info else None

    def node_labels(self, node: str) -> dict[str, str] | None:
        return self._node_labels.get(node)

    def deployment_state(self, namespace: str, kind: str, name: str) -> DeploymentState | None:
        """The workload and its ReplicaSets as the rollout gate reads them; None when unknown."""
        d = self._workloads.get((namespace, kind, name))
        if d is None:
            return None
        revisions = tuple(
            rs.revision
            for (ns, _), rs in list(self._replicasets.items())
            if ns == namespace and rs.owner == (kind, name)
        )
        template = d.template
        if kind == "Rollout":
            # Argo Rollouts makes every revision itself (the template may sit in a workloadRef'd
            # Deployment): its newest ReplicaSet is the template it is rolling out.
            newest = max(revisions, key=lambda r: r.number, default=None)
            template = newest.template if newest else {}
        return DeploymentState(
            namespace, name, d.paused, template, d.annotations, revisions, d.progress_deadline_seconds
        )

    def gpus_per_replica(self, namespace: str, kind: str, name: str) -> float | None:
        """GPUs each pod of the workload's newest revision asks for; None when no pod is known."""
        target = self.target(namespace, kind, name)
        newest = max(target.revisions, key=lambda r: whole_revision(r.revision), default=None)
        alive = [self._pods[p] for p in (newest.pods if newest else ()) if self._pods[p].deleted_at is None]
        return max((p.gpus for p in alive), default=None)

    def replicas(self, namespace: str, kind: str, name: str) -> int | None:
        d = self._workloads.get((namespace, kind, name))
        return d.replicas if d else None

    def target(self, namespace: str, kind: str, name: str, since: float | None = None) -> TargetPods:
        """The workload's pods by revision, including pods deleted after `since`."""
        by_hash: dict[str, list[tuple[str, str]]] = {}
        revisions: dict[str, str | None] = {}
        # Snapshots (list(...)): watch handlers may add entries while a cycle reads them in its thread.
        for (ns, pod_name), pod in list(self._pods.items()):
            if ns != namespace or pod.replicaset is None:
                continue
            if self._rs_owner.get((ns, pod.replicaset)) != (kind, name):
                continue
            if pod.deleted_at is not None and since is not None and pod.deleted_at < since:
                continue
            h = template_hash(pod.replicaset, name)
            by_hash.setdefault(h, []).append((ns, pod_name))
            revisions[h] = self._rs_revision.get((ns, pod.replicaset))
        return TargetPods(
            found=(namespace, kind, name) in self._workloads,
            revisions=tuple(
                RevisionPods(h, revisions[h], tuple(sorted(pods))) for h, pods in sorted(by_hash.items())
            ),
        )


def revision_of(annotations: Mapping[str, str]) -> str | None:
    """A ReplicaSet's revision number as its Deployment or Rollout controller wrote it."""
    return annotations.get(REVISION_ANNOTATION) or annotations.get(ROLLOUT_REVISION_ANNOTATION)


def hash_of(labels: Mapping[str, str]) -> str | None:
    """A ReplicaSet's (or pod's) pod-template hash, in the Deployment controller's or Argo's label."""
    return labels.get(TEMPLATE_HASH_LABEL) or labels.get(ROLLOUT_HASH_LABEL)


def whole_revision(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
