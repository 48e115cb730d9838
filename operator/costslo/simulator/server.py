"""The simulator's process: keeps its cluster view fresh, advances time, serves what exporters serve."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from costslo.exposition import render
from costslo.simulator.cluster import ClusterReader
from costslo.simulator.openai import OpenAIServer
from costslo.simulator.simulation import Simulation

log = structlog.get_logger(__name__)

EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 28000
    sync_interval: float = 1.0
    tick_interval: float = 0.5


def build_app(sim: Simulation | None, openai: OpenAIServer) -> web.Application:
    """HTTP routes: /metrics (model servers), /dcgm/metrics (GPUs), /truth and /truth/latency, /healthz,
    and an OpenAI-compatible API (/v1/...) for profiling; without a cluster (`sim` None) only the latter."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), *openai.routes()])
    if sim is not None:
        app.add_routes(_cluster_routes(sim))
    return app


def _cluster_routes(sim: Simulation) -> list[web.RouteDef]:
    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=render(sim.runtime_families()).encode(),
            content_type=None,
            headers={"Content-Type": EXPOSITION},
        )

    async def dcgm(_: web.Request) -> web.Response:
        return web.Response(
            body=render(sim.dcgm_families()).encode(), content_type=None, headers={"Content-Type": EXPOSITION}
        )

    async def truth(_: web.Request) -> web.Response:
        return web.json_response(sim.truth())

    async def latency(request: web.Request) -> web.Response:
        try:
            q = request.query
            answer = sim.latency_quantile(q["namespace"], float(q["start"]), float(q["end"]), float(q["q"]))
        except (KeyError, ValueError) as exc:
            raise web.HTTPBadRequest(text=f"need namespace, start, end (unix seconds) and q: {exc}") from None
        return web.json_response(answer)

    return [
        web.get("/metrics", metrics),
        web.get("/dcgm/metrics", dcgm),
        web.get("/truth", truth),
        web.get("/truth/latency", latency),
    ]


async def _sync_loop(sim: Simulation, reader: ClusterReader, interval: float) -> None:
    failing = False
    while True:
        try:
            view = await asyncio.to_thread(reader.read)
            sim.apply(view)
            if failing:
                log.info("cluster reachable again")
            failing = False
        except Exception as exc:  # the API server restarting must not stop the simulation
            if not failing:
                log.warning("cannot read the cluster; keeping the last view", error=str(exc))
            failing = True
        await asyncio.sleep(interval)


async def _tick_loop(sim: Simulation, interval: float) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        sim.advance(now - last)
        last = now


async def serve(
    sim: Simulation | None, reader: ClusterReader | None, openai: OpenAIServer, config: SimulatorConfig
) -> None:
    """Runs until cancelled; without a cluster reader, only the OpenAI-compatible API."""
    if sim is not None and reader is not None:
        sim.apply(await asyncio.to_thread(reader.read))
    runner = web.AppRunner(build_app(sim, openai), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    log.info("simulator listening", url=f"http://{config.host}:{config.port}")
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(asyncio.Event().wait())]
    if sim is not None and reader is not None:
        tasks = [
            asyncio.create_task(_sync_loop(sim, reader, config.sync_interval)),
            asyncio.create_task(_tick_loop(sim, config.tick_interval)),
        ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks)
        await runner.cleanup()
