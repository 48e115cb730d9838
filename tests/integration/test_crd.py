"""The real API server enforces the CostSLO schema: bad specs are rejected with the field named, and
every example in examples/ is accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.costslos import INVALID, costslo, valid_spec
from tests.support.lab import REPO, Lab

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"


def create(lab: Lab, ns: str, body: dict[str, Any], dry_run: bool = True) -> dict[str, Any]:
    api = client.CustomObjectsApi(lab.api)
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, body, dry_run="All" if dry_run else None, field_validation="Strict"
    )
    return result


def test_valid_costslo_is_accepted_and_defaulted(lab: Lab, costslo_crd: None) -> None:
    with lab.namespace("crd") as ns:
        created = create(lab, ns, costslo("ok", valid_spec()), dry_run=False)
        spec = created["spec"]
        assert spec["targetRef"]["kind"] == "Deployment"
        assert spec["evaluation"]["onMissingMetrics"] == "Hold"
        assert spec["pricing"]["supportingCostPerRequest"] == "0"
        out = lab.kubectl("get", "cslo", "-n", ns, "-o", "wide").stdout
        for column in (
            "TARGET",
            "COST/REQ",
            "BUDGET",
            "LATENCY",
            "PHASE",
            "AGE",
            "PROJECTED",
            "UTIL",
            "COST/H",
        ):
            assert column in out
        assert "summariser" in out


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_costslo_is_rejected_naming_the_field(
    lab: Lab, costslo_crd: None, case: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as raised:
        create(lab, "default", costslo(f"bad-{case}", spec))
    assert raised.value.status in (400, 422)
    body = json.loads(raised.value.body)
    assert field in body["message"], body["message"]


# API groups the lab serves (Argo Rollouts' CRDs included); Flagger's Canary is checked for shape only.
SERVED_GROUPS = {"costslo.dev", "apps", "argoproj.io", "batch", "rbac.authorization.k8s.io", ""}


def test_every_example_applies(lab: Lab, costslo_crd: None) -> None:
    import yaml

    lab.kubectl("create", "namespace", "ml", check=False)
    applied = 0
    for path in sorted((REPO / "examples").glob("**/*.yaml")):
        docs = [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and str(d["apiVersion"]).rpartition("/")[0] in SERVED_GROUPS
        ]
        if not docs:
            continue
        result = lab.kubectl(
            "apply", "--dry-run=server", "-f", "-", check=False, stdin=yaml.safe_dump_all(docs)
        )
        assert result.returncode == 0, f"{path.relative_to(REPO)}: {result.stderr}"
        applied += len(docs)
    assert applied >= 6


def test_examples_parse_as_costslo_models() -> None:
    import yaml

    from costslo.api import CostSLOSpec

    found = 0
    for path in sorted(Path(REPO / "examples").glob("**/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CostSLO":
                CostSLOSpec.model_validate(doc["spec"])
                found += 1
    assert found >= 1
