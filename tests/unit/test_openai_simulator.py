"""The simulator's OpenAI-compatible server: the engine's timing follows the profile (capacity, unloaded
latency) and the HTTP answers have OpenAI's shapes. The engine runs on the real clock, so the bounds
leave room for a busy machine (its ticks come late, never early: throughput can only look lower)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from costslo.simulator.openai import Engine, OpenAIServer, RequestFailed
from costslo.simulator.profiles import PerformanceProfile, ProfileCatalog
from costslo.simulator.server import build_app

# Ten times the 8B profile's speed, so a saturated engine is seen within a second or two.
FAST = PerformanceProfile.model_validate(
    {
        "runtime": "vllm",
        "modelName": "fast",
        "prefillTokensPerSecond": 400000,
        "decodeTokensPerSecond": 20000,
        "meanInputTokens": 800,
        "meanOutputTokens": 100,
        "ttftSeconds": 0.02,
        "itlSeconds": 0.002,
        "failureRate": 0,
    }
)


async def closed_loop(engine: Engine, clients: int, seconds: float) -> tuple[float, list[float]]:
    """Requests finished per second over `seconds` after a warm-up, and their latencies."""
    done: list[tuple[float, float]] = []
    end = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < end:
            start = time.monotonic()
            async for _ in engine.generate(800, 100):
                pass
            done.append((start, time.monotonic()))

    await asyncio.gather(*(client() for _ in range(clients)))
    warm = [d for d in done if d[0] > done[0][1]]  # started after the first round finished
    span = max(e for _, e in warm) - min(s for s, _ in warm)
    return len(warm) / span, [e - s for s, e in warm]


async def test_alone_a_request_takes_its_unloaded_time() -> None:
    engine = Engine(FAST, gpus=1)
    _, latencies = await closed_loop(engine, 1, 1.0)
    unloaded = 0.02 + 100 * 0.002
    assert min(latencies) == pytest.approx(unloaded, rel=0.15)


async def test_saturated_throughput_is_the_profiles_capacity() -> None:
    capacity = FAST.capacity_rps(1)  # 1 / (800/400000 + 100/20000) = 142.9 requests/s
    rps, latencies = await closed_loop(Engine(FAST, gpus=1), 64, 2.5)
    assert rps == pytest.approx(capacity, rel=0.12)
    # Beyond saturation, latency is what Little's law says: clients / throughput.
    assert sorted(latencies)[len(latencies) // 2] == pytest.approx(64 / capacity, rel=0.25)


async def test_more_gpus_serve_proportionally_more() -> None:
    one, _ = await closed_loop(Engine(FAST, gpus=1), 64, 1.5)
    two, _ = await closed_loop(Engine(FAST, gpus=2), 128, 1.5)
    assert two / one == pytest.approx(2.0, rel=0.2)


async def test_a_failing_request_raises_after_its_work() -> None:
    engine = Engine(FAST.model_copy(update={"failure_rate": 0.999999}), gpus=1)
    tokens = 0
    with pytest.raises(RequestFailed):
        async for n in engine.generate(10, 5):
            tokens += n
    assert tokens == 5


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[TestClient[Any, Any]]:
    app = build_app(None, OpenAIServer(ProfileCatalog.load(), seed=3))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_completions_answer_in_openais_shape() -> None:
    async with serving() as client:
        await _completions(client)


async def _completions(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/v1/completions", json={"model": "llama-3.1-8b-h100", "prompt": "one two three", "max_tokens": 4}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["object"] == "text_completion" and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    models = await (await client.get("/v1/models")).json()
    assert "llama-3.1-8b-h100" in [m["id"] for m in models["data"]]


async def test_chat_streams_server_sent_events_with_usage() -> None:
    async with serving() as client:
        await _chat(client)


async def _chat(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/v1/chat/completions",
        json={
            "model": "meta-llama/Llama-3.1-8B-Instruct",  # a profile's modelName works too
            "messages": [{"role": "user", "content": "a b c d e"}],
            "max_tokens": 20,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    events = [line[6:] for line in (await resp.text()).splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert len(text.split()) == 20
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 20, "total_tokens": 25}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"model": "gpt-17", "prompt": "x"}, 404),
        ({"model": "llama-3.1-8b-h100", "prompt": "x", "max_tokens": 0}, 400),
    ],
)
async def test_bad_requests_get_openai_errors(body: dict[str, Any], status: int) -> None:
    async with serving() as client:
        resp = await client.post("/v1/completions", json=body)
        assert resp.status == status
        assert (await resp.json())["error"]["message"]
