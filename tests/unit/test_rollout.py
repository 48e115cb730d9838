"""The rollout gate's state machine, step by step, without a cluster."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from costslo.rollout import (
    OVERRIDE_ANNOTATION,
    ClearOverride,
    DeploymentState,
    GatePolicy,
    Memory,
    Pause,
    RestoreTemplate,
    Resume,
    Revision,
    RevisionFigures,
    duration_text,
    step,
)

T0 = 1_800_000_000.0
OLD = {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "m", "image": "8b"}]}}
NEW = {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "m", "image": "70b"}]}}
NEWER = {"metadata": {"labels": {"app": "chat"}}, "spec": {"containers": [{"name": "m", "image": "13b"}]}}
POLICY = GatePolicy(
    action="Pause",
    bake_seconds=60,
    budget=Decimal("0.0002"),
    latency_limit=10.0,
    min_requests=100,
    on_missing_metrics="Hold",
    enforce=True,
)
FITS = RevisionFigures(Decimal("0.00015"), 4.0, 600)
TOO_DEAR = RevisionFigures(Decimal("0.00066"), 4.0, 600)
TOO_SLOW = RevisionFigures(Decimal("0.00015"), 14.0, 600)


def deployment(
    *revisions: Revision, template: Any = None, paused: bool = False, **annotations: str
) -> DeploymentState:
    newest = max(revisions, key=lambda r: r.number)
    return DeploymentState("ml", "chat", paused, template or newest.template, annotations, tuple(revisions))


def old(replicas: int = 3, number: int = 1) -> Revision:
    return Revision("aaa", number, OLD, replicas, replicas)


def new(ready: int = 1, number: int = 2, replicas: int = 1) -> Revision:
    return Revision("bbb", number, NEW, replicas, ready)


def run(
    dep: DeploymentState,
    memory: Memory,
    figures: RevisionFigures | None = None,
    policy: GatePolicy = POLICY,
    generation: int = 1,
    at: float = T0,
) -> Any:
    return step(dep, memory, {"bbb": figures} if figures else {}, policy, generation, at)


def baking(paused_by_gate: bool = True, started: float | None = T0) -> Memory:
    stamp = None if started is None else "2027-01-15T08:00:00Z"
    m = Memory("Baking", "bbb", "aaa", "2027-01-15T08:00:00Z", stamp, paused_by_gate=paused_by_gate)
    return m


def test_first_sight_of_a_settled_deployment_is_stable_and_touches_nothing() -> None:
    d = run(deployment(old()), Memory())
    assert d.memory.state == "Stable" and d.memory.stable_revision == "aaa"
    assert d.actions == () and d.events == ()


def test_a_new_revision_is_paused_at_once_with_an_event() -> None:
    d = run(deployment(old(), new(ready=0)), Memory("Stable", "aaa", "aaa"))
    assert d.actions == (Pause(),)
    assert d.memory.state == "Baking" and d.memory.revision == "bbb" and d.memory.paused_by_gate
    assert d.memory.bake_started is None and d.holding and not d.blocked
    (event,) = d.events
    assert event.reason == "RolloutPaused" and "bakes for 1m" in event.message


def test_a_rollout_under_way_at_first_sight_is_gated_against_the_bigger_old_revision() -> None:
    d = run(deployment(old(), new(ready=0)), Memory())
    assert d.memory.state == "Baking" and d.memory.stable_revision == "aaa" and d.actions == (Pause(),)


def test_the_bake_clock_starts_with_the_first_ready_canary_pod() -> None:
    waiting = run(deployment(old(), new(ready=0), paused=True), baking(started=None))
    assert waiting.memory.bake_started is None and waiting.actions == ()
    ready = run(deployment(old(), new(ready=1), paused=True), baking(started=None), at=T0 + 7)
    assert ready.memory.bake_started is not None and ready.memory.state == "Baking"
    assert "left" in (ready.memory.reason or "")


def started_at(now: float) -> Memory:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    return replace(baking(), bake_started=stamp)


def test_a_revision_is_not_judged_before_its_bake_is_over() -> None:
    d = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 59)
    assert d.memory.state == "Baking" and d.actions == () and "1s of 1m left" in (d.memory.reason or "")


def test_a_revision_within_budget_is_promoted_and_resumed_once() -> None:
    d = run(deployment(old(), new(), paused=True), started_at(T0), FITS, at=T0 + 61)
    assert d.memory.state == "Promoted" and d.memory.stable_revision == "bbb"
    assert d.actions == (Resume(),)
    (event,) = d.events
    assert event.reason == "RolloutPromoted" and "$0.00015" in event.message and "$0.0002" in event.message
    again = run(deployment(old(), new(), paused=False), d.memory, FITS, at=T0 + 70)
    assert again.actions == () and again.events == ()
    assert again.memory == replace(d.memory, paused_by_gate=False)


def test_a_revision_over_budget_is_blocked_with_the_numbers() -> None:
    d = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, generation=4, at=T0 + 61)
    assert d.blocked and d.memory.judged_generation == 4 and d.actions == ()
    assert "projected cost $0.000660 per request is over the budget $0.000200" in (d.memory.reason or "")
    (event,) = d.events
    assert event.type == "Warning" and event.reason == "RolloutBlocked"
    # Blocked stays blocked, quietly, while nothing changes.
    again = run(deployment(old(), new(), paused=True), d.memory, TOO_DEAR, generation=4, at=T0 + 90)
    assert again.blocked and again.actions == () and again.events == ()


def test_latency_over_its_budget_blocks_too() -> None:
    d = run(deployment(old(), new(), paused=True), started_at(T0), TOO_SLOW, at=T0 + 61)
    assert d.blocked and "latency 14s is over the threshold 10s" in (d.memory.reason or "")


def test_a_blocked_deployment_somebody_resumed_is_paused_again() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    d = run(deployment(old(), new(), paused=False), blocked, TOO_DEAR, at=T0 + 70)
    assert d.actions == (Pause(),) and d.blocked


def test_a_changed_costslo_releases_the_block_and_judges_again_at_once() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    raised = replace(POLICY, budget=Decimal("0.001"))
    d = run(deployment(old(), new(), paused=True), blocked, TOO_DEAR, raised, generation=2, at=T0 + 80)
    assert d.memory.state == "Promoted" and d.actions == (Resume(),)
    assert [e.reason for e in d.events] == ["RolloutReleased", "RolloutPromoted"]


def test_a_changed_costslo_that_still_does_not_fit_blocks_again() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    d = run(deployment(old(), new(), paused=True), blocked, TOO_DEAR, generation=2, at=T0 + 80)
    assert d.blocked and d.memory.judged_generation == 2 and d.actions == ()


def test_the_override_annotation_lets_the_revision_through_and_is_cleared() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    dep = deployment(old(), new(), paused=True, **{OVERRIDE_ANNOTATION: "INC-42 accepted by finance"})
    d = run(dep, blocked, TOO_DEAR, at=T0 + 70)
    assert d.memory.state == "Overridden" and d.memory.stable_revision == "bbb"
    assert d.actions == (Resume(), ClearOverride())
    (event,) = d.events
    assert event.reason == "RolloutOverridden" and "INC-42 accepted by finance" in event.message


def test_a_new_template_while_blocked_resumes_so_the_controller_can_create_it() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    d = run(deployment(old(), new(), template=NEWER, paused=True), blocked, TOO_DEAR, at=T0 + 70)
    assert d.memory.state == "Superseded" and d.actions == (Resume(),)
    waiting = run(deployment(old(), new(), template=NEWER), d.memory, at=T0 + 71)
    assert waiting.actions == () and waiting.events == ()
    newer = Revision("ccc", 3, NEWER, 1, 0)
    gated = step(deployment(old(), new(), newer), waiting.memory, {}, POLICY, 1, T0 + 72)
    assert gated.memory.state == "Baking" and gated.memory.revision == "ccc" and gated.actions == (Pause(),)


def test_rollback_restores_the_previous_template_and_remembers_the_hash() -> None:
    policy = replace(POLICY, action="Rollback")
    d = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, policy, at=T0 + 61)
    assert d.memory.state == "RolledBack" and d.memory.rejected == ("bbb",)
    assert d.actions == (RestoreTemplate(OLD, "bbb"), Resume())
    assert [e.reason for e in d.events] == ["RolloutRolledBack"]
    # The controller brings the old ReplicaSet back as the newest: settled, nothing more to do.
    restored = run(deployment(new(ready=0, replicas=0), old(number=3), template=OLD), d.memory, None, policy)
    assert restored.memory.state == "Stable" and restored.memory.revision == "aaa" and restored.actions == ()
    # Applying the rejected template again is rolled back on sight, without another bake.
    again = run(deployment(old(number=3), new(ready=0, number=4)), restored.memory, None, policy)
    assert again.memory.state == "RolledBack" and again.actions[0] == RestoreTemplate(OLD, "bbb")


def test_a_rollback_interrupted_by_a_restart_is_finished_without_a_second_event() -> None:
    policy = replace(POLICY, action="Rollback")
    d = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, policy, at=T0 + 61)
    # The status was written but the operator died before restoring: the next step restores, silently.
    after = run(deployment(old(), new(), paused=True), d.memory, TOO_DEAR, policy, at=T0 + 90)
    assert after.actions == (RestoreTemplate(OLD, "bbb"), Resume()) and after.events == ()


def test_a_promotion_interrupted_by_a_restart_is_finished_without_a_second_event() -> None:
    d = run(deployment(old(), new(), paused=True), started_at(T0), FITS, at=T0 + 61)
    # The status was written but the operator died before resuming: the next step resumes, silently.
    after = run(deployment(old(), new(), paused=True), d.memory, FITS, at=T0 + 90)
    assert after.actions == (Resume(),) and after.events == ()


def test_missing_figures_hold_or_allow_as_the_spec_says() -> None:
    held = run(deployment(old(), new(), paused=True), started_at(T0), None, at=T0 + 61)
    assert held.memory.state == "Baking" and held.actions == ()
    assert "onMissingMetrics: Hold" in (held.memory.reason or "")
    allowed = run(
        deployment(old(), new(), paused=True),
        started_at(T0),
        RevisionFigures(Decimal("0.0001"), 3.0, 20),
        replace(POLICY, on_missing_metrics="Allow"),
        at=T0 + 61,
    )
    assert allowed.memory.state == "Promoted" and "fewer than minRequests 100" in (
        allowed.memory.reason or ""
    )


def test_a_deployment_paused_by_a_person_is_never_resumed_by_the_gate() -> None:
    d = run(deployment(old(), new(ready=0), paused=True), Memory("Stable", "aaa", "aaa"))
    assert d.actions == () and not d.memory.paused_by_gate
    done = run(
        deployment(old(), new(), paused=True),
        replace(d.memory, bake_started="2027-01-15T08:00:00Z"),
        FITS,
        at=T0 + 61,
    )
    assert done.memory.state == "Promoted" and done.actions == ()


def test_report_mode_decides_and_says_but_never_writes() -> None:
    report = replace(POLICY, enforce=False)
    d = run(deployment(old(), new(ready=0)), Memory("Stable", "aaa", "aaa"), policy=report)
    assert d.actions == () and d.memory.state == "Baking" and not d.memory.paused_by_gate
    assert "Report mode" in d.events[0].message
    judged = run(deployment(old(0), new(replicas=3, ready=3)), started_at(T0), TOO_DEAR, report, at=T0 + 61)
    assert judged.memory.state == "Blocked" and judged.actions == ()


def test_action_none_turns_the_gate_off() -> None:
    d = run(deployment(old(), new(ready=0)), Memory(), policy=replace(POLICY, action="None"))
    assert d.memory == Memory() and d.actions == () and d.events == ()


def test_reverting_the_template_during_a_bake_withdraws_the_revision() -> None:
    d = run(deployment(new(), old(number=3), paused=True, template=OLD), started_at(T0), FITS, at=T0 + 10)
    assert d.memory.state == "Stable" and d.memory.revision == "aaa" and d.actions == (Resume(),)
    assert [e.reason for e in d.events] == ["RolloutWithdrawn"]


def test_memory_round_trips_through_status() -> None:
    m = Memory(
        "Blocked", "bbb", "aaa", "2027-01-15T08:00:00Z", "2027-01-15T08:00:05Z", "why", ("x",), True, 3
    )
    assert Memory.from_status(m.to_status()) == m
    assert Memory.from_status({"state": "Nonsense"}).state is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (600, "10m"), (150, "2m30s"), (0.4, "0s"), (4500, "1h15m"), (3600, "1h")],
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_turning_the_gate_off_lifts_its_hold_once() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    off = replace(POLICY, action="None")
    d = run(deployment(old(), new(), paused=True), blocked, TOO_DEAR, off, at=T0 + 70)
    assert d.actions == (Resume(),) and d.memory.state == "Stable" and not d.blocked
    assert [e.reason for e in d.events] == ["RolloutReleased"]
    quiet = run(deployment(old(), new()), d.memory, TOO_DEAR, off, at=T0 + 80)
    assert quiet.actions == () and quiet.events == ()


def test_switching_to_report_mode_lifts_the_gates_own_pause() -> None:
    blocked = run(deployment(old(), new(), paused=True), started_at(T0), TOO_DEAR, at=T0 + 61).memory
    report = replace(POLICY, enforce=False, budget=Decimal("0.001"))
    d = run(deployment(old(), new(), paused=True), blocked, TOO_DEAR, report, generation=2, at=T0 + 70)
    assert d.memory.state == "Promoted" and d.actions == (Resume(),)


def test_a_rollback_with_no_previous_revision_holds_quietly() -> None:
    policy = replace(POLICY, action="Rollback")
    gone = replace(started_at(T0), stable_revision="zzz")
    d = run(deployment(old(), new(), paused=True), gone, TOO_DEAR, policy, at=T0 + 61)
    assert d.blocked and "previous revision is gone" in (d.memory.reason or "")
    again = run(deployment(old(), new(), paused=True), d.memory, TOO_DEAR, policy, at=T0 + 70)
    assert again.events == () and again.actions == () and again.memory == d.memory


def test_a_revert_seen_before_the_controller_bumps_the_old_revision_withdraws_at_once() -> None:
    # The Deployment already carries the old template; the canary is still the newest ReplicaSet.
    d = run(deployment(old(), new(), paused=True, template=OLD), started_at(T0), FITS, at=T0 + 61)
    assert d.memory.state == "Stable" and d.memory.revision == "aaa" and d.actions == (Resume(),)
    assert [e.reason for e in d.events] == ["RolloutWithdrawn"]


def test_with_max_surge_zero_the_canary_gets_its_pod_before_the_pause() -> None:
    empty = Revision("bbb", 2, NEW, 0, 0)
    d = run(deployment(old(2), empty), Memory("Stable", "aaa", "aaa"))
    assert d.memory.state == "Baking" and d.actions == () and not d.memory.paused_by_gate
    waiting = run(deployment(old(2), empty), d.memory, at=T0 + 1)
    assert waiting.actions == () and "get its first pod" in (waiting.memory.reason or "")
    given = run(deployment(old(2), new(ready=0)), waiting.memory, at=T0 + 2)
    assert given.actions == (Pause(),) and given.memory.paused_by_gate


def test_a_canary_that_never_becomes_ready_is_reported_once_after_the_progress_deadline() -> None:
    start = run(deployment(old(), new(ready=0)), Memory("Stable", "aaa", "aaa"), at=T0).memory
    before = run(deployment(old(), new(ready=0), paused=True), start, at=T0 + 599)
    assert before.events == ()
    late = run(deployment(old(), new(ready=0), paused=True), before.memory, at=T0 + 601)
    assert [e.reason for e in late.events] == ["RolloutStalled"] and late.memory.state == "Baking"
    assert "no pod of revision bbb became ready in 10m" in (late.memory.reason or "")
    again = run(deployment(old(), new(ready=0), paused=True), late.memory, at=T0 + 700)
    assert again.events == ()


def test_a_rollout_is_judged_but_never_written_argo_acts_on_the_verdict() -> None:
    from costslo import api
    from tests.support.costslos import valid_spec

    spec = valid_spec()
    spec["targetRef"] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "chat"}
    spec["enforcement"]["rollout"]["action"] = "Rollback"
    policy = GatePolicy.from_spec(api.CostSLOSpec.model_validate(spec))
    # Argo aborts a canary whose analysis fails, which scales it away: the gate's part is the verdict.
    assert policy.action == "Pause" and not policy.enforce
    d = run(deployment(old(), new(ready=1)), Memory("Stable", "aaa", "aaa"), policy=policy)
    assert d.memory.state == "Baking" and d.actions == ()
    assert "Argo Rollouts acts on it" in d.events[0].message
    baking_canary = replace(started_at(T0), paused_by_gate=False)
    judged = run(deployment(old(2), new(ready=1)), baking_canary, TOO_DEAR, policy, at=T0 + 601)
    assert judged.memory.state == "Blocked" and judged.blocked and judged.actions == ()
    # Argo aborts: the canary is scaled to 0 and the stable revision serves; the gate holds nothing more.
    aborted = run(deployment(old(3), new(replicas=0, ready=0)), judged.memory, policy=policy, at=T0 + 620)
    assert aborted.memory.state == "RolledBack" and not aborted.holding and aborted.actions == ()
    assert [e.reason for e in aborted.events] == ["RolloutAborted"]
    quiet = run(deployment(old(3), new(replicas=0, ready=0)), aborted.memory, policy=policy, at=T0 + 630)
    assert quiet.memory == aborted.memory and quiet.events == ()
    # A retry scales the same revision up again: a new bake, and a new verdict.
    retried = run(deployment(old(2), new(replicas=1, ready=0)), aborted.memory, policy=policy, at=T0 + 700)
    assert retried.memory.state == "Baking" and retried.memory.bake_started is None
    assert [e.reason for e in retried.events] == ["RolloutReleased", "RolloutBaking"]
