"""What the user gives is checked before anything starts: one `error:` line and exit 2, no traceback.
`costslo gate` on an API server it cannot reach says "no verdict" (exit 2) after its timeout, never
"breached" (exit 1, which is also what an uncaught exception would give and would fail a healthy release)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def costslo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "costslo", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreachable_api_server_is_no_verdict_not_a_breach(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{closed_port()}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    gate = ["gate", "-n", "apps", "--name", "chat", "--timeout", "2s", "--poll", "1s"]
    result = costslo(*gate, env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the API server" in result.stdout and "retrying" in result.stdout
    assert "no verdict within 2s" in result.stdout
    assert "Traceback" not in result.stderr


def test_run_refuses_a_wrong_price_catalog_before_starting(tmp_path: Path) -> None:
    catalog = tmp_path / "prices.yaml"
    catalog.write_text("gpuProducts:\n  NVIDIA-H100-80GB-HBM3: cheap\n")
    args = ["run", "--prometheus-url", "http://127.0.0.1:9", "--price-catalog", str(catalog)]
    result = costslo(*args, env={"HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error:" in result.stderr and "gpuProducts.NVIDIA-H100-80GB-HBM3" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("given", [True, False])
def test_run_refuses_missing_credentials_before_starting(tmp_path: Path, given: bool) -> None:
    not_a_kubeconfig = tmp_path / "kubeconfig"
    not_a_kubeconfig.write_text("hello: world\n")
    flag = ["--kubeconfig", str(not_a_kubeconfig)] if given else []
    result = costslo("run", "--prometheus-url", "http://127.0.0.1:9", *flag, env={"HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    where = f"--kubeconfig {not_a_kubeconfig}" if given else "in-cluster or default kubeconfig"
    assert f"error: cannot load Kubernetes credentials ({where})" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_the_gpu_exporter_refuses_a_node_without_credentials(tmp_path: Path) -> None:
    result = costslo("gpu-exporter", "--node", "gpu-0", "--once", env={"HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: --node gpu-0 needs Kubernetes credentials to list its pods" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_refuses_an_interval_that_would_hammer_prometheus(tmp_path: Path) -> None:
    result = costslo(
        "run", "--prometheus-url", "http://127.0.0.1:9", "--interval", "0s", env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: --interval 0s is too short: at least 5s" in result.stderr


@pytest.mark.parametrize("command", ["run", "report"])
def test_a_gpu_resource_without_a_share_is_refused_with_its_form(tmp_path: Path, command: str) -> None:
    args = [command, "--prometheus-url", "http://127.0.0.1:9", "--gpu-resource", "nvidia.com/gpu.shared"]
    result = costslo(
        *args, *(["--gpu-hourly", "3"] if command == "report" else []), env={"HOME": str(tmp_path)}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        "error: a GPU resource is NAME=GPUS" in result.stderr
        and "nvidia.com/gpu.shared=0.25" in result.stderr
    )
    assert "Traceback" not in result.stderr + result.stdout


def test_a_model_needs_its_runtime(tmp_path: Path) -> None:
    args = ["report", "--prometheus-url", "http://127.0.0.1:9", "--gpu-hourly", "3", "--model", "ensemble"]
    result = costslo(*args, env={"HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: give --runtime with --model" in result.stderr


def test_models_for_a_runtime_without_a_model_label_are_refused(tmp_path: Path) -> None:
    args = ["report", "--prometheus-url", "http://127.0.0.1:9", "--gpu-hourly", "3", "--runtime", "tgi"]
    result = costslo(*args, "--model", "chat", env={"HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: tgi series carry no model label" in result.stderr
