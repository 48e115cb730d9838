"""The operator's one evaluation loop: every interval, evaluate every CostSLO, then write what changed.

One loop for all CostSLOs (not a timer per object), so PromQL queries are batched across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog
from pydantic import ValidationError

from costslo import api
from costslo.actions.status import HEARTBEAT_SECONDS, StatusWriter, differences, needs_write
from costslo.actions.workload import WorkloadWriter, action_name
from costslo.evaluator import Evaluation, Evaluator, EvaluatorConfig, SloObject
from costslo.inventory import Inventory
from costslo.metrics.prometheus import PrometheusClient
from costslo.rollout import Resume
from costslo.server import Answer
from costslo.settings import OperatorSettings
from costslo.standby import PeerCheck
from costslo.telemetry import Telemetry

log = structlog.get_logger(__name__)

STARTUP_GRACE_SECONDS = 5.0
# A tenant's custom query gets this long (Prometheus is told so too) and one attempt: the loop is shared.
CUSTOM_QUERY_TIMEOUT_SECONDS = 10.0
# A burst of watch events (a rollout creates and scales ReplicaSets) wakes the loop once, not per event.
MIN_SECONDS_BETWEEN_CYCLES = 1.0


def describe_errors(exc: ValidationError) -> str:
    """A pydantic error as one sentence naming the fields, for a SpecValid=False condition."""
    parts = []
    for err in exc.errors():
        where = "spec." + ".".join(str(p) for p in err["loc"]) if err["loc"] else "spec"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _api_status(exc: Exception) -> str:
    """The kind of a failed API call: its HTTP status and reason, or the exception's type."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    return f"HTTP {status} {reason}".strip() if status else type(exc).__name__


def slo_object(body: Mapping[str, Any]) -> SloObject:
    """A CostSLO from a watch event; a spec that does not parse becomes spec_error, never an exception."""
    meta = body.get("metadata", {})
    try:
        spec: api.CostSLOSpec | None = api.CostSLOSpec.model_validate(body.get("spec") or {})
        error = None
    except ValidationError as exc:
        spec, error = None, describe_errors(exc)
    except Exception:  # a check that failed inside the operator: this CostSLO's problem, not the loop's
        log.exception(
            "checking a CostSLO's spec failed", namespace=meta.get("namespace"), name=meta.get("name")
        )
        spec, error = (
            None,
            "the spec could not be checked: an error inside the operator (its log has the details)",
        )
    try:
        status = api.CostSLOStatus.model_validate(body.get("status") or {})
    except ValidationError:
        status = api.CostSLOStatus()
    return SloObject(
        str(meta.get("namespace")),
        str(meta.get("name")),
        int(meta.get("generation") or 0),
        spec,
        error,
        status,
        str(meta.get("creationTimestamp") or ""),
    )


class OperatorLoop:
    """Holds what the watches have told us and runs the evaluation cycle."""

    def __init__(self, settings: OperatorSettings, api_client: Any) -> None:
        self.settings = settings
        self.inventory = Inventory(gpu_resources=settings.labels.gpu_resources)
        self.slos: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.client = PrometheusClient(settings.prometheus)
        self.custom_client = PrometheusClient(
            replace(
                settings.prometheus,
                timeout_seconds=min(CUSTOM_QUERY_TIMEOUT_SECONDS, settings.prometheus.timeout_seconds),
                max_attempts=1,
            )
        )
        self.evaluator = Evaluator(
            self.client,
            self.inventory,
            EvaluatorConfig(settings.labels, settings.price_catalog, custom_client=self.custom_client),
        )
        self.writer = StatusWriter(api_client)
        self.workloads = WorkloadWriter(api_client)
        self._wake: asyncio.Event | None = None
        self._woken: dict[tuple[str, str, str], float] = {}  # when each target last woke the loop
        self._written: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self._phases: dict[tuple[str, str], str] = {}
        self._latest: dict[tuple[str, str], Mapping[str, Any]] = {}
        # With peers, an instance is a standby until it finds itself the highest live one.
        self.telemetry = Telemetry(active=settings.peering is None)
        self.cycles = 0
        self.peers = PeerCheck(api_client, settings.peering) if settings.peering else None
        self._standby_for: list[str] = []
        self.standing_by_now = False
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)

    def verdict(self, namespace: str, name: str) -> Answer:
        """The latest status of one CostSLO for the HTTP API, and how old it may be. Our own evaluation is
        renewed every interval: a few intervals without one means the loop is stalled. A status read from
        the API (a standby's, or before our first evaluation) is rewritten only when it changes or at the
        heartbeat, so it may be that much older."""
        fresh = 3 * self.settings.interval_seconds + 30
        status = self._status_for(namespace, name)
        mine = (namespace, name) in self._latest and not self.standing_by_now
        return Answer(status, fresh if mine else fresh + HEARTBEAT_SECONDS)

    def _status_for(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A standby's watches are paused, so it reads the status the active instance wrote from the API
        instead of answering from what it last saw."""
        if self.standing_by_now:
            from kubernetes.client.exceptions import ApiException

            obj: Any
            try:
                obj = self._custom.get_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, name
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return dict(obj.get("status") or {}) or None
        # Our latest evaluation, else what we last wrote, else what the cluster holds (a fresh restart).
        key = (namespace, name)
        if key in self._latest:
            return self._latest[key]
        if key in self._written:
            return self._written[key][1]
        stored = (self.slos.get(key) or {}).get("status")
        return dict(stored) if stored else None

    def costslo(self, body: Mapping[str, Any], deleted: bool) -> None:
        key = (str(body["metadata"]["namespace"]), str(body["metadata"]["name"]))
        if deleted:
            self.slos.pop(key, None)
            self._written.pop(key, None)
            self._latest.pop(key, None)
            self.telemetry.forget(*key)
            self._phases.pop(key, None)
        else:
            self.slos[key] = body

    def wake(self) -> None:
        """Runs the next cycle now: a watch saw something the rollout gate must answer at once."""
        if self._wake is not None:
            self._wake.set()

    def wake_for(self, namespace: str, kind: str, name: str) -> None:
        """Wakes the loop for a change to a workload some CostSLO targets, at most once per target every
        quarter interval: any other workload's churn, and a targeted one's flapping, waits for the interval,
        so no tenant's workloads can drive the shared loop."""
        key = (namespace, kind, name)
        if key not in self._targets():
            return
        now = time.monotonic()
        if now - self._woken.get(key, -math.inf) < self.settings.interval_seconds / 4:
            return
        self._woken[key] = now
        self.wake()

    def _targets(self) -> set[tuple[str, str, str]]:
        targets = set()
        for (namespace, _), body in self.slos.items():
            ref = (body.get("spec") or {}).get("targetRef") or {}
            targets.add((namespace, str(ref.get("kind") or "Deployment"), str(ref.get("name"))))
        return targets

    def release(self, body: Mapping[str, Any]) -> None:
        """Lifts the pause a deleted CostSLO's gate held, if it held one."""
        rollout_status = (body.get("status") or {}).get("rollout") or {}
        ref = (body.get("spec") or {}).get("targetRef") or {}
        if ref.get("kind", "Deployment") != "Deployment":
            return  # the gate never pauses a Rollout
        target = ref.get("name")
        ns = body["metadata"].get("namespace")
        if not (rollout_status.get("pausedByGate") and target and ns) or self.standing_by():
            return
        try:
            self.workloads.apply("Deployment", ns, target, [Resume()])
            log.info("released the gate's pause of a deleted CostSLO", namespace=ns, deployment=target)
        except Exception as exc:
            log.warning(
                "cannot resume the Deployment of a deleted CostSLO", deployment=target, error=str(exc)
            )

    async def run(self) -> None:
        """Evaluates every interval, or sooner when woken, until cancelled; a failing cycle is never fatal."""
        self._wake = asyncio.Event()
        # Let the watches deliver their initial lists first: judging an empty inventory would announce
        # "target not found" for every CostSLO on each restart.
        await asyncio.sleep(min(self.settings.interval_seconds, STARTUP_GRACE_SECONDS))
        while True:
            started = time.monotonic()
            self._wake.clear()
            try:
                await asyncio.to_thread(self.cycle)
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # one bad cycle must not stop the operator (a library's panic included)
                log.exception("evaluation cycle failed")
            await asyncio.sleep(MIN_SECONDS_BETWEEN_CYCLES)
            remaining = self.settings.interval_seconds - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=remaining)

    def standing_by(self) -> bool:
        """True while a live peer of higher priority acts; says so in the log when that changes."""
        if self.peers is None:
            return False
        try:
            above = self.peers.outranked_by()
        except Exception as exc:  # cannot tell: acting beside an active peer is worse than waiting
            log.warning("cannot read the peering object; standing by", error=str(exc))
            self.standing_by_now = True
            self.telemetry.stand_by()
            return True
        self.standing_by_now = bool(above)
        if above:
            # Every time, not only on the change: a cycle that was under way when this instance was
            # outranked may have set its gauges after the first clearing.
            self.telemetry.stand_by()
        else:
            self.telemetry.active.set(1)
        if above != self._standby_for:
            if above:
                log.info("standing by", active=above, priority=self.peers.me.priority)
                # What this instance wrote and saw is stale by the time it acts again: start from what
                # the cluster holds then.
                self._written.clear()
                self._latest.clear()
                self._phases.clear()
            else:
                log.info("active", priority=self.peers.me.priority)
            self._standby_for = above
        return bool(above)

    def cycle(self) -> list[Evaluation]:
        if self.standing_by():
            return []
        now = time.time()
        before = self._queries()
        slos = [slo_object(self._latest_known(key, b)) for key, b in list(self.slos.items())]
        results = self.evaluator.cycle(slos, now)
        for ev in results:
            self._act(ev, now)
        self.inventory.forget_old()
        self.cycles += 1
        self.telemetry.duration.observe(time.time() - now)
        self.telemetry.queries.inc(self._queries() - before)
        log.info(
            "evaluated",
            costslos=len(slos),
            queries=self._queries() - before,
            seconds=round(time.time() - now, 3),
        )
        return results

    def _queries(self) -> int:
        return self.client.queries + self.custom_client.queries

    def _latest_known(self, key: tuple[str, str], body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The CostSLO with the status this process last wrote: the watch may not have echoed it yet,
        and the rollout gate must build on its own latest decision."""
        last = self._written.get(key)
        return {**body, "status": last[1]} if last else body

    def _act(self, ev: Evaluation, now: float) -> None:
        key = (ev.slo.namespace, ev.slo.name)
        self._latest[key] = ev.status
        self.telemetry.observe(ev.slo.namespace, ev.slo.name, ev.status)
        body = self.slos.get(key, {})
        last = self._written.get(key)
        previous = last[1] if last else dict(body.get("status") or {}) or None
        since = now - last[0] if last else float("inf")
        bound = log.bind(namespace=ev.slo.namespace, name=ev.slo.name)
        # A scaling step is taken before status records it: recorded first, a step that then failed would
        # hold the cooldown for a change that never happened. (The gate records first: see _enforce.)
        scaled = self._scale(ev, previous, bound)
        try:
            if needs_write(previous, ev.status, since):
                self.writer.write_status(ev.slo.namespace, ev.slo.name, ev.status)
                bound.info("status written", changed=differences(previous, ev.status)[:10])
                self._written[key] = (now, ev.status)
                self.telemetry.writes.inc()
        except Exception as exc:
            # The decision is not on record, so nothing is done on it: the next cycle decides again.
            bound.warning("cannot write status", error=str(exc))
            return
        try:
            self._enforce(ev, body, now, scaled)
            old_phase = self._phases.get(key) or (body.get("status") or {}).get("phase")
            if old_phase != ev.phase:
                self._phases[key] = ev.phase
                self._announce(ev, body, old_phase, now)
        except Exception as exc:
            bound.warning("cannot act on the verdict", error=str(exc))

    def _enforce(self, ev: Evaluation, body: Mapping[str, Any], now: float, scaled: bool) -> None:
        """The rollout gate's writes, after its decision is in status, and the Events of every action."""
        spec = ev.slo.spec
        if spec is None:
            return
        target = spec.target_ref.name
        bound = log.bind(namespace=ev.slo.namespace, name=ev.slo.name, target=target)
        gate = ev.gate
        if gate is not None and gate.actions and ev.acts:
            self.workloads.apply(spec.target_ref.kind, ev.slo.namespace, target, gate.actions)
            for action in gate.actions:
                self.telemetry.actions.labels(action_name(action)).inc()
            bound.info("rollout gate", actions=[action_name(a) for a in gate.actions])
        for event in gate.events if gate is not None and ev.acts else ():
            self._post(ev, body, event.type, event.reason, event.message, now)
        sizing = ev.sizing
        if scaled and sizing is not None and sizing.decision.scale_to is not None:
            verb = "ScaledUp" if sizing.decision.scale_to > sizing.replicas else "ScaledDown"
            self._post(ev, body, "Normal", verb, sizing.decision.reason, now)

    def _scale(self, ev: Evaluation, previous: Mapping[str, Any] | None, bound: Any) -> bool:
        """Takes the scaling step of the evaluation, if any; on failure, status keeps the last real step."""
        sizing, spec = ev.sizing, ev.slo.spec
        if sizing is None or sizing.decision.scale_to is None or spec is None or not ev.acts:
            return False
        to = sizing.decision.scale_to
        try:
            self.workloads.scale(spec.target_ref.kind, ev.slo.namespace, spec.target_ref.name, to)
        except Exception as exc:
            bound.warning("cannot scale", replicas=to, error=str(exc))
            kept = dict((previous or {}).get("scaling") or {})
            ev.status["scaling"] = {
                **{k: v for k, v in kept.items() if k in ("lastAction", "lastActionTime")},
                "recommendedReplicas": sizing.decision.recommended_replicas,
                # The API's answer goes to the log only: its body can say more than this tenant may read.
                "reason": f"{sizing.decision.reason}; the step to {to} failed ({_api_status(exc)}); the "
                "operator's log has the details",
            }
            return False
        self.telemetry.actions.labels("scale").inc()
        bound.info("scaled", replicas=to, previous=sizing.replicas)
        return True

    def _post(
        self,
        ev: Evaluation,
        body: Mapping[str, Any],
        type_: str,
        reason: str,
        message: str,
        now: float,
        on_target: bool = True,
    ) -> None:
        """An Event on the CostSLO and one on its target workload."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        uid = body.get("metadata", {}).get("uid")
        ns = ev.slo.namespace
        self.writer.event(
            ns, ev.slo.name, uid, api.KIND, f"{api.GROUP}/{api.VERSION}", type_, reason, message, stamp
        )
        if ev.slo.spec is not None and on_target:
            ref = ev.slo.spec.target_ref
            self.writer.event(ns, ref.name, None, ref.kind, ref.api_version, type_, reason, message, stamp)

    def _announce(self, ev: Evaluation, body: Mapping[str, Any], old: str | None, now: float) -> None:
        message = str(ev.status.get("message") or ev.phase)
        type_ = "Normal" if ev.phase in ("Met", "InsufficientTraffic", "Pending") else "Warning"
        spec = ev.slo.spec
        found = (
            spec is not None
            and self.inventory.target(ev.slo.namespace, spec.target_ref.kind, spec.target_ref.name).found
        )
        self._post(
            ev, body, type_, ev.phase, f"{old or 'new'} -> {ev.phase}: {message}", now, on_target=found
        )
        if spec is not None and spec.enforcement.mode == "Enforce" and found and ev.acts:
            cost = (ev.status.get("current") or {}).get("costPerRequest")
            self.workloads.annotate(
                spec.target_ref.kind, ev.slo.namespace, spec.target_ref.name, cost, ev.phase
            )
            self.telemetry.actions.labels("annotate").inc()
