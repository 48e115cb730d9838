"""The operator's HTTP API: /verdict/{namespace}/{name} for Argo Rollouts (web provider) and Flagger, and
/metrics for Prometheus."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from costslo.api import duration_text


@dataclass(frozen=True)
class Answer:
    """The status of one CostSLO, or None, and how old its evaluation may be and still be a verdict."""

    status: Mapping[str, Any] | None
    max_age_seconds: float


# One CostSLO (namespace, name) -> its Answer; it may read the API, so handlers call it in a thread.
Verdicts = Callable[[str, str], Answer]


def _age(status: Mapping[str, Any], now: float) -> float | None:
    stamp = status.get("lastEvaluationTime")
    try:
        return now - datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def verdict_body(
    namespace: str,
    name: str,
    status: Mapping[str, Any] | None,
    max_age_seconds: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The JSON a gate reads: ok, phase, the numbers, and why. A verdict whose evaluation is older than
    `max_age_seconds` is no verdict: a stalled loop must not keep a canary's gate open (fail closed)."""
    if status is None:
        return {"ok": False, "phase": None, "reason": f"no CostSLO {namespace}/{name} has been evaluated"}
    current = status.get("current") or {}
    allowed = next((c for c in status.get("conditions") or [] if c.get("type") == "RolloutAllowed"), None)
    revisions = status.get("revisions") or []
    gate = status.get("rollout") or {}
    age = _age(status, time.time() if now is None else now)
    stale = max_age_seconds is not None and (age is None or age > max_age_seconds)
    reason = status.get("message")
    if stale:
        when = "at an unknown time" if age is None else f"{duration_text(age)} ago"
        reason = (
            f"no fresh verdict: the last evaluation was {when}, and a verdict is good for "
            f"{duration_text(max_age_seconds or 0)}; the operator's evaluation is stalled or behind (its log "
            f"says why)"
        )
    fresh_ok = status.get("phase") == "Met" and (allowed is None or allowed.get("status") == "True")
    return {
        "ok": fresh_ok and not stale,
        "stale": stale,
        "rolloutAllowed": None if allowed is None else allowed.get("status") == "True" and not stale,
        "phase": status.get("phase"),
        "costPerRequest": current.get("costPerRequest"),
        "budget": status.get("budget"),
        "latencySeconds": current.get("latencySeconds"),
        "revision": revisions[-1].get("podTemplateHash") if revisions else None,
        # The gate's own word on the newest revision: Baking, Promoted, Blocked, ... (status.rollout).
        "rolloutState": gate.get("state"),
        "rolloutRevision": gate.get("revision"),
        "observedGeneration": status.get("observedGeneration"),
        "lastEvaluationTime": status.get("lastEvaluationTime"),
        "reason": reason,
        # Where Prometheus holds only part of a window: the span its figures are over.
        "coverage": status.get("coverage"),
    }


def build_app(verdicts: Verdicts, metrics: Callable[[], bytes] | None = None) -> web.Application:
    async def answer(request: web.Request) -> dict[str, Any]:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        found = await asyncio.to_thread(verdicts, ns, name)
        return verdict_body(ns, name, found.status, found.max_age_seconds)

    async def get(request: web.Request) -> web.Response:
        body = await answer(request)
        return web.json_response(body, status=200 if body["phase"] is not None else 404)

    async def post(request: web.Request) -> web.Response:
        # Flagger's webhooks pass on 2xx and fail otherwise; the payload (canary name, phase) is not needed.
        body = await answer(request)
        return web.json_response(body, status=200 if body["ok"] else 412)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def exposition(_: web.Request) -> web.Response:
        body = metrics() if metrics is not None else b""
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    app = web.Application()
    app.add_routes(
        [
            web.get("/verdict/{namespace}/{name}", get),
            web.post("/verdict/{namespace}/{name}", post),
            web.get("/healthz", healthz),
            web.get("/metrics", exposition),
        ]
    )
    return app


async def start(
    verdicts: Verdicts, host: str, port: int, metrics: Callable[[], bytes] | None = None
) -> web.AppRunner:
    runner = web.AppRunner(build_app(verdicts, metrics), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
