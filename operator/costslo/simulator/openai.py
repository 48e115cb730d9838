"""An OpenAI-compatible model server whose timing follows a performance profile, for `costslo profile`.

POST /v1/completions and /v1/chat/completions (streamed as server-sent events, or whole), GET /v1/models.
The `model` field names a profile (or its modelName); each model has its own engine of `gpus` GPUs.

The engine is continuous batching seen as processor sharing. A request's GPU work is
W = input tokens / prefill throughput + output tokens / decode throughput (GPU-seconds, as in serving.py),
and on an idle server it takes L0 = ttftSeconds (scaled by input length) + output tokens x itlSeconds. With
n requests in flight each advances at min(1 / L0, gpus / (n W)) of its whole per second: alone it runs at
its unloaded speed, and once the batch is full the GPUs' time is shared, so throughput levels off at
gpus / mean W requests per second, the profile's capacity (`capacity_rps`), and latency then grows with
concurrency. The first token comes when a request's prefill share of its progress is done; the others
follow evenly. A failureRate share of requests fails after its work (HTTP 500, or an error event when
streamed). Tokens are words: a prompt of N words is N input tokens; the output is `max_tokens` tokens
(else drawn around the profile's mean).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from costslo.simulator.profiles import PerformanceProfile, ProfileCatalog, ProfileError

TICK_SECONDS = 0.01
# Streamed tokens are sent in chunks at most this often (the first at once): one write per token would
# cost the simulator more CPU than the timing it models.
FLUSH_SECONDS = 0.05


@dataclass
class _Job:
    work: float  # GPU-seconds
    unloaded: float  # seconds alone on the server
    prefill_share: float  # of its progress
    output_tokens: int
    fails: bool
    progress: float = 0.0
    sent: int = 0
    tokens: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)


class Engine:
    """The GPUs of one model server: requests in, token counts out as they are produced."""

    def __init__(
        self,
        profile: PerformanceProfile,
        gpus: int = 1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile, self.gpus, self._rng, self._clock = profile, gpus, rng or random.Random(), clock
        self._jobs: list[_Job] = []
        self._runner: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    def _job(self, input_tokens: int, output_tokens: int) -> _Job:
        p = self.profile
        prefill = p.ttft_seconds * input_tokens / p.mean_input_tokens
        unloaded = prefill + output_tokens * p.itl_seconds
        work = input_tokens / p.prefill_tokens_per_second + output_tokens / p.decode_tokens_per_second
        return _Job(
            work=work,
            unloaded=max(unloaded, 1e-6),
            prefill_share=prefill / max(unloaded, 1e-6),
            output_tokens=output_tokens,
            fails=self._rng.random() < p.failure_rate,
        )

    def output_tokens(self, max_tokens: int | None) -> int:
        if max_tokens is not None:
            return max(1, max_tokens)
        mean = self.profile.mean_output_tokens
        drawn = self._rng.gammavariate(4.0, mean / 4.0)
        return max(1, min(self.profile.max_output_tokens, round(drawn)))

    async def generate(self, input_tokens: int, output_tokens: int) -> AsyncIterator[int]:
        """Yields how many new tokens are ready, first when prefill is done; raises `RequestFailed` at the
        end of a failing request."""
        job = self._job(input_tokens, output_tokens)
        self._jobs.append(job)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        while (tokens := await job.tokens.get()) is not None:
            yield tokens
        if job.fails:
            raise RequestFailed("the model server failed the request")

    async def _run(self) -> None:
        last = self._clock()
        while self._jobs:
            await asyncio.sleep(TICK_SECONDS)
            now = self._clock()
            dt, last = now - last, now
            n = len(self._jobs)
            for job in list(self._jobs):
                job.progress += dt * min(1.0 / job.unloaded, self.gpus / (n * job.work))
                due = _tokens_due(job)
                if due > job.sent:
                    job.tokens.put_nowait(due - job.sent)
                    job.sent = due
                if job.progress >= 1.0:
                    self._jobs.remove(job)
                    job.tokens.put_nowait(None)


def _tokens_due(job: _Job) -> int:
    if job.progress >= 1.0:
        return job.output_tokens
    if job.progress < job.prefill_share:
        return 0
    decoded = (job.progress - job.prefill_share) / max(1e-9, 1.0 - job.prefill_share)
    return min(job.output_tokens, 1 + math.floor(decoded * (job.output_tokens - 1)))


class RequestFailed(RuntimeError):
    pass


# -- HTTP ---------------------------------------------------------------------------------------------


class OpenAIServer:
    """One engine per model, made on first use."""

    def __init__(self, catalog: ProfileCatalog, gpus: int = 1, seed: int | None = None) -> None:
        self._catalog, self._gpus = catalog, gpus
        self._rng = random.Random(seed)
        self._engines: dict[str, Engine] = {}

    def engine(self, model: str) -> Engine:
        if model not in self._engines:
            self._engines[model] = Engine(self._profile(model), self._gpus, self._rng)
        return self._engines[model]

    def _profile(self, model: str) -> PerformanceProfile:
        for name in self._catalog.names():
            profile = self._catalog.get(name)
            if model in (name, profile.model_name):
                return profile
        raise ProfileError(
            f"unknown model {model!r}: name a simulator profile ({', '.join(self._catalog.names())}) or "
            "its modelName"
        )

    def models(self) -> list[dict[str, Any]]:
        return [
            {
                "id": name,
                "object": "model",
                "owned_by": "costslo-simulator",
                "root": self._catalog.get(name).model_name,
            }
            for name in self._catalog.names()
        ]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/completions", self._completions),
            web.post("/v1/chat/completions", self._chat),
            web.get("/v1/models", self._models),
        ]

    async def _models(self, _: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": self.models()})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        prompt = body.get("prompt", "")
        # A prompt may be text, a list of texts, or token ids (one word stands for one token here).
        text = " ".join(str(p) for p in prompt) if isinstance(prompt, list) else str(prompt)
        return await self._serve(request, body, text, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        messages = body.get("messages") or []
        text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        return await self._serve(request, body, text, chat=True)

    async def _serve(
        self, request: web.Request, body: dict[str, Any], text: str, chat: bool
    ) -> web.StreamResponse:
        model = str(body.get("model") or "")
        try:
            engine = self.engine(model)
        except ProfileError as exc:
            return _error(404, str(exc), "model_not_found")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return _error(400, "max_tokens must be a positive integer", "invalid_request_error")
        prompt_tokens = max(1, len(text.split()))
        output = engine.output_tokens(max_tokens)
        reason = "length" if max_tokens is not None or output >= engine.profile.max_output_tokens else "stop"
        chunk = _Chunks(model, chat)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output,
            "total_tokens": prompt_tokens + output,
        }
        if not body.get("stream"):
            try:
                async for _ in engine.generate(prompt_tokens, output):
                    pass
            except RequestFailed as exc:
                return _error(500, str(exc), "server_error")
            return web.json_response(chunk.whole(_words(output), reason, usage))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        pending, flushed, first = 0, 0.0, True
        try:
            async for tokens in engine.generate(prompt_tokens, output):
                pending += tokens
                now = time.monotonic()
                if first or now - flushed >= FLUSH_SECONDS:
                    await response.write(_sse(chunk.delta(_words(pending))))
                    pending, flushed, first = 0, now, False
            if pending:
                await response.write(_sse(chunk.delta(_words(pending))))
        except RequestFailed as exc:
            await response.write(_sse({"error": {"message": str(exc), "type": "server_error", "code": 500}}))
            await response.write_eof()
            return response
        await response.write(_sse(chunk.delta("", reason)))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_sse(chunk.usage(usage)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class _Chunks:
    """The JSON of one response, in the shape OpenAI's API uses for the endpoint."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def _base(self, obj: str) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def delta(self, text: str, finish_reason: str | None = None) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "delta": {"content": text} if text else {}}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = finish_reason
        return {
            **self._base("chat.completion.chunk" if self.chat else "text_completion"),
            "choices": [choice],
        }

    def usage(self, usage: dict[str, int]) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [], "usage": usage}

    def whole(self, text: str, finish_reason: str, usage: dict[str, int]) -> dict[str, Any]:
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = finish_reason
        obj = "chat.completion" if self.chat else "text_completion"
        return {**self._base(obj), "choices": [choice], "usage": usage}


def _words(n: int) -> str:
    return " tok" * n


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body
