"""The ArgoCD health check for CostSLO, run by gopher-lua (the Lua 5.1 VM ArgoCD embeds) on the fixtures of
its health_test.yaml, in ArgoCD's own format; and the argocd-cm snippet carries the very same script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.lab import REPO

CHECK = REPO / "integrations" / "argocd" / "resource_customizations" / "costslo.dev" / "CostSLO"
CASES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]


def glua() -> Path:
    tools = Path(os.environ.get("COSTSLO_TOOLS_DIR", Path.home() / ".cache" / "costslo" / "bin"))
    binary = tools / "glua"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `make tools`")
    return binary


def lua(value: Any) -> str:
    """A YAML value as a Lua literal, as ArgoCD hands objects to health scripts (lists are 1-based)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(str(k))}] = {lua(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def health_of(obj: dict[str, Any], tmp_path: Path) -> tuple[str, str]:
    script = tmp_path / "run.lua"
    script.write_text(
        f"obj = {lua(obj)}\n"
        f"local hs = (function()\n{(CHECK / 'health.lua').read_text()}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message)\n'
    )
    out = subprocess.run([str(glua()), str(script)], capture_output=True, text=True, timeout=30, check=True)
    status, _, message = out.stdout.partition("\n")
    return status, message


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_of_each_fixture(case: dict[str, Any], tmp_path: Path) -> None:
    obj = yaml.safe_load((CHECK / case["inputPath"]).read_text())
    assert health_of(obj, tmp_path) == (case["healthStatus"]["status"], case["healthStatus"]["message"])


def test_every_state_that_matters_has_a_fixture() -> None:
    stems = {Path(c["inputPath"]).stem for c in CASES}
    assert {"met", "breached", "blocked", "baking", "not-evaluated", "invalid-spec"} <= stems


def test_the_argocd_cm_snippet_is_the_same_script() -> None:
    cm = yaml.safe_load((REPO / "integrations" / "argocd" / "argocd-cm.yaml").read_text())
    assert (
        cm["data"]["resource.customizations.health.costslo.dev_CostSLO"] == (CHECK / "health.lua").read_text()
    )
