"""The `costslo` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from costslo import __version__, logconfig

if TYPE_CHECKING:
    from costslo.runtimes import LabelConfig

app = typer.Typer(
    name="costslo",
    help="Cost per delivered request of AI inference workloads, as a live, enforced SLO.",
    no_args_is_help=True,
    add_completion=False,
)

LogFormatOption = Annotated[logconfig.LogFormat, typer.Option("--log-format", help="auto, json or console.")]
PrometheusUrlOption = Annotated[
    str, typer.Option(envvar="PROMETHEUS_URL", help="Prometheus (or Thanos, Mimir) query API URL.")
]
PodLabelsOption = Annotated[str, typer.Option(help="pod-monitor (namespace/pod) or kubernetes-sd.")]
GpuLabelsOption = Annotated[str, typer.Option(help="DCGM pod labels: auto, exported, plain, old-namespace.")]
GpuBusyOption = Annotated[
    str,
    typer.Option(
        help="What counts a GPU busy: gr-engine (DCGM_FI_PROF_GR_ENGINE_ACTIVE, else GPU_UTIL), sm "
        "(DCGM_FI_PROF_SM_ACTIVE) or tensor (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE); the stricter two need those "
        "fields in dcgm-exporter's counters."
    ),
]
GpuResourceOption = Annotated[
    list[str] | None,
    typer.Option(
        help="A resource that holds GPUs, NAME=GPUS per unit (repeatable), e.g. nvidia.com/gpu.shared=0.25 "
        "for 4 time-sliced replicas per GPU. nvidia.com/gpu and MIG slices (Ng of 7; of 4 on A30) are known."
    ),
]
BearerTokenFileOption = Annotated[Path | None, typer.Option(help="File with a bearer token for Prometheus.")]
HeaderOption = Annotated[list[str] | None, typer.Option(help="Extra header 'Name: value' (repeatable).")]
Output = Literal["table", "json"]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table or json (camelCase keys, as in status).")
]


def _emit(output: Output, data: dict[str, Any], table: Table) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=2))
    else:
        console = Console()
        # Piped output would otherwise be squeezed into 80 columns.
        Console(width=max(console.width, 160) if not console.is_terminal else None).print(table)


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
    no_cluster: Annotated[
        bool, typer.Option("--no-cluster", help="Serve only the OpenAI-compatible API (no Kubernetes).")
    ] = False,
    gpus: Annotated[int, typer.Option(min=1, help="GPUs behind each model of the OpenAI API.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Random seed (token counts, failures).")] = None,
    sync_interval: Annotated[float, typer.Option(help="Seconds between reads of the cluster.")] = 1.0,
    tick_interval: Annotated[float, typer.Option(help="Seconds between simulation steps.")] = 0.5,
    log_format: LogFormatOption = "auto",
) -> None:
    """Simulate GPUs and model servers for the pods of a (kwok) cluster.

    Pods whose template carries the annotation simulator.costslo.dev/profile get vLLM/TGI/Triton/SGLang
    series on /metrics and DCGM series on /dcgm/metrics; /truth has the exact ground truth. /v1/completions
    and /v1/chat/completions answer as an OpenAI-compatible server of any profile (`model`), with the
    profile's timing, for `costslo profile`.
    """
    from costslo.simulator.cluster import ClusterReader
    from costslo.simulator.openai import OpenAIServer
    from costslo.simulator.profiles import ProfileCatalog, ProfileError
    from costslo.simulator.server import SimulatorConfig, serve
    from costslo.simulator.simulation import Simulation

    logconfig.configure(log_format)
    try:
        catalog = ProfileCatalog.load(profiles)
    except ProfileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--profiles") from exc
    openai = OpenAIServer(catalog, gpus=gpus, seed=seed)
    config = SimulatorConfig(host=host, port=port, sync_interval=sync_interval, tick_interval=tick_interval)
    sim, reader = (None, None) if no_cluster else (Simulation(catalog), ClusterReader(kubeconfig))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sim, reader, openai, config))


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


@app.command()
def report(
    prometheus_url: PrometheusUrlOption,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Only these namespaces (repeatable).")
    ] = None,
    window: Annotated[str, typer.Option(help="Window to measure, e.g. 1h or 15m.")] = "1h",
    at: Annotated[float | None, typer.Option(help="End of the window, unix seconds (default: now).")] = None,
    runtime: Annotated[str, typer.Option(help="auto, vllm, tgi, triton or sglang.")] = "auto",
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="Read only this served model of --runtime (repeatable), e.g. a Triton ensemble, whose "
            "steps count every request again."
        ),
    ] = None,
    gpu_hourly: Annotated[str | None, typer.Option(help="Price of one GPU-hour for every pod, USD.")] = None,
    price_catalog: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Price catalog YAML (by GPU product).")
    ] = None,
    kubeconfig: Annotated[str | None, typer.Option(help="Read node labels for the price catalog.")] = None,
    per_replica_hourly: Annotated[str, typer.Option(help="CPU/RAM/node share per replica-hour.")] = "0",
    supporting_cost_per_request: Annotated[str, typer.Option(help="Per-request cost outside the pod.")] = "0",
    latency_metric: Annotated[str, typer.Option(help="e2e, ttft or itl.")] = "e2e",
    quantile: Annotated[float, typer.Option(help="Latency quantile.")] = 0.95,
    pod_labels: PodLabelsOption = "pod-monitor",
    gpu_labels: GpuLabelsOption = "auto",
    gpu_resource: GpuResourceOption = None,
    gpu_busy: GpuBusyOption = "gr-engine",
    bearer_token_file: BearerTokenFileOption = None,
    header: HeaderOption = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA bundle for Prometheus' TLS certificate.")] = None,
    insecure_skip_tls_verify: Annotated[bool, typer.Option(help="Do not verify Prometheus' TLS.")] = False,
    output: OutputOption = "table",
) -> None:
    """Cost per request and per token of every inference workload in Prometheus; read-only.

    Exits 0 when every workload could be costed, 1 when data is missing (each gap is named), 2 on bad input
    or when Prometheus cannot be queried.
    """
    from costslo import api, economics
    from costslo import report as reporting
    from costslo.metrics.prometheus import PrometheusClient, PrometheusConfig, PrometheusError
    from costslo.metrics.promql import duration
    from costslo.pricing import CatalogError, read_catalog
    from costslo.runtimes import LATENCY_METRICS, RUNTIMES, preset_for

    try:
        window_seconds = api.parse_duration(window).total_seconds()
        duration(window_seconds)  # PromQL needs a positive, whole number of milliseconds
        if latency_metric not in LATENCY_METRICS:
            raise ValueError(
                f"--latency-metric must be one of {', '.join(LATENCY_METRICS)}, not {latency_metric!r}"
            )
        if runtime not in ("auto", *RUNTIMES):
            raise ValueError(f"--runtime must be auto or one of {', '.join(RUNTIMES)}")
        if model:
            if runtime == "auto":
                raise ValueError("give --runtime with --model: a model name belongs to one runtime's series")
            preset_for(runtime, models=model)  # says why a runtime cannot select models
        if not 0 < quantile < 1:
            raise ValueError(f"--quantile must lie strictly between 0 and 1, not {quantile}")
        if gpu_hourly is None and price_catalog is None:
            raise ValueError("give --gpu-hourly or --price-catalog: a GPU-hour must have a price")
        headers = dict(_header(h) for h in header or [])
        config = PrometheusConfig(
            url=prometheus_url,
            bearer_token_file=bearer_token_file,
            headers=headers,
            ca_file=ca_file,
            verify_tls=not insecure_skip_tls_verify,
        )
        opts = reporting.ReportOptions(
            window_seconds=window_seconds,
            namespaces=set(namespace) if namespace else None,
            at=at,
            runtime=runtime,
            models=tuple(model or ()),
            labels=_labels(pod_labels, gpu_labels, gpu_resource, gpu_busy),
            latency_metric=latency_metric,
            quantile=quantile,
            gpu_hourly=economics.as_decimal(gpu_hourly, "--gpu-hourly") if gpu_hourly else None,
            catalog=read_catalog(price_catalog) if price_catalog else None,
            node_labels=_node_labels(kubeconfig) if kubeconfig else None,
            prices=economics.Prices(
                per_replica_hourly=economics.as_decimal(per_replica_hourly, "--per-replica-hourly"),
                supporting_cost_per_request=economics.as_decimal(
                    supporting_cost_per_request, "--supporting-cost-per-request"
                ),
            ),
        )
    except (ValueError, CatalogError) as exc:
        raise _fail(str(exc)) from None
    client = PrometheusClient(config)
    try:
        result = reporting.build(client, opts)
    except PrometheusError as exc:
        raise _fail(str(exc)) from None
    except reporting.ReportError as exc:
        raise _fail(str(exc), code=1) from None
    finally:
        client.close()
    data = reporting.to_json(result)
    _emit(output, data, _report_table(data, f"p{100 * quantile:g} {latency_metric}"))
    if not result.complete:
        if output == "table":
            typer.echo("some workloads could not be costed fully; see the notes above", err=True)
        raise typer.Exit(1)


MIN_INTERVAL_SECONDS = 5.0


def _interval(text: str) -> float:
    from costslo import api

    seconds = api.parse_duration(text).total_seconds()
    if seconds < MIN_INTERVAL_SECONDS:
        # Every cycle queries Prometheus for every runtime and window; Prometheus scrapes every 15-30 s.
        raise ValueError(f"--interval {text} is too short: at least {MIN_INTERVAL_SECONDS:g}s (default 30s)")
    return seconds


def _kube_client(kubeconfig: str | None, purpose: str) -> Any:
    """The API client, or one `error:` line naming where the credentials were looked for."""
    from costslo import kubeclient

    try:
        return kubeclient.api_client(kubeconfig)
    except Exception as exc:  # kubernetes' ConfigException, a kubeconfig that is not YAML, and the like
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster or default kubeconfig"
        raise _fail(f"{purpose} ({where}): {exc}") from None


def _labels(pod_labels: str, gpu_labels: str, gpu_resource: list[str] | None, gpu_busy: str) -> LabelConfig:
    """The scrape set-up from the options; raises ValueError with a sentence on a bad one."""
    from costslo.runtimes import LabelConfig, parse_gpu_resource

    overrides = dict(parse_gpu_resource(text) for text in gpu_resource or [])
    return LabelConfig.from_modes(pod_labels, gpu_labels, overrides, gpu_busy)  # type: ignore[arg-type]


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--header {text!r} must look like 'Name: value'")
    return name.strip(), value.strip()


def _node_labels(kubeconfig: str) -> dict[str, dict[str, str]]:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        api_client = config.new_client_from_config(config_file=kubeconfig)
        nodes = client.CoreV1Api(api_client).list_node(_request_timeout=30).items
    except (config.ConfigException, OSError, ApiException) as exc:
        raise ValueError(f"cannot read nodes with --kubeconfig {kubeconfig}: {exc}") from None
    except Exception as exc:  # urllib3's connection errors and the like
        raise ValueError(f"cannot reach the cluster of --kubeconfig {kubeconfig}: {exc}") from None
    return {str(n.metadata.name): dict(n.metadata.labels or {}) for n in nodes if n.metadata is not None}


def _report_table(data: dict[str, Any], latency_header: str) -> Table:
    span = f"the last {data['window']}"
    if data.get("coverage"):
        span = f"the {data['window']} window, {data['coverage']}"
    table = Table(title=f"Inference cost over {span} ({data['queries']} PromQL queries)")
    columns = ("workload", "runtime", "req/s", "cost/req", "$/1M in", "$/1M out", latency_header, "GPUs")
    for column in (*columns, "util", "idle", "notes"):
        table.add_column(column, justify="left" if column in ("workload", "runtime", "notes") else "right")
    for w in data["workloads"]:
        c = w["current"]
        latency = "-" if c["latencySeconds"] is None else f"{c['latencySeconds']:.3g}s"
        if c["latencyKind"] == "mean":
            latency += " (mean)"
        table.add_row(
            f"{w['namespace']}/{w['name']}",
            w["runtime"],
            _short(c["requestsPerSecond"]),
            _short(c["costPerRequest"]),
            _short(c["costPerMillionInputTokens"]),
            _short(c["costPerMillionOutputTokens"]),
            latency,
            _short(c["gpus"]),
            _percent(c["gpuUtilisation"]),
            _percent(c["idleCostFraction"]),
            "; ".join(w["missing"]),
        )
    return table


def _short(value: Any) -> str:
    """Four significant digits for a table; JSON keeps every digit."""
    return "-" if value is None else f"{float(value):.4g}"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.0f}%"


@app.command()
def run(
    prometheus_url: PrometheusUrlOption,
    namespace: Annotated[
        list[str] | None, typer.Option("--namespace", "-n", help="Watch only these namespaces (repeatable).")
    ] = None,
    interval: Annotated[str, typer.Option(envvar="COSTSLO_INTERVAL", help="Evaluation interval.")] = "30s",
    price_catalog: Annotated[
        Path | None,
        typer.Option(envvar="COSTSLO_PRICE_CATALOG", exists=True, dir_okay=False, help="Price catalog YAML."),
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig (else in-cluster).")
    ] = None,
    pod_labels: PodLabelsOption = "pod-monitor",
    gpu_labels: GpuLabelsOption = "auto",
    gpu_resource: GpuResourceOption = None,
    gpu_busy: GpuBusyOption = "gr-engine",
    bearer_token_file: BearerTokenFileOption = None,
    header: HeaderOption = None,
    peering: Annotated[
        str | None,
        typer.Option(
            envvar="COSTSLO_PEERING",
            help="Name of a kopf peering object: run as one of several instances, one active, the rest "
            "hot standby (each draws a random priority). Unset: the only instance.",
        ),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Peering priority (default: random); the highest live one acts.")
    ] = None,
    liveness: Annotated[
        str, typer.Option(help="Liveness endpoint URL to serve.")
    ] = "http://0.0.0.0:8080/healthz",
    http: Annotated[str, typer.Option(help="host:port of the /verdict API.")] = "0.0.0.0:8081",
    log_format: LogFormatOption = "auto",
) -> None:
    """Run the operator: keep every CostSLO's status live from Prometheus."""
    from costslo.metrics.prometheus import PrometheusConfig
    from costslo.pricing import read_catalog
    from costslo.settings import OperatorSettings
    from costslo.standby import Peering

    logconfig.configure(log_format)
    try:
        settings = OperatorSettings(
            prometheus=PrometheusConfig(
                url=prometheus_url,
                bearer_token_file=bearer_token_file,
                headers=dict(_header(h) for h in header or []),
            ),
            interval_seconds=_interval(interval),
            namespaces=tuple(namespace or ()),
            labels=_labels(pod_labels, gpu_labels, gpu_resource, gpu_busy),
            # Read here, once: inside kopf's startup a bad file would be retried every minute.
            price_catalog=read_catalog(price_catalog) if price_catalog else None,
            kubeconfig=kubeconfig,
            http_host=http.rpartition(":")[0] or "0.0.0.0",
            http_port=_port(http),
            peering=(
                Peering.drawn(peering, namespace[0] if namespace else None, priority) if peering else None
            ),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    api_client = _kube_client(kubeconfig, "cannot load Kubernetes credentials")
    import kopf

    from costslo import handlers

    handlers.configure(settings, api_client)
    kopf.run(
        clusterwide=not namespace,
        namespaces=list(namespace or []),
        standalone=settings.peering is None,
        peering_name=settings.peering.name if settings.peering else None,
        priority=settings.peering.priority if settings.peering else None,
        identity=settings.peering.identity if settings.peering else None,  # type: ignore[arg-type]
        liveness_endpoint=liveness,
    )


DEFAULT_CONCURRENCY = [1, 2, 4, 8, 16, 32, 64]


@app.command()
def profile(
    url: Annotated[
        str, typer.Option(help="Base URL of an OpenAI-compatible server, e.g. http://localhost:8000.")
    ],
    model: Annotated[str, typer.Option(help="The model name the server expects.")],
    gpu_hourly: Annotated[str, typer.Option(help="Price of one GPU-hour, USD.")],
    gpus: Annotated[float, typer.Option(help="GPUs behind the endpoint (one replica).")] = 1.0,
    api: Annotated[str, typer.Option(help="completions or chat.")] = "completions",
    concurrency: Annotated[
        list[int] | None, typer.Option(help="Concurrent requests per step (repeatable; default 1..64).")
    ] = None,
    requests_per_step: Annotated[
        int | None, typer.Option(help="Requests per step (default: 4 per client, at least 16).")
    ] = None,
    mix: Annotated[
        list[str] | None,
        typer.Option(help="Request shape IN:OUT[:WEIGHT] in tokens (repeatable; default 800:200)."),
    ] = None,
    latency_budget: Annotated[
        float | None, typer.Option(help="Latency budget in seconds for the quantile (end to end).")
    ] = None,
    quantile: Annotated[float, typer.Option(min=0.5, max=0.999, help="Latency quantile.")] = 0.95,
    target_rps: Annotated[
        float | None, typer.Option(help="Expected load, requests/s: the replicas it needs are suggested.")
    ] = None,
    stream: Annotated[bool, typer.Option(help="Stream responses (needed for time to first token).")] = True,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="COSTSLO_PROFILE_API_KEY", help="Bearer token for the endpoint, if it wants one."
        ),
    ] = None,
    nvml: Annotated[
        bool | None,
        typer.Option(
            help="Sample this machine's GPUs (every full GPU, averaged) through NVML during each step. "
            "Default: only when --url is on this machine (localhost or a loopback address).",
        ),
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of cost and latency vs concurrency.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the request mix.")] = 0,
    output: OutputOption = "table",
) -> None:
    """Profile a serving path before setting its CostSLO: throughput, latency and cost per request at
    rising concurrency, the capacity within the latency budget, and the budget and replicas that hold."""
    from costslo.profiler import run

    try:
        settings, target, plan = run.parse(
            url,
            model,
            gpu_hourly,
            gpus,
            api,
            concurrency or DEFAULT_CONCURRENCY,
            requests_per_step,
            mix or ["800:200"],
            latency_budget,
            quantile,
            target_rps,
            stream,
            api_key,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    err = Console(stderr=True)
    try:
        wanted = run.is_local(url) if nvml is None else nvml
        summary = asyncio.run(run.profile(target, plan, settings, err, wanted, seed))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if plot is not None:
        from costslo.profiler.plot import PlotUnavailable
        from costslo.profiler.plot import plot as draw

        try:
            draw(summary, plot)
        except PlotUnavailable as exc:
            raise _fail(str(exc)) from None
        err.print(f"plot written to {plot}")
    _emit(output, summary, run.table(summary))
    if summary.get("atBudget") is None:
        raise typer.Exit(1)


@app.command("gpu-exporter")
def gpu_exporter(
    node: Annotated[
        str | None,
        typer.Option(
            envvar="NODE_NAME",
            help="This node's name: GPU processes are mapped to the node's pods. Unset: no pod labels.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on (dcgm-exporter's).")] = 9400,
    hostname: Annotated[
        str | None, typer.Option(help="Hostname label of the series (default: --node, else this host).")
    ] = None,
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig (else in-cluster).")
    ] = None,
    proc: Annotated[Path, typer.Option(help="Where the host's /proc is (the pod needs hostPID).")] = Path(
        "/proc"
    ),
    once: Annotated[
        bool, typer.Option("--once", help="Print one scrape and exit: 1 when NVML is unavailable.")
    ] = False,
    log_format: LogFormatOption = "auto",
) -> None:
    """Export dcgm-exporter's GPU series from NVML, mapped to pods, for clusters without dcgm-exporter."""
    import socket
    import time

    from costslo.gpu.exporter import GpuExporter, serve
    from costslo.gpu.nvml import PynvmlBackend
    from costslo.gpu.pods import NodePods

    logconfig.configure(log_format)
    needs = f"--node {node} needs Kubernetes credentials to list its pods"
    api_client = _kube_client(kubeconfig, needs) if node else None
    pods = NodePods.from_api(api_client, node).lookup if node else (lambda _uid: None)
    exporter = GpuExporter(PynvmlBackend, hostname or node or socket.gethostname(), pods, proc)
    if once:
        # Engine activity (GPM) is a difference between two samples: prime it, then read.
        exporter.readings()
        if not exporter.unavailable:
            time.sleep(1.0)
        typer.echo(exporter.exposition().decode(), nl=False)
        exporter.close()
        if exporter.unavailable:
            raise _fail(exporter.unavailable, code=1)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(exporter, host, port))


def _port(address: str) -> int:
    _host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--http must look like host:port, not {address!r}")
    return int(port)


@app.command()
def gate(
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the CostSLO.")],
    name: Annotated[str, typer.Option(help="Name of the CostSLO.")],
    timeout: Annotated[str, typer.Option(help="Give up after this long (exit 2).")] = "10m",
    poll: Annotated[str, typer.Option(help="Time between checks.")] = "5s",
    kubeconfig: Annotated[
        str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig (else in-cluster).")
    ] = None,
) -> None:
    """Wait for the CostSLO's verdict on the current generation and revision: exit 0 met, 1 breached, 2 none.

    For an ArgoCD PostSync Job or a CI step after a deploy.
    """
    from costslo import api
    from costslo.gate import GateError, wait_for_verdict

    try:
        limit = api.parse_duration(timeout).total_seconds()
        every = api.parse_duration(poll).total_seconds()
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        code = wait_for_verdict(namespace, name, limit, every, kubeconfig, say=typer.echo)
    except GateError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)
