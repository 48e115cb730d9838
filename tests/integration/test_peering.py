"""Two operator instances with kopf peering: the higher priority acts, the other stands by and takes over
when the active one stops."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from kubernetes import client

from tests.support.costslos import costslo, quick_spec
from tests.support.lab import Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"


def last_evaluation(lab: Lab, ns: str) -> str | None:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return (obj.get("status") or {}).get("lastEvaluationTime")


def observed(lab: Lab, ns: str) -> tuple[int | None, str | None]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    status = obj.get("status") or {}
    return status.get("observedGeneration"), status.get("budget")


def metric(process: OperatorProcess, name: str) -> float | None:
    """The value of a series of the process' /metrics (the first one of that name), or None."""
    text = requests.get(f"http://127.0.0.1:{process.http_port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f"{name}{{") or line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture(scope="module")
def peered(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    custom = client.CustomObjectsApi(lab.api)
    name = f"costslo-test-{int(time.time())}"
    custom.create_cluster_custom_object(
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}},
    )
    with lab.namespace("peers") as ns:
        lab.apps.create_namespaced_deployment(ns, inference_deployment("chat", replicas=1, offered_rps=5.0))
        wait_for("chat Available", lambda: deployment_available(lab, ns, "chat", 1), timeout=90)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, costslo("chat", quick_spec()))
        yield ns, tmp_path_factory.mktemp("peering")
    custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)


def test_one_instance_acts_and_the_other_takes_over_when_it_stops(lab: Lab, peered: tuple[str, Path]) -> None:
    ns, logs = peered
    peering = client.CustomObjectsApi(lab.api).list_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings"
    )
    name = next(
        p["metadata"]["name"] for p in peering["items"] if p["metadata"]["name"].startswith("costslo-test")
    )
    standby = OperatorProcess(lab, logs / "standby.log", "5s", "--peering", name, "--priority", "100")
    active = OperatorProcess(lab, logs / "active.log", "5s", "--peering", name, "--priority", "200")
    active.start()
    try:
        wait_for("the active instance evaluating", lambda: active.log_lines("evaluated"), timeout=60)
        standby.start()
        wait_for("the standby to stand by", lambda: standby.log_lines("standing by"), timeout=60)
        time.sleep(15)  # three intervals
        assert standby.log_lines("evaluated") == [] and standby.running
        assert active.log_lines("evaluated") and last_evaluation(lab, ns)
        # Both answer /verdict alike (a Service may send a gate to either): the standby reads what the
        # active instance wrote, not what its paused watches last saw.
        answers = [
            requests.get(f"http://127.0.0.1:{p.http_port}/verdict/{ns}/chat", timeout=10).json()
            for p in (active, standby)
        ]
        assert answers[1]["phase"] == answers[0]["phase"] is not None
        assert answers[1]["observedGeneration"] == answers[0]["observedGeneration"] == 1
        # /metrics: only the active instance exports the CostSLO's figures, so a scrape of both pods
        # behind the Service never mixes a standby's stale numbers with the live ones.
        assert metric(active, "costslo_active") == 1.0 and metric(standby, "costslo_active") == 0.0
        assert metric(active, "costslo_budget_per_request") is not None
        assert metric(standby, "costslo_budget_per_request") is None

        active.stop()  # a clean exit takes its heartbeat out of the peering object
        wait_for("the standby to take over", lambda: standby.log_lines("active"), timeout=60)
        # A new budget: only an acting instance writes the new generation's verdict.
        client.CustomObjectsApi(lab.api).patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, "chat", {"spec": {"objective": {"maxCostPerRequest": "0.02"}}}
        )
        wait_for(
            "the former standby's verdict on the new spec",
            lambda: standby.log_lines("evaluated") and observed(lab, ns) == (2, "0.02"),
            timeout=60,
        )
        assert metric(standby, "costslo_active") == 1.0
        wait_for(
            "the former standby's figures", lambda: metric(standby, "costslo_budget_per_request") == 0.02
        )
    finally:
        active.stop()
        standby.stop()
