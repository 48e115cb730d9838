"""`costslo gate` on an API server it cannot reach: "no verdict" (exit 2) after its timeout, never "breached"
(exit 1, which is also what an uncaught exception would give and would fail a healthy release)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "costslo",
            "gate",
            "-n",
            "apps",
            "--name",
            "chat",
            "--timeout",
            "2s",
            "--poll",
            "1s",
        ],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot reach the API server" in result.stdout and "retrying" in result.stdout
    assert "no verdict within 2s" in result.stdout
    assert "Traceback" not in result.stderr
