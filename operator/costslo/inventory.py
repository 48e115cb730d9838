"""Who is who in the cluster: pods -> ReplicaSet -> Deployment, GPUs per pod, revisions.

Fed by watch events (handlers.py) and read by the evaluator; no I/O of its own, so it is tested without a
cluster. Deleted pods are kept for a while: a window's cost includes pods that served in it and are gone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from costslo.kubeobjects import controller_of, gpus_requested, template_hash

TEMPLATE_HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    replicaset: str | None
    gpus: int
    node: str | None
    deleted_at: float | None = None


@dataclass(frozen=True)
class RevisionPods:
    pod_template_hash: str
    revision: str | None
    pods: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TargetPods:
    """A Deployment's pods in the window, by revision; `found` is False when the Deployment is unknown."""

    found: bool
    revisions: tuple[RevisionPods, ...]

    @property
    def pods(self) -> tuple[tuple[str, str], ...]:
        return tuple(p for r in self.revisions for p in r.pods)


class Inventory:
    """The latest known state of pods, ReplicaSets and Deployments."""

    def __init__(self, retention_seconds: float = 2 * 3600, clock: Callable[[], float] = time.time) -> None:
        self._pods: dict[tuple[str, str], PodInfo] = {}
        self._rs_owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, rs) -> (kind, name)
        self._rs_revision: dict[tuple[str, str], str | None] = {}
        self._deployments: set[tuple[str, str]] = set()
        self._node_labels: dict[str, dict[str, str]] = {}
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
            gpus=gpus_requested(spec),
            node=spec.get("nodeName"),
        )

    def replicaset(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        owner = controller_of(meta)
        # Deleted ReplicaSets stay known: their pods may still count in the window.
        if owner is not None:
            self._rs_owner[key] = owner
        self._rs_revision[key] = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)

    def deployment(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body["metadata"]
        key = (str(meta["namespace"]), str(meta["name"]))
        if deleted:
            self._deployments.discard(key)
        else:
            self._deployments.add(key)

    def node(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        name = str(body["metadata"]["name"])
        if deleted:
            self._node_labels.pop(name, None)
        else:
            self._node_labels[name] = dict(body["metadata"].get("labels") or {})

    def forget_old(self) -> None:
        """Drops pods deleted longer ago than the retention (the longest window in use)."""
        cutoff = self._clock() - self._retention
        for key in [k for k, p in self._pods.items() if p.deleted_at is not None and p.deleted_at < cutoff]:
            del self._pods[key]

    # -- queries ---------------------------------------------------------------------------------------
    def node_of(self, pod: tuple[str, str]) -> str | None:
        info = self._pods.get(pod)
        return info.node if info else None

    def node_labels(self, node: str) -> dict[str, str] | None:
        return self._node_labels.get(node)

    def target(self, namespace: str, deployment: str, since: float | None = None) -> TargetPods:
        """The Deployment's pods by revision, including pods deleted after `since`."""
        by_hash: dict[str, list[tuple[str, str]]] = {}
        revisions: dict[str, str | None] = {}
        for (ns, name), pod in self._pods.items():
            if ns != namespace or pod.replicaset is None:
                continue
            if self._rs_owner.get((ns, pod.replicaset)) != ("Deployment", deployment):
                continue
            if pod.deleted_at is not None and since is not None and pod.deleted_at < since:
                continue
            h = template_hash(pod.replicaset, deployment)
            by_hash.setdefault(h, []).append((ns, name))
            revisions[h] = self._rs_revision.get((ns, pod.replicaset))
        return TargetPods(
            found=(namespace, deployment) in self._deployments,
            revisions=tuple(
                RevisionPods(h, revisions[h], tuple(sorted(pods))) for h, pods in sorted(by_hash.items())
            ),
        )
