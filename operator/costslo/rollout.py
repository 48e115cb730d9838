"""The rollout gate for plain Deployments: one step of its state machine per evaluation (README.md).

A Rollout (Argo Rollouts) goes through the same states without any write: Argo Rollouts runs the canary and
acts on the verdict through its analysis (GET /verdict), so Blocked there means "the analysis fails".

Pure: the Deployment as the watches last saw it, what the gate remembers (status.rollout), the new revision's
figures and the policy in; the new memory, the writes to make and the Events to post out. The caller writes
the memory into status *before* it touches the Deployment, and every write is idempotent, so an operator
killed between the two finishes the same decision after a restart, and announces it once.

The states of status.rollout.state:

- Stable: the newest revision is the one last let through (or the only one there ever was).
- Baking: a new revision appeared; the Deployment is paused, so the pods already surged are the canary and
  the controller makes no further progress. The bake clock starts when the first canary pod is ready; after
  `bakeTime` the revision is judged on its own pods' traffic: projected cost per request against the budget,
  its own latency against the latency budget.
- Promoted: it fit; the Deployment is resumed.
- Blocked: it did not fit and the action is Pause; the Deployment stays paused, the phase is RolloutBlocked.
- RolledBack: it did not fit and the action is Rollback; the previous revision's template is restored and
  the rejected pod-template-hash is remembered, so the same template is rolled back again on sight.
- Overridden: a person set the annotation costslo.dev/override; the revision goes through unjudged.
- Superseded: the template changed again while paused; the Deployment is resumed so the controller can
  create the newer revision, which is then gated in turn.

A block is released by a change of the CostSLO (the revision is judged again at once, against the new
spec), by a new template, or by the override annotation. A Deployment a person paused stays paused: the gate
resumes only what it paused itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from costslo import api
from costslo.api import duration_text
from costslo.verdict import dollars, seconds

OVERRIDE_ANNOTATION = "costslo.dev/override"
MAX_REJECTED = 10  # the hashes remembered; older ones would have left the ReplicaSet history anyway

State = Literal["Stable", "Baking", "Promoted", "Blocked", "RolledBack", "Overridden", "Superseded"]
# States after which the revision in `revision` is the one serving, judged or let through.
_SETTLED: frozenset[str] = frozenset({"Stable", "Promoted", "Overridden"})


# -- what the gate sees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revision:
    """One ReplicaSet of the Deployment."""

    pod_template_hash: str
    number: int  # deployment.kubernetes.io/revision
    template: Mapping[str, Any]  # the pod template, without the pod-template-hash label
    replicas: int
    ready_replicas: int


@dataclass(frozen=True)
class DeploymentState:
    namespace: str
    name: str
    paused: bool
    template: Mapping[str, Any]
    annotations: Mapping[str, str]
    revisions: tuple[Revision, ...]
    progress_deadline_seconds: float = 600.0

    @property
    def newest(self) -> Revision | None:
        return max(self.revisions, key=lambda r: r.number, default=None)

    def revision(self, pod_template_hash: str | None) -> Revision | None:
        return next((r for r in self.revisions if r.pod_template_hash == pod_template_hash), None)

    @property
    def matching(self) -> Revision | None:
        """The ReplicaSet whose template is the Deployment's, if the controller has one."""
        return next((r for r in self.revisions if r.template == self.template), None)

    @property
    def template_pending(self) -> bool:
        """The template matches no ReplicaSet: the controller has not created its revision (e.g. paused)."""
        return bool(self.revisions) and all(r.template != self.template for r in self.revisions)


@dataclass(frozen=True)
class RevisionFigures:
    """A revision judged on its own pods over the long window."""

    projected_cost_per_request: Decimal | None
    latency_seconds: float | None
    requests: float | None


@dataclass(frozen=True)
class GatePolicy:
    action: Literal["Pause", "Rollback", "None"]
    bake_seconds: float
    budget: Decimal
    latency_limit: float | None
    min_requests: int
    on_missing_metrics: Literal["Hold", "Allow"]
    enforce: bool  # False in Report mode and for Rollouts: decide and say, never write the workload
    # What an Event adds when nothing was written.
    unwritten_note: str = "Report mode: the Deployment was not changed"
    # Another controller runs the canary (Argo Rollouts): it aborts a rejected one and may retry it.
    external: bool = False

    @classmethod
    def from_spec(cls, spec: api.CostSLOSpec) -> GatePolicy:
        latency = spec.objective.latency
        action = spec.enforcement.rollout.action
        argo = spec.target_ref.kind == "Rollout"
        note = "Report mode: the Deployment was not changed"
        if argo:
            # Argo Rollouts aborts (and so rolls back) a canary whose analysis fails: the gate only judges.
            action = "Pause" if action == "Rollback" else action
            note = (
                "Argo Rollouts acts on it through its analysis"
                if spec.enforcement.mode == "Enforce"
                else "Report mode: the Rollout was not changed"
            )
        return cls(
            action=action,
            bake_seconds=api.parse_duration(spec.enforcement.rollout.bake_time).total_seconds(),
            budget=spec.objective.to_economics().budget,
            latency_limit=latency.threshold_seconds if latency else None,
            min_requests=spec.evaluation.min_requests,
            on_missing_metrics=spec.evaluation.on_missing_metrics,
            enforce=spec.enforcement.mode == "Enforce" and not argo,
            unwritten_note=note,
            external=argo,
        )


# -- what the gate remembers (status.rollout) ---------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    state: State | None = None
    revision: str | None = None  # the pod-template-hash the state is about
    stable_revision: str | None = None  # the last revision let through
    since: str | None = None  # when the state was entered
    bake_started: str | None = None  # when the canary's first pod was ready
    reason: str | None = None
    rejected: tuple[str, ...] = ()
    paused_by_gate: bool = False
    judged_generation: int | None = None  # the CostSLO generation a Blocked verdict was made under

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> Memory:
        s = status or {}
        state = s.get("state")
        return cls(
            state=state if state in _STATES else None,
            revision=s.get("revision"),
            stable_revision=s.get("stableRevision"),
            since=s.get("since"),
            bake_started=s.get("bakeStarted"),
            reason=s.get("reason"),
            rejected=tuple(str(h) for h in s.get("rejectedRevisions") or ()),
            paused_by_gate=bool(s.get("pausedByGate")),
            judged_generation=s.get("judgedGeneration"),
        )

    def to_status(self) -> dict[str, Any]:
        out = {
            "state": self.state,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "since": self.since,
            "bakeStarted": self.bake_started,
            "reason": self.reason,
            "rejectedRevisions": list(self.rejected) or None,
            "pausedByGate": self.paused_by_gate or None,
            "judgedGeneration": self.judged_generation,
        }
        return {k: v for k, v in out.items() if v is not None}


_STATES = frozenset({"Stable", "Baking", "Promoted", "Blocked", "RolledBack", "Overridden", "Superseded"})


# -- what the gate does -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class RestoreTemplate:
    template: Mapping[str, Any]
    from_revision: str
    # The template being replaced: the write is refused if someone changed it since (no lost update).
    replacing: Mapping[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClearOverride:
    pass


Action = Pause | Resume | RestoreTemplate | ClearOverride


@dataclass(frozen=True)
class GateEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class GateDecision:
    memory: Memory
    actions: tuple[Action, ...] = ()
    events: tuple[GateEvent, ...] = ()

    @property
    def blocked(self) -> bool:
        """The phase is RolloutBlocked: a revision was judged over budget and stays paused."""
        return self.memory.state == "Blocked"

    @property
    def holding(self) -> bool:
        """A rollout waits on the gate (baking or blocked)."""
        return self.memory.state in ("Baking", "Blocked")


# -- one step -----------------------------------------------------------------------------------------


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class _Step:
    """Collects one step's outcome; `enforce` False drops the writes but keeps the story."""

    dep: DeploymentState
    policy: GatePolicy
    now: float
    generation: int = 0
    actions: list[Action] = field(default_factory=list)
    events: list[GateEvent] = field(default_factory=list)

    def act(self, *actions: Action) -> None:
        if self.policy.enforce:
            self.actions.extend(actions)

    def say(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        if not self.policy.enforce:
            message = f"{message} ({self.policy.unwritten_note})"
        self.events.append(GateEvent(type_, reason, message))

    def resume_if_ours(self, memory: Memory) -> Memory:
        # The flag stays set until a later step sees the Deployment running: a restart between writing
        # the decision and sending the resume then still knows the pause was ours to lift.
        # Lifting its own pause is allowed in Report mode too: that is how a switch to Report ends a hold.
        if memory.paused_by_gate and self.dep.paused:
            self.actions.append(Resume())
        return memory

    def done(self, memory: Memory) -> GateDecision:
        return GateDecision(memory, tuple(self.actions), tuple(self.events))


def step(
    dep: DeploymentState | None,
    memory: Memory,
    figures: Mapping[str, RevisionFigures],
    policy: GatePolicy,
    generation: int,
    now: float,
) -> GateDecision:
    """One step of the gate for one Deployment."""
    newest = dep.newest if dep is not None else None
    if dep is None or newest is None:
        return GateDecision(memory)
    s = _Step(dep, policy, now, generation)
    if policy.action == "None":
        return _turned_off(s, memory)
    h = newest.pod_template_hash
    at = _iso(now)
    override = dep.annotations.get(OVERRIDE_ANNOTATION)

    if memory.paused_by_gate and not dep.paused and memory.state not in ("Baking", "Blocked"):
        memory = replace(memory, paused_by_gate=False)  # the resume went through
    if memory.state is None:  # first sight: settled unless a rollout is under way
        others = [r for r in dep.revisions if r is not newest and r.replicas > 0]
        if not others:
            return s.done(Memory("Stable", h, h, at, reason=f"revision {h} is serving"))
        stable = max(others, key=lambda r: r.replicas).pod_template_hash
        memory = Memory("Stable", stable, stable, at)

    if memory.state == "Superseded" and h == memory.revision and dep.template_pending:
        return s.done(memory)  # resumed for the newer template; its ReplicaSet is on its way
    if policy.external and h == memory.revision:
        aborted = _external_abort(s, memory, newest)
        if aborted is not None:
            return aborted
    if memory.state == "RolledBack" and h == memory.revision:
        # Restored, and the controller has yet to make the old ReplicaSet the newest again; or a restart
        # fell between writing this state and restoring: finish it, without a second announcement.
        previous = dep.revision(memory.stable_revision)
        if previous is not None and dep.template != previous.template:
            s.act(RestoreTemplate(previous.template, h, dep.template))
        return s.done(s.resume_if_ours(memory))
    if h == memory.revision and memory.state in _SETTLED:
        if memory.state == "Overridden" and override is not None:
            s.act(ClearOverride())  # a restart fell between letting it through and clearing the annotation
        return s.done(s.resume_if_ours(memory))
    if h == memory.stable_revision:
        if memory.state in ("Baking", "Blocked"):
            s.say(
                "Normal",
                "RolloutWithdrawn",
                f"the template is back to revision {h}; {memory.revision} is gone",
            )
        return s.done(
            replace(
                s.resume_if_ours(memory),
                state="Stable",
                revision=h,
                since=at,
                reason=f"revision {h} is serving",
            )
        )

    if override is not None:
        memory = s.resume_if_ours(memory)
        s.act(ClearOverride())
        note = f": {override}" if override else ""
        s.say(
            "Warning",
            "RolloutOverridden",
            f"revision {h} let through unjudged by {OVERRIDE_ANNOTATION}{note}",
        )
        return s.done(
            replace(
                memory,
                state="Overridden",
                revision=h,
                stable_revision=h,
                since=at,
                bake_started=None,
                reason=f"let through by {OVERRIDE_ANNOTATION}{note}",
                rejected=tuple(r for r in memory.rejected if r != h),
                judged_generation=None,
            )
        )

    current = dep.matching
    if current is not None and current.pod_template_hash != h:
        # The template already names another ReplicaSet, whose revision the controller has yet to bump.
        if current.pod_template_hash == memory.stable_revision and memory.state in ("Baking", "Blocked"):
            s.say(
                "Normal", "RolloutWithdrawn", f"the template is back to revision {current.pod_template_hash}"
            )
            return s.done(
                replace(
                    s.resume_if_ours(memory),
                    state="Stable",
                    revision=current.pod_template_hash,
                    since=at,
                    reason=f"revision {current.pod_template_hash} is serving",
                )
            )
        return s.done(memory)

    held_without_previous = memory.state == "Blocked" and memory.revision == h
    if h in memory.rejected and policy.action == "Rollback" and not held_without_previous:
        return _roll_back(s, memory, h, f"revision {h} was rejected before", repeat=True)

    if h != memory.revision or memory.state not in ("Baking", "Blocked"):
        return _start_bake(s, memory, h)

    # The revision under judgement.
    if dep.template_pending:
        memory = s.resume_if_ours(memory)
        s.say(
            "Normal", "RolloutSuperseded", f"the template changed again; revision {h} is abandoned unjudged"
        )
        return s.done(replace(memory, state="Superseded", since=at, reason="the template changed again"))
    if memory.state == "Blocked":
        if memory.judged_generation == generation:
            return s.done(_keep_paused(s, memory))
        s.say("Normal", "RolloutReleased", f"the CostSLO changed; revision {h} is judged again")
        memory = replace(memory, state="Baking", since=at)
    return _bake(s, memory, newest, figures.get(h), generation)


def _external_abort(s: _Step, memory: Memory, rev: Revision) -> GateDecision | None:
    """Argo Rollouts aborts a canary whose analysis failed (it scales it to 0, the stable ReplicaSet serves
    again): the gate then holds nothing more. A retry scales the same revision up again: judged afresh."""
    h, at = rev.pod_template_hash, _iso(s.now)
    if memory.state == "Blocked" and rev.replicas == 0:
        s.say("Normal", "RolloutAborted", f"revision {h} was aborted; {memory.stable_revision} serves")
        return s.done(
            replace(
                memory,
                state="RolledBack",
                since=at,
                bake_started=None,
                reason=f"revision {h} was aborted; revision {memory.stable_revision} serves",
            )
        )
    if memory.state == "RolledBack" and rev.replicas >= 1:
        s.say("Normal", "RolloutReleased", f"revision {h} is rolling out again; it is judged afresh")
        return _start_bake(s, memory, h)
    return None


def _turned_off(s: _Step, memory: Memory) -> GateDecision:
    """action None: no gate. A hold it left behind is lifted, once."""
    if memory.state in ("Baking", "Blocked"):
        s.say(
            "Normal", "RolloutReleased", "the rollout gate was turned off (action None); the rollout goes on"
        )
        h = s.dep.newest.pod_template_hash if s.dep.newest else memory.revision
        memory = replace(
            memory, state="Stable", revision=h, stable_revision=h, since=_iso(s.now), reason=None
        )
    return s.done(s.resume_if_ours(memory))


def _keep_paused(s: _Step, memory: Memory) -> Memory:
    """A blocked or baking Deployment somebody resumed is paused again: the gate holds until it decides."""
    if not s.dep.paused and s.policy.enforce:
        s.act(Pause())
        return replace(memory, paused_by_gate=True)
    return memory


def _start_bake(s: _Step, memory: Memory, h: str) -> GateDecision:
    # With maxSurge 0 the new ReplicaSet starts empty and gets a pod only once the old one gave one up:
    # pausing then would leave the canary without a pod for good. It is paused once it has one.
    rev = s.dep.revision(h)
    will_pause = not s.dep.paused and rev is not None and rev.replicas >= 1
    paused_by_gate = memory.paused_by_gate or (s.policy.enforce and will_pause)
    if will_pause:
        s.act(Pause())
    s.say(
        "Normal",
        "RolloutPaused" if s.policy.enforce else "RolloutBaking",
        f"new revision {h} {'paused while it bakes' if s.policy.enforce else 'bakes'} for "
        f"{duration_text(s.policy.bake_seconds)} on its own traffic",
    )
    return s.done(
        replace(
            memory,
            state="Baking",
            revision=h,
            since=_iso(s.now),
            bake_started=None,
            reason=f"waiting for the first pod of revision {h} to become ready",
            paused_by_gate=paused_by_gate,
            judged_generation=None,
        )
    )


def _bake(
    s: _Step, memory: Memory, rev: Revision, figures: RevisionFigures | None, generation: int
) -> GateDecision:
    h, policy = rev.pod_template_hash, s.policy
    if memory.bake_started is None and rev.replicas < 1:
        if memory.paused_by_gate and s.dep.paused:
            s.act(Resume())  # the canary has no pod yet: let the controller give it one (maxSurge 0)
        return s.done(replace(memory, reason=f"waiting for revision {h} to get its first pod"))
    memory = _keep_paused(s, memory)
    if memory.bake_started is None:
        if rev.ready_replicas < 1:
            return _waiting_for_ready(s, memory, h)
        memory = replace(memory, bake_started=_iso(s.now))
    started = _epoch(memory.bake_started) or s.now
    left = policy.bake_seconds - (s.now - started)
    if left > 0:
        return s.done(
            replace(
                memory,
                reason=f"baking revision {h}: {duration_text(left)} of "
                f"{duration_text(policy.bake_seconds)} left",
            )
        )
    gap = _gap(figures, policy)
    if gap is not None:
        if policy.on_missing_metrics == "Hold":
            return s.done(
                replace(
                    memory,
                    reason=f"revision {h} cannot be judged yet: {gap}; the rollout waits "
                    "(onMissingMetrics: Hold)",
                )
            )
        return _promote(s, memory, h, f"promoted unjudged: {gap} (onMissingMetrics: Allow)")
    assert figures is not None and figures.projected_cost_per_request is not None
    over = _over(figures, policy)
    if not over:
        return _promote(s, memory, h, _figures_text(figures, policy))
    reason = "; ".join(over)
    if policy.action == "Rollback":
        return _roll_back(s, memory, h, reason, repeat=False)
    held = "stays paused" if s.policy.enforce or s.dep.paused else "is rejected"
    s.say("Warning", "RolloutBlocked", f"revision {h} {held}: {reason}")
    return s.done(
        replace(
            memory,
            state="Blocked",
            since=_iso(s.now),
            reason=f"revision {h}: {reason}",
            judged_generation=generation,
        )
    )


def _waiting_for_ready(s: _Step, memory: Memory, h: str) -> GateDecision:
    """A canary whose pods never become ready holds the rollout; past the Deployment's progress deadline
    (which does not run while paused) that is said once, as a Warning, for a person to look at the pods."""
    waited = s.now - (_epoch(memory.since) or s.now)
    if waited <= s.dep.progress_deadline_seconds:
        return s.done(memory)
    stalled = (
        f"no pod of revision {h} became ready in {duration_text(waited)}; the rollout stays paused: check "
        "the new pods, or change the template"
    )
    if not (memory.reason or "").startswith(f"no pod of revision {h} became ready"):
        s.say("Warning", "RolloutStalled", stalled)
    return s.done(replace(memory, reason=stalled))


def _gap(figures: RevisionFigures | None, policy: GatePolicy) -> str | None:
    if figures is None or figures.requests is None:
        return "no traffic measured on its pods"
    if figures.requests < policy.min_requests:
        return f"{figures.requests:.0f} requests on its pods, fewer than minRequests {policy.min_requests}"
    if figures.projected_cost_per_request is None:
        return "no projected cost per request for its pods"
    if policy.latency_limit is not None and figures.latency_seconds is None:
        return "no latency for its pods"
    return None


def _over(figures: RevisionFigures, policy: GatePolicy) -> list[str]:
    assert figures.projected_cost_per_request is not None
    out = []
    cost, budget = dollars([figures.projected_cost_per_request], [policy.budget])
    if figures.projected_cost_per_request > policy.budget:
        out.append(f"projected cost {cost} per request is over the budget {budget}")
    if (
        policy.latency_limit is not None
        and figures.latency_seconds is not None
        and figures.latency_seconds > policy.latency_limit
    ):
        latency, limit = seconds_pair(figures.latency_seconds, policy.latency_limit)
        out.append(f"latency {latency} is over the threshold {limit}")
    return out


def _figures_text(figures: RevisionFigures, policy: GatePolicy) -> str:
    assert figures.projected_cost_per_request is not None
    cost, budget = dollars([figures.projected_cost_per_request], [policy.budget])
    text = f"projected cost {cost} per request within the budget {budget}"
    if policy.latency_limit is not None and figures.latency_seconds is not None:
        latency, limit = seconds_pair(figures.latency_seconds, policy.latency_limit)
        text += f", latency {latency} within {limit}"
    return text


def seconds_pair(measured: float, limit: float) -> tuple[str, str]:
    latency, budget = seconds([measured], [limit])
    return latency, budget


def _promote(s: _Step, memory: Memory, h: str, why: str) -> GateDecision:
    memory = s.resume_if_ours(memory)
    s.say("Normal", "RolloutPromoted", f"revision {h} promoted: {why}")
    return s.done(
        replace(
            memory,
            state="Promoted",
            revision=h,
            stable_revision=h,
            since=_iso(s.now),
            reason=why,
            judged_generation=None,
        )
    )


def _roll_back(s: _Step, memory: Memory, h: str, reason: str, repeat: bool) -> GateDecision:
    stable = s.dep.revision(memory.stable_revision)
    rejected = (*(r for r in memory.rejected if r != h), h)[-MAX_REJECTED:]
    if stable is None:
        # Nothing to go back to (the history was pruned): hold it paused instead.
        why = f"{reason}; the previous revision is gone, so it stays paused instead of rolling back"
        s.say("Warning", "RolloutBlocked", f"revision {h}: {why}")
        memory = _keep_paused(s, memory) if repeat else memory
        return s.done(
            replace(
                memory,
                state="Blocked",
                revision=h,
                since=_iso(s.now),
                reason=why,
                rejected=rejected,
                judged_generation=s.generation,
            )
        )
    s.act(
        RestoreTemplate(stable.template, h, s.dep.template)
    )  # before resuming, so the bad revision makes no progress
    memory = s.resume_if_ours(memory)
    s.say(
        "Warning",
        "RolloutRolledBack",
        f"revision {h} rolled back to {stable.pod_template_hash}: {reason}",
    )
    return s.done(
        replace(
            memory,
            state="RolledBack",
            revision=h,
            since=_iso(s.now),
            reason=f"revision {h}: {reason}; restored {stable.pod_template_hash}",
            rejected=rejected,
        )
    )
