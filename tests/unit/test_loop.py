"""The operator loop's own bookkeeping: which watch events wake it, and how old a verdict may be."""

from __future__ import annotations

import asyncio

import pytest
from kubernetes.client import ApiClient

from costslo import api
from costslo.evaluator import Evaluation, SloObject
from costslo.loop import OperatorLoop
from costslo.metrics.prometheus import PrometheusConfig
from costslo.settings import OperatorSettings

pytestmark = pytest.mark.unit


def loop_with(*targets: tuple[str, str, str]) -> OperatorLoop:
    loop = OperatorLoop(
        OperatorSettings(PrometheusConfig("http://127.0.0.1:1"), interval_seconds=10), ApiClient()
    )
    for i, (namespace, kind, name) in enumerate(targets):
        body = {
            "metadata": {"namespace": namespace, "name": f"slo-{i}"},
            "spec": {"targetRef": {"kind": kind, "name": name}},
        }
        loop.costslo(body, deleted=False)
    return loop


async def test_only_a_targeted_workload_s_change_wakes_the_loop() -> None:
    loop = loop_with(("team-a", "Deployment", "chat"), ("team-b", "Rollout", "chat"))
    loop._wake = asyncio.Event()
    for untargeted in (
        ("team-a", "Deployment", "batch"),
        ("team-c", "Deployment", "chat"),
        ("team-a", "Rollout", "chat"),
    ):
        loop.wake_for(*untargeted)
        assert not loop._wake.is_set(), untargeted
    loop.wake_for("team-b", "Rollout", "chat")
    assert loop._wake.is_set()
    # A targeted workload flapping wakes the loop once per quarter interval, not on every change.
    loop._wake.clear()
    loop.wake_for("team-b", "Rollout", "chat")
    assert not loop._wake.is_set()
    loop._woken[("team-b", "Rollout", "chat")] -= 10 / 4
    loop.wake_for("team-b", "Rollout", "chat")
    assert loop._wake.is_set()


def test_a_verdict_of_our_own_is_good_for_three_intervals_one_read_back_for_the_heartbeat_more() -> None:
    loop = loop_with(("team-a", "Deployment", "chat"))
    stored = {"phase": "Met", "lastEvaluationTime": "2026-01-01T00:00:00Z"}
    loop.costslo({**loop.slos[("team-a", "slo-0")], "status": stored}, deleted=False)
    read_back = loop.verdict("team-a", "slo-0")
    assert read_back.status == stored and read_back.max_age_seconds == 60 + 300
    slo = SloObject("team-a", "slo-0", 1, None, None, api.CostSLOStatus())
    ours = {"phase": "Met", "lastEvaluationTime": "2026-01-01T00:01:00Z"}
    loop._latest[("team-a", "slo-0")] = Evaluation(slo, ours, None, "Met").status
    answer = loop.verdict("team-a", "slo-0")
    assert answer.status == ours and answer.max_age_seconds == 3 * 10 + 30
    assert loop.verdict("team-a", "nope").status is None
