"""`make lab-down` stops every lab process and frees every port; `make lab-up` brings it all back."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.lab import Lab, run_lab


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
