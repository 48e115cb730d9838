"""`costslo run --namespace X`: CostSLOs in X are judged, those elsewhere are left alone."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.support.costslos import costslo, quick_spec
from tests.support.lab import Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"


def status_of(lab: Lab, ns: str) -> dict[str, object]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "chat")
    return dict(obj.get("status") or {})


def test_a_namespaced_operator_judges_its_namespace_only(
    lab: Lab, costslo_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    custom = client.CustomObjectsApi(lab.api)
    with lab.namespaces("mine", "theirs", prefix="scope-") as names:
        for ns in names.values():
            lab.apps.create_namespaced_deployment(
                ns, inference_deployment("chat", replicas=1, offered_rps=5.0)
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, costslo("chat", quick_spec()))
        for ns in names.values():
            wait_for(f"{ns} Available", lambda ns=ns: deployment_available(lab, ns, "chat", 1), timeout=90)
        operator = OperatorProcess(
            lab, tmp_path_factory.mktemp("namespaced") / "operator.log", "5s", "--namespace", names["mine"]
        )
        operator.start()
        try:
            wait_for("its own CostSLO judged", lambda: status_of(lab, names["mine"]).get("phase"), timeout=60)
            time.sleep(10)  # two more intervals
            assert status_of(lab, names["theirs"]) == {}
            assert all(line["costslos"] == 1 for line in operator.log_lines("evaluated"))
            assert operator.running
        finally:
            operator.stop()
