"""The queueing model of one simulated model-server pod: load in, requests with timings out.

Requests arrive deterministically (a fractional carry turns offered requests/s into whole requests per
tick), so counters reproduce the offered load exactly; what varies per request is drawn at random:
- tokens in and out follow gamma distributions (coefficient of variation 0.5) around the profile's means,
  output capped at maxOutputTokens (finished_reason "length", else "stop");
- GPU work = input tokens / prefill throughput + output tokens / decode throughput (GPU-seconds, per GPU
  at saturation), so utilisation rho = served work per second / GPUs;
- with continuous batching a request does not wait for whole requests ahead of it, only for GPU time: it
  waits in the queue for an exponential time with the M/M/1 mean S * rho / (1 - rho), where S is the GPU
  time of one request on the pod (GPU-seconds per request / GPUs), so queueing grows steeply as rho
  approaches 1 (rho is capped at 0.98, a mean wait of 49 S);
- prefill takes ttftSeconds scaled by input length; each output token takes itlSeconds * (1 + rho), since
  a fuller batch slows every sequence in it;
- a failureRate share of served requests fails after doing its work (paid, not delivered);
- load beyond capacity is dropped: those requests time out in the queue, do no GPU work and count as
  failed.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from costslo.simulator.profiles import PerformanceProfile

MAX_UTILISATION = 0.98
GAMMA_SHAPE = 4.0  # coefficient of variation 1/sqrt(4) = 0.5


@dataclass(frozen=True)
class OperatingPoint:
    """Steady-state load of a pod for a given offered rate."""

    offered_rps: float
    capacity_rps: float
    served_rps: float
    dropped_rps: float
    utilisation: float


@dataclass(frozen=True)
class Request:
    """One finished request, runtime-neutral; exporters map it onto each runtime's series."""

    ok: bool
    dropped: bool
    finished_reason: str  # stop | length | abort
    input_tokens: int
    output_tokens: int
    queue_seconds: float
    prefill_seconds: float
    decode_seconds: float
    gpu_seconds: float
    prefill_gpu_seconds: float

    @property
    def ttft_seconds(self) -> float:
        return self.queue_seconds + self.prefill_seconds

    @property
    def inference_seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def e2e_seconds(self) -> float:
        return self.queue_seconds + self.inference_seconds

    @property
    def itl_seconds(self) -> float:
        """Mean time between output tokens (0 for fewer than two tokens)."""
        return self.decode_seconds / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


def operating_point(profile: PerformanceProfile, gpus: float, offered_rps: float) -> OperatingPoint:
    """Where a pod with `gpus` GPUs settles under `offered_rps`."""
    offered = max(0.0, offered_rps)
    capacity = profile.capacity_rps(gpus) if gpus > 0 else 0.0
    served = min(offered, capacity * MAX_UTILISATION)
    utilisation = served / capacity if capacity > 0 else 0.0
    return OperatingPoint(offered, capacity, served, offered - served, utilisation)


def mean_queue_seconds(profile: PerformanceProfile, gpus: float, utilisation: float) -> float:
    """M/M/1 mean wait, with the GPU time of one request on the pod as the service time."""
    rho = min(utilisation, MAX_UTILISATION)
    return profile.gpu_seconds_per_request / max(gpus, 1) * rho / (1.0 - rho)


class RequestSampler:
    """Draws requests for one pod; seeded so a pod's history is reproducible."""

    def __init__(self, profile: PerformanceProfile, seed: int) -> None:
        self.profile = profile
        self._rng = random.Random(seed)

    def _tokens(self, mean: float) -> int:
        return max(1, round(self._rng.gammavariate(GAMMA_SHAPE, mean / GAMMA_SHAPE)))

    def served(self, utilisation: float, gpus: float) -> Request:
        """A request the pod, with `gpus` GPUs, served at the given utilisation."""
        p = self.profile
        rho = min(utilisation, MAX_UTILISATION)
        input_tokens = self._tokens(p.mean_input_tokens)
        output_tokens = self._tokens(p.mean_output_tokens)
        reason = "stop"
        if output_tokens >= p.max_output_tokens:
            output_tokens, reason = p.max_output_tokens, "length"
        mean_wait = mean_queue_seconds(p, gpus, rho)
        queue = self._rng.expovariate(1.0 / mean_wait) if mean_wait > 0 else 0.0
        prefill = p.ttft_seconds * input_tokens / p.mean_input_tokens
        decode = output_tokens * p.itl_seconds * (1.0 + rho)
        prefill_work = input_tokens / p.prefill_tokens_per_second
        work = prefill_work + output_tokens / p.decode_tokens_per_second
        ok = self._rng.random() >= p.failure_rate
        return Request(
            ok=ok,
            dropped=False,
            finished_reason=reason if ok else "abort",
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            queue_seconds=queue,
            prefill_seconds=prefill,
            decode_seconds=decode,
            gpu_seconds=work,
            prefill_gpu_seconds=prefill_work,
        )

    def dropped(self) -> Request:
        """A request that timed out in the queue of an overloaded pod."""
        return Request(
            ok=False,
            dropped=True,
            finished_reason="abort",
            input_tokens=self._tokens(self.profile.mean_input_tokens),
            output_tokens=0,
            queue_seconds=self.profile.timeout_seconds,
            prefill_seconds=0.0,
            decode_seconds=0.0,
            gpu_seconds=0.0,
            prefill_gpu_seconds=0.0,
        )


class Arrivals:
    """Turns a rate into whole events per tick without drift (the fraction carries over)."""

    def __init__(self) -> None:
        self._carry = 0.0

    def take(self, rate: float, dt: float) -> int:
        self._carry += max(0.0, rate) * dt
        whole = math.floor(self._carry)
        self._carry -= whole
        return whole
