"""The `costslo` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from costslo import __version__, logconfig

app = typer.Typer(
    name="costslo",
    help="Cost per delivered request of AI inference workloads, as a live, enforced SLO.",
    no_args_is_help=True,
    add_completion=False,
)

LogFormatOption = Annotated[logconfig.LogFormat, typer.Option("--log-format", help="auto, json or console.")]
Output = Literal["table", "json"]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table or json (camelCase keys, as in status).")
]


def _emit(output: Output, data: dict[str, Any], table: Table) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
    else:
        Console().print(table)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """A clear message on stderr and a non-zero exit, never a traceback."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


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
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 28000,
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


@app.command()
def estimate(
    gpu_hourly: Annotated[str, typer.Option(help="Price of one GPU-hour, USD.")],
    gpus: Annotated[float, typer.Option(help="GPUs provisioned in total.")],
    requests_per_second: Annotated[float, typer.Option(help="Offered load, requests per second.")],
    capacity_per_gpu: Annotated[float, typer.Option(help="Requests per second one GPU sustains.")],
    failure_rate: Annotated[float, typer.Option(help="Share of finished requests that fail.")] = 0.0,
    supporting_cost_per_request: Annotated[
        str, typer.Option(help="RAG, embeddings, egress per request.")
    ] = "0",
    per_replica_hourly: Annotated[str, typer.Option(help="CPU/RAM/node share per replica-hour.")] = "0",
    replicas: Annotated[float | None, typer.Option(help="Replicas (default: one per GPU).")] = None,
    input_tokens: Annotated[float | None, typer.Option(help="Mean input tokens per request.")] = None,
    output_tokens: Annotated[float | None, typer.Option(help="Mean output tokens per request.")] = None,
    prefill_share: Annotated[float | None, typer.Option(help="Share of GPU time spent in prefill.")] = None,
    output_token_weight: Annotated[
        float, typer.Option(help="Without --prefill-share: output/input token cost.")
    ] = 2.5,
    max_cost_per_request: Annotated[str | None, typer.Option(help="Budget per delivered request.")] = None,
    revenue_per_request: Annotated[str | None, typer.Option(help="What a delivered request earns.")] = None,
    target_gross_margin: Annotated[str | None, typer.Option(help="Wanted gross margin, e.g. 0.9.")] = None,
    api_input_per_million: Annotated[
        str | None, typer.Option(help="Hosted API price per 1M input tokens.")
    ] = None,
    api_output_per_million: Annotated[
        str | None, typer.Option(help="Hosted API price per 1M output tokens.")
    ] = None,
    output: OutputOption = "table",
) -> None:
    """What one steady hour costs, from plain numbers: a calculator for setting a CostSLO's budget."""
    from costslo import economics, views

    if (revenue_per_request is None) != (target_gross_margin is None):
        raise _fail("--revenue-per-request and --target-gross-margin go together")
    if (api_input_per_million is None) != (api_output_per_million is None):
        raise _fail("--api-input-per-million and --api-output-per-million go together")
    try:
        est = economics.estimate(
            gpu_hourly=gpu_hourly,
            gpus=gpus,
            requests_per_second=requests_per_second,
            capacity_per_gpu=capacity_per_gpu,
            failure_rate=failure_rate,
            supporting_cost_per_request=supporting_cost_per_request,
            per_replica_hourly=per_replica_hourly,
            replicas=replicas,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            prefill_share=prefill_share,
            output_token_weight=output_token_weight,
            max_cost_per_request=max_cost_per_request,
            revenue_per_request=revenue_per_request,
            target_gross_margin=target_gross_margin,
            api_input_per_million=api_input_per_million,
            api_output_per_million=api_output_per_million,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    data: dict[str, Any] = views.current_fields(est.cost)
    data.update(
        {
            "capacityRequestsPerSecond": views.plain(est.capacity_requests_per_second),
            "servedRequestsPerSecond": views.plain(est.served_requests_per_second),
            "saturated": est.saturated,
            "budget": views.plain(est.budget),
            "withinBudget": est.within_budget,
            "missing": list(est.cost.missing),
        }
    )
    if est.hosted_api is not None:
        data["hostedApi"] = {
            "costPerRequest": views.plain(est.hosted_api.cost_per_request),
            "hourlyCost": views.plain(est.hosted_api.hourly_cost),
        }
    table = Table(title="Estimate: one steady hour", show_header=True)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in data.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                table.add_row(f"{key}.{sub}", _cell(subvalue))
        else:
            table.add_row(key, _cell(value))
    _emit(output, data, table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "; ".join(map(str, value)) or "-"
    return str(value)
