"""The `costslo` command line."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer

from costslo import __version__, logconfig

app = typer.Typer(
    name="costslo",
    help="Cost per delivered request of AI inference workloads, as a live, enforced SLO.",
    no_args_is_help=True,
    add_completion=False,
)

LogFormatOption = Annotated[logconfig.LogFormat, typer.Option("--log-format", help="auto, json or console.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """costslo command line."""


@app.command()
def simulate(
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig of the cluster to watch.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 38000,
    profiles: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Extra performance profiles (YAML).")
    ] = None,
    sync_interval: Annotated[float, typer.Option(help="Seconds between reads of the cluster.")] = 1.0,
    tick_interval: Annotated[float, typer.Option(help="Seconds between simulation steps.")] = 0.5,
    log_format: LogFormatOption = "auto",
) -> None:
    """Simulate GPUs and model servers for the pods of a (kwok) cluster.

    Pods whose template carries the annotation simulator.costslo.dev/profile get vLLM/TGI/Triton/SGLang
    series on /metrics and DCGM series on /dcgm/metrics; /truth has the exact ground truth.
    """
    from costslo.simulator.cluster import ClusterReader
    from costslo.simulator.profiles import ProfileCatalog, ProfileError
    from costslo.simulator.server import SimulatorConfig, serve
    from costslo.simulator.simulation import Simulation

    logconfig.configure(log_format)
    try:
        catalog = ProfileCatalog.load(profiles)
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profiles") from exc
    sim = Simulation(catalog)
    config = SimulatorConfig(host=host, port=port, sync_interval=sync_interval, tick_interval=tick_interval)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sim, ClusterReader(kubeconfig), config))
