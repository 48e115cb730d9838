"""A small OpenAI-compatible model server that does real GPU work and needs no downloads.

For hack/gpu-check.sh on a machine with a GPU: a decoder-shaped stack of random-weight layers in PyTorch
(prefill: the prompt's tokens through every layer at once; decode: one token at a time, batched across the
requests in flight), behind POST /v1/completions (streamed or whole). It measures nothing itself: it gives
`costslo profile` and `costslo gpu-exporter` a real load to see on a real GPU.

    python hack/gpu-model-server.py --port 28500 [--layers 24 --width 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

import torch
from aiohttp import web


@dataclass
class _Sequence:
    prompt_tokens: int
    max_tokens: int
    produced: int = 0
    queue: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)


class Model:
    """Random weights, real FLOPs: width x width matmuls per layer per token."""

    def __init__(self, layers: int, width: int, device: str) -> None:
        gen = torch.Generator(device=device).manual_seed(0)
        self.weights = [
            torch.randn(width, width, device=device, dtype=torch.float16, generator=gen) / width**0.5
            for _ in range(layers)
        ]
        self.width, self.device = width, device

    def forward(self, tokens: int) -> None:
        x = torch.randn(tokens, self.width, device=self.device, dtype=torch.float16)
        for w in self.weights:
            x = torch.tanh(x @ w)
        torch.cuda.synchronize()


class Scheduler:
    """Continuous batching in one GPU thread: each step prefills newcomers and decodes one token for
    every running sequence."""

    def __init__(self, model: Model, loop: asyncio.AbstractEventLoop, max_batch: int = 256) -> None:
        self.model, self.loop, self.max_batch = model, loop, max_batch
        self.waiting: list[_Sequence] = []
        self.running: list[_Sequence] = []
        self.lock = threading.Condition()
        threading.Thread(target=self._work, daemon=True).start()

    def submit(self, seq: _Sequence) -> None:
        with self.lock:
            self.waiting.append(seq)
            self.lock.notify()

    def _emit(self, seq: _Sequence, value: int | None) -> None:
        self.loop.call_soon_threadsafe(seq.queue.put_nowait, value)

    def _work(self) -> None:
        while True:
            with self.lock:
                while not self.waiting and not self.running:
                    self.lock.wait()
                room = self.max_batch - len(self.running)
                new, self.waiting = self.waiting[:room], self.waiting[room:]
            for seq in new:  # prefill: the whole prompt at once, then its first token
                self.model.forward(seq.prompt_tokens)
                seq.produced = 1
                self._emit(seq, 1)
            self.running += [s for s in new if s.produced < s.max_tokens]
            for s in new:
                if s.produced >= s.max_tokens:
                    self._emit(s, None)
            if self.running:  # one decode step for the whole batch
                self.model.forward(len(self.running))
                for s in self.running:
                    s.produced += 1
                    self._emit(s, 1)
                    if s.produced >= s.max_tokens:
                        self._emit(s, None)
                self.running = [s for s in self.running if s.produced < s.max_tokens]


def app(scheduler_of: list[Scheduler], model_name: str) -> web.Application:
    async def completions(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt = body.get("prompt", "")
        text = " ".join(str(p) for p in prompt) if isinstance(prompt, list) else str(prompt)
        seq = _Sequence(max(1, len(text.split())), max(1, int(body.get("max_tokens") or 16)))
        scheduler_of[0].submit(seq)
        usage = {
            "prompt_tokens": seq.prompt_tokens,
            "completion_tokens": seq.max_tokens,
            "total_tokens": seq.prompt_tokens + seq.max_tokens,
        }
        base = {
            "id": f"cmpl-{uuid.uuid4().hex[:16]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
        }
        if not body.get("stream"):
            while await seq.queue.get() is not None:
                pass
            choice = {"index": 0, "text": " tok" * seq.max_tokens, "finish_reason": "length"}
            return web.json_response({**base, "choices": [choice], "usage": usage})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        while (n := await seq.queue.get()) is not None:
            chunk = {**base, "choices": [{"index": 0, "text": " tok" * n, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await resp.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": model_name, "object": "model"}]})

    application = web.Application()
    application.add_routes([web.post("/v1/completions", completions), web.get("/v1/models", models)])
    return application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=28500)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--model", default="synthetic-decoder")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this server is for checks on a real GPU")
    model = Model(args.layers, args.width, "cuda")
    schedulers: list[Scheduler] = []

    async def start(_: web.Application) -> None:
        schedulers.append(Scheduler(model, asyncio.get_running_loop()))

    application = app(schedulers, args.model)
    application.on_startup.append(start)
    web.run_app(application, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
