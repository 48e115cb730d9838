"""Performance profiles of simulated model servers, and how pods name them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ANNOTATION_PREFIX = "simulator.costslo.dev/"
PROFILE_ANNOTATION = ANNOTATION_PREFIX + "profile"
OVERRIDES_ANNOTATION = ANNOTATION_PREFIX + "profile-overrides"
RUNTIME_ANNOTATION = ANNOTATION_PREFIX + "runtime"
OFFERED_LOAD_ANNOTATION = ANNOTATION_PREFIX + "offered-rps"

Runtime = Literal["vllm", "tgi", "triton", "sglang"]


class ProfileError(ValueError):
    """A pod names a profile that does not exist or overrides it with invalid values."""


class PerformanceProfile(BaseModel):
    """How one model server behaves on its GPUs.

    Throughputs are per GPU at saturation, i.e. with continuous batching filling the GPU; they set the
    GPU work one request costs. Latencies are those of an unloaded server; load stretches them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    runtime: Runtime = "vllm"
    model_name: str = Field("model", alias="modelName")
    prefill_tokens_per_second: float = Field(alias="prefillTokensPerSecond", gt=0)
    decode_tokens_per_second: float = Field(alias="decodeTokensPerSecond", gt=0)
    mean_input_tokens: float = Field(alias="meanInputTokens", gt=0)
    mean_output_tokens: float = Field(alias="meanOutputTokens", gt=0)
    max_output_tokens: int = Field(2048, alias="maxOutputTokens", gt=0)
    failure_rate: float = Field(0.0, alias="failureRate", ge=0, lt=1)
    ttft_seconds: float = Field(0.05, alias="ttftSeconds", gt=0)
    itl_seconds: float = Field(0.01, alias="itlSeconds", gt=0)
    memory_used_mib: float = Field(60000, alias="memoryUsedMiB", ge=0)
    power_idle_watts: float = Field(70, alias="powerIdleWatts", ge=0)
    power_max_watts: float = Field(700, alias="powerMaxWatts", ge=0)
    timeout_seconds: float = Field(60.0, alias="timeoutSeconds", gt=0)
    # Triton only: serve the TensorRT-LLM ensemble layout (ensemble, preprocessing, tensorrt_llm,
    # postprocessing), in which every model counts each request it runs.
    ensemble: bool = False

    @property
    def gpu_seconds_per_request(self) -> float:
        """Mean GPU-seconds of work one request takes (prefill plus decode at saturation)."""
        return self.prefill_gpu_seconds_per_request + self.decode_gpu_seconds_per_request

    @property
    def prefill_gpu_seconds_per_request(self) -> float:
        return self.mean_input_tokens / self.prefill_tokens_per_second

    @property
    def decode_gpu_seconds_per_request(self) -> float:
        return self.mean_output_tokens / self.decode_tokens_per_second

    def capacity_rps(self, gpus: float) -> float:
        """Requests per second a pod with this many GPUs sustains at full utilisation."""
        return gpus / self.gpu_seconds_per_request


class ProfileCatalog:
    """Named profiles: the packaged ones plus any loaded from a YAML file."""

    def __init__(self, profiles: Mapping[str, PerformanceProfile]) -> None:
        self._profiles = dict(profiles)

    @classmethod
    def load(cls, extra: Path | None = None) -> ProfileCatalog:
        """The packaged catalog, extended (and overridden by name) by an optional YAML file."""
        text = resources.files("costslo.simulator").joinpath("profiles.yaml").read_text()
        raw: dict[str, object] = dict(yaml.safe_load(text))
        if extra is not None:
            raw.update(yaml.safe_load(extra.read_text()) or {})
        try:
            return cls({name: PerformanceProfile.model_validate(body) for name, body in raw.items()})
        except ValidationError as exc:
            raise ProfileError(f"invalid profile catalog: {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self._profiles)

    def get(self, name: str) -> PerformanceProfile:
        return self._profiles[name]

    def resolve(self, annotations: Mapping[str, str]) -> PerformanceProfile | None:
        """The profile a pod's annotations select, or None when the pod is no simulated model server."""
        name = annotations.get(PROFILE_ANNOTATION)
        if name is None:
            return None
        base = self._profiles.get(name)
        if base is None:
            raise ProfileError(f"unknown profile {name!r}; known profiles: {', '.join(self.names())}")
        changes: dict[str, object] = {}
        if OVERRIDES_ANNOTATION in annotations:
            try:
                loaded = json.loads(annotations[OVERRIDES_ANNOTATION])
            except json.JSONDecodeError as exc:
                raise ProfileError(f"{OVERRIDES_ANNOTATION} is not JSON: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ProfileError(f"{OVERRIDES_ANNOTATION} must be a JSON object")
            changes.update(loaded)
        if RUNTIME_ANNOTATION in annotations:
            changes["runtime"] = annotations[RUNTIME_ANNOTATION]
        if not changes:
            return base
        try:
            return PerformanceProfile.model_validate({**base.model_dump(by_alias=True), **changes})
        except ValidationError as exc:
            raise ProfileError(f"invalid profile override for {name!r}: {exc}") from exc
