"""`costslo run` against the lab: every CostSLO's status becomes live, with the phase the numbers call for,
the printer columns filled, Events on phase changes, and a fixed number of queries per cycle."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from tests.support.costslos import costslo
from tests.support.lab import REPO, Lab, deployment_available, wait_for
from tests.support.operator import OperatorProcess
from tests.support.workloads import DEPLOYMENTS, inference_deployment

GROUP, VERSION, PLURAL = "costslo.dev", "v1alpha1", "costslos"
OFFERED_RPS = 10.0


@pytest.fixture(scope="module")
def operator_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operator") / "operator.log"


@pytest.fixture(scope="module")
def operator(lab: Lab, costslo_crd: None, operator_log: Path) -> Iterator[OperatorProcess]:
    """The operator as a user runs it, against the lab, evaluating every 5 s."""
    with OperatorProcess(lab, operator_log) as process:
        yield process


@pytest.fixture(scope="module")
def http_port(operator: OperatorProcess) -> int:
    return operator.http_port


def slo(name: str, target: str, budget: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRef": {"name": target},
        "objective": {"maxCostPerRequest": budget, "latency": {"thresholdSeconds": 60}},
        "pricing": {"gpuHourly": "3.00"},
        "evaluation": {"windows": {"long": "2m", "short": "1m"}, "minRequests": 50},
    }
    body.update(spec)
    return costslo(name, body)


def status_of(lab: Lab, ns: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(lab.api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return dict(obj.get("status") or {})


@pytest.fixture(scope="module")
def judged(lab: Lab, operator: OperatorProcess) -> Iterator[str]:
    with lab.namespace("op") as ns:
        lab.apps.create_namespaced_deployment(
            ns, inference_deployment("chat", replicas=2, offered_rps=OFFERED_RPS)
        )
        wait_for("chat Available", lambda: deployment_available(lab, ns, "chat", 2), timeout=90)
        api = client.CustomObjectsApi(lab.api)
        for body in (
            slo("generous", "chat", "0.01"),
            slo("stingy", "chat", "0.00001", enforcement={"mode": "Report"}),
            slo("orphan", "no-such-deployment", "0.01"),
            slo(
                "tokens",
                "chat",
                "0.01",
                objective={
                    "maxCostPerRequest": "0.01",
                    "maxCostPerMillionOutputTokens": "0.05",
                    "latency": {"thresholdSeconds": 60},
                },
                enforcement={"mode": "Report"},  # "generous" alone marks the Deployment
            ),
        ):
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        wait_for(
            "every CostSLO judged",
            lambda: (
                all(
                    status_of(lab, ns, n).get("phase") in ("Met", "Breached", "TargetNotFound")
                    for n in ("generous", "stingy", "orphan")
                )
                and status_of(lab, ns, "generous").get("phase") == "Met"
            ),
            timeout=120,
            interval=2,
        )
        yield ns


def live_and_true_cost(
    lab: Lab, ns: str, name: str, http_port: int, window: float = 60, gpu_hourly: float = 3.0
) -> tuple[dict[str, Any], float]:
    """The CostSLO's live verdict, and the true cost per request of the short window it measured: the
    simulator's exact GPU-seconds and delivered requests, sampled every second and interpolated at both ends
    of that very window."""
    samples: list[tuple[float, float, float]] = []

    def sample() -> None:
        pods = [p for p in lab.truth()["pods"] if p["namespace"] == ns]
        gpu_seconds = sum(p["provisionedGpuSeconds"] for p in pods)
        samples.append((time.time(), gpu_seconds, sum(p["requests"]["delivered"] for p in pods)))

    def at(t: float, i: int) -> float:
        for (t0, *v0), (t1, *v1) in itertools.pairwise(samples):
            if t0 <= t <= t1:
                return v0[i] + (v1[i] - v0[i]) * (t - t0) / (t1 - t0)
        raise AssertionError(f"no truth samples around {t}")

    started = time.time()
    while time.time() - started < window + 15:
        sample()
        time.sleep(1)
    live = requests.get(f"http://127.0.0.1:{http_port}/verdict/{ns}/{name}", timeout=10).json()
    sample()  # after the verdict was read, so the samples bracket its evaluation time
    end = datetime.fromisoformat(live["lastEvaluationTime"].replace("Z", "+00:00")).timestamp()
    assert end - window >= started, "the live verdict is older than the truth samples"
    gpu_seconds, delivered = at(end, 0) - at(end - window, 0), at(end, 1) - at(end - window, 1)
    return live, gpu_seconds * gpu_hourly / 3600 / delivered


def test_status_shows_live_cost_and_the_phase_it_calls_for(lab: Lab, judged: str, http_port: int) -> None:
    generous, stingy = status_of(lab, judged, "generous"), status_of(lab, judged, "stingy")
    assert generous["phase"] == "Met" and stingy["phase"] == "Breached"

    # Right after the pods start, the window still holds their loading time (GPUs paid for, nothing served);
    # judge the figure once the short window lies wholly in steady serving (2 GPUs on average).
    def window_full() -> dict[str, Any] | None:
        current = dict(status_of(lab, judged, "generous")["current"])
        return current if current.get("gpus") == pytest.approx(2, rel=0.02) else None

    wait_for("the short window to lie wholly in steady serving", window_full, timeout=150, interval=3)
    live, true_cost = live_and_true_cost(lab, judged, "generous", http_port)
    assert float(live["costPerRequest"]) == pytest.approx(true_cost, rel=0.01)
    # Status is rewritten when money moves by more than 5%, so what it holds is within that of the truth.
    current = window_full()
    assert current is not None
    assert float(current["costPerRequest"]) == pytest.approx(true_cost, rel=0.06)
    assert current["window"] == "1m"
    assert generous["budget"] == "0.01" and generous["observedGeneration"] == 1
    assert "over the budget" in stingy["message"]
    conditions = {c["type"]: c for c in generous["conditions"]}
    assert conditions["SLOMet"]["status"] == "True" and conditions["SpecValid"]["status"] == "True"
    assert (
        conditions["RolloutAllowed"]["status"] == "True"
        and conditions["MetricsAvailable"]["status"] == "True"
    )
    (revision,) = generous["revisions"]
    assert revision["costPerRequest"] and revision["podTemplateHash"]


def test_a_per_token_budget_is_judged_like_the_per_request_one(lab: Lab, judged: str) -> None:
    wait_for("tokens judged", lambda: status_of(lab, judged, "tokens").get("phase") == "Breached", timeout=60)
    status = status_of(lab, judged, "tokens")
    assert "cost per 1M output tokens $" in status["message"] and "over the budget $0.05" in status["message"]
    slo_met = next(c for c in status["conditions"] if c["type"] == "SLOMet")
    assert slo_met["status"] == "False" and slo_met["reason"] == "OutputTokenBudgetExceeded"


def test_a_missing_target_is_a_condition_with_a_sentence(lab: Lab, judged: str) -> None:
    orphan = status_of(lab, judged, "orphan")
    assert orphan["phase"] == "TargetNotFound"
    sentence = f"Deployment no-such-deployment not found in namespace {judged}"
    assert orphan["message"].count(sentence) == 1
    found = next(c for c in orphan["conditions"] if c["type"] == "TargetFound")
    assert found["status"] == "False" and found["reason"] == "TargetNotFound"
    assert found["message"].count(sentence) == 1


def test_printer_columns_and_events(lab: Lab, judged: str) -> None:
    table = lab.kubectl("get", "cslo", "-n", judged, "-o", "wide").stdout
    header, *lines = table.splitlines()
    row = dict(
        zip(header.split(), next(line for line in lines if line.startswith("generous")).split(), strict=True)
    )
    # Readable at a glance: dollars to three significant digits, latency with a unit, utilisation in percent.
    assert row["TARGET"] == "chat" and row["PHASE"] == "Met"
    # The budget is written at the cost's scale, so the two line up: $0.000xyz against $0.010000.
    assert row["BUDGET"].startswith("$") and Decimal(row["BUDGET"][1:]) == Decimal("0.01")
    assert len(row["BUDGET"]) == len(row["COST/REQ"])
    status = status_of(lab, judged, "generous")
    exact = Decimal(status["current"]["costPerRequest"])
    assert re.fullmatch(r"\$0\.0\d+", row["COST/REQ"]) and len(row["COST/REQ"].lstrip("$0.")) <= 3
    # Two reads of a live object: a write between them moves a figure by more than its write tolerance.
    assert Decimal(row["COST/REQ"][1:]) == pytest.approx(exact, rel=Decimal("0.1"))
    assert re.fullmatch(r"\d+(ms|\.\d\ds)", row["LATENCY"]), row
    assert re.fullmatch(r"\d{1,3}%", row["UTIL"]), row
    assert abs(int(row["UTIL"][:-1]) - 100 * status["current"]["gpuUtilisation"]) <= 5
    assert re.fullmatch(r"\$\d+\.\d\d/h", row["COST/H"]), row
    assert row["PROJECTED"].startswith("$")
    events = lab.core.list_namespaced_event(judged).items
    reasons = {(e.involved_object.name, e.reason) for e in events if e.involved_object.kind == "CostSLO"}
    assert ("stingy", "Breached") in reasons and ("generous", "Met") in reasons
    # Enforce mode marks the Deployment; Report mode (stingy) never writes it.
    annotations = lab.apps.read_namespaced_deployment("chat", judged).metadata.annotations
    assert annotations["costslo.dev/phase"] == "Met"


def test_queries_per_cycle_do_not_grow_with_costslos(lab: Lab, judged: str, operator_log: Path) -> None:
    entries = [json.loads(line) for line in operator_log.read_text().splitlines() if line.startswith("{")]
    last = [e for e in entries if e.get("event") == "evaluated"][-1]
    everything = client.CustomObjectsApi(lab.api).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    windows = {
        w
        for o in everything
        for w in (o["spec"].get("evaluation", {}).get("windows") or {"long": "1h", "short": "5m"}).values()
    }
    assert last["costslos"] == len(everything) >= 3
    # One vLLM fetch (13 queries) per distinct window, shared by every CostSLO that uses it.
    assert last["queries"] == 13 * len(windows)  # 12 quantities and the span Prometheus holds


def test_verdict_endpoint_for_argo_rollouts_and_flagger(judged: str, http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}/verdict/{judged}"
    met = requests.get(f"{base}/generous", timeout=10).json()
    assert met["ok"] is True and met["phase"] == "Met" and met["budget"] == "0.01" and met["costPerRequest"]
    breached = requests.get(f"{base}/stingy", timeout=10).json()
    assert breached["ok"] is False and "over the budget" in breached["reason"]
    # Flagger's webhook: 2xx passes, anything else fails the canary step.
    assert requests.post(f"{base}/generous", json={"name": "chat"}, timeout=10).status_code == 200
    assert requests.post(f"{base}/stingy", json={"name": "chat"}, timeout=10).status_code == 412
    assert requests.get(f"{base}/nothing-here", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("name", "code", "says"),
    [("generous", 0, "met:"), ("stingy", 1, "breached:"), ("orphan", 2, "no verdict within")],
)
def test_gate_exit_codes(lab: Lab, judged: str, name: str, code: int, says: str) -> None:
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "costslo"),
            "gate",
            "-n",
            judged,
            "--name",
            name,
            "--timeout",
            "20s",
            "--poll",
            "2s",
        ],
        env={**os.environ, "KUBECONFIG": lab.kubeconfig},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert says in result.stdout


def test_operator_metrics(judged: str, http_port: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"http://127.0.0.1:{http_port}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    key = (("name", "generous"), ("namespace", judged))
    assert samples[("costslo_budget_per_request", key)] == 0.01
    assert 0 < samples[("costslo_cost_per_request", key)] < 0.01
    assert samples[("costslo_phase", (("name", "generous"), ("namespace", judged), ("phase", "Met")))] == 1.0
    assert (
        samples[("costslo_phase", (("name", "stingy"), ("namespace", judged), ("phase", "Breached")))] == 1.0
    )
    assert samples[("costslo_prometheus_queries_total", ())] > 0
    assert samples[("costslo_status_writes_total", ())] >= 3
    assert samples[("costslo_evaluation_duration_seconds_count", ())] >= 1


def test_an_ensemble_named_by_its_model_and_a_mig_slice_are_costed_live(
    lab: Lab, operator: OperatorProcess, http_port: int
) -> None:
    """Through the operator, not only the report: a Triton ensemble whose four models each count every
    request, read for the model clients call (spec.serving.models), and a pod holding a 3g.40gb MIG slice,
    priced as 3/7 of the GPU. Each CostSLO's live cost per request is within 1% of the simulator's truth."""
    gpus = {"ensemble": 1.0, "mig": 3 / 7}
    serving = {"ensemble": {"serving": {"runtime": "triton", "models": ["ensemble"]}}, "mig": {}}
    with lab.namespaces(*gpus, prefix="live-") as namespaces:
        api = client.CustomObjectsApi(lab.api)
        for key, ns in namespaces.items():
            deployment = DEPLOYMENTS[key]()
            lab.apps.create_namespaced_deployment(ns, deployment)
            body = slo(key, deployment["metadata"]["name"], "0.01", **serving[key])
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)

        def steady(key: str) -> bool:
            current = status_of(lab, namespaces[key], key).get("current") or {}
            return current.get("gpus") == pytest.approx(gpus[key], rel=0.02)

        # The short window wholly in steady serving: the pods' loading time has left it.
        wait_for(
            "both short windows in steady serving", lambda: all(map(steady, gpus)), timeout=240, interval=3
        )
        for key, ns in namespaces.items():
            status = status_of(lab, ns, key)
            assert status["phase"] == "Met" and not status.get("missing"), status
            live, true_cost = live_and_true_cost(lab, ns, key, http_port)
            assert float(live["costPerRequest"]) == pytest.approx(true_cost, rel=0.01), key


def test_a_verdict_from_a_stalled_loop_is_no_verdict(lab: Lab, judged: str, http_port: int) -> None:
    """Prometheus hangs (stopped, not gone): every query waits out its timeout and the evaluation loop
    stalls. The /verdict API still answers, but a verdict older than a few intervals is not one: GET says
    ok false with the reason, POST (Flagger's webhook) fails, until the loop is back."""
    url = f"http://127.0.0.1:{http_port}/verdict/{judged}/generous"
    wait_for(
        "a fresh Met verdict", lambda: requests.get(url, timeout=10).json()["ok"], timeout=60, interval=2
    )
    pid = int((Path(lab.info["pidsDir"]) / "prometheus.pid").read_text().split()[0])  # "pid start-time"
    os.kill(pid, signal.SIGSTOP)
    try:
        body = wait_for(
            "the verdict to go stale",
            lambda: (b := requests.get(url, timeout=10).json())["stale"] and b,
            timeout=180,
            interval=3,
        )
        assert body["ok"] is False and body["rolloutAllowed"] is False and body["phase"] == "Met"
        assert body["reason"].startswith("no fresh verdict: the last evaluation was ")
        assert requests.post(url, json={"name": "chat"}, timeout=10).status_code == 412
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        "a fresh verdict again", lambda: requests.get(url, timeout=10).json()["ok"], timeout=240, interval=3
    )


def test_a_poisoned_costslo_fails_alone_and_says_only_the_kind_of_error(
    lab: Lab, judged: str, http_port: int
) -> None:
    """A custom query that passes admission but that Prometheus refuses at run time (many-to-many matching,
    whose error quotes label sets): that CostSLO is MetricsUnavailable with the kind of error only, and its
    neighbours on the same target are still judged every cycle."""
    rate = "increase(vllm:request_success_total{$__pods}[$__window])"
    poisoned = slo(
        "poisoned",
        "chat",
        "0.01",
        serving={"runtime": "custom", "queries": {"finished": f"{rate} + on() {rate}", "delivered": rate}},
        enforcement={"mode": "Report"},
    )
    api = client.CustomObjectsApi(lab.api)
    created = time.time()
    api.create_namespaced_custom_object(GROUP, VERSION, judged, PLURAL, poisoned)
    try:
        status = wait_for(
            "the poisoned CostSLO judged",
            lambda: (s := status_of(lab, judged, "poisoned")).get("phase") == "MetricsUnavailable" and s,
            timeout=90,
            interval=2,
        )
        assert "Prometheus query failed (BadQuery)" in status["message"]
        assert "duplicate series" not in json.dumps(status) and "match group" not in json.dumps(status)
        # The neighbour's live verdict comes from a cycle that also evaluated the poisoned one.
        live = requests.get(f"http://127.0.0.1:{http_port}/verdict/{judged}/generous", timeout=10).json()
        evaluated = datetime.fromisoformat(live["lastEvaluationTime"].replace("Z", "+00:00")).timestamp()
        assert live["ok"] is True and live["stale"] is False and evaluated > created
    finally:
        api.delete_namespaced_custom_object(GROUP, VERSION, judged, PLURAL, "poisoned")
