"""Who is who, read from kube-state-metrics in Prometheus: pods -> ReplicaSet -> Deployment or Rollout.

For tools that have no cluster access (`costslo report`): two queries, whatever the number of workloads.
The operator builds the same picture from the Kubernetes API instead.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from costslo.inventory import WORKLOAD_KINDS
from costslo.kubeobjects import template_hash
from costslo.metrics.promql import Matcher, duration, namespace_matcher, selector
from costslo.metrics.window import PodKey, Querier
from costslo.runtimes import POD_MONITOR, PodLabels


@dataclass(frozen=True)
class Revision:
    """The pods of one ReplicaSet (one pod template) of a workload."""

    pod_template_hash: str
    replicaset: str
    pods: tuple[PodKey, ...]


@dataclass(frozen=True)
class Workload:
    namespace: str
    kind: str  # Deployment, Rollout, StatefulSet, ReplicaSet, Pod, ...
    name: str
    revisions: tuple[Revision, ...]

    @property
    def pods(self) -> tuple[PodKey, ...]:
        return tuple(p for r in self.revisions for p in r.pods)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


def discover(
    client: Querier,
    window_seconds: float,
    namespaces: Collection[str] | None,
    at: float | None = None,
    labels: PodLabels = POD_MONITOR,
) -> list[Workload]:
    """Every workload whose pods existed during the window, with its revisions (pods deleted since count)."""
    ns = namespace_matcher(labels.namespace, namespaces)
    w = duration(window_seconds)
    pod_owner = client.query(
        f"max by ({labels.namespace}, {labels.pod}, owner_kind, owner_name) "
        f"(max_over_time({selector('kube_pod_owner', [ns])}[{w}]))",
        at,
    )
    owned = selector("kube_replicaset_owner", [ns, Matcher.one_of("owner_kind", WORKLOAD_KINDS)])
    rs_owner = client.query(
        f"max by ({labels.namespace}, replicaset, owner_kind, owner_name) (max_over_time({owned}[{w}]))",
        at,
    )
    workload_of = {
        (s.labels[labels.namespace], s.labels["replicaset"]): (s.labels["owner_kind"], s.labels["owner_name"])
        for s in rs_owner
    }
    groups: dict[tuple[str, str, str], dict[tuple[str, str], list[PodKey]]] = {}
    for s in pod_owner:
        namespace, pod = s.labels.get(labels.namespace, ""), s.labels.get(labels.pod, "")
        kind, owner = s.labels.get("owner_kind", "<none>"), s.labels.get("owner_name", "<none>")
        if not namespace or not pod:
            continue
        if kind == "ReplicaSet" and (namespace, owner) in workload_of:
            workload_kind, workload = workload_of[(namespace, owner)]
            key, revision = (namespace, workload_kind, workload), (template_hash(owner, workload), owner)
        elif kind in ("<none>", ""):
            key, revision = (namespace, "Pod", pod), ("", "")
        else:
            key, revision = (namespace, kind, owner), ("", "")
        groups.setdefault(key, {}).setdefault(revision, []).append((namespace, pod))
    return [
        Workload(
            namespace=ns_,
            kind=kind,
            name=name,
            revisions=tuple(
                Revision(h, rs, tuple(sorted(pods))) for (h, rs), pods in sorted(revisions.items())
            ),
        )
        for (ns_, kind, name), revisions in sorted(groups.items())
    ]
