"""From measured samples to the cost model's Usage: the one bridge between metrics/ and economics."""

from __future__ import annotations

from costslo.economics import Prices, Usage
from costslo.metrics.window import Samples
from costslo.runtimes import LATENCY_QUANTITY, Quantity

# Measured, but priced by no figure here: the GPU count at the window's end (a deleted workload has none) and
# energy (the cost model says its own "no data for energy" when a price per kWh asks for it).
# Prefill/decode times and prefix-cache hits refine the split of compute between input and output tokens
# where they are known; the token-weighted split stands without them.
_NEVER_PRICED = frozenset(
    {
        Quantity.CURRENT_GPUS,
        Quantity.ENERGY_JOULES,
        Quantity.CACHED_INPUT_TOKENS,
        Quantity.PREFILL_SECONDS,
        Quantity.DECODE_SECONDS,
        *LATENCY_QUANTITY.values(),
    }
)


def gap(quantity: Quantity, samples: Samples, prices: Prices) -> bool:
    """A quantity some cost figure needs under these prices and this group of pods lacks.

    A quantity no figure needs is no gap, measured or not: replica time without a per-replica price never
    turns a report's exit code or a CostSLO's phase to "missing". Latency gaps are judged apart.
    """
    if quantity in _NEVER_PRICED:
        return False
    if quantity is Quantity.REPLICA_SECONDS and not prices.per_replica_hourly:
        return False
    return getattr(samples, quantity.value, None) is None


def usage_of(samples: Samples, window_seconds: float) -> Usage:
    """The Usage of a group of pods; a GPU allocation never measured stays unknown, never zero."""
    return Usage(
        window_seconds=window_seconds,
        gpu_seconds=samples.gpu_seconds,
        replica_seconds=samples.replica_seconds,
        requests=samples.finished,
        delivered=samples.delivered,
        busy_gpu_seconds=samples.busy_gpu_seconds,
        input_tokens=samples.input_tokens,
        cached_input_tokens=samples.cached_input_tokens,
        output_tokens=samples.output_tokens,
        prefill_seconds=samples.prefill_seconds,
        decode_seconds=samples.decode_seconds,
        energy_joules=samples.energy_joules,
    )
