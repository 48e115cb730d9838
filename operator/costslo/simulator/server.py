"""The simulator's process: keeps its cluster view fresh, advances time, serves what exporters serve."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog
from aiohttp import web

from costslo.exposition import render
from costslo.simulator.cluster import ClusterReader
from costslo.simulator.simulation import Simulation

log = structlog.get_logger(__name__)

EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 28000
    sync_interval: float = 1.0
    tick_interval: float = 0.5


def build_app(sim: Simulation) -> web.Application:
    """HTTP routes: /metrics (model servers), /dcgm/metrics (GPUs), /truth and /truth/latency, /healthz."""

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

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/dcgm/metrics", dcgm),
            web.get("/truth", truth),
            web.get("/truth/latency", latency),
            web.get("/healthz", healthz),
        ]
    )
    return app


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


async def serve(sim: Simulation, reader: ClusterReader, config: SimulatorConfig) -> None:
    """Runs until cancelled."""
    sim.apply(await asyncio.to_thread(reader.read))
    runner = web.AppRunner(build_app(sim), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    log.info("simulator listening", url=f"http://{config.host}:{config.port}")
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
