"""The profile as a PNG: cost per request and the latency quantile against concurrency, the latency
budget as a line. matplotlib is an optional dependency (pip install 'costslo-operator[profile]')."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costslo.profiler.analysis import quantile_label


class PlotUnavailable(RuntimeError):
    pass


def plot(summary: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'costslo-operator[profile]'") from None
    q = quantile_label(summary["quantile"])
    rows = [r for r in summary["steps"] if r["costPerRequest"] is not None]
    x = [r["concurrency"] for r in rows]
    cost = [float(r["costPerRequest"]) for r in rows]
    latency = [r["latencySeconds"][q] for r in rows]
    fig, left = plt.subplots(figsize=(8, 4.5), dpi=120)
    left.plot(x, cost, marker="o", color="tab:blue", label="cost per request")
    left.set_xscale("log", base=2)
    left.set_xticks(x, [str(c) for c in x])
    left.set_xlabel("concurrent requests")
    left.set_ylabel("cost per request (USD)", color="tab:blue")
    right = left.twinx()
    right.plot(x, latency, marker="s", color="tab:red", label=f"{q} latency")
    right.set_ylabel(f"{q} latency (s)", color="tab:red")
    if summary.get("latencyBudgetSeconds"):
        right.axhline(summary["latencyBudgetSeconds"], color="tab:red", linestyle="--", linewidth=1)
    left.set_title(
        f"{summary.get('model', '')}: {summary['gpus']:g} GPU(s) at ${summary['gpuHourly']}/h, "
        f"capacity {summary['capacityRequestsPerSecond']:.3g} req/s"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
