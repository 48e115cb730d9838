"""The /verdict API: what a gate reads, and no verdict from an evaluation too old to stand (fail closed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from costslo.server import Answer, build_app, verdict_body

pytestmark = pytest.mark.unit


def met(evaluated_seconds_ago: float) -> dict[str, Any]:
    at = datetime.fromtimestamp(time.time() - evaluated_seconds_ago, UTC).isoformat().replace("+00:00", "Z")
    return {
        "phase": "Met",
        "message": "cost per request $0.0010 within the budget $0.0100",
        "lastEvaluationTime": at,
        "current": {"costPerRequest": "0.001"},
        "budget": "0.01",
        "conditions": [{"type": "RolloutAllowed", "status": "True"}],
    }


def test_a_recent_met_verdict_lets_the_rollout_through() -> None:
    body = verdict_body("ml", "chat", met(20), max_age_seconds=120)
    assert body["ok"] is True and body["stale"] is False and body["rolloutAllowed"] is True
    assert body["reason"].startswith("cost per request")


@pytest.mark.parametrize(
    "status", [met(600), {**met(0), "lastEvaluationTime": "yesterday"}], ids=["old", "no-time"]
)
def test_a_verdict_too_old_to_stand_is_no_verdict(status: dict[str, Any]) -> None:
    body = verdict_body("ml", "chat", status, max_age_seconds=120)
    assert body["ok"] is False and body["stale"] is True and body["rolloutAllowed"] is False
    assert body["phase"] == "Met"  # what the last evaluation said, for a person reading it
    assert body["reason"].startswith("no fresh verdict: the last evaluation was ")
    assert "a verdict is good for 2m" in body["reason"] and "stalled" in body["reason"]


async def test_get_and_post_alike_refuse_a_stale_verdict() -> None:
    answers = {"fresh": Answer(met(10), 120), "stale": Answer(met(900), 120), "none": Answer(None, 120)}
    app = build_app(lambda ns, name: answers[name])
    async with TestClient(TestServer(app)) as client:
        for name, ok in (("fresh", True), ("stale", False)):
            got = await client.get(f"/verdict/ml/{name}")
            assert got.status == 200 and (await got.json())["ok"] is ok
            posted = await client.post(f"/verdict/ml/{name}", json={"name": "chat", "phase": "Progressing"})
            assert posted.status == (200 if ok else 412) and (await posted.json())["ok"] is ok
        missing = await client.get("/verdict/ml/none")
        assert missing.status == 404 and (await missing.json())["ok"] is False
