"""`helm install` into the lab, and the operator run with exactly the chart's ServiceAccount: a rollout is
gated end to end (watch, pause, judge, resume, status, Events), and verbs it does not need are denied."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.test_chart import tool
from tests.support.costslos import costslo, quick_spec
from tests.support.lab import REPO, Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import LOAD_TIME, inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
RELEASE = "costslo"


def helm(lab: Lab, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(tool("helm")), "--kubeconfig", lab.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 or not check, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(lab: Lab, costslo_crd: None) -> Iterator[tuple[str, str]]:
    """The chart in its own namespace (the CRDs are in the lab already); yields (namespace, account)."""
    with lab.namespace("costslo-system") as ns:
        helm(
            lab,
            "install",
            RELEASE,
            str(REPO / "charts" / "costslo"),
            "-n",
            ns,
            "--set",
            "crds.install=false",
            "--set",
            "crds.peering=false",
            "--set",
            f"prometheus.url={lab.prometheus_url}",
        )
        try:
            (sa,) = [
                s.metadata.name
                for s in lab.core.list_namespaced_service_account(ns).items
                if (s.metadata.labels or {}).get("app.kubernetes.io/instance") == RELEASE
            ]
            yield ns, sa
        finally:
            helm(lab, "uninstall", RELEASE, "-n", ns)


def token_kubeconfig(lab: Lab, ns: str, sa: str, path: Path) -> str:
    """A kubeconfig for the lab's API server that authenticates as the ServiceAccount, nothing else."""
    token = lab.kubectl("create", "token", sa, "-n", ns, "--duration", "1h").stdout.strip()
    admin = yaml.safe_load(Path(lab.kubeconfig).read_text())
    cluster = admin["clusters"][0]["cluster"]
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": sa}}],
        "current-context": "sa",
    }
    if "certificate-authority" in cluster:  # make the CA path absolute: the new file lives elsewhere
        ca = Path(cluster["certificate-authority"])
        if not ca.is_absolute():
            ca = Path(lab.kubeconfig).parent / ca
        cluster["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        del cluster["certificate-authority"]
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_service_account_is_enough_to_gate_a_rollout(
    lab: Lab, installed: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    ns, sa = installed
    logs = tmp_path_factory.mktemp("chart-install")
    kubeconfig = token_kubeconfig(lab, ns, sa, logs / "kubeconfig")
    custom = client.CustomObjectsApi(lab.api)
    with lab.namespace("rbac-app") as app:
        lab.apps.create_namespaced_deployment(app, inference_deployment("chat", replicas=1, offered_rps=6.0))
        wait_for("chat Available", lambda: deployment_available(lab, app, "chat", 1), timeout=90)
        body = quick_spec(min_requests=20, enforcement={"rollout": {"action": "Pause", "bakeTime": "15s"}})
        custom.create_namespaced_custom_object(GROUP, VERSION, app, PLURAL, costslo("chat", body))
        # The token's kubeconfig given as --kubeconfig, with $KUBECONFIG naming no file: the watches as well
        # as the writes must follow the flag (the default kubeconfig is not there to fall back on).
        operator = OperatorProcess(
            lab, logs / "operator.log", "5s", "--kubeconfig", kubeconfig, kubeconfig=str(logs / "absent")
        )
        operator.start()
        try:

            def rollout() -> dict[str, Any]:
                obj = custom.get_namespaced_custom_object(GROUP, VERSION, app, PLURAL, "chat")
                return dict((obj.get("status") or {}).get("rollout") or {})

            wait_for("the gate settled", lambda: rollout().get("state") == "Stable", timeout=60)
            patch = {
                "spec": {"template": {"metadata": {"annotations": {LOAD_TIME: "5s", "example.com/v": "2"}}}}
            }
            lab.apps.patch_namespaced_deployment("chat", app, patch)
            wait_for(
                "paused", lambda: lab.apps.read_namespaced_deployment("chat", app).spec.paused, timeout=20
            )
            wait_for("promoted", lambda: rollout().get("state") == "Promoted", timeout=120, interval=2)
            wait_for(
                "resumed",
                lambda: lab.apps.read_namespaced_deployment("chat", app).spec.paused is not True,
                timeout=20,
            )
            reasons = {e.reason for e in lab.core.list_namespaced_event(app).items}
            assert {"RolloutPaused", "RolloutPromoted"} <= reasons
            assert operator.running
            # The whole log, tracebacks included; a bare 403 only, never digits inside a cost figure.
            denied = re.compile(r"Forbidden|(?<![\w.])403(?![\w.])")
            assert not [line for line in operator.log_path.read_text().splitlines() if denied.search(line)]
        finally:
            operator.stop()


def can_i(lab: Lab, installed: tuple[str, str], verb: str, resource: str) -> str:
    """`kubectl auth can-i` as the chart's ServiceAccount; RESOURCE may name a subresource after a colon."""
    ns, sa = installed
    resource, _, subresource = resource.partition(":")
    extra = [f"--subresource={subresource}"] if subresource else []
    return lab.kubectl(
        "auth", "can-i", verb, resource, *extra, "-A", f"--as=system:serviceaccount:{ns}:{sa}", check=False
    ).stdout.strip()


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("delete", "deployments"),
        ("get", "secrets"),
        ("create", "deployments"),
        ("update", "deployments"),
        ("delete", "costslos.costslo.dev"),
        ("patch", "costslos.costslo.dev"),
        ("update", "costslos.costslo.dev:status"),
        ("update", "deployments:scale"),
        ("patch", "events"),
        ("create", "pods"),
        ("create", "clusterrolebindings"),
    ],
)
def test_verbs_it_does_not_need_are_denied(
    lab: Lab, installed: tuple[str, str], verb: str, resource: str
) -> None:
    assert can_i(lab, installed, verb, resource) == "no"


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        ("patch", "deployments"),
        ("patch", "costslos.costslo.dev:status"),
        ("patch", "deployments:scale"),
        ("patch", "rollouts.argoproj.io:scale"),
        ("create", "events"),
        ("watch", "pods"),
    ],
)
def test_verbs_it_needs_are_allowed(lab: Lab, installed: tuple[str, str], verb: str, resource: str) -> None:
    assert can_i(lab, installed, verb, resource) == "yes"


def test_crds_applied_by_hand_are_adopted_upgraded_and_kept(lab: Lab, costslo_crd: None) -> None:
    """The upgrade path charts/README.md gives: the CRD from `kubectl apply -f crds/` adopted by a release
    with crds.install=true, changed by `helm upgrade`, and left in place, CostSLOs and all, by uninstall."""
    crd, release = "costslos.costslo.dev", "costslo-crds"
    ext = client.ApiextensionsV1Api(lab.api)
    custom = client.CustomObjectsApi(lab.api)
    with lab.namespace("costslo-crds") as ns, lab.namespace("crd-app") as app:
        custom.create_namespaced_custom_object(GROUP, VERSION, app, PLURAL, costslo("chat", quick_spec()))
        lab.kubectl("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        lab.kubectl(
            "annotate",
            "crd",
            crd,
            f"meta.helm.sh/release-name={release}",
            f"meta.helm.sh/release-namespace={ns}",
            "--overwrite",
        )
        chart = [str(REPO / "charts" / "costslo"), "-n", ns, "--set", "crds.peering=false"]
        try:
            helm(lab, "install", release, *chart, "--set", f"prometheus.url={lab.prometheus_url}")
            meta = ext.read_custom_resource_definition(crd).metadata
            assert meta.labels["app.kubernetes.io/instance"] == release
            assert meta.annotations["helm.sh/resource-policy"] == "keep"
            helm(lab, "upgrade", release, *chart, "--reuse-values", "--set", "commonLabels.team=ml-platform")
            assert ext.read_custom_resource_definition(crd).metadata.labels["team"] == "ml-platform"
            helm(lab, "uninstall", release, "-n", ns)
            assert ext.read_custom_resource_definition(crd).metadata.labels["team"] == "ml-platform"
            assert custom.get_namespaced_custom_object(GROUP, VERSION, app, PLURAL, "chat")["spec"]
        finally:
            helm(lab, "uninstall", release, "-n", ns, check=False)  # gone already when the test got that far
            # Back to a CRD that no release claims, as the rest of the suite expects.
            lab.kubectl("label", "crd", crd, "team-", "app.kubernetes.io/managed-by-", check=False)
            lab.kubectl(
                "annotate",
                "crd",
                crd,
                "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-",
                check=False,
            )
