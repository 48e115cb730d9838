"""CostSLOs over Argo Rollouts: the real Argo Rollouts controller runs a canary whose analysis step asks the
operator's /verdict through examples/argo-rollouts/analysis-template.yaml.

Two Rollouts serve 8B side by side; one swaps to 70B (over the budget: the analysis fails and Argo aborts the
canary), the other to a rebuilt 8B (fits: the analysis passes and Argo promotes it). The operator never
writes a Rollout's template or pause: Argo acts on the verdict.
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.costslos import costslo
from tests.support.lab import REPO, Lab, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import LOAD_TIME, PROFILE, inference_rollout

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
ARGO = ("argoproj.io", "v1alpha1")
BAKE_SECONDS = 30
INTERVAL_SECONDS = 5
BUDGET = "0.0005"  # 8B fits (about $0.0003 per request as a canary), 70B does not (about $0.00065)
TEMPLATE = REPO / "examples" / "argo-rollouts" / "analysis-template.yaml"
STEPS = [
    {"setWeight": 50},
    {
        "analysis": {
            "templates": [{"templateName": "costslo"}],
            "args": [
                {"name": "costslo", "value": "chat"},
                {"name": "namespace", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            ],
        }
    },
]


def analysis_template(verdict_url: str) -> dict[str, Any]:
    """The example as shipped: its conditions and provider untouched; the operator's address and a pace
    that fits this test's 30 s bake (one measurement every 5 s) filled in."""
    template = copy.deepcopy(yaml.safe_load(TEMPLATE.read_text()))
    del template["metadata"]["namespace"]
    for arg in template["spec"]["args"]:
        if arg["name"] == "verdict-url":
            arg["value"] = verdict_url
    metric = template["spec"]["metrics"][0]
    metric.update(interval="5s", count=20, inconclusiveLimit=14, initialDelay="5s")
    return dict(template)


def rollout_slo() -> dict[str, Any]:
    return costslo(
        "chat",
        {
            "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "chat"},
            "objective": {"maxCostPerRequest": BUDGET, "latency": {"thresholdSeconds": 60}},
            "pricing": {"gpuHourly": "3.00"},
            "evaluation": {"windows": {"long": "2m", "short": "1m"}, "minRequests": 50},
            "enforcement": {"rollout": {"action": "Pause", "bakeTime": f"{BAKE_SECONDS}s"}},
        },
    )


def argo(lab: Lab, ns: str, plural: str, name: str | None = None) -> Any:
    api = client.CustomObjectsApi(lab.api)
    if name is None:
        return api.list_namespaced_custom_object(*ARGO, ns, plural)["items"]
    return api.get_namespaced_custom_object(*ARGO, ns, plural, name)


def status_of(lab: Lab, ns: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return dict(obj.get("status") or {})


def gate_of(lab: Lab, ns: str) -> dict[str, Any]:
    return dict(status_of(lab, ns).get("rollout") or {})


def analysis_phase(lab: Lab, ns: str) -> str | None:
    runs = argo(lab, ns, "analysisruns")
    return runs[0].get("status", {}).get("phase") if runs else None


def rollout_ready(lab: Lab, ns: str, replicas: int) -> bool:
    status = argo(lab, ns, "rollouts", "chat").get("status") or {}
    return status.get("phase") == "Healthy" and status.get("availableReplicas") == replicas


def gate_exit(lab: Lab, ns: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "costslo"), "gate", "-n", ns, "--name", "chat", "--timeout", "30s"],
        env={**os.environ, "KUBECONFIG": lab.kubeconfig},
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture(scope="module")
def operator(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        lab, tmp_path_factory.mktemp("argo") / "operator.log", f"{INTERVAL_SECONDS}s"
    ) as process:
        yield process


@pytest.fixture(scope="module")
def swapped(lab: Lab, operator: OperatorProcess) -> Iterator[dict[str, tuple[str, str]]]:
    """{"over": (namespace, stable hash), "fits": ...}: both Rollouts Healthy on 8B, then swapped."""
    custom = client.CustomObjectsApi(lab.api)
    verdict_url = f"http://127.0.0.1:{operator.http_port}/verdict"
    with lab.namespaces("over", "fits", prefix="argo-") as names:
        for ns in names.values():
            custom.create_namespaced_custom_object(
                *ARGO, ns, "analysistemplates", analysis_template(verdict_url)
            )
            custom.create_namespaced_custom_object(
                *ARGO, ns, "rollouts", inference_rollout("chat", STEPS, replicas=2, offered_rps=8.0)
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, rollout_slo())
        for ns in names.values():
            wait_for(f"{ns}/chat Healthy", lambda ns=ns: rollout_ready(lab, ns, 2), timeout=90)
            wait_for(f"{ns} gate Stable", lambda ns=ns: gate_of(lab, ns).get("state") == "Stable", timeout=60)
        out = {key: (ns, gate_of(lab, ns)["revision"]) for key, ns in names.items()}
        for key, (ns, _) in out.items():
            profile = "llama-3.1-70b-h100" if key == "over" else "llama-3.1-8b-h100"
            patch = {
                "spec": {
                    "template": {
                        "metadata": {
                            "annotations": {PROFILE: profile, LOAD_TIME: "15s", "example.com/build": "v2"}
                        }
                    }
                }
            }
            custom.patch_namespaced_custom_object(*ARGO, ns, "rollouts", "chat", patch)
        yield out


def test_a_canary_over_budget_fails_its_analysis_and_argo_aborts_it(
    lab: Lab, swapped: dict[str, tuple[str, str]]
) -> None:
    ns, stable = swapped["over"]
    wait_for("the gate baking the canary", lambda: gate_of(lab, ns).get("state") == "Baking", timeout=60)
    canary = gate_of(lab, ns)["revision"]
    assert canary != stable
    status = wait_for(
        "the canary judged over budget",
        lambda: (st := status_of(lab, ns)).get("phase") == "RolloutBlocked" and st,
        timeout=180,
        interval=1,
    )
    assert status["rollout"]["state"] == "Blocked" and status["rollout"]["revision"] == canary
    assert f"over the budget ${BUDGET}" in status["message"]
    wait_for("the analysis to fail", lambda: analysis_phase(lab, ns) == "Failed", timeout=60, interval=1)
    run = argo(lab, ns, "analysisruns")[0]
    measurements = run["status"]["metricResults"][0]["measurements"]
    assert measurements[-1]["phase"] == "Failed"
    # Argo aborts: the canary is scaled away and the stable revision serves at full strength.
    wait_for(
        "Argo to abort the canary",
        lambda: (argo(lab, ns, "rollouts", "chat").get("status") or {}).get("abort") is True,
        timeout=60,
    )
    wait_for(
        "the canary scaled to 0",
        lambda: all(
            (rs.spec.replicas or 0) == 0
            for rs in lab.apps.list_namespaced_replica_set(ns).items
            if rs.metadata.labels.get("rollouts-pod-template-hash") == canary
        ),
        timeout=60,
    )
    rollout = argo(lab, ns, "rollouts", "chat")
    assert rollout["status"]["stableRS"] == stable
    # costslo wrote no pause and no template: Argo did everything to the Rollout.
    assert not rollout["spec"].get("paused")
    reasons = {
        e.reason for e in lab.core.list_namespaced_event(ns).items if e.involved_object.kind == "Rollout"
    }
    assert {"RolloutBaking", "RolloutBlocked"} <= reasons, reasons
    # The abort ends the hold: the revision is recorded as rolled back, the phase is the fleet's again.
    wait_for("the gate to see the abort", lambda: gate_of(lab, ns).get("state") == "RolledBack", timeout=30)
    assert status_of(lab, ns)["phase"] != "RolloutBlocked"
    assert "RolloutAborted" in {e.reason for e in lab.core.list_namespaced_event(ns).items}


def test_a_canary_that_fits_passes_its_analysis_and_argo_promotes_it(
    lab: Lab, swapped: dict[str, tuple[str, str]]
) -> None:
    ns, stable = swapped["fits"]
    wait_for("the analysis to pass", lambda: analysis_phase(lab, ns) == "Successful", timeout=240, interval=2)
    gate = gate_of(lab, ns)
    assert gate["state"] == "Promoted" and gate["revision"] != stable
    assert "within the budget" in gate["reason"]
    wait_for(
        "Argo to promote the canary",
        lambda: (argo(lab, ns, "rollouts", "chat").get("status") or {}).get("stableRS") == gate["revision"],
        timeout=90,
    )
    wait_for("the Rollout Healthy", lambda: rollout_ready(lab, ns, 2), timeout=90)
    # While the canary baked, the measurements were inconclusive, never failed.
    run = argo(lab, ns, "analysisruns")[0]
    phases = [m["phase"] for m in run["status"]["metricResults"][0]["measurements"]]
    assert "Failed" not in phases and phases[-1] == "Successful", phases
    # `costslo gate` finds the Rollout's newest revision (Argo's revision annotation and hash label).
    gate = gate_exit(lab, ns)
    assert gate.returncode == 0 and "met:" in gate.stdout, gate.stdout + gate.stderr
