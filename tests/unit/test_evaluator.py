"""The evaluation cycle on canned Prometheus answers: batching, verdicts per CostSLO, invalid specs."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from costslo import api
from costslo.evaluator import Evaluator, EvaluatorConfig, SloObject
from costslo.inventory import Inventory
from costslo.metrics.prometheus import Problem, PrometheusError, Sample

pytestmark = pytest.mark.unit


class StandIn:
    """One series per pod of the namespaces a query selects; finished 100, delivered 99 per pod."""

    def __init__(self, pods: dict[str, list[str]]) -> None:
        self.pods, self.queries = pods, 0

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.queries += 1
        names: set[str] = set()
        for m in re.finditer(r'namespace(=~|=)"([^"]*)"', promql):
            names.update(m.group(2).split("|") if m.group(1) == "=~" else [m.group(2)])
        value = 99.0 if "finished_reason=~" in promql else 1.0 if "finished_reason!~" in promql else 100.0
        if "sum_over_time" in promql:
            value = 3600.0  # GPU-, pod- and busy-seconds: one GPU busy all hour
        out = []
        for ns in sorted(names & self.pods.keys()):
            for pod in self.pods[ns]:
                if "_bucket" in promql:
                    out += [
                        Sample({"namespace": ns, "pod": pod, "le": le}, r)
                        for le, r in (("1", 0.5), ("+Inf", 1))
                    ]
                else:
                    out.append(Sample({"namespace": ns, "pod": pod}, value))
        return out


def fleet(budgets: list[str]) -> tuple[list[SloObject], Inventory, dict[str, list[str]]]:
    inv, pods, slos = Inventory(), {}, []
    for i, budget in enumerate(budgets):
        ns, name = f"team-{i}", f"model-{i}"
        inv.deployment({"metadata": {"namespace": ns, "name": name}})
        owner = [{"kind": "Deployment", "name": name, "controller": True}]
        inv.replicaset({"metadata": {"namespace": ns, "name": f"{name}-abc", "ownerReferences": owner}})
        pods[ns] = [f"{name}-abc-0"]
        inv.pod(
            {
                "metadata": {
                    "namespace": ns,
                    "name": pods[ns][0],
                    "ownerReferences": [{"kind": "ReplicaSet", "name": f"{name}-abc", "controller": True}],
                },
                "spec": {"containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            }
        )
        spec = api.CostSLOSpec.model_validate(
            {
                "targetRef": {"name": name},
                "objective": {"maxCostPerRequest": budget},
                "pricing": {"gpuHourly": "3"},
            }
        )
        slos.append(SloObject(ns, name, 1, spec, None, api.CostSLOStatus()))
    return slos, inv, pods


def run(budgets: list[str], per_object: bool = False) -> tuple[list[Any], int]:
    slos, inv, pods = fleet(budgets)
    client = StandIn(pods)
    results = Evaluator(client, inv, EvaluatorConfig(per_object=per_object)).cycle(slos, time.time())
    return results, client.queries


def test_queries_per_cycle_do_not_grow_with_costslos() -> None:
    assert run(["0.1"])[1] == run(["0.1"] * 20)[1] == 26  # (12 quantities + what Prometheus holds) x (1h, 5m)
    assert run(["0.1"] * 20, per_object=True)[1] == 20 * 26


def test_each_costslo_gets_its_own_verdict_from_the_shared_fetch() -> None:
    # $3 per GPU-hour over 99 delivered requests: $0.0303 per request.
    results, _ = run(["0.1", "0.01"])
    assert [r.phase for r in results] == ["Met", "Breached"]
    assert results[0].status["current"]["costPerRequest"].startswith("0.0303")
    assert results[1].status["budget"] == "0.01"
    assert results[0].status["display"]["costPerRequest"] == "$0.0303"
    assert results[1].status["display"]["budget"] == "$0.0100"
    api.CostSLOStatus.model_validate(results[0].status)
    batched = [r.status["current"] for r in results]
    per_object = [r.status["current"] for r in run(["0.1", "0.01"], per_object=True)[0]]
    assert batched == per_object


def test_invalid_spec_is_a_condition_not_an_exception() -> None:
    slos, inv, pods = fleet(["0.1"])
    bad = SloObject("team-0", "broken", 3, None, "spec.objective: set a budget", api.CostSLOStatus())
    results = Evaluator(StandIn(pods), inv).cycle([*slos, bad], time.time())
    broken = results[0] if results[0].slo.name == "broken" else results[1]
    assert broken.phase == "InvalidSpec"
    (condition,) = [c for c in broken.status["conditions"] if c["type"] == "SpecValid"]
    assert condition["status"] == "False" and "set a budget" in condition["message"]


def test_a_missing_target_has_its_own_phase_condition_and_one_sentence() -> None:
    slos, inv, pods = fleet(["0.1"])
    spec = slos[0].spec
    assert spec is not None
    orphan_spec = spec.model_copy(update={"target_ref": api.TargetRef(name="nope")})
    orphan = SloObject("team-0", "orphan", 2, orphan_spec, None, api.CostSLOStatus())
    results = Evaluator(StandIn(pods), inv).cycle([slos[0], orphan], time.time())
    found, missing = results
    assert missing.phase == missing.status["phase"] == "TargetNotFound"
    sentence = "Deployment nope not found in namespace team-0"
    assert missing.status["message"].count(sentence) == 1
    conditions = {c["type"]: c for c in missing.status["conditions"]}
    assert conditions["TargetFound"]["status"] == "False"
    assert conditions["TargetFound"]["reason"] == "TargetNotFound"
    assert conditions["TargetFound"]["message"].count(sentence) == 1
    # Nothing measured is shown for it, and nothing may roll out on its behalf.
    assert missing.status["current"] == {} and missing.status["revisions"] == []
    assert conditions["RolloutAllowed"]["status"] == "False"
    assert missing.sizing is None and missing.gate is None
    # The status is one the API accepts, and its found neighbour says it was found.
    api.CostSLOStatus.model_validate(missing.status)
    assert {c["type"]: c["status"] for c in found.status["conditions"]}["TargetFound"] == "True"
    assert found.phase == "Met"


def test_a_missing_target_keeps_what_the_gate_remembers() -> None:
    slos, inv, pods = fleet(["0.1"])
    spec = slos[0].spec
    assert spec is not None
    memory = {"state": "Blocked", "revision": "abc", "pausedByGate": True, "rejectedRevisions": ["abc"]}
    status = api.CostSLOStatus.model_validate({"phase": "RolloutBlocked", "rollout": memory})
    gone = SloObject(
        "team-0", "gone", 1, spec.model_copy(update={"target_ref": api.TargetRef(name="x")}), None, status
    )
    (result,) = Evaluator(StandIn(pods), inv).cycle([gone], time.time())
    assert result.phase == "TargetNotFound"
    assert result.status["rollout"]["rejectedRevisions"] == ["abc"]
    assert result.gate is not None and result.gate.memory.paused_by_gate


class WithoutPodInfo(StandIn):
    """The same answers, but kube-state-metrics' kube_pod_info is not scraped."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        return [] if "kube_pod_info" in promql else super().query(promql, at)


def test_replica_time_no_figure_needs_never_makes_metrics_unavailable() -> None:
    slos, inv, pods = fleet(["0.1"])
    (result,) = Evaluator(WithoutPodInfo(pods), inv).cycle(slos, time.time())
    assert result.phase == "Met", result.status["message"]
    assert "replica time" not in str(result.status)


def test_replica_time_a_per_replica_price_needs_is_missing_with_its_sentence() -> None:
    slos, inv, pods = fleet(["0.1"])
    spec = slos[0].spec
    assert spec is not None
    pricing = spec.pricing.model_copy(update={"per_replica_hourly": Decimal("0.5")})
    priced = replace(slos[0], spec=spec.model_copy(update={"pricing": pricing}))
    (result,) = Evaluator(WithoutPodInfo(pods), inv).cycle([priced], time.time())
    assert result.phase == "MetricsUnavailable"
    assert "no data for replica time: no kube_pod_info series" in result.status["message"]


class YoungPrometheus(StandIn):
    """The same answers, from a Prometheus that holds only the last quarter of every window."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        if "count(up)" in promql:
            self.queries += 1
            return [Sample({}, 0.25)]
        return super().query(promql, at)


def test_a_window_mostly_older_than_prometheus_is_neither_breach_nor_pass() -> None:
    slos, inv, pods = fleet(["0.1", "0.000001"])
    results = Evaluator(YoungPrometheus(pods), inv).cycle(slos, time.time())
    for result in results:
        status = result.status
        # Too little evidence: not Met although within budget, not Breached although far over it.
        assert result.phase == "MetricsUnavailable", status["message"]
        assert "Prometheus holds only the last 15m of the 1h window" in status["message"]
        assert status["coverage"] == (
            "the 1h window: over the last 15m: Prometheus holds no older data; "
            "the 5m window: over the last 1m15s: Prometheus holds no older data"
        )
        # Rates are over the span held: 100 requests per pod in 75 s, not in 300 s.
        assert status["current"]["requestsPerSecond"] == pytest.approx(100 / 75, rel=1e-3)
        api.CostSLOStatus.model_validate(status)


def test_verdict_says_what_span_the_figures_are_over() -> None:
    from costslo.server import verdict_body

    slos, inv, pods = fleet(["0.1"])
    (young,) = Evaluator(YoungPrometheus(pods), inv).cycle(slos, time.time())
    body = verdict_body("team-0", "model-0", young.status)
    assert body["ok"] is False and body["phase"] == "MetricsUnavailable"
    assert body["coverage"] == young.status["coverage"]
    (settled,) = Evaluator(StandIn(pods), inv).cycle(slos, time.time())
    assert verdict_body("team-0", "model-0", settled.status)["coverage"] is None
    assert "coverage" not in settled.status


class Failing(StandIn):
    """Prometheus answering every query with an error whose text quotes another tenant's series."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.queries += 1
        raise PrometheusError(
            'found duplicate series for the match group {namespace="team-b", pod="secret-7f9"}',
            problem=Problem.BAD_QUERY,
            url="http://prometheus:9090",
            status=422,
            query=promql,
        )


def test_a_prometheus_error_reaches_status_as_its_kind_never_its_text() -> None:
    slos, inv, pods = fleet(["0.1"])
    (result,) = Evaluator(Failing(pods), inv).cycle(slos, time.time())
    assert result.phase == "MetricsUnavailable"
    said = json.dumps(result.status)
    assert "secret-7f9" not in said and "team-b" not in said
    assert "Prometheus query failed (BadQuery): Prometheus rejected a query" in result.status["message"]


def test_a_costslo_whose_evaluation_fails_fails_alone_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error inside one CostSLO's evaluation becomes its own condition; the others are judged."""
    slos, inv, pods = fleet(["0.1", "0.1", "0.1"])
    evaluate = Evaluator._evaluate

    def poisoned(self: Evaluator, slo: SloObject, *args: Any) -> Any:
        if slo.name == "model-1":
            raise ZeroDivisionError("float division by zero")
        return evaluate(self, slo, *args)

    monkeypatch.setattr(Evaluator, "_evaluate", poisoned)
    results = Evaluator(StandIn(pods), inv).cycle(slos, time.time())
    assert [r.phase for r in results] == ["Met", "MetricsUnavailable", "Met"]
    failed = results[1]
    assert "could not be evaluated" in failed.status["message"] and "division" not in json.dumps(
        failed.status
    )
    conditions = {c["type"]: c for c in failed.status["conditions"]}
    assert conditions["RolloutAllowed"]["status"] == "False"
    assert conditions["MetricsAvailable"]["reason"] == "EvaluationFailed"
    api.CostSLOStatus.model_validate(failed.status)
    assert failed.sizing is None


class SeveralModels(StandIn):
    """Triton pods whose success counter names several models: the delivered answer marks them."""

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        answer = super().query(promql, at)
        if "costslo_several_models" in promql:
            return [Sample({**s.labels, "costslo_several_models": "true"}, 4) for s in answer]
        return answer


def test_a_target_pod_serving_several_models_leaves_no_cost_and_says_what_to_name() -> None:
    slos, inv, pods = fleet(["0.1"])
    spec = slos[0].spec
    assert spec is not None
    triton = spec.model_copy(update={"serving": api.Serving(runtime="triton")})
    (result,) = Evaluator(SeveralModels(pods), inv).cycle([replace(slos[0], spec=triton)], time.time())
    assert result.phase == "MetricsUnavailable"
    assert result.status["current"].get("costPerRequest") is None
    assert "no data for requests: pod model-0-abc-0 served several models" in result.status["message"]
    assert "spec.serving.models" in result.status["message"]


def test_of_two_costslos_enforcing_on_one_target_only_the_older_acts() -> None:
    slos, inv, pods = fleet(["0.1"])
    first = replace(slos[0], name="first", created="2026-01-01T00:00:00Z")
    later = replace(slos[0], name="later", created="2026-02-01T00:00:00Z")
    results = {r.slo.name: r for r in Evaluator(StandIn(pods), inv).cycle([later, first], time.time())}
    assert results["first"].acts
    assert not [c for c in results["first"].status["conditions"] if c["type"] == "Enforcing"]
    demoted = results["later"]
    assert not demoted.acts and demoted.sizing is None
    # Still Enforce: its verdict (what /verdict answers a gate) holds as strictly as the first one's.
    assert demoted.slo.spec is not None and demoted.slo.spec.enforcement.mode == "Enforce"
    (enforcing,) = [c for c in demoted.status["conditions"] if c["type"] == "Enforcing"]
    assert enforcing["status"] == "False" and enforcing["reason"] == "AnotherCostSLOEnforces"
    assert "already enforced by CostSLO first" in demoted.status["message"]
    assert demoted.phase == "Met"  # still judged and reported
    # Once alone (the first deleted), the later one acts again and the condition goes.
    (alone,) = Evaluator(StandIn(pods), inv).cycle(
        [replace(later, status=api.CostSLOStatus.model_validate(demoted.status))], time.time()
    )
    assert alone.acts
    assert not [c for c in alone.status["conditions"] if c["type"] == "Enforcing"]


def test_custom_queries_go_through_the_tenant_client() -> None:
    """A tenant's PromQL runs on the client with the tighter timeout and no retry; built-in presets don't."""
    slos, inv, pods = fleet(["0.1", "0.1"])
    spec = slos[1].spec
    assert spec is not None
    rate = "increase(app_requests_total{$__pods}[$__window])"
    custom = spec.model_copy(
        update={
            "serving": api.Serving.model_validate(
                {"runtime": "custom", "queries": {"finished": rate, "delivered": rate}}
            )
        }
    )
    main, tenant = StandIn(pods), StandIn(pods)
    config = EvaluatorConfig(custom_client=tenant)
    results = Evaluator(main, inv, config).cycle([slos[0], replace(slos[1], spec=custom)], time.time())
    assert [r.phase for r in results] == ["Met", "Met"]
    assert tenant.queries == 2 * 9  # (finished, delivered, failed + 5 GPU/pod quantities + span) x 2 windows
    assert main.queries == 26


class Slow(StandIn):
    """A Prometheus whose every answer takes one second of a clock of its own."""

    def __init__(self, pods: dict[str, list[str]]) -> None:
        super().__init__(pods)
        self.now = 0.0

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        self.now += 1.0
        return super().query(promql, at)


def test_custom_queries_share_one_time_budget_and_take_turns() -> None:
    """Once the cycle's time for custom queries is spent, the remaining custom CostSLOs are not measured this
    cycle (said so); the next cycle starts with another one, so none is starved."""
    slos, inv, pods = fleet(["0.1", "0.1", "0.1"])
    rate = "increase(app_requests_total{$__pods}[$__window])"
    queries = {"finished": rate, "delivered": rate}
    serving = api.Serving.model_validate({"runtime": "custom", "queries": queries})
    custom = [replace(s, spec=s.spec.model_copy(update={"serving": serving})) for s in slos if s.spec]
    # A second a query, 9 queries a window: one CostSLO's two windows fit in 20 s, the next one's do not.
    slow = Slow(pods)
    config = EvaluatorConfig(custom_client=slow, custom_seconds_per_cycle=20, clock=lambda: slow.now)
    evaluator = Evaluator(StandIn(pods), inv, config)
    measured_in: list[set[str]] = []
    for _ in range(3):
        results = evaluator.cycle(custom, time.time())
        measured = {r.slo.name for r in results if r.phase == "Met"}
        skipped = {
            r.slo.name for r in results if "not measured this cycle" in (r.status.get("message") or "")
        }
        assert measured and skipped and not measured & skipped
        assert all(r.phase == "MetricsUnavailable" for r in results if r.slo.name not in measured)
        measured_in.append(measured)
    assert set().union(*measured_in) == {s.name for s in custom}  # each measured within three cycles
