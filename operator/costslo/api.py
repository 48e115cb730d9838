"""The CostSLO resource (costslo.dev/v1alpha1): pydantic models that are the one source of the CRD.

Money is a decimal string in the API ("0.00015"), never a float, so that what a person writes is what the
operator compares. Durations are Go duration strings ("10m", "1h30m"), as Kubernetes' CEL `duration()`
reads them. Rules that involve several fields are CEL `x-kubernetes-validations`, so `kubectl apply`
rejects a bad spec with a message naming the field; `crdgen` turns these models into the CRD.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from costslo import economics, runtimes

GROUP = "costslo.dev"
VERSION = "v1alpha1"
KIND = "CostSLO"
PLURAL = "costslos"
SINGULAR = "costslo"
SHORT_NAMES = ["cslo"]

MONEY_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,12})?$"
FRACTION_PATTERN = r"^0(\.[0-9]{1,12})?$"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _decimal_text(value: object) -> object:
    # A YAML number such as 0.00015 is a float before it reaches us; insisting on strings keeps money exact.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f'write {value} as a quoted decimal string, e.g. "{value}": numbers are not exact')
    return value


def _money(value: Decimal) -> Decimal:
    if not re.fullmatch(MONEY_PATTERN, format(value, "f")):
        raise ValueError(
            f'{value} is not an amount of money: use a non-negative decimal string such as "0.00015"'
        )
    return value


def _fraction(value: Decimal) -> Decimal:
    if not re.fullmatch(FRACTION_PATTERN, format(value, "f")):
        raise ValueError(f'{value} is not a fraction in [0, 1): use a decimal string such as "0.9"')
    return value


def _decimal_string(value: Decimal) -> str:
    return format(value, "f")


Money = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    AfterValidator(_money),
    PlainSerializer(_decimal_string, return_type=str),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN}),
]
Fraction = Annotated[
    Decimal,
    BeforeValidator(_decimal_text),
    AfterValidator(_fraction),
    PlainSerializer(_decimal_string, return_type=str),
    WithJsonSchema({"type": "string", "pattern": FRACTION_PATTERN}),
]


def duration_text(value: float) -> str:
    """A duration as people write it: 45s, 10m, 2m30s, 1h15m."""
    total = max(0, round(value))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def parse_duration(text: str) -> timedelta:
    """A Go-style duration string ("1h30m", "90s", "250ms") as a timedelta."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 10m or 1h")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text)))


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[
    str, AfterValidator(_check_duration), WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN})
]


# Evaluation windows: whole seconds, from two scrapes of a 15 s interval up to a day. A window is a range
# query over every pod of the namespaces it serves, so its length is the cost a tenant puts on Prometheus.
WINDOW_PATTERN = r"^([0-9]+(s|m|h))+$"
MIN_WINDOW = "30s"
MAX_WINDOW = "24h"


def _check_window(text: str) -> str:
    if not re.fullmatch(WINDOW_PATTERN, text):
        raise ValueError(f"{text!r} is not a window in whole seconds such as 30s, 5m or 1h")
    seconds = parse_duration(text).total_seconds()
    if (
        not parse_duration(MIN_WINDOW).total_seconds()
        <= seconds
        <= parse_duration(MAX_WINDOW).total_seconds()
    ):
        raise ValueError(f"a window is at least {MIN_WINDOW} and at most {MAX_WINDOW}, not {text}")
    return text


WindowDuration = Annotated[
    str,
    AfterValidator(_check_window),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": WINDOW_PATTERN,
            "maxLength": 32,
            "x-kubernetes-validations": [
                {
                    "rule": (
                        f"duration(self) >= duration('{MIN_WINDOW}') "
                        f"&& duration(self) <= duration('{MAX_WINDOW}')"
                    ),
                    "message": f"a window is at least {MIN_WINDOW} and at most {MAX_WINDOW}",
                }
            ],
        }
    ),
]


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One x-kubernetes-validations entry."""
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class _Model(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, extra="forbid", alias_generator=lambda s: _camel(s), frozen=True
    )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


# -- spec ---------------------------------------------------------------------------------------------


class TargetRef(_Model):
    """The workload measured: a Deployment (gated by costslo) or a Rollout (Argo acts on /verdict)."""

    api_version: Literal["apps/v1", "argoproj.io/v1alpha1"] = Field(
        "apps/v1", description="apps/v1 for a Deployment, argoproj.io/v1alpha1 for a Rollout."
    )
    kind: Literal["Deployment", "Rollout"] = Field("Deployment", description="Kind of the target.")
    name: str = Field(min_length=1, max_length=253, description="Name of the target in this namespace.")

    @model_validator(mode="after")
    def _kind_matches_version(self) -> TargetRef:
        if TARGET_API_VERSIONS[self.kind] != self.api_version:
            raise ValueError(VALIDATIONS["TargetRef"][0]["message"])
        return self


TARGET_API_VERSIONS = {"Deployment": "apps/v1", "Rollout": "argoproj.io/v1alpha1"}


def _query(description: str) -> Any:
    return Field(None, min_length=1, max_length=4096, description=description)


class CustomQueries(_Model):
    """PromQL per quantity for runtime custom, one series per pod.

    Write `$__pods` inside a selector's braces (it becomes the namespace/pod matchers) and `$__window` as
    the range, e.g. increase(my_requests_total{$__pods,code="200"}[$__window]). Every selector must carry
    `$__pods`, and no function may rewrite a namespace or pod label: a query reads its own namespace only.
    """

    finished: str = Field(min_length=1, max_length=4096, description="Finished requests in the window.")
    delivered: str = Field(min_length=1, max_length=4096, description="Successful requests in the window.")
    failed: str | None = _query("Failed requests; default finished - delivered.")
    input_tokens: str | None = _query("Input (prompt) tokens in the window.")
    output_tokens: str | None = _query("Output (generated) tokens in the window.")
    prefill_seconds: str | None = _query("Seconds spent in prefill in the window.")
    decode_seconds: str | None = _query("Seconds spent in decode in the window.")
    latency_e2e: str | None = _query(
        "Rate of an end-to-end latency histogram's buckets (with `le`), seconds."
    )
    latency_e2e_sum: str | None = _query("Sum of end-to-end latencies (seconds) in the window, for a mean.")
    latency_e2e_count: str | None = _query("Count of end-to-end latencies in the window, for a mean.")
    latency_ttft: str | None = _query("Rate of a time-to-first-token histogram's buckets, seconds.")
    latency_ttft_sum: str | None = _query("Sum of times to first token in the window, for a mean.")
    latency_ttft_count: str | None = _query("Count of times to first token in the window, for a mean.")
    latency_itl: str | None = _query("Rate of an inter-token latency histogram's buckets, seconds.")
    latency_itl_sum: str | None = _query("Sum of inter-token latencies in the window, for a mean.")
    latency_itl_count: str | None = _query("Count of inter-token latencies in the window, for a mean.")

    @model_validator(mode="after")
    def _placeholders(self) -> CustomQueries:
        try:
            runtimes.custom_preset(self.by_quantity())
        except runtimes.CustomQueryError as exc:
            raise ValueError(str(exc)) from None
        return self

    def by_quantity(self) -> dict[str, str]:
        """The queries keyed as the custom runtime preset reads them."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Serving(_Model):
    runtime: Literal["vllm", "tgi", "triton", "sglang", "custom"] = Field(
        "vllm", description="Model server whose metrics describe the target's traffic."
    )
    models: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "The served models clients call, read alone. Empty: every model of the pod. A Triton pod whose "
            "series name several models (an ensemble and its steps, which count every request again) is "
            "not measured until its client-facing model is named here, e.g. [ensemble]. Not for tgi, whose "
            "series carry no model label, nor custom."
        ),
    )
    queries: CustomQueries | None = Field(None, description="PromQL per quantity; only for runtime custom.")

    @model_validator(mode="after")
    def _queries_only_for_custom(self) -> Serving:
        if (self.runtime == "custom") != (self.queries is not None):
            raise ValueError(VALIDATIONS["Serving"][0]["message"])
        if self.models and self.runtime in ("tgi", "custom"):
            raise ValueError(VALIDATIONS["Serving"][1]["message"])
        return self


class LatencyObjective(_Model):
    quantile: float = Field(0.95, gt=0, lt=1, description="Latency quantile to hold, e.g. 0.95 for p95.")
    threshold_seconds: float = Field(gt=0, le=86400, description="The quantile must stay at or below this.")
    metric: Literal["e2e", "ttft", "itl"] = Field(
        "e2e", description="e2e: whole request; ttft: time to first token; itl: time between output tokens."
    )


class Objective(_Model):
    max_cost_per_request: Money | None = Field(None, description="Budget per delivered request, in USD.")
    revenue_per_request: Money | None = Field(
        None, description="What one delivered request earns; with targetGrossMargin it sets the budget."
    )
    target_gross_margin: Fraction | None = Field(
        None, description="Budget = revenuePerRequest x (1 - targetGrossMargin); a fraction in [0, 1)."
    )
    max_cost_per_million_input_tokens: Money | None = Field(
        None, description="Optional budget per 1M input tokens."
    )
    max_cost_per_million_output_tokens: Money | None = Field(
        None, description="Optional budget per 1M output tokens."
    )
    latency: LatencyObjective | None = Field(None, description="Companion latency budget.")

    @model_validator(mode="after")
    def _one_budget(self) -> Objective:
        has_max, has_margin = self.max_cost_per_request is not None, self.target_gross_margin is not None
        rules = VALIDATIONS["Objective"]
        if not (has_max or has_margin):
            raise ValueError(rules[0]["message"])
        if has_max and has_margin:
            raise ValueError(rules[1]["message"])
        if has_margin and self.revenue_per_request is None:
            raise ValueError(rules[2]["message"])
        return self

    def to_economics(self) -> economics.Objective:
        """The same objective for the cost model, which computes the budget and the margin."""
        return economics.Objective(
            max_cost_per_request=self.max_cost_per_request,
            revenue_per_request=self.revenue_per_request,
            target_gross_margin=self.target_gross_margin,
            max_cost_per_million_output_tokens=self.max_cost_per_million_output_tokens,
        )


class ApiPricing(_Model):
    input_per_million_tokens: Money = Field(description="Hosted-API price per 1M input tokens, in USD.")
    output_per_million_tokens: Money = Field(description="Hosted-API price per 1M output tokens, in USD.")


class Pricing(_Model):
    gpu_hourly: Money | None = Field(
        None,
        description="Price of one GPU-hour; when unset, the cluster price catalog decides by GPU product.",
    )
    per_replica_hourly: Money = Field(
        Decimal("0"), description="CPU, memory and node share per replica-hour."
    )
    supporting_cost_per_request: Money = Field(
        Decimal("0"), description="Per-request cost outside the pod: retrieval, embeddings, egress."
    )
    energy_per_kwh: Money | None = Field(None, description="Price of a kWh of GPU energy, if billed apart.")
    output_token_weight: float = Field(
        2.5,
        gt=0,
        le=100,
        description="Without prefill/decode timings: one output token costs this many input tokens.",
    )
    api: ApiPricing | None = Field(None, description="Hosted-API mode: the cost is tokens x these prices.")

    @model_validator(mode="after")
    def _one_pricing_mode(self) -> Pricing:
        if self.api is not None and self.gpu_hourly is not None:
            raise ValueError(VALIDATIONS["Pricing"][0]["message"])
        return self


class Windows(_Model):
    long: WindowDuration = Field(
        "1h", description="Long evaluation window; recovery is judged on it. 30s to 24h."
    )
    short: WindowDuration = Field(
        "5m", description="Short window; a breach needs both windows over budget. 30s to 24h."
    )

    @model_validator(mode="after")
    def _short_before_long(self) -> Windows:
        if parse_duration(self.short) >= parse_duration(self.long):
            raise ValueError(VALIDATIONS["Windows"][0]["message"])
        return self


class Evaluation(_Model):
    windows: Windows = Field(default_factory=lambda: Windows())
    min_requests: int = Field(100, ge=0, le=1_000_000_000, description="Fewer requests: InsufficientTraffic.")
    on_missing_metrics: Literal["Hold", "Allow"] = Field(
        "Hold",
        description="Hold: rollouts wait while metrics are missing (fail closed); Allow: they proceed.",
    )
    hysteresis: float = Field(
        0.05, ge=0, le=0.5, description="Recover only when the long window is this fraction under budget."
    )


class RolloutEnforcement(_Model):
    action: Literal["Pause", "Rollback", "None"] = Field(
        "Pause", description="What to do with a breaching revision."
    )
    bake_time: Duration = Field("10m", description="How long a new revision serves before it is judged.")


class ScalingEnforcement(_Model):
    enabled: bool = Field(False, description="Adjust replicas to hold cost and latency.")
    min_replicas: int = Field(1, ge=0, le=10000)
    max_replicas: int = Field(8, ge=1, le=10000)
    cooldown: Duration = Field("10m", description="Minimum time between two scaling steps.")
    target_utilisation: float = Field(0.7, gt=0, le=1, description="GPU busy fraction to size replicas for.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> ScalingEnforcement:
        if self.min_replicas > self.max_replicas:
            raise ValueError(VALIDATIONS["ScalingEnforcement"][0]["message"])
        return self


class Enforcement(_Model):
    mode: Literal["Enforce", "Report"] = Field(
        "Enforce", description="Report: status, metrics and events only; the target is never written."
    )
    rollout: RolloutEnforcement = Field(default_factory=lambda: RolloutEnforcement())
    scaling: ScalingEnforcement = Field(default_factory=lambda: ScalingEnforcement())


class CostSLOSpec(_Model):
    target_ref: TargetRef
    serving: Serving = Field(default_factory=lambda: Serving())
    objective: Objective
    pricing: Pricing = Field(default_factory=lambda: Pricing())
    evaluation: Evaluation = Field(default_factory=lambda: Evaluation())
    enforcement: Enforcement = Field(default_factory=lambda: Enforcement())


# -- status -------------------------------------------------------------------------------------------

Phase = Literal[
    "Pending",
    "Met",
    "Breached",
    "RolloutBlocked",
    "InsufficientTraffic",
    "MetricsUnavailable",
    "TargetNotFound",
    "InvalidSpec",
]


class _Status(BaseModel):
    """Status parts: camelCase, tolerant of fields written by newer operators."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", alias_generator=lambda s: _camel(s))


class CurrentCost(_Status):
    window: str | None = None
    cost_per_request: str | None = Field(None, description="Cost per delivered request, USD.")
    projected_cost_per_request: str | None = Field(
        None, description="Cost per request at target utilisation."
    )
    cost_per_million_input_tokens: str | None = None
    cost_per_million_output_tokens: str | None = None
    cached_input_fraction: float | None = Field(
        None, description="Share of input tokens served from the prefix cache (vLLM, SGLang)."
    )
    requests_per_second: float | None = None
    failure_rate: float | None = None
    latency_seconds: float | None = Field(None, description="The objective's latency quantile.")
    gpus: float | None = None
    gpu_utilisation: float | None = None
    idle_cost_fraction: float | None = None
    hourly_cost: str | None = None
    gross_margin: float | None = None


class StatusDisplay(_Status):
    """The figures of `current` and the budget as text for `kubectl get` columns: $0.000331, 12.97s, 34%."""

    cost_per_request: str | None = None
    projected_cost_per_request: str | None = None
    budget: str | None = None
    latency: str | None = None
    requests_per_second: str | None = None
    gpus: str | None = None
    gpu_utilisation: str | None = None
    hourly_cost: str | None = None


class RevisionCost(_Status):
    pod_template_hash: str
    revision: str | None = None
    cost_per_request: str | None = None
    projected_cost_per_request: str | None = None
    latency_seconds: float | None = None
    requests: float | None = None
    verdict: str | None = None


class RolloutStatus(_Status):
    state: str | None = Field(
        None, description="Stable, Baking, Promoted, Blocked, RolledBack, Overridden or Superseded."
    )
    revision: str | None = Field(None, description="The pod-template-hash the state is about.")
    stable_revision: str | None = Field(None, description="The last revision let through.")
    since: str | None = None
    bake_started: str | None = Field(None, description="When the new revision's first pod was ready.")
    reason: str | None = None
    rejected_revisions: list[str] = Field(
        default_factory=list, description="Pod-template-hashes rolled back; not retried."
    )
    paused_by_gate: bool | None = Field(
        None, description="The gate paused the Deployment and will resume it."
    )
    judged_generation: int | None = Field(
        None, description="The CostSLO generation a block was decided under."
    )


class ScalingStatus(_Status):
    recommended_replicas: int | None = None
    last_action: str | None = None
    last_action_time: str | None = None
    reason: str | None = None


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(min_length=1)
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class CostSLOStatus(_Status):
    observed_generation: int | None = None
    phase: Phase | None = None
    message: str | None = Field(None, description="Why the phase is what it is, with the numbers.")
    budget: str | None = Field(None, description="Budget per delivered request, USD.")
    current: CurrentCost | None = None
    display: StatusDisplay | None = Field(
        None, description="current and budget as text for people; the exact values are in current and budget."
    )
    coverage: str | None = Field(
        None,
        description="Set when Prometheus holds only part of a window: the span its figures are over.",
    )
    revisions: list[RevisionCost] = Field(default_factory=list)
    rollout: RolloutStatus | None = None
    scaling: ScalingStatus | None = None
    last_evaluation_time: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


# -- cross-field rules (CEL), attached to the schema by crdgen ---------------------------------------

VALIDATIONS: dict[str, list[dict[str, str]]] = {
    "CostSLOSpec": [],
    "TargetRef": [
        cel(
            "(self.kind == 'Deployment' && self.apiVersion == 'apps/v1') || "
            "(self.kind == 'Rollout' && self.apiVersion == 'argoproj.io/v1alpha1')",
            "targetRef: a Deployment is apiVersion apps/v1, a Rollout is apiVersion argoproj.io/v1alpha1",
            ".apiVersion",
        ),
    ],
    "Objective": [
        cel(
            "has(self.maxCostPerRequest) || has(self.targetGrossMargin)",
            "set a budget: maxCostPerRequest, or revenuePerRequest together with targetGrossMargin",
        ),
        cel(
            "!(has(self.maxCostPerRequest) && has(self.targetGrossMargin))",
            "set maxCostPerRequest or targetGrossMargin, not both: each sets the budget "
            "(revenuePerRequest alone may accompany maxCostPerRequest, to report the margin)",
        ),
        cel(
            "!has(self.targetGrossMargin) || has(self.revenuePerRequest)",
            "targetGrossMargin needs revenuePerRequest: the budget is revenue x (1 - margin)",
            ".revenuePerRequest",
        ),
    ],
    "Serving": [
        cel(
            "(self.runtime == 'custom') == has(self.queries)",
            "queries are required for runtime custom and only allowed there",
            ".queries",
        ),
        cel(
            "!(self.runtime in ['tgi', 'custom']) || !has(self.models) || size(self.models) == 0",
            "models select series by their model label: tgi series have none, and custom queries select "
            "their own; leave models empty",
            ".models",
        ),
    ],
    "Pricing": [
        cel(
            "!(has(self.api) && has(self.gpuHourly))",
            "set either api (hosted-API pricing) or gpuHourly (GPU pricing), not both",
            ".api",
        ),
    ],
    "Windows": [
        cel(
            "duration(self.short) < duration(self.long)",
            "windows.short must be shorter than windows.long",
            ".short",
        ),
    ],
    "ScalingEnforcement": [
        cel(
            "self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"
        ),
    ],
}


class CostSLO(BaseModel):
    """A whole CostSLO object as read from the API (metadata kept raw)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    api_version: str = Field(f"{GROUP}/{VERSION}", alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: CostSLOSpec
    status: CostSLOStatus = Field(default_factory=lambda: CostSLOStatus())
