"""Prometheus stopped mid-run: the operator says so within two intervals, Hold keeps a rollout waiting, Allow
lets one through, nothing crashes, and the numbers come back with Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.costslos import costslo
from tests.support.lab import Lab, deployment_available, run_lab, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import LOAD_TIME, inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
INTERVAL_SECONDS = 5


def slo(on_missing: str) -> dict[str, Any]:
    return costslo(
        "chat",
        {
            "targetRef": {"name": "chat"},
            "objective": {"maxCostPerRequest": "0.01", "latency": {"thresholdSeconds": 60}},
            "pricing": {"gpuHourly": "3.00"},
            "evaluation": {
                "windows": {"long": "1m", "short": "30s"},
                "minRequests": 20,
                "onMissingMetrics": on_missing,
            },
            "enforcement": {"rollout": {"action": "Pause", "bakeTime": "15s"}},
        },
    )


def status_of(lab: Lab, ns: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return dict(obj.get("status") or {})


def condition(lab: Lab, ns: str, type_: str) -> str | None:
    return next((c["status"] for c in status_of(lab, ns).get("conditions") or [] if c["type"] == type_), None)


def new_revision(lab: Lab, ns: str) -> None:
    patch = {
        "spec": {"template": {"metadata": {"annotations": {LOAD_TIME: "3s", "example.com/build": "v2"}}}}
    }
    lab.apps.patch_namespaced_deployment("chat", ns, patch)


@pytest.fixture(scope="module")
def outage(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], OperatorProcess, float]]:
    api = client.CustomObjectsApi(lab.api)
    with lab.namespace("hold") as hold, lab.namespace("allow") as allow:
        names = {"Hold": hold, "Allow": allow}
        for ns in names.values():
            lab.apps.create_namespaced_deployment(
                ns, inference_deployment("chat", replicas=1, offered_rps=5.0)
            )
        for ns in names.values():
            wait_for(f"{ns} Available", lambda ns=ns: deployment_available(lab, ns, "chat", 1), timeout=90)
        process = OperatorProcess(
            lab, tmp_path_factory.mktemp("outage") / "operator.log", f"{INTERVAL_SECONDS}s"
        )
        process.start()
        try:
            for policy, ns in names.items():
                api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, slo(policy))
            for ns in names.values():
                wait_for(
                    f"{ns} Met",
                    lambda ns=ns: status_of(lab, ns).get("phase") == "Met",
                    timeout=120,
                    interval=2,
                )
            run_lab("stop prometheus")
            stopped = time.time()
            try:
                yield names, process, stopped
            finally:
                run_lab("start prometheus")
        finally:
            process.stop()


def test_missing_metrics_are_reported_within_two_intervals(
    lab: Lab, outage: tuple[dict[str, str], OperatorProcess, float]
) -> None:
    names, operator, stopped = outage
    for ns in names.values():
        wait_for(
            f"{ns} MetricsAvailable=False",
            lambda ns=ns: condition(lab, ns, "MetricsAvailable") == "False",
            timeout=30,
            interval=0.5,
        )
    assert time.time() - stopped <= 2 * INTERVAL_SECONDS + 2
    assert status_of(lab, names["Hold"])["phase"] == "MetricsUnavailable"
    assert "Prometheus query failed" in status_of(lab, names["Hold"])["message"]
    assert operator.running


def test_hold_keeps_a_rollout_waiting_and_allow_lets_it_through(
    lab: Lab, outage: tuple[dict[str, str], OperatorProcess, float]
) -> None:
    names, operator, _ = outage
    for ns in names.values():
        new_revision(lab, ns)
    allow, hold = names["Allow"], names["Hold"]
    wait_for(
        "Allow promoted",
        lambda: (status_of(lab, allow).get("rollout") or {}).get("state") == "Promoted",
        timeout=90,
        interval=2,
    )
    assert "onMissingMetrics: Allow" in status_of(lab, allow)["rollout"]["reason"]
    wait_for(
        "the Hold bake over",
        lambda: "cannot be judged" in (status_of(lab, hold).get("rollout") or {}).get("reason", ""),
        timeout=90,
        interval=2,
    )
    assert lab.apps.read_namespaced_deployment("chat", hold).spec.paused is True
    assert condition(lab, hold, "RolloutAllowed") == "False"
    assert operator.running


def test_the_numbers_return_with_prometheus(
    lab: Lab, outage: tuple[dict[str, str], OperatorProcess, float]
) -> None:
    names, operator, _ = outage
    run_lab("start prometheus")
    hold = names["Hold"]
    wait_for(
        "MetricsAvailable=True",
        lambda: condition(lab, hold, "MetricsAvailable") == "True",
        timeout=120,
        interval=2,
    )
    # With data again, the held revision is judged: it fits, so it is promoted.
    wait_for(
        "Hold promoted",
        lambda: (status_of(lab, hold).get("rollout") or {}).get("state") == "Promoted",
        timeout=120,
        interval=2,
    )
    assert lab.apps.read_namespaced_deployment("chat", hold).spec.paused is not True
    assert operator.running
