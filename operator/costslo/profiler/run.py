"""One profiling run as the command line drives it: checked inputs, the steps with progress on stderr,
the summary, and its table."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from costslo.economics import as_decimal
from costslo.gpu.nvml import Nvml, NvmlUnavailable, PynvmlBackend
from costslo.profiler.analysis import Settings, quantile_label, summarise
from costslo.profiler.load import Api, Shape, Step, Target, run_step


@dataclass(frozen=True)
class Plan:
    concurrency: tuple[int, ...]
    requests: tuple[int, ...]
    mix: tuple[Shape, ...]


def parse(
    url: str,
    model: str,
    gpu_hourly: str,
    gpus: float,
    api: str,
    concurrency: Sequence[int],
    requests_per_step: int | None,
    mix: Sequence[str],
    latency_budget: float | None,
    quantile: float,
    target_rps: float | None,
    stream: bool,
    api_key: str | None,
) -> tuple[Settings, Target, Plan]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url {url!r} must start with http:// or https://")
    if api not in ("completions", "chat"):
        raise ValueError(f"--api must be completions or chat, not {api!r}")
    if gpus <= 0:
        raise ValueError("--gpus must be > 0")
    levels = tuple(sorted(set(concurrency)))
    if not levels or levels[0] < 1:
        raise ValueError("--concurrency values must be >= 1")
    if requests_per_step is not None and requests_per_step < 1:
        raise ValueError("--requests-per-step must be >= 1")
    if latency_budget is not None and latency_budget <= 0:
        raise ValueError("--latency-budget must be > 0 seconds")
    if target_rps is not None and target_rps <= 0:
        raise ValueError("--target-rps must be > 0")
    settings = Settings(
        gpus=gpus,
        gpu_hourly=as_decimal(gpu_hourly, "--gpu-hourly"),
        latency_budget_seconds=latency_budget,
        quantile=quantile,
        target_rps=target_rps,
    )
    target = Target(url, model, cast(Api, api), stream, api_key)
    # Four rounds per client: the first and last are partly ramp, the middle ones steady.
    counts = tuple(requests_per_step or max(16, 4 * c) for c in levels)
    return settings, target, Plan(levels, counts, tuple(Shape.parse(m) for m in mix))


def is_local(url: str) -> bool:
    """Whether the endpoint runs on this machine, so that this machine's GPUs are the ones serving it."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _nvml(wanted: bool, err: Console) -> Nvml | None:
    if not wanted:
        return None
    try:
        return PynvmlBackend()
    except NvmlUnavailable as exc:
        err.print(f"[dim]no local GPU readings: {exc}[/dim]")
        return None


async def profile(
    target: Target, plan: Plan, settings: Settings, err: Console, nvml: bool | Nvml, seed: int
) -> dict[str, Any]:
    """Runs the steps in order of concurrency; stops early once latency is past twice the budget (more
    load only queues) or every request of a step failed."""
    gpu = nvml if not isinstance(nvml, bool) else _nvml(nvml, err)
    rng = random.Random(seed)
    steps: list[Step] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            for concurrency, count in zip(plan.concurrency, plan.requests, strict=True):
                task = progress.add_task(f"concurrency {concurrency}", total=count)
                step = await run_step(
                    target,
                    concurrency,
                    count,
                    plan.mix,
                    rng,
                    gpu,
                    lambda _r, task=task: progress.advance(task),  # type: ignore[misc]
                )
                progress.remove_task(task)
                steps.append(step)
                err.print(_step_line(step, settings))
                p = step.quantile(settings.quantile)
                if step.delivered == 0:
                    err.print(
                        f"[red]every request failed at concurrency {concurrency}: {step.errors[:1]}[/red]"
                    )
                    break
                budget = settings.latency_budget_seconds
                if budget is not None and p is not None and p > 2 * budget:
                    break
    finally:
        if gpu is not None:
            gpu.close()
    summary = summarise(steps, settings)
    summary["model"], summary["url"] = target.model, target.url
    return summary


def _step_line(step: Step, settings: Settings) -> str:
    p = step.quantile(settings.quantile)
    latency = f"{p:.3g}s" if p is not None else "-"
    return (
        f"concurrency {step.concurrency:>4}: {step.finished} requests in {step.wall_seconds:.1f}s, "
        f"{step.finished_per_second:.3g} req/s, {quantile_label(settings.quantile)} {latency}"
        + (f", {step.finished - step.delivered} failed" if step.delivered < step.finished else "")
    )


def _fmt(value: Any, digits: int = 3) -> str:
    """Three significant digits for figures and money (JSON output keeps them whole)."""
    if value is None:
        return "-"
    if isinstance(value, float | str):
        return f"{float(value):.{digits}g}"
    return str(value)


def table(summary: dict[str, Any]) -> Table:
    q = quantile_label(summary["quantile"])
    budget = summary.get("latencyBudgetSeconds")
    t = Table(
        title=f"{summary.get('model')}: {summary['gpus']:g} GPU(s) at ${summary['gpuHourly']}/GPU-hour"
        + (f", {q} latency budget {budget:g}s" if budget else ""),
    )
    for header in (
        "concurrency",
        "req/s",
        f"{q} latency",
        f"{q} TTFT",
        "GPU util %",
        "power W",
        "$/request",
        "$/M in",
        "$/M out",
        "failed",
    ):
        t.add_column(header, justify="right")
    for r in summary["steps"]:
        gpu = r.get("gpu") or {}
        t.add_row(
            str(r["concurrency"]),
            _fmt(r["requestsPerSecond"]),
            _fmt(r["latencySeconds"][q]),
            _fmt(r["ttftSeconds"][q]),
            _fmt(gpu.get("utilisationPercent")),
            _fmt(gpu.get("powerWatts")),
            _fmt(r["costPerRequest"]),
            _fmt(r["costPerMillionInputTokens"]),
            _fmt(r["costPerMillionOutputTokens"]),
            str(r["failed"]),
        )
    at = summary.get("atBudget")
    lines = [f"capacity: {summary['capacityRequestsPerSecond']:.3g} requests/s"]
    if not summary["capacityReached"]:
        lines[0] = (
            f"capacity: at least {summary['capacityRequestsPerSecond']:.3g} requests/s (throughput was still "
            "rising: add a higher --concurrency)"
        )
    if at:
        lines.append(
            f"within the latency budget: {at['requestsPerSecond']:.3g} requests/s at concurrency "
            f"{at['concurrency']}, ${_fmt(at['costPerRequest'])} per request"
        )
        s = summary["suggestion"]
        advice = (
            f"suggested: maxCostPerRequest {s['maxCostPerRequest']} (at {s['targetUtilisation']:.0%} of "
            f"that load, ${_fmt(s['costPerRequest'])} per request)"
        )
        if "replicas" in s:
            advice += f"; {s['replicas']} replica(s) for {s['forRequestsPerSecond']:g} requests/s"
        lines.append(advice)
    else:
        lines.append(str(summary["suggestion"]))
    t.caption = "\n".join(lines)
    return t
