"""`make lab-down` stops every lab process and frees every port; `make lab-up` brings it all back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import config

from tests.support.lab import REPO, Lab, _running_lab, deployment_available, run_lab, wait_for
from tests.support.workloads import inference_deployment

COSTSLO = str(REPO / ".venv" / "bin" / "costslo")
REPORT_ARGS = ("--window", "1h", "--gpu-hourly", "3", "-o", "json")


def lab_pids(lab: Lab) -> dict[str, int]:
    files = list(Path(lab.info["pidsDir"]).glob("*.pid"))
    files += list((Path(lab.info["clusterDir"]) / "pids").glob("*.pid"))
    # Our pid files hold "PID START-TIME"; kwokctl's hold the pid alone.
    return {f.stem: int(f.read_text().split()[0]) for f in files}


def alive(pid: int) -> bool:
    """Running and not a zombie (a killed child not yet reaped still answers signal 0)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.lab_teardown
def test_lab_down_leaves_no_process_or_port_behind(lab: Lab) -> None:
    pids = lab_pids(lab)
    assert {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok-controller",
        "kube-state-metrics",
        "prometheus",
        "simulator",
    } <= pids.keys()
    assert all(alive(p) for p in pids.values())
    ports = [int(p) for p in lab.info["ports"]]
    assert all(listening(p) for p in ports)

    run_lab("down")
    try:
        assert [name for name, pid in pids.items() if alive(pid)] == []
        assert [p for p in ports if listening(p)] == []
    finally:
        run_lab("up")  # later sessions (and the session fixture's own teardown) find the lab as it was


@pytest.mark.lab_teardown
def test_a_report_right_after_prometheus_starts_rates_over_what_it_holds(lab: Lab) -> None:
    """A new user's first report: Prometheus holds a minute or two of a 1h window. Rates and GPUs are over
    that span, and the report says so, instead of dividing by the hour (48x too low after 75 s)."""
    run_lab("down")
    run_lab("up")  # a fresh Prometheus (its data goes with `down`) and a fresh cluster
    info = _running_lab()
    assert info is not None
    fresh = Lab(info=info, api=config.new_client_from_config(config_file=info["kubeconfig"]))
    offered = 10.0
    with fresh.namespace("young") as ns:
        fresh.apps.create_namespaced_deployment(
            ns, inference_deployment("chat", replicas=2, offered_rps=offered)
        )
        wait_for("chat Available", lambda: deployment_available(fresh, ns, "chat", 2), timeout=120)

        def report() -> dict[str, Any]:
            done = subprocess.run(
                [COSTSLO, "report", "--prometheus-url", fresh.prometheus_url, "-n", ns, *REPORT_ARGS],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode in (0, 1), done.stderr
            return dict(json.loads(done.stdout))

        def served_a_minute() -> bool:
            rows = report()["workloads"]
            return (
                bool(rows)
                and (rows[0]["current"].get("requestsPerSecond") or 0) > 0
                and time.time() > t0 + 60
            )

        t0 = time.time()
        wait_for("a minute of traffic in Prometheus", served_a_minute, timeout=180, interval=10)
        data = report()
    assert data["window"] == "1h"
    assert data["coveredSeconds"] is not None and 30 < data["coveredSeconds"] < 900, data["coveredSeconds"]
    assert (
        data["coverage"].startswith("over the last ") and "Prometheus holds no older data" in data["coverage"]
    )
    (row,) = data["workloads"]
    current = row["current"]
    # The pods started a little after Prometheus, so they held their 2 GPUs for most, not all, of the span.
    assert 1.0 < current["gpus"] <= 2.05, current
    assert 0.5 * offered < current["requestsPerSecond"] < 1.2 * offered, current
    # Replica time has no price here: its presence or absence is never a gap.
    assert not any("replica time" in m for m in row["missing"]), row["missing"]
