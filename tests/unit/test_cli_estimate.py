"""`costslo estimate`: the calculator agrees with the cost model and fails clearly on bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from typer.testing import CliRunner

from costslo import economics
from costslo.cli import app

pytestmark = pytest.mark.unit

ARGS = [
    "--gpu-hourly",
    "3",
    "--gpus",
    "3",
    "--requests-per-second",
    "20",
    "--capacity-per-gpu",
    "14.3",
    "--failure-rate",
    "0.01",
    "--input-tokens",
    "800",
    "--output-tokens",
    "200",
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["estimate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_matches_the_cost_model() -> None:
    code, out, _ = run(*ARGS, "--revenue-per-request", "0.002", "--target-gross-margin", "0.9", "-o", "json")
    assert code == 0
    data = json.loads(out)
    # 3 GPUs x $3/h = $9/h over 20 req/s x 3600 s x 99% delivered.
    assert Decimal(data["costPerRequest"]) == pytest.approx(
        Decimal(9) / Decimal(20 * 3600 * 0.99), rel=Decimal("1e-9")
    )
    assert data["hourlyCost"] == "9"
    assert data["gpuUtilisation"] == pytest.approx(20 / (3 * 14.3), rel=1e-5)
    assert data["idleCostFraction"] == pytest.approx(1 - 20 / (3 * 14.3), rel=1e-5)
    assert Decimal(data["budget"]) == Decimal("0.0002")
    assert data["withinBudget"] is True
    expected = economics.estimate(
        gpu_hourly="3",
        gpus=3,
        requests_per_second=20,
        capacity_per_gpu=14.3,
        failure_rate=0.01,
        input_tokens=800,
        output_tokens=200,
    )
    assert data["costPerMillionOutputTokens"] == format(expected.cost.cost_per_million_output_tokens, "f")


def test_hosted_api_comparison() -> None:
    code, out, _ = run(
        *ARGS, "--api-input-per-million", "0.15", "--api-output-per-million", "0.60", "-o", "json"
    )
    assert code == 0
    hosted = json.loads(out)["hostedApi"]
    # (800 x 0.15 + 200 x 0.60) / 1e6 per finished request, paid for failures too.
    assert Decimal(hosted["costPerRequest"]) == pytest.approx(
        Decimal("0.00024") / Decimal("0.99"), rel=Decimal("1e-9")
    )


def test_table_output_names_every_headline_number() -> None:
    code, out, _ = run(*ARGS)
    assert code == 0
    for key in (
        "costPerRequest",
        "costPerMillionInputTokens",
        "costPerMillionOutputTokens",
        "hourlyCost",
        "gpuUtilisation",
        "idleCostFraction",
    ):
        assert key in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus", "0"], "gpus"),
        (["--failure-rate", "1.5"], "failure_rate"),
        (["--revenue-per-request", "0.01"], "--target-gross-margin"),
        (["--gpu-hourly", "cheap"], "gpu_hourly"),
    ],
)
def test_bad_input_is_a_clear_error_not_a_traceback(args: list[str], message: str) -> None:
    base = dict(zip(ARGS[::2], ARGS[1::2], strict=True))
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out, err = run(*[x for kv in base.items() for x in kv])
    assert code == 2
    assert message in err and "Traceback" not in err + out
