"""`costslo report` against the lab: costs within 1% of the simulator's exact values, for vLLM and TGI;
latency quantiles in the bucket that holds the true value; missing data said, never a zero cost."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from costslo.simulator.exporters import SECONDS, VLLM_REQUEST_SECONDS
from tests.support.lab import REPO, Lab, deployment_available, wait_for
from tests.support.workloads import DEPLOYMENTS, inference_deployment

WINDOW = 120
GPU_HOURLY = 3.0
COSTSLO = str(REPO / ".venv" / "bin" / "costslo")


@dataclass
class Measured:
    namespaces: dict[str, str]  # runtime -> namespace
    truth0: dict[str, Any]
    truth1: dict[str, Any]
    start: float
    end: float


def run_report(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COSTSLO, "report", "--prometheus-url", lab.prometheus_url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


MODELS = {"ensemble": ("--runtime", "triton", "--model", "ensemble")}
GPU_RESOURCES = {"shared": ("nvidia.com/gpu.shared=0.5",)}
RUNTIME_OF = {"ensemble": "triton", "mig": "vllm", "shared": "vllm"}


@pytest.fixture(scope="module")
def measured(lab: Lab) -> Iterator[Measured]:
    """A Deployment per runtime under steady load, with ground truth at both ends of a 2-minute window."""
    with lab.namespaces(*DEPLOYMENTS, prefix="cost-") as namespaces:
        deployments = {key: make() for key, make in DEPLOYMENTS.items()}
        for key, d in deployments.items():
            lab.apps.create_namespaced_deployment(namespaces[key], d)
        wait_for(
            "every Deployment Available",
            lambda: all(
                deployment_available(lab, namespaces[key], d["metadata"]["name"], d["spec"]["replicas"])
                for key, d in deployments.items()
            ),
            timeout=90,
        )
        time.sleep(20)  # a few scrapes, so the window starts with series present
        start, truth0 = time.time(), lab.truth()
        time.sleep(WINDOW)
        truth1, end = lab.truth(), time.time()
        yield Measured(namespaces, truth0, truth1, start, end)


def truth_delta(m: Measured, ns: str) -> dict[str, float]:
    before = {p["uid"]: p for p in m.truth0["pods"] if p["namespace"] == ns}
    out = {"gpuSeconds": 0.0, "delivered": 0.0, "finished": 0.0, "input": 0.0, "output": 0.0, "busy": 0.0}
    for p in (p for p in m.truth1["pods"] if p["namespace"] == ns):
        b = before.get(p["uid"])
        assert b is not None, "a pod appeared inside the window"
        out["gpuSeconds"] += p["provisionedGpuSeconds"] - b["provisionedGpuSeconds"]
        out["delivered"] += p["requests"]["delivered"] - b["requests"]["delivered"]
        out["finished"] += p["requests"]["finished"] - b["requests"]["finished"]
        out["input"] += p["tokens"]["input"] - b["tokens"]["input"]
        out["output"] += p["tokens"]["output"] - b["tokens"]["output"]
        out["busy"] += p["busyGpuSeconds"] - b["busyGpuSeconds"]
    return out


def report_of_window(lab: Lab, m: Measured, key: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`costslo report -o json` over the measured window of one namespace."""
    return run_report(
        lab,
        *options,
        "--namespace",
        m.namespaces[key],
        "--window",
        f"{WINDOW}s",
        "--at",
        str(m.end),
        "--gpu-hourly",
        str(GPU_HOURLY),
        "--output",
        "json",
    )


def report_for(lab: Lab, m: Measured, key: str) -> dict[str, Any]:
    models = MODELS.get(key, ())
    resources = [arg for r in GPU_RESOURCES.get(key, ()) for arg in ("--gpu-resource", r)]
    result = report_of_window(lab, m, key, *models, *resources)
    assert result.returncode == 0, result.stderr + result.stdout
    (workload,) = json.loads(result.stdout)["workloads"]
    assert workload["runtime"] == RUNTIME_OF.get(key, key) and workload["missing"] == [], workload["missing"]
    return dict(workload)


def bucket_of(value: float, bounds: tuple[float, ...]) -> tuple[float, float]:
    lower = 0.0
    for upper in bounds:
        if value <= upper:
            return lower, upper
        lower = upper
    return lower, float("inf")


@pytest.mark.parametrize(("runtime", "bounds"), [("vllm", VLLM_REQUEST_SECONDS), ("tgi", SECONDS)])
def test_cost_per_request_matches_ground_truth(
    lab: Lab, measured: Measured, runtime: str, bounds: tuple[float, ...]
) -> None:
    workload = report_for(lab, measured, runtime)
    truth = truth_delta(measured, measured.namespaces[runtime])
    true_cost = truth["gpuSeconds"] * GPU_HOURLY / 3600 / truth["delivered"]
    current = workload["current"]
    assert float(current["costPerRequest"]) == pytest.approx(true_cost, rel=0.01)
    assert current["gpus"] == pytest.approx(2)
    # Utilisation: busy GPU-seconds over provisioned, as the simulator did the work.
    assert current["gpuUtilisation"] == pytest.approx(truth["busy"] / truth["gpuSeconds"], abs=0.03)
    assert current["failureRate"] == pytest.approx(1 - truth["delivered"] / truth["finished"], abs=0.01)
    # The split by tokens adds back up to the compute cost.
    terms = workload["terms"]
    assert float(terms["inputCost"]) + float(terms["outputCost"]) == pytest.approx(
        float(terms["computeCost"])
    )
    assert float(current["costPerMillionOutputTokens"]) > 0
    # One revision, so its own numbers are the workload's.
    (revision,) = workload["revisions"]
    pods = lab.core.list_namespaced_pod(measured.namespaces[runtime]).items
    assert {p.metadata.labels["pod-template-hash"] for p in pods} == {revision["podTemplateHash"]}
    assert revision["costPerRequest"] == current["costPerRequest"]

    quantile = requests.get(
        f"{lab.simulator_url}/truth/latency",
        timeout=10,
        params={
            "namespace": measured.namespaces[runtime],
            "start": measured.end - WINDOW,
            "end": measured.end,
            "q": 0.95,
        },
    ).json()
    low, high = bucket_of(quantile["seconds"], bounds)
    assert low <= current["latencySeconds"] <= high, (quantile, current["latencySeconds"])


def test_report_table_names_each_workload(lab: Lab, measured: Measured) -> None:
    result = run_report(
        lab,
        "--namespace",
        measured.namespaces["vllm"],
        "--namespace",
        measured.namespaces["tgi"],
        "--window",
        "1m",
        "--gpu-hourly",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "chat" in result.stdout and "embedder" in result.stdout and "p95 e2e" in result.stdout


def test_queries_do_not_grow_with_workloads(lab: Lab, measured: Measured) -> None:
    one = run_report(
        lab,
        "--namespace",
        measured.namespaces["vllm"],
        "--window",
        "1m",
        "--gpu-hourly",
        "3",
        "-o",
        "json",
        "--runtime",
        "vllm",
    )
    both = run_report(
        lab,
        "--namespace",
        measured.namespaces["vllm"],
        "--namespace",
        measured.namespaces["tgi"],
        "--window",
        "1m",
        "--gpu-hourly",
        "3",
        "-o",
        "json",
        "--runtime",
        "vllm",
    )
    # With --runtime vllm the TGI workload is listed too (it holds GPUs) but has no vLLM series: exit 1.
    assert one.returncode == 0 and both.returncode == 1, one.stderr + both.stderr
    assert len(json.loads(both.stdout)["workloads"]) == 2 * len(json.loads(one.stdout)["workloads"])
    assert json.loads(one.stdout)["queries"] == json.loads(both.stdout)["queries"]


def test_no_model_server_series_is_an_error_not_a_zero_cost(lab: Lab) -> None:
    with lab.namespace("cost-none") as ns:
        plain = inference_deployment("batch", replicas=1)
        del plain["spec"]["template"]["metadata"]["annotations"]["simulator.costslo.dev/profile"]
        lab.apps.create_namespaced_deployment(ns, plain)
        result = run_report(lab, "--namespace", ns, "--window", "1m", "--gpu-hourly", "3")
    assert result.returncode == 1
    assert "no model-server series" in result.stderr and "Traceback" not in result.stderr


def test_missing_gpu_series_are_named(lab: Lab, measured: Measured) -> None:
    # A price catalog without node labels cannot price the GPUs: said per workload, exit 1.
    catalog = REPO / "tests" / "support" / "catalog.yaml"
    result = run_report(
        lab,
        "--namespace",
        measured.namespaces["vllm"],
        "--window",
        "1m",
        "--price-catalog",
        str(catalog),
        "-o",
        "json",
    )
    assert result.returncode == 1
    (workload,) = json.loads(result.stdout)["workloads"]
    assert workload["current"]["costPerRequest"] is None
    assert any("pass --kubeconfig so nodes can be read" in m for m in workload["missing"]), workload[
        "missing"
    ]


def test_catalog_prices_by_gpu_product_with_node_labels(lab: Lab, measured: Measured) -> None:
    catalog = REPO / "tests" / "support" / "catalog.yaml"
    result = run_report(
        lab,
        "--namespace",
        measured.namespaces["tgi"],
        "--window",
        "1m",
        "--price-catalog",
        str(catalog),
        "--kubeconfig",
        lab.kubeconfig,
        "-o",
        "json",
    )
    assert result.returncode == 0, result.stderr
    (workload,) = json.loads(result.stdout)["workloads"]
    assert float(workload["gpuHourly"]) == 0.8  # the L4 price in the catalog
    assert "NVIDIA-L4" in workload["gpuPriceSource"]


def test_unreachable_prometheus_is_a_clear_error() -> None:
    result = subprocess.run(
        [COSTSLO, "report", "--prometheus-url", "http://127.0.0.1:9", "--gpu-hourly", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr


def test_missing_gpu_metrics_are_named_and_fail_the_run(lab: Lab, measured: Measured) -> None:
    # Looking for DCGM's pod under plain namespace/pod labels finds only the exporter's own labels here.
    result = run_report(
        lab,
        "--namespace",
        measured.namespaces["vllm"],
        "--window",
        "1m",
        "--gpu-hourly",
        "3",
        "--gpu-labels",
        "plain",
        "-o",
        "json",
    )
    assert result.returncode == 1
    (workload,) = json.loads(result.stdout)["workloads"]
    assert any(m.startswith("no data for GPU busy") for m in workload["missing"]), workload["missing"]
    assert workload["current"]["gpuUtilisation"] is None  # unknown, not zero
    assert workload["current"]["costPerRequest"] is not None  # provisioned cost needs no busy time


def test_library_gives_what_the_cli_prints(lab: Lab, measured: Measured) -> None:
    from decimal import Decimal

    from costslo import report
    from costslo.metrics.prometheus import PrometheusClient, PrometheusConfig

    client = PrometheusClient(PrometheusConfig(url=lab.prometheus_url))
    opts = report.ReportOptions(
        window_seconds=WINDOW,
        namespaces={measured.namespaces["tgi"]},
        at=measured.end,
        gpu_hourly=Decimal("3"),
    )
    (row,) = report.build(client, opts).rows
    cli = report_for(lab, measured, "tgi")
    assert row.cost.cost_per_request is not None
    assert format(row.cost.cost_per_request, "f") == cli["current"]["costPerRequest"]


def test_a_heavier_canary_shows_in_projected_not_observed_cost(lab: Lab) -> None:
    """Behind one Service a canary gets the same traffic per pod as the old revision, so its observed cost
    per request looks the same; what differs is GPU work per request, hence the projected cost."""
    with lab.namespace("swap") as ns:
        lab.apps.create_namespaced_deployment(ns, inference_deployment("swap", replicas=2, offered_rps=6.0))
        wait_for("swap Available", lambda: deployment_available(lab, ns, "swap", 2), timeout=90)
        sets = lab.apps.list_namespaced_replica_set(ns).items
        (old_hash,) = [rs.metadata.labels["pod-template-hash"] for rs in sets]
        heavier = {
            "spec": {
                "template": {
                    "metadata": {"annotations": {"simulator.costslo.dev/profile": "llama-3.1-70b-h100"}}
                }
            }
        }
        lab.apps.patch_namespaced_deployment("swap", ns, heavier)

        def canary() -> Any:
            return next(
                (
                    rs
                    for rs in lab.apps.list_namespaced_replica_set(ns).items
                    if rs.metadata.labels["pod-template-hash"] != old_hash
                ),
                None,
            )

        wait_for("the canary ReplicaSet", canary, timeout=30)
        lab.apps.patch_namespaced_deployment("swap", ns, {"spec": {"paused": True}})
        wait_for("the canary pod ready", lambda: (canary().status.ready_replicas or 0) == 1, timeout=60)
        new_hash = canary().metadata.labels["pod-template-hash"]
        time.sleep(15)
        before = {p["uid"]: p for p in lab.truth()["pods"] if p["namespace"] == ns}
        time.sleep(60)
        after, end = lab.truth(), time.time()
        result = run_report(
            lab, "--namespace", ns, "--window", "60s", "--at", str(end), "--gpu-hourly", "3", "-o", "json"
        )
    assert result.returncode == 0, result.stderr

    def truth_busy_per_request(pod_hash: str) -> float:
        """The simulator's exact busy GPU-seconds per delivered request of a revision in that minute."""
        pods = [p for p in after["pods"] if p["namespace"] == ns and p["podTemplateHash"] == pod_hash]
        busy = sum(p["busyGpuSeconds"] - before[p["uid"]]["busyGpuSeconds"] for p in pods)
        delivered = sum(p["requests"]["delivered"] - before[p["uid"]]["requests"]["delivered"] for p in pods)
        return float(busy / delivered)

    (workload,) = json.loads(result.stdout)["workloads"]
    revisions = {r["podTemplateHash"]: r for r in workload["revisions"]}
    old, new = revisions[old_hash], revisions[new_hash]
    # Same traffic per pod and the same GPU per pod: the observed costs agree...
    assert float(new["costPerRequest"]) == pytest.approx(float(old["costPerRequest"]), rel=0.05)
    # ...but the 70B model does about 4.6x the GPU work per request (0.322 GPU-s against 0.07 on average;
    # a minute's requests vary around that, so each revision is held to the truth of that very minute).
    old_work, new_work = truth_busy_per_request(old_hash), truth_busy_per_request(new_hash)
    assert new_work / old_work > 3
    assert old["busyGpuSecondsPerRequest"] == pytest.approx(old_work, rel=0.05)
    assert new["busyGpuSecondsPerRequest"] == pytest.approx(new_work, rel=0.05)
    ratio = float(new["projectedCostPerRequest"]) / float(old["projectedCostPerRequest"])
    assert ratio == pytest.approx(new_work / old_work, rel=0.1)


@pytest.mark.parametrize("key", ["sglang", "triton", "ensemble", "mig", "shared"])
def test_each_runtime_costs_a_request_as_the_simulator_served_it(
    lab: Lab, measured: Measured, key: str
) -> None:
    workload = report_for(lab, measured, key)
    truth = truth_delta(measured, measured.namespaces[key])
    current = workload["current"]
    assert float(current["costPerRequest"]) == pytest.approx(
        truth["gpuSeconds"] * GPU_HOURLY / 3600 / truth["delivered"], rel=0.01
    )
    assert current["gpus"] == pytest.approx(truth["gpuSeconds"] / WINDOW, rel=0.02)
    failed = truth["finished"] - truth["delivered"]
    # Triton counts each failed ensemble request twice (upstream documents it): 2f / (d + 2f).
    doubled = 2 if key == "ensemble" else 1
    assert current["failureRate"] == pytest.approx(
        doubled * failed / (truth["delivered"] + doubled * failed), abs=0.01
    )
    # Triton exposes no latency histogram by default: the report gives a mean and says so.
    assert current["latencyKind"] == ("mean" if key in ("triton", "ensemble") else "quantile")


def test_an_ensemble_not_named_is_not_measured_and_says_what_to_name(lab: Lab, measured: Measured) -> None:
    result = report_of_window(lab, measured, "ensemble")
    assert result.returncode == 1, result.stderr + result.stdout
    (workload,) = json.loads(result.stdout)["workloads"]
    assert workload["current"]["costPerRequest"] is None
    assert any(
        "served several models" in m and "spec.serving.models" in m and "--model" in m
        for m in workload["missing"]
    ), workload["missing"]
