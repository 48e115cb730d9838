"""hack/tools/build.sh into an empty cache: the path every new user takes once and CI's warm cache never does.

Two small tools (glua and kubeconform) are built through the same script, the same rows and the same stamps
as the lab's other tools, into a fresh temporary cache. Go's own module and build caches are shared, so this
costs seconds when they are warm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "tools" / "build.sh"

pytestmark = pytest.mark.skipif(shutil.which("go") is None, reason="Go builds the lab's tools")


def _run(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COSTSLO_TOOLS_DIR=str(cache))
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900, check=False
    )


def _stamp_rows(cache: Path) -> dict[str, str]:
    listing = _run(cache, "--list")
    assert listing.returncode == 0, listing.stderr
    rows = {}
    for line in listing.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows[parts[0]] = parts[1]
    return rows


def test_cold_cache_build_exits_zero_and_names_what_it_built(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    result = _run(cache, "glua", "kubeconform")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("built 2 tool(s)") and summary.endswith(": kubeconform glua"), summary
    expected = _stamp_rows(cache)
    for name in ("glua", "kubeconform"):
        binary = cache / name
        assert binary.is_file() and os.access(binary, os.X_OK), f"{name} missing from {cache}"
        assert (cache / ".stamps" / name).read_text().strip() == expected[name]
    # Only the named tools were built: nothing else entered the cache.
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == ["glua", "kubeconform"]
    # The binaries run.
    version = subprocess.run([str(cache / "kubeconform"), "-v"], capture_output=True, text=True, check=False)
    assert version.returncode == 0


def test_warm_cache_rebuilds_nothing_and_still_exits_zero(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    assert _run(cache, "glua").returncode == 0
    before = (cache / "glua").stat().st_mtime_ns
    again = _run(cache, "glua")
    assert again.returncode == 0, again.stderr
    assert "tools up to date" in again.stdout
    assert (cache / "glua").stat().st_mtime_ns == before


def test_a_stale_stamp_is_rebuilt(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    assert _run(cache, "glua").returncode == 0
    (cache / ".stamps" / "glua").write_text("gopher-lua-v0.0.0\n")
    rebuilt = _run(cache, "glua")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "built 1 tool(s)" in rebuilt.stdout
    assert (cache / ".stamps" / "glua").read_text().strip() == _stamp_rows(cache)["glua"]


def test_an_unknown_tool_name_is_an_error(tmp_path: Path) -> None:
    result = _run(tmp_path / "bin", "kubeconfrom")
    assert result.returncode == 2
    assert "unknown tool 'kubeconfrom'" in result.stderr
    assert "kubeconform" in result.stderr
