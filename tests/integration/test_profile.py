"""`costslo profile` against the simulator's OpenAI-compatible server, both run as a user runs them:
the capacity it finds is the profile's, and its cost per request is what `costslo estimate` says for the
same inputs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from costslo.simulator.profiles import ProfileCatalog
from tests.support.lab import REPO, wait_for
from tests.support.operator import free_port

COSTSLO = str(REPO / ".venv" / "bin" / "costslo")
PROFILE = "llama-3.1-8b-h100"
MIX = ["800:50", "1600:100:0.25"]  # tokens in:out[:weight]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("openai") / "simulator.log").open("w")
    proc = subprocess.Popen(
        [COSTSLO, "simulate", "--no-cluster", "--host", "127.0.0.1", "--port", str(port), "--seed", "7"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the simulator's OpenAI API", lambda: requests.get(f"{url}/v1/models", timeout=2).ok, timeout=30
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def costslo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COSTSLO, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def profiled(server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    plot = tmp_path_factory.mktemp("plot") / "profile.png"
    args = ["profile", "--url", server, "--model", PROFILE, "--gpu-hourly", "3.00", "--latency-budget", "1.5"]
    args += ["--target-rps", "100", "--plot", str(plot), "-o", "json", "--no-nvml"]
    for c in (1, 4, 16, 32, 64):
        args += ["--concurrency", str(c)]
    for m in MIX:
        args += ["--mix", m]
    done = costslo(*args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), plot, done.stderr


def configured_capacity() -> float:
    """What the profile sustains for this mix: GPU-seconds per request are linear in the tokens."""
    p = ProfileCatalog.load().get(PROFILE)
    shapes = [(int(a), int(b), float(w[0]) if w else 1.0) for a, b, *w in (m.split(":") for m in MIX)]
    total = sum(w for _, _, w in shapes)
    work = sum(w * (i / p.prefill_tokens_per_second + o / p.decode_tokens_per_second) for i, o, w in shapes)
    return 1 / (work / total)


def test_the_capacity_found_is_the_simulators(profiled: tuple[dict[str, Any], Path, str]) -> None:
    summary, _, stderr = profiled
    assert summary["capacityRequestsPerSecond"] == pytest.approx(configured_capacity(), rel=0.10)
    assert summary["capacityReached"]
    # Throughput rises with concurrency until the GPU is full, and latency rises after that.
    rows = summary["steps"]
    assert rows[0]["requestsPerSecond"] < rows[2]["requestsPerSecond"] <= rows[-1]["requestsPerSecond"] * 1.1
    assert rows[-1]["latencySeconds"]["p95"] > rows[0]["latencySeconds"]["p95"]
    assert all(r["ttftSeconds"]["p95"] is not None for r in rows)
    # Progress on stderr, a line per step.
    assert stderr.count("concurrency") >= len(rows)


def test_its_cost_per_request_is_what_costslo_estimate_says(
    profiled: tuple[dict[str, Any], Path, str],
) -> None:
    summary, _, _ = profiled
    at = summary["atBudget"]
    assert at["latencySeconds"] <= 1.5
    estimate = costslo(
        "estimate",
        "--gpu-hourly", summary["gpuHourly"],
        "--gpus", str(summary["gpus"]),
        "--requests-per-second", repr(at["requestsPerSecond"]),
        "--capacity-per-gpu", repr(summary["capacityRequestsPerSecond"] / summary["gpus"]),
        "--failure-rate", repr(at["failureRate"]),
        "--input-tokens", repr(at["meanInputTokens"]),
        "--output-tokens", repr(at["meanOutputTokens"]),
        "-o", "json",
    )  # fmt: skip
    assert estimate.returncode == 0, estimate.stderr
    said = json.loads(estimate.stdout)
    assert said["costPerRequest"] == at["costPerRequest"]
    assert said["costPerMillionInputTokens"] == at["costPerMillionInputTokens"]
    assert said["costPerMillionOutputTokens"] == at["costPerMillionOutputTokens"]
    s = summary["suggestion"]
    assert s["replicas"] >= 100 / at["requestsPerSecond"]


def test_it_draws_the_plot(profiled: tuple[dict[str, Any], Path, str]) -> None:
    _, plot, _ = profiled
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_a_wrong_model_fails_with_the_servers_reason(server: str) -> None:
    done = costslo(
        "profile", "--url", server, "--model", "gpt-17", "--gpu-hourly", "3", "--concurrency", "1",
        "--requests-per-step", "2", "--no-nvml",
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown model 'gpt-17'" in done.stderr
