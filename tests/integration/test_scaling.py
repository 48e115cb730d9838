"""Cost-aware scaling on the lab, and quiet status on a steady SLO.

Four namespaces side by side under one operator: idle replicas trimmed when their cost breaks the budget,
a replica added when latency breaks and cost has headroom, a recommendation only where an HPA owns the
replicas, and a steady SLO whose status is not rewritten cycle after cycle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from tests.support.costslos import costslo
from tests.support.lab import Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
INTERVAL_SECONDS = 5


def scaled_slo(
    budget: str,
    latency: float,
    min_replicas: int,
    max_replicas: int,
    windows: tuple[str, str] = ("1m", "30s"),
) -> dict[str, Any]:
    return costslo(
        "chat",
        {
            "targetRef": {"name": "chat"},
            "objective": {"maxCostPerRequest": budget, "latency": {"thresholdSeconds": latency}},
            "pricing": {"gpuHourly": "3.00"},
            "evaluation": {"windows": {"long": windows[0], "short": windows[1]}, "minRequests": 50},
            "enforcement": {
                "scaling": {
                    "enabled": True,
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "cooldown": "15s",
                    "targetUtilisation": 0.7,
                }
            },
        },
    )


# namespace key -> (replicas, offered req/s, CostSLO)
SCENARIOS = {
    # 4 x 8B at 4 req/s: GPUs 7% busy, $0.00083 per request against $0.0005; one replica would do.
    "down": (4, 4.0, scaled_slo("0.0005", 60, 1, 8)),
    # The same, but an HPA owns the replicas.
    "hpa": (4, 4.0, scaled_slo("0.0005", 60, 1, 8)),
    # 1 x 8B whose p95 (several seconds) breaks a 1 s budget, with money to spare.
    "up": (1, 4.0, scaled_slo("0.01", 1, 1, 2)),
    # Steady and within budget: the status must go quiet.
    "steady": (2, 8.0, scaled_slo("0.01", 60, 2, 2, windows=("2m", "1m"))),
}


def status_of(lab: Lab, ns: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return dict(obj.get("status") or {})


def replicas(lab: Lab, ns: str) -> int:
    return int(lab.apps.read_namespaced_deployment("chat", ns).spec.replicas)


def reasons(lab: Lab, ns: str, kind: str) -> list[str]:
    return [e.reason for e in lab.core.list_namespaced_event(ns).items if e.involved_object.kind == kind]


@pytest.fixture(scope="module")
def scaled(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], OperatorProcess]]:
    api = client.CustomObjectsApi(lab.api)
    with lab.namespaces(*SCENARIOS, prefix="scale-") as names:
        hpa = names["hpa"]
        for key, ns in names.items():
            count, rps, _ = SCENARIOS[key]
            lab.apps.create_namespaced_deployment(
                ns, inference_deployment("chat", replicas=count, offered_rps=rps)
            )
        client.AutoscalingV2Api(lab.api).create_namespaced_horizontal_pod_autoscaler(
            hpa,
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "chat"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
                    "minReplicas": 4,
                    "maxReplicas": 4,
                    "metrics": [
                        {
                            "type": "Resource",
                            "resource": {
                                "name": "cpu",
                                "target": {"type": "Utilization", "averageUtilization": 80},
                            },
                        }
                    ],
                },
            },
        )
        for key, ns in names.items():
            count = SCENARIOS[key][0]
            wait_for(
                f"{ns} Available", lambda ns=ns, n=count: deployment_available(lab, ns, "chat", n), timeout=90
            )
        process = OperatorProcess(
            lab, tmp_path_factory.mktemp("scaling") / "operator.log", f"{INTERVAL_SECONDS}s"
        )
        process.start()
        try:
            for key, ns in names.items():
                api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, SCENARIOS[key][2])
            yield names, process
        finally:
            process.stop()


def test_idle_replicas_are_trimmed_when_their_cost_breaks_the_budget(
    lab: Lab, scaled: tuple[dict[str, str], OperatorProcess]
) -> None:
    ns = scaled[0]["down"]
    wait_for("a scale-down", lambda: replicas(lab, ns) < 4, timeout=120, interval=2)
    # One step at a time: at most halving; 2 replicas then fit the budget, so it stops there.
    assert replicas(lab, ns) == 2
    scaling = status_of(lab, ns)["scaling"]
    assert scaling["lastAction"] == "ScaleDown 4->2" and scaling["lastActionTime"]
    assert "over the budget" in scaling["reason"] or scaling["recommendedReplicas"] <= 2
    wait_for("events", lambda: "ScaledDown" in reasons(lab, ns, "Deployment"), timeout=10)
    assert "ScaledDown" in reasons(lab, ns, "CostSLO")
    time.sleep(4 * INTERVAL_SECONDS)  # beyond the 15 s cooldown: 2 replicas fit, so no further step
    assert replicas(lab, ns) == 2


def test_a_replica_is_added_when_latency_breaks_and_cost_has_headroom(
    lab: Lab, scaled: tuple[dict[str, str], OperatorProcess]
) -> None:
    ns = scaled[0]["up"]
    wait_for("a scale-up", lambda: replicas(lab, ns) == 2, timeout=120, interval=2)
    scaling = status_of(lab, ns)["scaling"]
    assert scaling["lastAction"] == "ScaleUp 1->2"
    assert "ScaledUp" in reasons(lab, ns, "CostSLO")


def test_with_an_hpa_the_operator_recommends_and_never_scales(
    lab: Lab, scaled: tuple[dict[str, str], OperatorProcess]
) -> None:
    ns, down = scaled[0]["hpa"], scaled[0]["down"]
    wait_for("the twin scenario to scale", lambda: replicas(lab, down) < 4, timeout=120, interval=2)
    wait_for(
        "a recommendation",
        lambda: (status_of(lab, ns).get("scaling") or {}).get("recommendedReplicas"),
        timeout=30,
    )
    scaling = status_of(lab, ns)["scaling"]
    assert scaling["recommendedReplicas"] < 4 and "lastAction" not in scaling
    assert "HorizontalPodAutoscaler chat owns the replicas" in scaling["reason"]
    assert replicas(lab, ns) == 4 and "ScaledDown" not in reasons(lab, ns, "Deployment")


def test_a_steady_slo_is_not_rewritten_cycle_after_cycle(
    lab: Lab, scaled: tuple[dict[str, str], OperatorProcess]
) -> None:
    ns, operator = scaled[0]["steady"], scaled[1]
    custom = client.CustomObjectsApi(lab.api)

    def window_full() -> bool:
        current = status_of(lab, ns).get("current") or {}
        return current.get("gpus") == pytest.approx(2, rel=0.02) and status_of(lab, ns).get("phase") == "Met"

    wait_for("both windows in steady serving", window_full, timeout=150, interval=3)

    # The long window (2 m) fills a minute after the short one, and its projections move until it no longer
    # holds the pods' first requests: a counter created at its first increment (the API server's HTTP
    # count) loses that increment to increase() while its first sample is in the window.
    def quiet_for_a_minute() -> bool:
        written = [e for e in operator.log_lines("status written") if e.get("namespace") == ns]
        last = max((datetime.fromisoformat(e["timestamp"]) for e in written), default=None)
        return last is not None and (datetime.now(UTC) - last).total_seconds() > 60

    wait_for("the projections to settle", quiet_for_a_minute, timeout=300, interval=5)
    before = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")["metadata"][
        "resourceVersion"
    ]
    cycles = len(operator.log_lines("evaluated"))
    wait_for(
        "10 more cycles", lambda: len(operator.log_lines("evaluated")) >= cycles + 10, timeout=90, interval=2
    )
    after = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")["metadata"][
        "resourceVersion"
    ]
    assert after == before, "the status was rewritten although nothing it says changed"
