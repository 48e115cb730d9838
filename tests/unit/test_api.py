"""The CostSLO models: defaults, money as decimals, cross-field rules, and the CRD generated from them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from costslo import api, crdgen
from tests.support.costslos import INVALID, valid_spec

pytestmark = pytest.mark.unit


def test_valid_spec_gets_the_documented_defaults() -> None:
    spec = api.CostSLOSpec.model_validate(
        {"targetRef": {"name": "x"}, "objective": {"maxCostPerRequest": "0.001"}}
    )
    assert spec.serving.runtime == "vllm"
    assert spec.evaluation.windows.long == "1h" and spec.evaluation.windows.short == "5m"
    assert spec.evaluation.on_missing_metrics == "Hold" and spec.evaluation.min_requests == 100
    assert spec.enforcement.mode == "Enforce" and spec.enforcement.rollout.action == "Pause"
    assert spec.pricing.output_token_weight == 2.5
    assert spec.objective.to_economics().budget == Decimal("0.001")


def test_budget_from_revenue_and_margin() -> None:
    o = api.Objective.model_validate({"revenuePerRequest": "0.002", "targetGrossMargin": "0.9"})
    assert o.to_economics().budget == Decimal("0.0002")
    # Revenue may accompany a fixed budget, so that the margin is reported.
    both = api.Objective.model_validate({"maxCostPerRequest": "0.0005", "revenuePerRequest": "0.002"})
    assert both.to_economics().budget == Decimal("0.0005")


@given(st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False, allow_infinity=False))
def test_money_round_trips_exactly_through_the_api(value: Decimal) -> None:
    text = format(value, "f")
    spec = valid_spec()
    spec["objective"]["maxCostPerRequest"] = text
    parsed = api.CostSLOSpec.model_validate(spec)
    assert parsed.objective.max_cost_per_request == value
    dumped = parsed.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert Decimal(dumped["objective"]["maxCostPerRequest"]) == value
    assert api.CostSLOSpec.model_validate(dumped) == parsed


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_models_reject_what_the_crd_rejects(case: str, spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError):
        api.CostSLOSpec.model_validate(spec)


def test_durations() -> None:
    assert api.parse_duration("1h30m").total_seconds() == 5400
    assert api.parse_duration("250ms").total_seconds() == 0.25
    with pytest.raises(ValueError, match="duration"):
        api.parse_duration("10 minutes")


def test_committed_crd_matches_the_models() -> None:
    assert crdgen.main(["crdgen", str(crdgen.CRD_PATH), "--check"]) == 0, "run `make generate`"


def test_crd_schema_is_structural() -> None:
    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            assert "$ref" not in node and "anyOf" not in node and "const" not in node, path
            if "properties" in node:
                assert node.get("type") == "object", path
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    schema = crdgen.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    walk(schema, "openAPIV3Schema")
