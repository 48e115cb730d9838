"""From measured samples to the cost model's Usage: the one bridge between metrics/ and economics."""

from __future__ import annotations

from costslo.economics import Usage
from costslo.metrics.window import Samples


def usage_of(samples: Samples, window_seconds: float) -> Usage:
    """The Usage of a group of pods; a GPU allocation never measured stays unknown, never zero."""
    return Usage(
        window_seconds=window_seconds,
        gpu_seconds=samples.gpu_seconds,
        replica_seconds=samples.replica_seconds or 0.0,
        requests=samples.finished,
        delivered=samples.delivered,
        busy_gpu_seconds=samples.busy_gpu_seconds,
        input_tokens=samples.input_tokens,
        output_tokens=samples.output_tokens,
        prefill_seconds=samples.prefill_seconds,
        decode_seconds=samples.decode_seconds,
        energy_joules=samples.energy_joules,
    )
