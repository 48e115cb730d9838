"""The rollout gate on the lab: a model swap that breaks the budget is paused and blocked (or rolled back),
one that fits is promoted, an operator killed mid-bake finishes the decision once, and Report mode never
writes the Deployment.

Four namespaces run their rollouts side by side under one operator, so the bakes overlap in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from tests.support.costslos import costslo
from tests.support.lab import Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import LOAD_TIME, PROFILE, inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
BAKE_SECONDS = 30
INTERVAL_SECONDS = 5
# 2 x 8B on one H100 each at 8 req/s: about $0.00021 per request. During a bake the canary takes a third
# of the traffic; a 70B canary projects to about $0.00065, an 8B one to about $0.00031.
BUDGET = "0.0005"
SCENARIOS = {"pause": "Pause", "good": "Pause", "rollback": "Rollback", "report": "Pause"}


@dataclass
class Scenario:
    ns: str
    old_hash: str
    swapped_at: float = 0.0


def gated_slo(action: str, mode: str = "Enforce") -> dict[str, Any]:
    return costslo(
        "chat",
        {
            "targetRef": {"name": "chat"},
            "objective": {"maxCostPerRequest": BUDGET, "latency": {"thresholdSeconds": 60}},
            "pricing": {"gpuHourly": "3.00"},
            "evaluation": {"windows": {"long": "2m", "short": "1m"}, "minRequests": 50},
            "enforcement": {"mode": mode, "rollout": {"action": action, "bakeTime": f"{BAKE_SECONDS}s"}},
        },
    )


def status_of(lab: Lab, ns: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return dict(obj.get("status") or {})


def rollout_of(lab: Lab, ns: str) -> dict[str, Any]:
    return dict(status_of(lab, ns).get("rollout") or {})


def swap(lab: Lab, ns: str, profile: str, marker: str) -> None:
    """A new model behind the same Deployment: new template, pods that take 15 s to load."""
    patch = {
        "spec": {
            "template": {
                "metadata": {"annotations": {PROFILE: profile, LOAD_TIME: "15s", "example.com/build": marker}}
            }
        }
    }
    lab.apps.patch_namespaced_deployment("chat", ns, patch)


def replicasets(lab: Lab, ns: str) -> dict[str, Any]:
    return {
        rs.metadata.labels["pod-template-hash"]: rs for rs in lab.apps.list_namespaced_replica_set(ns).items
    }


def events(lab: Lab, ns: str, kind: str = "CostSLO") -> list[str]:
    return [e.reason for e in lab.core.list_namespaced_event(ns).items if e.involved_object.kind == kind]


@pytest.fixture(scope="module")
def gate_operator(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        lab, tmp_path_factory.mktemp("gate") / "operator.log", f"{INTERVAL_SECONDS}s"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def scenarios(lab: Lab, gate_operator: OperatorProcess) -> Iterator[dict[str, Scenario]]:
    """Every scenario's Deployment serving 8B, judged Stable, then swapped: 70B, except `good` (8B)."""
    api = client.CustomObjectsApi(lab.api)
    with lab.namespaces(*SCENARIOS, prefix="gate-") as names:
        for key, ns in names.items():
            lab.apps.create_namespaced_deployment(
                ns, inference_deployment("chat", replicas=2, offered_rps=8.0)
            )
            mode = "Report" if key == "report" else "Enforce"
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, gated_slo(SCENARIOS[key], mode))
        for ns in names.values():
            wait_for(
                f"{ns}/chat Available", lambda ns=ns: deployment_available(lab, ns, "chat", 2), timeout=90
            )
            wait_for(
                f"{ns} gate Stable", lambda ns=ns: rollout_of(lab, ns).get("state") == "Stable", timeout=60
            )
        out = {key: Scenario(ns, rollout_of(lab, ns)["revision"]) for key, ns in names.items()}
        for key, sc in out.items():
            swap(lab, sc.ns, "llama-3.1-8b-h100" if key == "good" else "llama-3.1-70b-h100", "v2")
            sc.swapped_at = time.time()
        yield out


def test_a_swap_over_budget_is_paused_at_once_and_blocked_after_its_bake(
    lab: Lab, scenarios: dict[str, Scenario]
) -> None:
    sc = scenarios["pause"]
    wait_for(
        "the Deployment paused",
        lambda: lab.apps.read_namespaced_deployment("chat", sc.ns).spec.paused,
        timeout=15,
        interval=0.5,
    )
    paused_after = time.time() - sc.swapped_at
    # Paused before the canary finished loading: only the one surged pod exists on the new revision.
    new = [rs for h, rs in replicasets(lab, sc.ns).items() if h != sc.old_hash]
    assert len(new) == 1 and new[0].spec.replicas == 1 and not new[0].status.ready_replicas
    assert paused_after < 15

    wait_for(
        "RolloutBlocked",
        lambda: status_of(lab, sc.ns).get("phase") == "RolloutBlocked",
        timeout=150,
        interval=2,
    )
    status = status_of(lab, sc.ns)
    rollout = status["rollout"]
    assert (
        rollout["state"] == "Blocked" and rollout["revision"] == new[0].metadata.labels["pod-template-hash"]
    )
    assert "projected cost $" in status["message"] and f"over the budget ${BUDGET}" in status["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["RolloutAllowed"]["status"] == "False"
    assert conditions["RolloutAllowed"]["reason"] == "RolloutBlocked"
    # Judged within an interval or two of the end of its bake.
    started = time.mktime(time.strptime(rollout["bakeStarted"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    blocked = time.mktime(time.strptime(rollout["since"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert BAKE_SECONDS <= blocked - started <= BAKE_SECONDS + 2 * INTERVAL_SECONDS + 1
    # The old revision keeps serving at full strength; the Deployment stays paused.
    old = replicasets(lab, sc.ns)[sc.old_hash]
    assert old.status.ready_replicas == 2
    assert lab.apps.read_namespaced_deployment("chat", sc.ns).spec.paused is True
    for kind in ("CostSLO", "Deployment"):
        reasons = events(lab, sc.ns, kind)
        assert "RolloutPaused" in reasons and "RolloutBlocked" in reasons, (kind, reasons)


def test_the_override_annotation_releases_a_block(lab: Lab, scenarios: dict[str, Scenario]) -> None:
    sc = scenarios["pause"]
    wait_for(
        "RolloutBlocked", lambda: rollout_of(lab, sc.ns).get("state") == "Blocked", timeout=150, interval=2
    )
    lab.apps.patch_namespaced_deployment(
        "chat", sc.ns, {"metadata": {"annotations": {"costslo.dev/override": "accepted for the launch"}}}
    )
    wait_for("Overridden", lambda: rollout_of(lab, sc.ns).get("state") == "Overridden", timeout=30)
    wait_for(
        "the override cleared and the Deployment resumed",
        lambda: (
            (d := lab.apps.read_namespaced_deployment("chat", sc.ns)).spec.paused is not True
            and "costslo.dev/override" not in (d.metadata.annotations or {})
        ),
        timeout=30,
    )
    assert "RolloutOverridden" in events(lab, sc.ns)
    overridden = next(
        e for e in lab.core.list_namespaced_event(sc.ns).items if e.reason == "RolloutOverridden"
    )
    assert "accepted for the launch" in overridden.message
    wait_for("the rollout to finish", lambda: deployment_available(lab, sc.ns, "chat", 2), timeout=90)


def test_a_swap_that_fits_is_promoted_once_even_when_the_operator_is_killed_mid_bake(
    lab: Lab, scenarios: dict[str, Scenario], gate_operator: OperatorProcess
) -> None:
    sc = scenarios["good"]
    wait_for("the bake to start", lambda: rollout_of(lab, sc.ns).get("bakeStarted"), timeout=60)
    gate_operator.kill()
    time.sleep(INTERVAL_SECONDS)
    gate_operator.start()
    wait_for("Promoted", lambda: rollout_of(lab, sc.ns).get("state") == "Promoted", timeout=150, interval=2)
    rollout = rollout_of(lab, sc.ns)
    assert rollout["stableRevision"] == rollout["revision"] != sc.old_hash
    assert "within the budget" in rollout["reason"]
    wait_for(
        "spec.paused false and the rollout finished",
        lambda: (
            lab.apps.read_namespaced_deployment("chat", sc.ns).spec.paused is not True
            and deployment_available(lab, sc.ns, "chat", 2)
        ),
        timeout=90,
    )
    reasons = events(lab, sc.ns)
    assert reasons.count("RolloutPaused") == 1 and reasons.count("RolloutPromoted") == 1, reasons


def test_rollback_restores_the_previous_template_and_never_retries_the_rejected_one(
    lab: Lab, scenarios: dict[str, Scenario]
) -> None:
    sc = scenarios["rollback"]
    # RolledBack lasts until the controller makes the old ReplicaSet the newest again: a second or so.
    wait_for("a rollback", lambda: rollout_of(lab, sc.ns).get("rejectedRevisions"), timeout=150, interval=2)
    assert events(lab, sc.ns).count("RolloutRolledBack") == 1
    rejected = rollout_of(lab, sc.ns)["rejectedRevisions"]
    assert len(rejected) == 1 and rejected[0] != sc.old_hash

    def back_on_the_old_revision() -> bool:
        d = lab.apps.read_namespaced_deployment("chat", sc.ns)
        annotations = d.spec.template.metadata.annotations or {}
        return annotations.get(PROFILE) == "llama-3.1-8b-h100" and d.spec.paused is not True

    wait_for("the old template restored", back_on_the_old_revision, timeout=30)
    wait_for(
        "the old revision serving alone", lambda: rollout_of(lab, sc.ns).get("state") == "Stable", timeout=60
    )
    assert rollout_of(lab, sc.ns)["revision"] == sc.old_hash
    # The same bad template again: rolled back on sight, without a second bake.
    swap(lab, sc.ns, "llama-3.1-70b-h100", "v2")
    wait_for(
        "a second rollback",
        lambda: events(lab, sc.ns).count("RolloutRolledBack") == 2,
        timeout=30,
    )
    wait_for("the old template restored again", back_on_the_old_revision, timeout=30)
    assert events(lab, sc.ns).count("RolloutPaused") == 1


def test_report_mode_never_writes_the_deployment(lab: Lab, scenarios: dict[str, Scenario]) -> None:
    sc = scenarios["report"]
    wait_for(
        "a verdict on the swap",
        lambda: rollout_of(lab, sc.ns).get("state") == "Blocked",
        timeout=150,
        interval=2,
    )
    d = lab.apps.read_namespaced_deployment("chat", sc.ns)
    # Generation 2: the creation and our swap; no pause, no rollback, no annotation from the operator.
    assert d.metadata.generation == 2 and d.spec.paused is not True
    assert not any(k.startswith("costslo.dev/") for k in d.metadata.annotations or {})
    status = status_of(lab, sc.ns)
    assert status["phase"] != "RolloutBlocked"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert "Report mode" in conditions["RolloutAllowed"]["message"]
    blocked = next(e for e in lab.core.list_namespaced_event(sc.ns).items if e.reason == "RolloutBlocked")
    assert "Report mode: the Deployment was not changed" in blocked.message
