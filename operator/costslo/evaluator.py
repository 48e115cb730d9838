"""One evaluation cycle for every CostSLO: inventory + metrics -> economics -> verdict -> new status.

Queries are batched: one fetch per (runtime, window) over the namespaces of all CostSLOs using that
runtime, so the number of PromQL queries per cycle does not grow with the number of CostSLOs. No I/O here
besides the Prometheus client handed in; writing status is the caller's job (actions/status.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import structlog

from costslo import api, economics, rollout, scaling, views
from costslo.api import duration_text
from costslo.economics import CostBreakdown, Prices
from costslo.inventory import Inventory, TargetPods, whole_revision
from costslo.metrics.prometheus import Problem, PrometheusError, Sample
from costslo.metrics.window import Latency, Querier, WindowSamples, fetch_window, merge_missing
from costslo.pricing import GpuPrice, PriceCatalog, PricingError, gpu_price, weighted_gpu_price
from costslo.rollout import GateDecision, RevisionFigures
from costslo.runtimes import LabelConfig, RuntimePreset, preset_for
from costslo.scaling import ScalingDecision, ScalingInputs, ScalingPolicy
from costslo.usage import gap, usage_of
from costslo.verdict import (
    LATENCY_MET,
    METRICS_AVAILABLE,
    ROLLOUT_ALLOWED,
    SLO_MET,
    Policy,
    Standing,
    Verdict,
    VerdictCondition,
    WindowReading,
    judge,
    merge_conditions,
)

log = structlog.get_logger(__name__)

SPEC_VALID = "SpecValid"
INFEASIBLE = "Infeasible"
TARGET_FOUND = "TargetFound"
TARGET_NOT_FOUND = "TargetNotFound"


def _spec_valid(previous: api.Condition | None, now: float) -> api.Condition:
    """SpecValid=True, keeping its transition time when it was already true."""
    if previous is not None and previous.status == "True":
        return previous
    return api.Condition(
        type=SPEC_VALID, status="True", reason="SpecValid", message="", last_transition_time=_now_iso(now)
    )


@dataclass(frozen=True)
class SloObject:
    """A CostSLO as the evaluator needs it; spec is None when it does not parse."""

    namespace: str
    name: str
    generation: int
    spec: api.CostSLOSpec | None
    spec_error: str | None
    status: api.CostSLOStatus
    created: str = ""  # metadata.creationTimestamp: the first of several CostSLOs on one target enforces


@dataclass(frozen=True)
class Evaluation:
    """The new status of one CostSLO and what changed, for events."""

    slo: SloObject
    status: dict[str, Any]
    verdict: Verdict | None
    phase: str
    gate: GateDecision | None = None
    sizing: Sizing | None = None
    # False for a CostSLO another one on its target outranks: judged and gated alike, but it writes nothing
    # to the workload (no gate action, scaling or annotation).
    acts: bool = True


@dataclass
class EvaluatorConfig:
    labels: LabelConfig = field(default_factory=LabelConfig)
    catalog: PriceCatalog | None = None
    # One fetch per CostSLO instead of one per (runtime, window): the baseline of bench/, nothing else.
    per_object: bool = False
    # Tenants' custom queries go through this client (a tighter timeout, no retry), so one heavy query
    # holds the shared loop for seconds, not minutes; None: the main client.
    custom_client: Querier | None = None
    # All custom queries of one cycle together: once spent, the rest wait for a coming cycle.
    custom_seconds_per_cycle: float = 20.0
    clock: Callable[[], float] = time.monotonic


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")


def _money(value: Any) -> str | None:
    return None if value is None else format(value, "f")


class _Budget:
    """A querier that refuses to start a query once its time is spent (a query under way runs to its
    own timeout)."""

    def __init__(self, client: Querier, seconds: float, clock: Callable[[], float]) -> None:
        self._client, self._seconds, self._clock = client, seconds, clock
        self._deadline: float | None = None

    def spent(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        if self._deadline is None:
            self._deadline = self._clock() + self._seconds
        if self.spent():
            raise PrometheusError(
                "the time for custom queries in this cycle ran out",
                problem=Problem.TIMEOUT,
                url="",
                query=promql,
            )
        return self._client.query(promql, at)


class Evaluator:
    def __init__(self, client: Querier, inventory: Inventory, config: EvaluatorConfig | None = None) -> None:
        self._client = client
        self._inventory = inventory
        self._config = config or EvaluatorConfig()
        self._turn = 0  # which custom CostSLO's queries go first this cycle

    def cycle(self, slos: Sequence[SloObject], now: float) -> list[Evaluation]:
        """Evaluates every CostSLO once."""
        valid: list[tuple[SloObject, api.CostSLOSpec, RuntimePreset]] = []
        results: list[Evaluation] = []
        for slo in slos:
            if slo.spec is None:
                results.append(self._invalid(slo, slo.spec_error or "the spec does not parse", now))
                continue
            try:
                queries = slo.spec.serving.queries.by_quantity() if slo.spec.serving.queries else None
                preset = preset_for(slo.spec.serving.runtime, queries, slo.spec.serving.models)
            except ValueError as exc:
                results.append(self._invalid(slo, str(exc), now))
                continue
            except Exception:
                log.exception("reading the serving spec failed", namespace=slo.namespace, name=slo.name)
                results.append(self._failed(slo, now))
                continue
            valid.append((slo, slo.spec, preset))

        windows: dict[tuple[str, float], WindowSamples | str] = {}
        batches = list(_batches(valid, self._config.per_object).items())
        # Built-in presets first; then tenants' custom queries, from a different one each cycle, within one
        # time budget for them all, so that custom queries delay neither the others nor each other for long.
        builtin = [b for b in batches if b[1][0][2].name != "custom"]
        custom_batches = [b for b in batches if b[1][0][2].name == "custom"]
        self._turn += 1
        owners = list(dict.fromkeys(key for (key, _), _ in custom_batches))  # one per custom CostSLO
        if owners:
            start = self._turn % len(owners)
            order = {key: i for i, key in enumerate(owners[start:] + owners[:start])}
            custom_batches.sort(key=lambda batch: order[batch[0][0]])
        cfg = self._config
        budget = _Budget(cfg.custom_client or self._client, cfg.custom_seconds_per_cycle, cfg.clock)
        for (preset_name, window), group in builtin + custom_batches:
            preset = group[0][2]
            namespaces = {slo.namespace for slo, _, _ in group}
            metrics = tuple(
                sorted(
                    {
                        spec.objective.latency.metric if spec.objective.latency else "e2e"
                        for _, spec, _ in group
                    }
                )
            )
            if preset.name == "custom" and budget.spent():
                windows[(preset_name, window)] = (
                    "not measured this cycle: the time the operator gives custom queries ran out (other "
                    "custom CostSLOs used it); it is measured again in a coming cycle"
                )
                continue
            try:
                windows[(preset_name, window)] = fetch_window(
                    budget if preset.name == "custom" else self._client,
                    preset,
                    self._config.labels,
                    window,
                    namespaces,
                    now,
                    latency_metrics=metrics,
                )
            except PrometheusError as exc:
                log.warning("prometheus query failed", problem=str(exc.problem), error=str(exc))
                windows[(preset_name, window)] = exc.summary()
            except Exception:  # one batch's failure is its own CostSLOs' gap, never the whole cycle's
                log.exception("measuring a window failed", runtime=preset_name, window=window)
                windows[(preset_name, window)] = (
                    "measuring this window failed inside the operator; the operator's log has the details"
                )
        enforcers = _enforcers(valid)
        for slo, spec, preset in valid:
            first = enforcers.get(_target_key(slo, spec))
            other = first if first is not None and first != slo.name and _enforcing(spec) else None
            if other is not None:
                # Two CostSLOs acting on one workload would undo each other: the later one writes nothing
                # to it, and sizes nothing; its verdict (what /verdict answers) holds as strictly as before.
                spec = _without_scaling(spec)
                slo = replace(slo, spec=spec)
            try:
                evaluation = self._evaluate(slo, spec, preset, windows, now)
                results.append(_with_enforcing(evaluation, other, now))
            except Exception:  # this CostSLO's failure is its own condition; the others are still judged
                log.exception("evaluation failed", namespace=slo.namespace, name=slo.name)
                results.append(self._failed(slo, now))
        return results

    # -- one CostSLO -----------------------------------------------------------------------------------
    def _evaluate(
        self,
        slo: SloObject,
        spec: api.CostSLOSpec,
        preset: RuntimePreset,
        windows: Mapping[tuple[str, float], WindowSamples | str],
        now: float,
    ) -> Evaluation:
        long_s = api.parse_duration(spec.evaluation.windows.long).total_seconds()
        short_s = api.parse_duration(spec.evaluation.windows.short).total_seconds()
        target = self._inventory.target(
            slo.namespace, spec.target_ref.kind, spec.target_ref.name, since=now - long_s
        )
        if not target.found:
            return self._target_missing(slo, spec, now)
        policy = Policy.from_spec(spec)
        readings: list[WindowReading] = []
        coverage: list[str] = []
        costs: list[CostBreakdown | None] = []
        latencies: list[Latency | None] = []
        samples_long: tuple[WindowSamples, Prices] | None = None
        for seconds in (long_s, short_s):
            window = windows[(_key(preset, slo, self._config.per_object), seconds)]
            if isinstance(window, str):
                readings.append(WindowReading(None, None, missing=(window,)))
                costs.append(None)
                latencies.append(None)
                continue
            samples = window.total(target.pods)
            prices, price_gap = self._prices(spec, target, window)
            cost = economics.cost_of(
                usage_of(samples, window.covered_seconds), prices, spec.objective.revenue_per_request
            )
            latency = samples.latency(policy_metric(spec), policy.latency_quantile)
            # Said of the target's own pods, in words that name no other namespace of the shared fetch.
            missing = window.gaps(target.pods, partial(gap, samples=samples, prices=prices))
            # The window's sentences say what to check; the cost model's short "no data for ..." twins
            # would only repeat them.
            too_little = _too_little_history(window, seconds)
            detail = missing + ((price_gap,) if price_gap else ()) + too_little
            short = tuple(m for m in cost.missing if not (detail and m.startswith("no data for")))
            # A window Prometheus holds less than half of is too little evidence: neither a breach nor a pass.
            judged = not too_little
            readings.append(
                WindowReading(
                    cost_per_request=cost.cost_per_request if judged else None,
                    cost_per_million_input_tokens=cost.cost_per_million_input_tokens if judged else None,
                    cost_per_million_output_tokens=cost.cost_per_million_output_tokens if judged else None,
                    requests=cost.requests,
                    latency_seconds=latency.seconds if latency else None,
                    latency_kind=latency.kind if latency else "quantile",
                    missing=merge_missing(detail + short),
                    latency_missing=() if latency else (f"no data for {policy_metric(spec)} latency",),
                )
            )
            costs.append(cost)
            latencies.append(latency)
            if seconds == long_s:
                samples_long = (window, prices)
            note = window.coverage_note()
            if note:
                coverage.append(f"{_window_label(spec, seconds, long_s)} window: {note}")
        verdict = judge(readings[0], readings[1], policy, Standing.from_conditions(slo.status.conditions))
        revisions, figures = self._revisions(spec, target, costs[0], samples_long, long_s)
        gate = self._gate(slo, spec, figures, now)
        # `current` shows the short window: the most recent numbers; the verdict weighs both windows.
        status = self._status(slo, spec, verdict, costs, latencies, revisions, gate, now)
        if coverage:
            status["coverage"] = "; ".join(coverage)
        sizing = self._scaling(slo, spec, costs[1], latencies[1], gate, now)
        if sizing is not None:
            status["scaling"] = _scaling_status(sizing, slo.status.scaling, now)
            status["conditions"].append(
                _infeasible_condition(sizing, slo.status.conditions, now, slo.generation)
            )
        return Evaluation(slo, status, verdict, str(status["phase"]), gate, sizing)

    def _scaling(
        self,
        slo: SloObject,
        spec: api.CostSLOSpec,
        recent: CostBreakdown | None,
        latency: Latency | None,
        gate: GateDecision | None,
        now: float,
    ) -> Sizing | None:
        if not spec.enforcement.scaling.enabled:
            return None
        replicas = self._inventory.replicas(slo.namespace, spec.target_ref.kind, spec.target_ref.name)
        if replicas is None:
            return None
        limit = spec.objective.latency.threshold_seconds if spec.objective.latency else None
        inputs = ScalingInputs(
            replicas=replicas,
            utilisation=recent.utilisation if recent else None,
            requests_per_second=recent.requests_per_second if recent else None,
            cost_per_request=recent.cost_per_request if recent else None,
            budget=spec.objective.to_economics().budget,
            latency_seconds=latency.seconds if latency else None,
            latency_limit=limit,
            requests=recent.requests if recent else None,
        )
        previous = slo.status.scaling
        decision = scaling.decide(
            inputs,
            ScalingPolicy.from_spec(spec),
            last_action_time=_epoch(previous.last_action_time) if previous else None,
            now=now,
            autoscaler=self._inventory.autoscaler(slo.namespace, spec.target_ref.kind, spec.target_ref.name),
        )
        # The window averages over the replicas it saw: right after pods start (their loading time still in
        # it) or a step was taken, it speaks of another fleet than the one there is. Steps wait until the
        # window holds the current replicas' GPUs.
        per_replica = self._inventory.gpus_per_replica(
            slo.namespace, spec.target_ref.kind, spec.target_ref.name
        )
        held = (recent.gpus or 0.0) if recent is not None else 0.0
        if decision.scale_to is not None and per_replica and not _covers(held, replicas * per_replica):
            decision = replace(
                decision,
                scale_to=None,
                reason=f"{decision.reason}; waiting for the {spec.evaluation.windows.short} window to cover "
                f"the current {replicas} replicas (it averages {held:.3g} GPUs of {replicas * per_replica})",
            )
        if decision.scale_to is not None and spec.enforcement.mode == "Report":
            decision = replace(
                decision, scale_to=None, reason=f"{decision.reason} (Report mode: not applied)"
            )
        if decision.scale_to is not None and gate is not None and gate.holding:
            decision = replace(
                decision, scale_to=None, reason=f"{decision.reason}; held while the rollout gate decides"
            )
        return Sizing(replicas, decision)

    def _revisions(
        self,
        spec: api.CostSLOSpec,
        target: TargetPods,
        cost: CostBreakdown | None,
        samples_long: tuple[WindowSamples, Prices] | None,
        long_s: float,
    ) -> tuple[list[dict[str, Any]], dict[str, RevisionFigures]]:
        """Each revision on its own pods over the long window, with its projected cost: as status says it,
        and as the gate judges it (the numbers themselves, not their text)."""
        if samples_long is None or cost is None:
            return [], {}
        window, prices = samples_long
        quantile = spec.objective.latency.quantile if spec.objective.latency else 0.95
        scaling_spec = spec.enforcement.scaling
        # With scaling on, capacity follows load to the target utilisation: that is the headroom to price.
        target_u = scaling_spec.target_utilisation if scaling_spec.enabled else None
        revisions = []
        figures: dict[str, RevisionFigures] = {}
        for rev in sorted(target.revisions, key=lambda r: whole_revision(r.revision)):
            rev_samples = window.total(rev.pods)
            usage = usage_of(rev_samples, window.covered_seconds)
            rev_cost = economics.cost_of(usage, prices)
            projection = economics.project(
                usage, prices, fleet_utilisation=cost.utilisation, target_utilisation=target_u
            )
            rev_latency = rev_samples.latency(policy_metric(spec), quantile)
            revisions.append(
                {
                    "podTemplateHash": rev.pod_template_hash,
                    "revision": rev.revision,
                    "costPerRequest": _money(rev_cost.cost_per_request),
                    "projectedCostPerRequest": _money(projection.cost_per_request),
                    "latencySeconds": views.plain(rev_latency.seconds) if rev_latency else None,
                    "requests": views.plain(rev_cost.requests),
                }
            )
            figures[rev.pod_template_hash] = RevisionFigures(
                projected_cost_per_request=projection.cost_per_request,
                latency_seconds=rev_latency.seconds if rev_latency else None,
                requests=rev_cost.requests,
            )
        return revisions, figures

    def _gate(
        self, slo: SloObject, spec: api.CostSLOSpec, figures: Mapping[str, RevisionFigures], now: float
    ) -> GateDecision:
        memory = rollout.Memory.from_status(
            slo.status.rollout.model_dump(by_alias=True, exclude_none=True) if slo.status.rollout else None
        )
        return rollout.step(
            self._inventory.deployment_state(slo.namespace, spec.target_ref.kind, spec.target_ref.name),
            memory,
            figures,
            rollout.GatePolicy.from_spec(spec),
            slo.generation,
            now,
        )

    def _prices(
        self, spec: api.CostSLOSpec, target: TargetPods, window: WindowSamples
    ) -> tuple[Prices, str | None]:
        p = spec.pricing
        base = Prices(
            gpu_hourly=p.gpu_hourly,
            per_replica_hourly=p.per_replica_hourly,
            supporting_cost_per_request=p.supporting_cost_per_request,
            energy_per_kwh=p.energy_per_kwh,
            api_input_per_million=p.api.input_per_million_tokens if p.api else None,
            api_output_per_million=p.api.output_per_million_tokens if p.api else None,
            output_token_weight=p.output_token_weight,
        )
        if p.gpu_hourly is not None or p.api is not None:
            return base, None
        try:
            price = self._catalog_price(target, window)
        except PricingError as exc:
            return base, str(exc)
        return replace(base, gpu_hourly=price.hourly), None

    def _catalog_price(self, target: TargetPods, window: WindowSamples) -> GpuPrice:
        if self._config.catalog is None:
            raise PricingError(
                "no GPU price: set spec.pricing.gpuHourly or give the operator a price catalog"
            )
        parts = []
        for pod in target.pods:
            node = self._inventory.node_of(pod)
            labels = self._inventory.node_labels(node) if node else None
            if labels is None:
                continue
            held = window.pods[pod].gpu_seconds if pod in window.pods else None
            parts.append((gpu_price(labels, catalog=self._config.catalog), held or 0.0))
        if not parts:
            raise PricingError("no node of the target's pods is known, so the catalog cannot price its GPUs")
        try:
            return weighted_gpu_price(parts)
        except ValueError as exc:
            raise PricingError(f"cannot price the target's GPUs: {exc}") from None

    def _status(
        self,
        slo: SloObject,
        spec: api.CostSLOSpec,
        verdict: Verdict,
        costs: Sequence[CostBreakdown | None],
        latencies: Sequence[Latency | None],
        revisions: list[dict[str, Any]],
        gate: GateDecision | None,
        now: float,
    ) -> dict[str, Any]:
        current: dict[str, Any] = {"window": spec.evaluation.windows.short}
        recent, latency = costs[1], latencies[1]
        if recent is not None:
            current.update(views.current_fields(recent))
            current["latencySeconds"] = views.plain(latency.seconds) if latency else None
        if revisions:
            current["projectedCostPerRequest"] = next(
                (r["projectedCostPerRequest"] for r in reversed(revisions) if r["projectedCostPerRequest"]),
                None,
            )
        phase: str = verdict.phase
        message = verdict.reason
        verdict_conditions = list(verdict.conditions)
        enforce = spec.enforcement.mode == "Enforce"
        if gate is not None and gate.holding and gate.memory.reason:
            own = next((c for c in verdict_conditions if c.type == ROLLOUT_ALLOWED), None)
            if enforce:
                held = VerdictCondition(
                    ROLLOUT_ALLOWED,
                    "False",
                    "RolloutBlocked" if gate.blocked else "Baking",
                    gate.memory.reason,
                )
            else:
                # Report mode holds nothing, and neither does what reads /verdict (Argo's analysis, Flagger):
                # the fleet's own answer stands, and says what the gate would have done.
                held = VerdictCondition(
                    ROLLOUT_ALLOWED,
                    own.status if own is not None else "True",
                    "ReportOnly",
                    f"{gate.memory.reason} (Report mode: nothing is held)",
                )
            verdict_conditions = [c for c in verdict_conditions if c.type != ROLLOUT_ALLOWED] + [held]
        if gate is not None and gate.blocked and enforce:
            phase, message = "RolloutBlocked", gate.memory.reason or message
        found = VerdictCondition(
            TARGET_FOUND, "True", "TargetFound", f"{spec.target_ref.kind} {spec.target_ref.name} is measured"
        )
        conditions = merge_conditions(
            [c for c in slo.status.conditions if c.type not in (SPEC_VALID, INFEASIBLE)],
            [found, *verdict_conditions],
            _now_iso(now),
            slo.generation,
        )
        spec_valid = _spec_valid(next((c for c in slo.status.conditions if c.type == SPEC_VALID), None), now)
        budget = _money(spec.objective.to_economics().budget)
        current = {k: v for k, v in current.items() if v is not None}
        return {
            "observedGeneration": slo.generation,
            "phase": phase,
            "budget": budget,
            "current": current,
            "display": views.display(current, budget),
            "revisions": revisions,
            "rollout": (gate.memory.to_status() or None) if gate is not None else None,
            "lastEvaluationTime": _now_iso(now),
            "message": message,
            "conditions": [c.model_dump(by_alias=True, exclude_none=True) for c in [spec_valid, *conditions]],
        }

    def _target_missing(self, slo: SloObject, spec: api.CostSLOSpec, now: float) -> Evaluation:
        """No target to measure: its own phase and condition, one sentence, nothing judged or acted on."""
        ref = spec.target_ref
        message = (
            f"{ref.kind} {ref.name} not found in namespace {slo.namespace}: nothing is measured or enforced "
            f"until it exists; check spec.targetRef.name"
        )
        # What the previous verdict said no longer describes anything; no figure stands in for the target.
        unknown = [VerdictCondition(kind, "Unknown", TARGET_NOT_FOUND, "") for kind in (SLO_MET, LATENCY_MET)]
        held = VerdictCondition(ROLLOUT_ALLOWED, "False", TARGET_NOT_FOUND, "no target to judge")
        found = VerdictCondition(TARGET_FOUND, "False", TARGET_NOT_FOUND, message)
        conditions = merge_conditions(
            [c for c in slo.status.conditions if c.type != SPEC_VALID],
            [found, *unknown, held],
            _now_iso(now),
            slo.generation,
        )
        # The target is out of sight (deleted, or its watch has not listed it yet): what the gate remembers
        # (its own pause, rejected revisions) must survive until it is back.
        spec_valid = next((c for c in slo.status.conditions if c.type == SPEC_VALID), None)
        return _unjudged(
            slo,
            "TargetNotFound",
            message,
            [_spec_valid(spec_valid, now), *conditions],
            now,
            budget=_money(spec.objective.to_economics().budget),
        )

    def _failed(self, slo: SloObject, now: float) -> Evaluation:
        """This CostSLO could not be evaluated: no verdict, so nothing is allowed or acted on (fail closed);
        the cause is in the log, never in status, where Prometheus or library text could leak."""
        message = (
            "this CostSLO could not be evaluated: an error inside the operator (its log has the details); "
            "nothing is judged or allowed until an evaluation succeeds"
        )
        reason = "EvaluationFailed"
        conditions = merge_conditions(
            slo.status.conditions,
            [
                VerdictCondition(METRICS_AVAILABLE, "False", reason, message),
                *(VerdictCondition(kind, "Unknown", reason, "") for kind in (SLO_MET, LATENCY_MET)),
                VerdictCondition(ROLLOUT_ALLOWED, "False", reason, "no verdict"),
            ],
            _now_iso(now),
            slo.generation,
        )
        return _unjudged(slo, "MetricsUnavailable", message, conditions, now)

    def _invalid(self, slo: SloObject, message: str, now: float) -> Evaluation:
        previous = next((c for c in slo.status.conditions if c.type == SPEC_VALID), None)
        since = previous.last_transition_time if previous and previous.status == "False" else _now_iso(now)
        condition = api.Condition(
            type=SPEC_VALID,
            status="False",
            reason="InvalidSpec",
            message=message,
            last_transition_time=since,
            observed_generation=slo.generation,
        )
        others = [c for c in slo.status.conditions if c.type != SPEC_VALID]
        return Evaluation(
            slo,
            {
                "observedGeneration": slo.generation,
                "phase": "InvalidSpec",
                "message": message,
                "lastEvaluationTime": _now_iso(now),
                "conditions": [c.model_dump(by_alias=True, exclude_none=True) for c in [condition, *others]],
            },
            None,
            "InvalidSpec",
        )


# The share of a window Prometheus must hold for the window to be judged.
MIN_COVERED_SHARE = 0.5


def _too_little_history(window: WindowSamples, seconds: float) -> tuple[str, ...]:
    if window.covered_seconds >= MIN_COVERED_SHARE * seconds:
        return ()
    return (
        f"Prometheus holds only the last {duration_text(window.covered_seconds)} of the "
        f"{duration_text(seconds)} window, too little to judge until it holds half of it",
    )


def _window_label(spec: api.CostSLOSpec, seconds: float, long_s: float) -> str:
    windows = spec.evaluation.windows
    return f"the {windows.long if seconds == long_s else windows.short}"


@dataclass(frozen=True)
class Sizing:
    """The scaling decision of one CostSLO, with the replicas it started from."""

    replicas: int
    decision: ScalingDecision


def _covers(window_gpus: float, current_gpus: float) -> bool:
    """Whether a window's average GPUs are those allocated now (within 5%)."""
    return current_gpus > 0 and abs(window_gpus - current_gpus) <= 0.05 * current_gpus


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _scaling_status(sizing: Sizing, previous: api.ScalingStatus | None, now: float) -> dict[str, Any]:
    d = sizing.decision
    out: dict[str, Any] = {"recommendedReplicas": d.recommended_replicas, "reason": d.reason}
    if d.scale_to is not None:
        verb = "ScaleUp" if d.scale_to > sizing.replicas else "ScaleDown"
        out.update(lastAction=f"{verb} {sizing.replicas}->{d.scale_to}", lastActionTime=_now_iso(now))
    elif previous is not None:
        out.update(lastAction=previous.last_action, lastActionTime=previous.last_action_time)
    return {k: v for k, v in out.items() if v is not None}


def _infeasible_condition(
    sizing: Sizing, previous: Sequence[api.Condition], now: float, generation: int
) -> dict[str, Any]:
    """Infeasible=True when no replica count holds both cost and latency."""
    status: Literal["True", "False"] = "True" if sizing.decision.infeasible else "False"
    old = next((c for c in previous if c.type == INFEASIBLE), None)
    since = old.last_transition_time if old is not None and old.status == status else _now_iso(now)
    return api.Condition(
        type=INFEASIBLE,
        status=status,
        reason="CostAndLatencyConflict" if sizing.decision.infeasible else "Feasible",
        message=sizing.decision.reason if sizing.decision.infeasible else "",
        last_transition_time=since,
        observed_generation=generation,
    ).model_dump(by_alias=True, exclude_none=True)


def policy_metric(spec: api.CostSLOSpec) -> Any:
    return spec.objective.latency.metric if spec.objective.latency else "e2e"


def _key(preset: RuntimePreset, slo: SloObject, per_object: bool) -> str:
    # Custom presets carry each CostSLO's own queries, so they are never shared.
    if per_object or preset.name == "custom":
        return f"{preset.key}/{slo.namespace}/{slo.name}"
    return preset.key


def _unjudged(
    slo: SloObject,
    phase: api.Phase,
    message: str,
    conditions: list[api.Condition],
    now: float,
    budget: str | None = None,
) -> Evaluation:
    """A status with no verdict and no figures, that keeps what the rollout gate remembers."""
    memory = slo.status.rollout.model_dump(by_alias=True, exclude_none=True) if slo.status.rollout else None
    status = api.CostSLOStatus(
        observed_generation=slo.generation,
        phase=phase,
        message=message,
        budget=budget,
        rollout=api.RolloutStatus.model_validate(memory) if memory else None,
        last_evaluation_time=_now_iso(now),
        conditions=conditions,
    )
    body = status.model_dump(by_alias=True, exclude_none=True)
    body.setdefault("current", {})
    gate = GateDecision(rollout.Memory.from_status(memory)) if memory else None
    return Evaluation(slo, body, None, phase, gate, None)


def _enforcing(spec: api.CostSLOSpec) -> bool:
    return spec.enforcement.mode == "Enforce"


def _target_key(slo: SloObject, spec: api.CostSLOSpec) -> tuple[str, str, str]:
    return (slo.namespace, spec.target_ref.kind, spec.target_ref.name)


def _enforcers(
    valid: Iterable[tuple[SloObject, api.CostSLOSpec, RuntimePreset]],
) -> dict[tuple[str, str, str], str]:
    """Per target, the CostSLO that enforces on it: the oldest enforcing one (then by name)."""
    first: dict[tuple[str, str, str], tuple[str, str]] = {}
    for slo, spec, _ in valid:
        if _enforcing(spec):
            key, rank = _target_key(slo, spec), (slo.created, slo.name)
            first[key] = min(first.get(key, rank), rank)
    return {key: rank[1] for key, rank in first.items()}


def _without_scaling(spec: api.CostSLOSpec) -> api.CostSLOSpec:
    scaling = spec.enforcement.scaling.model_copy(update={"enabled": False})
    return spec.model_copy(update={"enforcement": spec.enforcement.model_copy(update={"scaling": scaling})})


ENFORCING = "Enforcing"


def _with_enforcing(ev: Evaluation, other: str | None, now: float) -> Evaluation:
    """The Enforcing=False condition on a CostSLO another one on its target outranks; gone once it is not."""
    conditions = [api.Condition.model_validate(c) for c in ev.status.get("conditions") or []]
    if other is None:
        kept = [c for c in conditions if c.type != ENFORCING]
        if len(kept) == len(conditions):
            return ev
        conditions = kept
        ev = replace(ev, acts=True)
    else:
        spec = ev.slo.spec
        target = f"{spec.target_ref.kind} {spec.target_ref.name}" if spec else "its target"
        message = (
            f"{target} is already enforced by CostSLO {other}: this one judges and gates but writes "
            "nothing to it (set enforcement.mode: Report, or remove one of them)"
        )
        condition = VerdictCondition(ENFORCING, "False", "AnotherCostSLOEnforces", message)
        conditions = merge_conditions(conditions, [condition], _now_iso(now), ev.slo.generation)
        ev.status["message"] = f"{ev.status.get('message') or ''}; {message}".lstrip("; ")
        ev = replace(ev, acts=False)
    ev.status["conditions"] = [c.model_dump(by_alias=True, exclude_none=True) for c in conditions]
    return ev


def _batches(
    valid: Iterable[tuple[SloObject, api.CostSLOSpec, RuntimePreset]], per_object: bool
) -> dict[tuple[str, float], list[tuple[SloObject, api.CostSLOSpec, RuntimePreset]]]:
    """CostSLOs that share a runtime preset and a window share one fetch."""
    out: dict[tuple[str, float], list[tuple[SloObject, api.CostSLOSpec, RuntimePreset]]] = {}
    for item in valid:
        spec = item[1]
        for w in (spec.evaluation.windows.long, spec.evaluation.windows.short):
            key = (_key(item[2], item[0], per_object), api.parse_duration(w).total_seconds())
            out.setdefault(key, []).append(item)
    return out
