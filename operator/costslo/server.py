"""The operator's HTTP API: /verdict/{namespace}/{name} for Argo Rollouts (web provider) and Flagger, and
/metrics for Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

# The status of one CostSLO (namespace, name), or None; it may read the API, so handlers call it in a thread.
Verdicts = Callable[[str, str], Mapping[str, Any] | None]


def verdict_body(namespace: str, name: str, status: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON a gate reads: ok, phase, the numbers, and why."""
    if status is None:
        return {"ok": False, "phase": None, "reason": f"no CostSLO {namespace}/{name} has been evaluated"}
    current = status.get("current") or {}
    allowed = next((c for c in status.get("conditions") or [] if c.get("type") == "RolloutAllowed"), None)
    revisions = status.get("revisions") or []
    gate = status.get("rollout") or {}
    return {
        "ok": status.get("phase") == "Met" and (allowed is None or allowed.get("status") == "True"),
        "rolloutAllowed": None if allowed is None else allowed.get("status") == "True",
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
        "reason": status.get("message"),
        # Where Prometheus holds only part of a window: the span its figures are over.
        "coverage": status.get("coverage"),
    }


def build_app(verdicts: Verdicts, metrics: Callable[[], bytes] | None = None) -> web.Application:
    async def get(request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        body = verdict_body(ns, name, await asyncio.to_thread(verdicts, ns, name))
        return web.json_response(body, status=200 if body["phase"] is not None else 404)

    async def post(request: web.Request) -> web.Response:
        # Flagger's webhooks pass on 2xx and fail otherwise; the payload (canary name, phase) is not needed.
        ns, name = request.match_info["namespace"], request.match_info["name"]
        body = verdict_body(ns, name, await asyncio.to_thread(verdicts, ns, name))
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
