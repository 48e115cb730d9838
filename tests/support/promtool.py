"""PromQL evaluated offline by Prometheus' own engine: `promtool test rules` over synthetic series.

No server, no port: promtool loads the series into an in-memory storage and evaluates each expression at a
given time. Tests skip when the lab's tool cache (or PATH) has no promtool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

Series = tuple[str, str]  # (series in PromQL notation, promtool values such as "0+3x100")
Case = tuple[str, Sequence[tuple[str, float]]]  # (expression, expected (labels, value) pairs)


def find_promtool() -> Path | None:
    """promtool from COSTSLO_TOOLS_DIR, the lab's tool cache, or PATH."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "costslo" / "bin"
    for folder in (os.environ.get("COSTSLO_TOOLS_DIR"), str(cache)):
        if folder and (Path(folder) / "promtool").is_file():
            return Path(folder) / "promtool"
    found = shutil.which("promtool")
    return Path(found) if found else None


def evaluate(
    tmp_path: Path,
    series: Sequence[Series],
    cases: Sequence[Case],
    eval_time: str = "10m",
    interval: str = "15s",
) -> None:
    """Fails the test with promtool's report unless every expression gives exactly the expected samples."""
    promtool = find_promtool()
    if promtool is None:
        pytest.skip("promtool is not installed (build the lab's tools)")
    spec = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "fuzzy_compare": True,  # rate() and increase() leave float noise in the last digits
        "tests": [
            {
                "interval": interval,
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": eval_time,
                        "exp_samples": [{"labels": labels, "value": value} for labels, value in expected],
                    }
                    for expr, expected in cases
                ],
            }
        ],
    }
    path = tmp_path / "promql_test.yaml"
    path.write_text(yaml.safe_dump(spec, width=1_000_000, allow_unicode=True))
    run = subprocess.run(
        [str(promtool), "test", "rules", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if run.returncode != 0:
        pytest.fail(f"promtool disagrees:\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}")
