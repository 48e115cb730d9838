"""The operator's inventory (pods -> ReplicaSet -> Deployment) and when status is worth writing."""

from __future__ import annotations

from typing import Any

import pytest

from costslo import views
from costslo.actions import status
from costslo.actions.status import HEARTBEAT_SECONDS, needs_write
from costslo.inventory import Inventory
from costslo.kubeobjects import gpus_requested
from costslo.runtimes import gpu_resources

pytestmark = pytest.mark.unit


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def pod(name: str, rs: str, gpus: int = 1, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "namespace": "ml",
        "name": name,
        "ownerReferences": [{"kind": "ReplicaSet", "name": rs, "controller": True}],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "nodeName": "gpu-a",
            "containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


def rs(name: str, revision: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ml",
            "name": name,
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "ownerReferences": [{"kind": "Deployment", "name": "chat", "controller": True}],
        }
    }


def test_inventory_groups_pods_by_revision_and_keeps_recently_deleted_ones() -> None:
    clock = Clock()
    inv = Inventory(retention_seconds=600, clock=clock)
    inv.deployment({"metadata": {"namespace": "ml", "name": "chat"}})
    inv.replicaset(rs("chat-aaa", "1"))
    inv.replicaset(rs("chat-bbb", "2"))
    for p in (pod("chat-aaa-1", "chat-aaa"), pod("chat-aaa-2", "chat-aaa"), pod("chat-bbb-1", "chat-bbb", 4)):
        inv.pod(p)
    target = inv.target("ml", "Deployment", "chat")
    assert target.found
    assert {(r.pod_template_hash, r.revision, len(r.pods)) for r in target.revisions} == {
        ("aaa", "1", 2),
        ("bbb", "2", 1),
    }
    inv.pod(pod("chat-aaa-1", "chat-aaa"), deleted=True)
    clock.now += 300
    # Deleted 300 s ago: still in a 10-minute window, not in a 1-minute one.
    assert len(inv.target("ml", "Deployment", "chat", since=clock.now - 600).pods) == 3
    assert len(inv.target("ml", "Deployment", "chat", since=clock.now - 60).pods) == 2
    clock.now += 400
    inv.forget_old()
    assert len(inv.target("ml", "Deployment", "chat").pods) == 2
    assert not inv.target("ml", "Deployment", "other").found


def argo_rs(name: str, revision: str, replicas: int, image: str) -> dict[str, Any]:
    h = name.rsplit("-", 1)[1]
    labels = {"app": "chat", "rollouts-pod-template-hash": h}
    return {
        "metadata": {
            "namespace": "ml",
            "name": name,
            "labels": labels,
            "annotations": {"rollout.argoproj.io/revision": revision},
            "ownerReferences": [{"kind": "Rollout", "name": "chat", "controller": True}],
        },
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"image": image}]}},
        },
        "status": {"readyReplicas": replicas},
    }


def test_a_rollout_and_a_deployment_of_the_same_name_are_told_apart() -> None:
    """Argo's workloadRef keeps a Deployment (scaled to 0) beside the Rollout, often of the same name."""
    inv = Inventory()
    inv.deployment({"metadata": {"namespace": "ml", "name": "chat"}, "spec": {"replicas": 0}})
    assert inv.rollout({"metadata": {"namespace": "ml", "name": "chat"}, "spec": {"replicas": 4}})
    inv.replicaset(rs("chat-aaa", "1"))
    inv.replicaset(argo_rs("chat-s7", "1", 3, "vllm:1"))
    assert inv.replicaset(argo_rs("chat-c9", "2", 1, "vllm:2"))  # a new revision wakes the loop
    for p in (pod("chat-s7-1", "chat-s7"), pod("chat-s7-2", "chat-s7"), pod("chat-c9-1", "chat-c9", 2)):
        inv.pod(p)
    target = inv.target("ml", "Rollout", "chat")
    assert {(r.pod_template_hash, r.revision, len(r.pods)) for r in target.revisions} == {
        ("s7", "1", 2),
        ("c9", "2", 1),
    }
    assert inv.target("ml", "Deployment", "chat").pods == ()
    assert inv.replicas("ml", "Rollout", "chat") == 4 and inv.replicas("ml", "Deployment", "chat") == 0
    assert inv.gpus_per_replica("ml", "Rollout", "chat") == 2  # the newest revision's pods
    state = inv.deployment_state("ml", "Rollout", "chat")
    assert state is not None and state.newest is not None
    # Argo makes each revision itself: its newest ReplicaSet is the template under way, never "pending".
    assert state.newest.pod_template_hash == "c9" and state.matching is state.newest
    assert not state.template_pending
    assert "rollouts-pod-template-hash" not in state.newest.template["metadata"]["labels"]


def test_autoscalers_are_matched_by_kind_and_name() -> None:
    inv = Inventory()
    inv.autoscaler_object(
        {
            "metadata": {"namespace": "ml", "name": "chat"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "chat"}
            },
        }
    )
    assert inv.autoscaler("ml", "Rollout", "chat") == "HorizontalPodAutoscaler chat"
    assert inv.autoscaler("ml", "Deployment", "chat") is None


def test_status_is_written_only_when_something_material_changes() -> None:
    base = {
        "phase": "Met",
        "current": {"costPerRequest": "0.000123456", "gpuUtilisation": 0.4567},
        "lastEvaluationTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "SLOMet", "status": "True", "lastTransitionTime": "t0"}],
    }
    noise = {
        **base,
        "current": {"costPerRequest": "0.000123499", "gpuUtilisation": 0.4571},
        "lastEvaluationTime": "2026-01-01T00:00:30Z",
    }
    assert not needs_write(base, noise, seconds_since_write=30)
    assert needs_write(base, noise, seconds_since_write=HEARTBEAT_SECONDS)
    moved = {**base, "current": {"costPerRequest": "0.000131", "gpuUtilisation": 0.4567}}
    assert needs_write(base, moved, seconds_since_write=30)
    assert needs_write(base, {**base, "phase": "Breached"}, seconds_since_write=30)
    flipped = {**base, "conditions": [{"type": "SLOMet", "status": "False", "lastTransitionTime": "t1"}]}
    assert needs_write(base, flipped, seconds_since_write=30)
    assert needs_write(None, base, seconds_since_write=0)


def test_steady_wobble_is_not_news_but_new_words_and_fields_are() -> None:
    said = {
        "message": "cost per request $0.000388 is within the budget $0.0005 over 53.8 requests",
        "current": {"costPerRequest": "0.000388", "requests": 1000},
        "rollout": {"state": "Stable", "revision": "84768c475c"},
    }
    wobble = {
        "message": "cost per request $0.000401 is within the budget $0.0005 over 55.1 requests",
        "current": {"costPerRequest": "0.000401", "requests": 1040},
        "rollout": {"state": "Stable", "revision": "84768c475c"},
    }
    assert not needs_write(said, wobble, seconds_since_write=30)
    reworded = {
        **wobble,
        "message": "cost per request $0.000401 is over the budget $0.0005 over 55.1 requests",
    }
    assert needs_write(said, reworded, seconds_since_write=30)
    # A failure rate moves in points, a latency by 20%.
    assert not needs_write({"failureRate": 0.010}, {"failureRate": 0.014}, 30)
    assert needs_write({"failureRate": 0.010}, {"failureRate": 0.035}, 30)
    assert not needs_write({"latencySeconds": 7.25}, {"latencySeconds": 8.5}, 30)
    assert needs_write({"latencySeconds": 7.25}, {"latencySeconds": 9.2}, 30)
    # 6% is a move in money; a hash is not a number, whatever digits it holds; a field gone is news.
    assert needs_write(said, {**said, "current": {"costPerRequest": "0.000412", "requests": 1000}}, 30)
    assert needs_write(said, {**said, "rollout": {"state": "Stable", "revision": "12345a"}}, 30)
    assert needs_write(said, {**said, "rollout": {"state": "Stable"}}, 30)


def test_display_reads_at_a_glance_and_keeps_current_exact() -> None:
    current = {
        "costPerRequest": "0.000330759138663",
        "projectedCostPerRequest": "0.000367",
        "latencySeconds": 12.9675,
        "gpuUtilisation": 0.335905,
        "requestsPerSecond": 10.5123,
        "gpus": 2.0,
        "hourlyCost": "12.4567",
    }
    shown = views.display(current, "0.0002")
    assert shown == {
        "costPerRequest": "$0.000331",
        "projectedCostPerRequest": "$0.000367",
        "budget": "$0.000200",
        "latency": "12.97s",
        "requestsPerSecond": "10.5",
        "gpus": "2",
        "gpuUtilisation": "34%",
        "hourlyCost": "$12.46/h",
    }
    assert views.display({"latencySeconds": 0.3359}, None) == {"latency": "336ms"}
    # A cost just over the budget never reads as equal to it.
    over = views.display({"costPerRequest": "0.00020004"}, "0.0002")
    assert over["costPerRequest"] != over["budget"]


def test_display_digits_alone_are_no_news_but_a_new_figure_is() -> None:
    before = {"phase": "Met", "display": {"costPerRequest": "$0.000331", "gpuUtilisation": "34%"}}
    wobble = {"phase": "Met", "display": {"costPerRequest": "$0.000333", "gpuUtilisation": "35%"}}
    assert status.same(before, wobble)
    assert status.differences(before, wobble) == []
    grown = {"phase": "Met", "display": {**wobble["display"], "latency": "1.20s"}}
    assert not status.same(before, grown)


def test_a_pod_holds_the_share_of_a_gpu_its_resources_are() -> None:
    def spec(limits: dict[str, str]) -> dict[str, object]:
        return {"containers": [{"name": "s", "resources": {"limits": limits}}, {"name": "sidecar"}]}

    assert gpus_requested(spec({"nvidia.com/gpu": "2", "cpu": "4"})) == 2
    assert gpus_requested(spec({"nvidia.com/mig-3g.40gb": "1"})) == pytest.approx(3 / 7)
    assert gpus_requested(spec({"nvidia.com/mig-2g.12gb": "2"})) == pytest.approx(1.0)  # A30: 2 of 4, twice
    # Time-sliced replicas count as configured; unconfigured they hold no known share.
    assert gpus_requested(spec({"nvidia.com/gpu.shared": "1"})) == 0
    shared = gpu_resources({"nvidia.com/gpu.shared": 0.25})
    assert gpus_requested(spec({"nvidia.com/gpu.shared": "1"}), shared) == 0.25
