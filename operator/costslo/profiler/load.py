"""The load: closed-loop clients at one concurrency per step, each request timed end to end and to its
first token, with the GPU sampled through NVML alongside when the machine has one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from costslo.gpu.nvml import Nvml

Api = Literal["completions", "chat"]
NVML_PERIOD_SECONDS = 0.5


@dataclass(frozen=True)
class Shape:
    """One kind of request in the mix: prompt length and output length in tokens, and its share."""

    input_tokens: int
    output_tokens: int
    weight: float = 1.0

    @classmethod
    def parse(cls, text: str) -> Shape:
        """'IN:OUT' or 'IN:OUT:WEIGHT', e.g. '800:200' or '3000:500:0.2'."""
        parts = text.split(":")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            shape = cls(int(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0)
        except ValueError:
            raise ValueError(f"--mix {text!r} must look like IN:OUT or IN:OUT:WEIGHT, e.g. 800:200") from None
        if shape.input_tokens < 1 or shape.output_tokens < 1 or shape.weight <= 0:
            raise ValueError(f"--mix {text!r}: token counts must be >= 1 and the weight > 0")
        return shape


@dataclass(frozen=True)
class Target:
    base_url: str  # e.g. http://vllm.ml.svc:8000 (the /v1/... paths are added)
    model: str
    api: Api = "completions"
    stream: bool = True
    api_key: str | None = None
    timeout_seconds: float = 300.0

    @property
    def url(self) -> str:
        path = "/v1/chat/completions" if self.api == "chat" else "/v1/completions"
        return self.base_url.rstrip("/").removesuffix("/v1") + path


@dataclass(frozen=True)
class RequestResult:
    ok: bool
    e2e_seconds: float
    ttft_seconds: float | None
    input_tokens: int | None
    output_tokens: int | None
    error: str | None = None


@dataclass(frozen=True)
class GpuStats:
    """Means over a step's NVML samples of the machine's whole GPUs."""

    gpus: int
    utilisation_percent: float | None
    engine_active: float | None
    power_watts: float | None
    samples: int


@dataclass
class Step:
    concurrency: int
    wall_seconds: float
    results: list[RequestResult] = field(default_factory=list)
    gpu: GpuStats | None = None

    @property
    def finished(self) -> int:
        return len(self.results)

    @property
    def delivered(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def finished_per_second(self) -> float:
        return self.finished / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def delivered_per_second(self) -> float:
        return self.delivered / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def failure_rate(self) -> float:
        return 1 - self.delivered / self.finished if self.finished else 0.0

    def quantile(self, q: float, what: Literal["e2e", "ttft"] = "e2e") -> float | None:
        values = sorted(
            v
            for r in self.results
            if r.ok and (v := r.e2e_seconds if what == "e2e" else r.ttft_seconds) is not None
        )
        if not values:
            return None
        # Nearest rank: the latency that q of the requests did not exceed.
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    def mean_tokens(self, which: Literal["input", "output"]) -> float | None:
        values = [
            t for r in self.results if r.ok and (t := r.input_tokens if which == "input" else r.output_tokens)
        ]
        return statistics.fmean(values) if values else None

    @property
    def errors(self) -> list[str]:
        return sorted({r.error for r in self.results if r.error})


def prompt_of(tokens: int) -> str:
    # One short common word per token: about one token each in the usual tokenizers, exactly one in the
    # simulator's. The server's usage counts are what the report uses.
    return " ".join(["hello"] * tokens)


def _body(target: Target, shape: Shape) -> dict[str, Any]:
    body: dict[str, Any] = {"model": target.model, "max_tokens": shape.output_tokens, "temperature": 0}
    # Ask for exactly the shape's output length where the server allows it (vLLM, SGLang: ignore_eos).
    body["ignore_eos"] = True
    if target.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt_of(shape.input_tokens)}]
    else:
        body["prompt"] = prompt_of(shape.input_tokens)
    if target.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _has_text(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or []:
        if choice.get("text") or (choice.get("delta") or {}).get("content"):
            return True
    return False


async def send(session: aiohttp.ClientSession, target: Target, shape: Shape) -> RequestResult:
    """One request; never raises: a failure is a result with its reason."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    start = time.perf_counter()
    first: float | None = None
    usage: dict[str, Any] = {}
    try:
        async with session.post(target.url, json=_body(target, shape), headers=headers) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200]
                return RequestResult(
                    False, time.perf_counter() - start, None, None, None, f"HTTP {resp.status}: {text}"
                )
            if not target.stream:
                payload = await resp.json()
                usage = payload.get("usage") or {}
            else:
                async for raw in resp.content:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        message = str((chunk["error"] or {}).get("message", chunk["error"]))
                        return RequestResult(False, time.perf_counter() - start, None, None, None, message)
                    if first is None and _has_text(chunk):
                        first = time.perf_counter() - start
                    usage = chunk.get("usage") or usage
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return RequestResult(
            False, time.perf_counter() - start, None, None, None, f"{type(exc).__name__}: {exc}"
        )
    return RequestResult(
        True,
        time.perf_counter() - start,
        first,
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
    )


async def _sample_gpus(nvml: Nvml, stop: asyncio.Event) -> GpuStats:
    util: list[float] = []
    active: list[float] = []
    power: list[float] = []
    samples = 0
    devices = [d for d in await asyncio.to_thread(nvml.devices) if d.mig is None]
    while not stop.is_set():
        for d in devices:
            s = await asyncio.to_thread(nvml.sample, d)
            util += [s.utilisation_percent] if s.utilisation_percent is not None else []
            active += [s.engine_active] if s.engine_active is not None else []
            power += [s.power_watts * len(devices)] if s.power_watts is not None else []
        samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), NVML_PERIOD_SECONDS)
    return GpuStats(
        gpus=len(devices),
        utilisation_percent=statistics.fmean(util) if util else None,
        engine_active=statistics.fmean(active) if active else None,
        # Mean board power times the boards: the machine's GPUs together.
        power_watts=statistics.fmean(power) if power else None,
        samples=samples,
    )


async def run_step(
    target: Target,
    concurrency: int,
    requests: int,
    mix: Sequence[Shape],
    rng: random.Random,
    nvml: Nvml | None = None,
    on_result: Callable[[RequestResult], None] | None = None,
) -> Step:
    """`requests` requests from `concurrency` clients, each sending its next as soon as one returns."""
    shapes = rng.choices(list(mix), weights=[s.weight for s in mix], k=requests)
    queue: asyncio.Queue[Shape] = asyncio.Queue()
    for s in shapes:
        queue.put_nowait(s)
    step = Step(concurrency, 0.0)
    timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
    connector = aiohttp.TCPConnector(limit=concurrency)
    stop = asyncio.Event()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            while not queue.empty():
                result = await send(session, target, queue.get_nowait())
                step.results.append(result)
                if on_result is not None:
                    on_result(result)

        sampler = asyncio.create_task(_sample_gpus(nvml, stop)) if nvml is not None else None
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(min(concurrency, requests))))
        step.wall_seconds = time.perf_counter() - start
        stop.set()
        if sampler is not None:
            step.gpu = await sampler
    return step
