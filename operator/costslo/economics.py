"""The cost model: measured usage and prices in, every term of the cost per delivered request out.

Pure arithmetic, no I/O, no Kubernetes, no PromQL. The formulas are written out, with a worked example, in
docs/cost-model.md.

Money. Prices come in as `Decimal`; every money field that comes out is a `Decimal` made by `money()`.
Leaf terms (GPU, replica, energy, supporting and input-token cost) are computed from the measured floats,
converted to `Decimal` exactly, and rounded once to `SIGNIFICANT_DIGITS` significant digits. Sums (compute
cost, total cost, the output-token share) are exact sums or differences of rounded terms, so the arithmetic
shown in status adds up to the last digit. Ratios (per request, per hour, per million tokens) are rounded
again. Twelve digits keep float noise (about sixteen digits) out of status while any price of up to twelve
significant digits survives unchanged. Quantities that are not money (utilisation, shares, rates) are floats.
`money()` drops trailing zeros; render with `format(value, "f")` to avoid exponent notation.

Missing data. Nothing unknown is ever counted as zero. An output that cannot be computed is None and
`missing` carries a sentence saying why. None without a sentence means the term does not apply: energy that
is not priced, GPU terms in hosted-API mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from typing import Literal

SIGNIFICANT_DIGITS = 12
SECONDS_PER_HOUR = 3600
JOULES_PER_KWH = 3_600_000
TOKENS_PER_MILLION = 1_000_000
DEFAULT_OUTPUT_TOKEN_WEIGHT = 2.5
ESTIMATE_WINDOW_SECONDS = 3600.0

# Wide enough that sums of twelve-digit terms of very different magnitude stay exact, and independent of
# whatever the caller did to the thread's default context.
_CONTEXT = Context(prec=40, rounding=ROUND_HALF_EVEN)

Mode = Literal["provisioned", "api"]
ShareSource = Literal["measured", "weighted", "api"]
UtilisationSource = Literal["target", "fleet"]
MoneyInput = Decimal | int | float | str

NO_REQUESTS = "no data for requests"
NO_DELIVERED = "no data for delivered requests"
NO_FINISHED_IN_WINDOW = "no finished requests in the window"
NO_DELIVERED_IN_WINDOW = "no delivered requests in the window"
NO_PODS = "no pods alive in the window"
NO_GPUS = "no GPUs provisioned in the window"
NO_GPU_DATA = "no data for GPUs allocated"
NO_REPLICA_DATA = "no data for replica time (needed by the per-replica price)"
NO_GPU_PRICE = "no GPU price"
NO_BUSY = "no data for GPU busy time"
NO_ENERGY = "no data for energy"
NO_INPUT_TOKENS = "no data for input tokens"
NO_OUTPUT_TOKENS = "no data for output tokens"
NO_INPUT_TOKENS_IN_WINDOW = "no input tokens in the window"
NO_OUTPUT_TOKENS_IN_WINDOW = "no output tokens in the window"
NO_UTILISATION = "no utilisation to project at"
ZERO_UTILISATION = "utilisation to project at is 0 (GPUs idle for the whole window)"


def money(value: Decimal | float) -> Decimal:
    """Round an amount to SIGNIFICANT_DIGITS significant digits, dropping trailing zeros."""
    with localcontext(_CONTEXT):
        amount = value if isinstance(value, Decimal) else Decimal(value)
        if not amount.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        if amount.is_zero():
            return Decimal(0)
        quantum = Decimal(1).scaleb(amount.adjusted() - SIGNIFICANT_DIGITS + 1)
        return _tidy(amount.quantize(quantum, rounding=ROUND_HALF_EVEN))


def _tidy(amount: Decimal) -> Decimal:
    """The same value without trailing zeros, so that 18.00 and 18 read alike."""
    with localcontext(_CONTEXT):
        if amount.is_zero():
            return Decimal(0)
        tidy = amount.normalize()
        # normalize() turns 1000 into 1E+3; keep whole amounts whole.
        if tidy.adjusted() < _CONTEXT.prec and tidy == tidy.to_integral_value():
            tidy = tidy.quantize(Decimal(1))
        return tidy


def as_decimal(value: MoneyInput, name: str) -> Decimal:
    """Read a plain number as a Decimal; a float is read through its shortest repr, so 0.1 means 0.1."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not result.is_finite():
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return result


def _check_price(value: Decimal | None, name: str) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name} must be a finite amount >= 0, got {value}")


@dataclass(frozen=True)
class Usage:
    """What one target or one revision provisioned, served and measured over a window.

    gpu_seconds is provisioned time (the sum over pods of GPUs * seconds alive), charged whether used or
    not; busy_gpu_seconds is the sum of GPUs * busy fraction * dt. requests counts every finished request,
    failures included; delivered counts the successful ones. Optional fields are None when a series is absent.
    """

    window_seconds: float
    gpu_seconds: float | None  # None: no GPU allocation series at all, which is not the same as 0 GPUs
    replica_seconds: float | None  # None: no pod series; only a per-replica price needs it
    requests: float | None
    delivered: float | None
    busy_gpu_seconds: float | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    prefill_seconds: float | None = None
    decode_seconds: float | None = None
    energy_joules: float | None = None
    cached_input_tokens: float | None = None  # part of input_tokens: prefix-cache hits, almost no compute

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"usage {f.name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"usage {f.name} must be >= 0, got {value!r}")
        if self.window_seconds <= 0:
            raise ValueError(f"usage window_seconds must be > 0, got {self.window_seconds!r}")


@dataclass(frozen=True)
class Prices:
    """What capacity, supporting work, energy or a hosted API cost.

    Hosted-API mode (both api_* prices set) replaces the compute cost by tokens * price per token.
    output_token_weight is how many input tokens one output token counts for when splitting the compute
    cost without prefill/decode timing.
    """

    gpu_hourly: Decimal | None = None
    per_replica_hourly: Decimal = Decimal(0)
    supporting_cost_per_request: Decimal = Decimal(0)
    energy_per_kwh: Decimal | None = None
    api_input_per_million: Decimal | None = None
    api_output_per_million: Decimal | None = None
    output_token_weight: float = DEFAULT_OUTPUT_TOKEN_WEIGHT

    def __post_init__(self) -> None:
        for name in (
            "gpu_hourly",
            "per_replica_hourly",
            "supporting_cost_per_request",
            "energy_per_kwh",
            "api_input_per_million",
            "api_output_per_million",
        ):
            _check_price(getattr(self, name), name)
        if (self.api_input_per_million is None) != (self.api_output_per_million is None):
            raise ValueError("hosted-API mode needs both an input and an output price per million tokens")
        weight = self.output_token_weight
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"output_token_weight must be a finite number > 0, got {weight!r}")

    @property
    def mode(self) -> Mode:
        """Hosted-API mode when token prices are set, else provisioned capacity."""
        return "api" if self.api_input_per_million is not None else "provisioned"


@dataclass(frozen=True)
class Objective:
    """What a delivered request may cost: a fixed maximum, or what is left of revenue after the margin.

    Give max_cost_per_request, or revenue_per_request with target_gross_margin. revenue_per_request may
    accompany max_cost_per_request alone, to have gross margin reported.
    """

    max_cost_per_request: Decimal | None = None
    revenue_per_request: Decimal | None = None
    target_gross_margin: Decimal | None = None
    max_cost_per_million_output_tokens: Decimal | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_cost_per_request",
            "revenue_per_request",
            "target_gross_margin",
            "max_cost_per_million_output_tokens",
        ):
            _check_price(getattr(self, name), name)
        margin = self.target_gross_margin
        if margin is not None:
            if margin >= 1:
                raise ValueError(f"targetGrossMargin must be in [0, 1), got {margin}")
            if self.revenue_per_request is None:
                raise ValueError("targetGrossMargin needs revenuePerRequest")
            if self.max_cost_per_request is not None:
                raise ValueError(
                    "give maxCostPerRequest or revenuePerRequest with targetGrossMargin, not both"
                )
        elif self.max_cost_per_request is None:
            raise ValueError("give maxCostPerRequest, or revenuePerRequest with targetGrossMargin")

    @property
    def budget(self) -> Decimal:
        """The cost per delivered request allowed: maxCostPerRequest or revenue * (1 - margin), exact."""
        if self.max_cost_per_request is not None:
            return self.max_cost_per_request
        assert self.revenue_per_request is not None and self.target_gross_margin is not None
        with localcontext(_CONTEXT):
            return _tidy(self.revenue_per_request * (1 - self.target_gross_margin))


@dataclass(frozen=True)
class CostBreakdown:
    """Every term of the cost of one window, so that status can show the arithmetic.

    Money fields are Decimal (see the module docstring for rounding); None means not computable (a reason
    is in `missing`) or not applicable.
    """

    mode: Mode
    window_seconds: float
    requests: float | None
    delivered: float | None
    failed: float | None
    failure_rate: float | None
    requests_per_second: float | None
    gpus: float | None
    replicas: float | None
    gpu_cost: Decimal | None
    replica_cost: Decimal | None
    energy_cost: Decimal | None
    compute_cost: Decimal | None
    supporting_cost: Decimal | None
    total_cost: Decimal | None
    cost_per_request: Decimal | None
    hourly_cost: Decimal | None
    utilisation: float | None
    idle_cost_fraction: float | None
    idle_cost: Decimal | None
    busy_gpu_seconds_per_request: float | None
    prefill_share: float | None
    prefill_share_source: ShareSource | None
    input_cost: Decimal | None
    output_cost: Decimal | None
    cost_per_million_input_tokens: Decimal | None
    cost_per_million_output_tokens: Decimal | None
    revenue_per_request: Decimal | None
    gross_margin_per_request: Decimal | None
    gross_margin: float | None
    missing: tuple[str, ...]
    # Input tokens served from the prefix cache over all input tokens: the cost per input token is a blend of
    # computed and nearly free cached tokens, and this says how much of each.
    cached_input_fraction: float | None = None


@dataclass(frozen=True)
class Projection:
    """What a revision's requests would cost once capacity follows its load (docs/cost-model.md).

    provisioned_gpu_seconds_per_request = busy_gpu_seconds_per_request / utilisation; the GPU and replica
    terms scale with it, the energy and supporting terms are the revision's own observed ones.
    """

    busy_gpu_seconds_per_request: float | None
    utilisation: float | None
    utilisation_source: UtilisationSource | None
    provisioned_gpu_seconds_per_request: float | None
    gpu_cost_per_request: Decimal | None
    replica_cost_per_request: Decimal | None
    energy_cost_per_request: Decimal | None
    supporting_cost_per_request: Decimal | None
    cost_per_request: Decimal | None
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Estimate:
    """A what-if: one hour at a steady offered load, costed by `cost_of`."""

    usage: Usage
    cost: CostBreakdown
    capacity_requests_per_second: float
    served_requests_per_second: float
    saturated: bool
    budget: Decimal | None
    within_budget: bool | None
    hosted_api: CostBreakdown | None


class _Missing:
    """Reasons in the order found, each once."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def add(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)


def _d(value: float) -> Decimal:
    # Exact: every float is a finite binary fraction, so no digit is invented or lost here.
    return Decimal(value)


def _delivered(usage: Usage, missing: _Missing) -> float | None:
    """N_ok when it can divide, with the reason when it cannot."""
    if usage.delivered is None:
        missing.add(NO_DELIVERED)
        return None
    if usage.delivered == 0:
        missing.add(NO_DELIVERED_IN_WINDOW)
        return None
    return usage.delivered


def _supporting_cost(usage: Usage, prices: Prices, missing: _Missing) -> Decimal | None:
    # An unpriced term is zero whatever the traffic; only a priced one needs the request count.
    if prices.supporting_cost_per_request == 0:
        return Decimal(0)
    if usage.requests is None:
        missing.add(NO_REQUESTS)
        return None
    return money(prices.supporting_cost_per_request * _d(usage.requests))


def _energy_cost(usage: Usage, prices: Prices, missing: _Missing) -> Decimal | None:
    if prices.energy_per_kwh is None:
        return None
    if usage.energy_joules is None:
        missing.add(NO_ENERGY)
        return None
    return money(_d(usage.energy_joules) * prices.energy_per_kwh / JOULES_PER_KWH)


def _gpu_cost(usage: Usage, prices: Prices, missing: _Missing) -> Decimal | None:
    if usage.gpu_seconds is None:
        missing.add(NO_GPU_DATA)
        return None
    if usage.gpu_seconds == 0:
        return Decimal(0)
    if prices.gpu_hourly is None:
        missing.add(NO_GPU_PRICE)
        return None
    return money(_d(usage.gpu_seconds) * prices.gpu_hourly / SECONDS_PER_HOUR)


def _utilisation(usage: Usage, missing: _Missing) -> float | None:
    """U = busy / provisioned GPU-seconds, capped at 1: sampling can make busy overshoot provisioned."""
    if usage.gpu_seconds is None:
        missing.add(NO_GPU_DATA)
        return None
    if usage.gpu_seconds == 0:
        missing.add(NO_GPUS)
        return None
    if usage.busy_gpu_seconds is None:
        missing.add(NO_BUSY)
        return None
    return min(1.0, usage.busy_gpu_seconds / usage.gpu_seconds)


def _prefill_share(usage: Usage, weight: float) -> tuple[float, ShareSource] | None:
    """p: measured prefill time over prefill + decode time, else input tokens over weighted tokens."""
    pre, dec = usage.prefill_seconds, usage.decode_seconds
    if pre is not None and dec is not None and pre + dec > 0:
        return pre / (pre + dec), "measured"
    tin, tout = usage.input_tokens, usage.output_tokens
    if tin is not None and usage.cached_input_tokens is not None:
        # Prefix-cache hits skip prefill: only the computed input tokens weigh on the compute.
        tin = max(0.0, tin - usage.cached_input_tokens)
    if tin is not None and tout is not None and tin + weight * tout > 0:
        return tin / (tin + weight * tout), "weighted"
    return None


def _per_million(
    cost: Decimal | None, tokens: float | None, absent: str, none: str, missing: _Missing
) -> Decimal | None:
    if tokens is None:
        missing.add(absent)
        return None
    if tokens == 0:
        missing.add(none)
        return None
    if cost is None:
        return None
    return money(cost * TOKENS_PER_MILLION / _d(tokens))


def _api_token_cost(tokens: float | None, price: Decimal, absent: str, missing: _Missing) -> Decimal | None:
    if tokens is None:
        missing.add(absent)
        return None
    return money(_d(tokens) * price / TOKENS_PER_MILLION)


def cost_of(usage: Usage, prices: Prices, revenue_per_request: Decimal | None = None) -> CostBreakdown:
    """Cost one window of usage, term by term, with reasons for every term that cannot be computed."""
    _check_price(revenue_per_request, "revenue_per_request")
    with localcontext(_CONTEXT):
        return _cost_of(usage, prices, revenue_per_request)


@dataclass(frozen=True)
class _Compute:
    """The compute side of a breakdown, as one mode or the other computes it."""

    compute_cost: Decimal | None
    share: tuple[float, ShareSource] | None
    input_cost: Decimal | None
    output_cost: Decimal | None
    per_million_input: Decimal | None
    per_million_output: Decimal | None
    gpu_cost: Decimal | None = None
    replica_cost: Decimal | None = None
    energy_cost: Decimal | None = None
    utilisation: float | None = None


def _api_compute(usage: Usage, prices: Prices, missing: _Missing) -> _Compute:
    assert prices.api_input_per_million is not None and prices.api_output_per_million is not None
    input_cost = _api_token_cost(usage.input_tokens, prices.api_input_per_million, NO_INPUT_TOKENS, missing)
    output_cost = _api_token_cost(
        usage.output_tokens, prices.api_output_per_million, NO_OUTPUT_TOKENS, missing
    )
    compute_cost = None
    share: tuple[float, ShareSource] | None = None
    if input_cost is not None and output_cost is not None:
        compute_cost = _tidy(input_cost + output_cost)
        if compute_cost > 0:
            share = (float(input_cost / compute_cost), "api")
    return _Compute(
        compute_cost=compute_cost,
        share=share,
        input_cost=input_cost,
        output_cost=output_cost,
        per_million_input=prices.api_input_per_million,
        per_million_output=prices.api_output_per_million,
    )


def _replica_cost(replica_seconds: float | None, prices: Prices, missing: _Missing) -> Decimal | None:
    """Replica time priced; without a per-replica price no figure needs it, measured or not."""
    if not prices.per_replica_hourly:
        return money(Decimal(0))
    if replica_seconds is None:
        missing.add(NO_REPLICA_DATA)
        return None
    return money(_d(replica_seconds) * prices.per_replica_hourly / SECONDS_PER_HOUR)


def _provisioned_compute(usage: Usage, prices: Prices, missing: _Missing) -> _Compute:
    gpu_cost = replica_cost = energy_cost = compute_cost = None
    utilisation = None
    if usage.gpu_seconds == 0 and not usage.replica_seconds:
        # A request served by no pod means the inventory is wrong, not that serving was free.
        missing.add(NO_PODS)
    else:
        gpu_cost = _gpu_cost(usage, prices, missing)
        replica_cost = _replica_cost(usage.replica_seconds, prices, missing)
        energy_cost = _energy_cost(usage, prices, missing)
        energy_known = prices.energy_per_kwh is None or energy_cost is not None
        if gpu_cost is not None and replica_cost is not None and energy_known:
            compute_cost = _tidy(gpu_cost + replica_cost + (energy_cost or Decimal(0)))
        utilisation = _utilisation(usage, missing)

    share = _prefill_share(usage, prices.output_token_weight)
    input_cost = output_cost = input_share = output_share = None
    if share is not None and compute_cost is not None:
        # Per-token prices come from the unrounded shares, so they carry no second rounding.
        input_share = compute_cost * _d(share[0])
        output_share = compute_cost * (1 - _d(share[0]))
        input_cost = money(input_share)
        output_cost = _tidy(compute_cost - input_cost)
    return _Compute(
        compute_cost=compute_cost,
        share=share,
        input_cost=input_cost,
        output_cost=output_cost,
        per_million_input=_per_million(
            input_share, usage.input_tokens, NO_INPUT_TOKENS, NO_INPUT_TOKENS_IN_WINDOW, missing
        ),
        per_million_output=_per_million(
            output_share, usage.output_tokens, NO_OUTPUT_TOKENS, NO_OUTPUT_TOKENS_IN_WINDOW, missing
        ),
        gpu_cost=gpu_cost,
        replica_cost=replica_cost,
        energy_cost=energy_cost,
        utilisation=utilisation,
    )


def _cost_of(usage: Usage, prices: Prices, revenue: Decimal | None) -> CostBreakdown:
    missing = _Missing()
    window = usage.window_seconds
    n = usage.requests
    if n is None:
        missing.add(NO_REQUESTS)
    elif n == 0:
        missing.add(NO_FINISHED_IN_WINDOW)
    n_ok = _delivered(usage, missing)

    failed = failure_rate = None
    if n is not None and usage.delivered is not None:
        # Success and finish counters are scraped separately; a race must not yield negative failures.
        failed = max(0.0, n - usage.delivered)
        failure_rate = failed / n if n > 0 else None

    compute = (
        _api_compute(usage, prices, missing)
        if prices.mode == "api"
        else _provisioned_compute(usage, prices, missing)
    )
    utilisation = compute.utilisation
    idle_fraction = idle_cost = busy_per_request = None
    if utilisation is not None:
        idle_fraction = 1.0 - utilisation
        if compute.gpu_cost is not None:
            idle_cost = money(compute.gpu_cost * _d(idle_fraction))
        if usage.busy_gpu_seconds is not None and n_ok is not None:
            busy_per_request = usage.busy_gpu_seconds / n_ok

    supporting_cost = _supporting_cost(usage, prices, missing)
    total_cost = None
    if compute.compute_cost is not None and supporting_cost is not None:
        total_cost = _tidy(compute.compute_cost + supporting_cost)
    cost_per_request = None
    if total_cost is not None and n_ok is not None:
        cost_per_request = money(total_cost / _d(n_ok))
    hourly_cost = None if total_cost is None else money(total_cost * SECONDS_PER_HOUR / _d(window))

    margin_per_request = margin = None
    if revenue is not None and cost_per_request is not None:
        margin_per_request = _tidy(revenue - cost_per_request)
        if revenue > 0:
            margin = float(margin_per_request / revenue)

    share = compute.share
    return CostBreakdown(
        mode=prices.mode,
        window_seconds=window,
        requests=n,
        delivered=usage.delivered,
        failed=failed,
        failure_rate=failure_rate,
        requests_per_second=None if n is None else n / window,
        gpus=None if usage.gpu_seconds is None else usage.gpu_seconds / window,
        replicas=None if usage.replica_seconds is None else usage.replica_seconds / window,
        gpu_cost=compute.gpu_cost,
        replica_cost=compute.replica_cost,
        energy_cost=compute.energy_cost,
        compute_cost=compute.compute_cost,
        supporting_cost=supporting_cost,
        total_cost=total_cost,
        cost_per_request=cost_per_request,
        hourly_cost=hourly_cost,
        utilisation=utilisation,
        idle_cost_fraction=idle_fraction,
        idle_cost=idle_cost,
        busy_gpu_seconds_per_request=busy_per_request,
        prefill_share=None if share is None else share[0],
        prefill_share_source=None if share is None else share[1],
        input_cost=compute.input_cost,
        output_cost=compute.output_cost,
        cost_per_million_input_tokens=compute.per_million_input,
        cost_per_million_output_tokens=compute.per_million_output,
        revenue_per_request=revenue,
        gross_margin_per_request=margin_per_request,
        gross_margin=margin,
        missing=tuple(missing.reasons),
        cached_input_fraction=_cached_fraction(usage),
    )


def _cached_fraction(usage: Usage) -> float | None:
    tin, cached = usage.input_tokens, usage.cached_input_tokens
    if tin is None or cached is None or tin <= 0:
        return None
    return min(1.0, cached / tin)


def project(
    revision: Usage,
    prices: Prices,
    *,
    fleet_utilisation: float | None,
    target_utilisation: float | None = None,
) -> Projection:
    """Projected cost per delivered request of a revision at U* = target utilisation, else the fleet's U."""
    if target_utilisation is not None and not 0 < target_utilisation <= 1:
        raise ValueError(f"target utilisation must be in (0, 1], got {target_utilisation!r}")
    with localcontext(_CONTEXT):
        return _project(revision, prices, fleet_utilisation, target_utilisation)


def _project(usage: Usage, prices: Prices, fleet: float | None, target: float | None) -> Projection:
    missing = _Missing()
    n_ok = _delivered(usage, missing)
    supporting = None
    if n_ok is not None:
        total_supporting = _supporting_cost(usage, prices, missing)
        if total_supporting is not None:
            # Charged on every finished request, carried by the delivered ones: the failure overhead.
            supporting = money(total_supporting / _d(n_ok))

    if prices.mode == "api":
        # No capacity to scale: what a hosted-API request costs is what it cost, tokens and all.
        observed = cost_of(usage, prices)
        return Projection(
            busy_gpu_seconds_per_request=None,
            utilisation=None,
            utilisation_source=None,
            provisioned_gpu_seconds_per_request=None,
            gpu_cost_per_request=None,
            replica_cost_per_request=None,
            energy_cost_per_request=None,
            supporting_cost_per_request=supporting,
            cost_per_request=observed.cost_per_request,
            missing=observed.missing,
        )

    utilisation: float | None
    source: UtilisationSource | None
    if target is not None:
        utilisation, source = target, "target"
    elif fleet is not None and fleet > 0:
        utilisation, source = min(1.0, fleet), "fleet"
    else:
        missing.add(NO_UTILISATION if fleet is None else ZERO_UTILISATION)
        utilisation, source = None, None

    busy_per_request = provisioned = None
    if usage.gpu_seconds is None:
        missing.add(NO_GPU_DATA)
    elif usage.gpu_seconds == 0:
        missing.add(NO_GPUS)
    elif usage.busy_gpu_seconds is None:
        missing.add(NO_BUSY)
    elif n_ok is not None:
        busy_per_request = usage.busy_gpu_seconds / n_ok
        if utilisation is not None:
            provisioned = busy_per_request / utilisation

    gpu = replica = None
    if prices.gpu_hourly is None and usage.gpu_seconds:
        missing.add(NO_GPU_PRICE)
    elif provisioned is not None and prices.gpu_hourly is not None:
        gpu = money(_d(provisioned) * prices.gpu_hourly / SECONDS_PER_HOUR)
    if provisioned is not None and usage.gpu_seconds:
        # Replicas come with GPUs in the revision's own ratio, so they scale with the same capacity.
        replicas = usage.replica_seconds
        held = None if replicas is None else provisioned * replicas / usage.gpu_seconds
        replica = _replica_cost(held, prices, missing)

    energy = None
    energy_total = _energy_cost(usage, prices, missing)
    if energy_total is not None and n_ok is not None:
        energy = money(energy_total / _d(n_ok))

    parts = [gpu, replica, supporting]
    if prices.energy_per_kwh is not None:
        parts.append(energy)
    cost = None
    if all(part is not None for part in parts):
        cost = _tidy(sum((part for part in parts if part is not None), Decimal(0)))
    return Projection(
        busy_gpu_seconds_per_request=busy_per_request,
        utilisation=utilisation,
        utilisation_source=source,
        provisioned_gpu_seconds_per_request=provisioned,
        gpu_cost_per_request=gpu,
        replica_cost_per_request=replica,
        energy_cost_per_request=energy,
        supporting_cost_per_request=supporting,
        cost_per_request=cost,
        missing=tuple(missing.reasons),
    )


def _fraction(value: float, name: str) -> float:
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def _non_negative(value: float, name: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def _optional_decimal(value: MoneyInput | None, name: str) -> Decimal | None:
    return None if value is None else as_decimal(value, name)


def estimate(
    *,
    gpu_hourly: MoneyInput,
    gpus: float,
    requests_per_second: float,
    capacity_per_gpu: float,
    failure_rate: float = 0.0,
    supporting_cost_per_request: MoneyInput = 0,
    per_replica_hourly: MoneyInput = 0,
    replicas: float | None = None,
    input_tokens: float | None = None,
    output_tokens: float | None = None,
    prefill_share: float | None = None,
    output_token_weight: float = DEFAULT_OUTPUT_TOKEN_WEIGHT,
    max_cost_per_request: MoneyInput | None = None,
    revenue_per_request: MoneyInput | None = None,
    target_gross_margin: MoneyInput | None = None,
    api_input_per_million: MoneyInput | None = None,
    api_output_per_million: MoneyInput | None = None,
) -> Estimate:
    """Cost one steady hour from plain numbers (tokens are per request; replicas default to one per GPU)."""
    if not math.isfinite(gpus) or gpus <= 0:
        raise ValueError(f"gpus must be > 0, got {gpus!r}")
    if not math.isfinite(capacity_per_gpu) or capacity_per_gpu <= 0:
        raise ValueError(f"capacity_per_gpu must be > 0 requests per second, got {capacity_per_gpu!r}")
    _non_negative(requests_per_second, "requests_per_second")
    _fraction(failure_rate, "failure_rate")
    if prefill_share is not None:
        _fraction(prefill_share, "prefill_share")
    for tokens, name in ((input_tokens, "input_tokens"), (output_tokens, "output_tokens")):
        if tokens is not None:
            _non_negative(tokens, name)
    replicas = gpus if replicas is None else _non_negative(replicas, "replicas")

    prices = Prices(
        gpu_hourly=as_decimal(gpu_hourly, "gpu_hourly"),
        per_replica_hourly=as_decimal(per_replica_hourly, "per_replica_hourly"),
        supporting_cost_per_request=as_decimal(supporting_cost_per_request, "supporting_cost_per_request"),
        output_token_weight=output_token_weight,
    )
    revenue = _optional_decimal(revenue_per_request, "revenue_per_request")
    objective = None
    if max_cost_per_request is not None or target_gross_margin is not None:
        objective = Objective(
            max_cost_per_request=_optional_decimal(max_cost_per_request, "max_cost_per_request"),
            revenue_per_request=revenue,
            target_gross_margin=_optional_decimal(target_gross_margin, "target_gross_margin"),
        )

    window = ESTIMATE_WINDOW_SECONDS
    capacity = gpus * capacity_per_gpu
    # Load beyond capacity is not served; capacity counts finished requests, since failures use GPUs too.
    served = min(requests_per_second, capacity)
    utilisation = served / capacity
    finished = served * window
    busy = utilisation * gpus * window
    usage = Usage(
        window_seconds=window,
        gpu_seconds=gpus * window,
        replica_seconds=replicas * window,
        requests=finished,
        delivered=finished * (1 - failure_rate),
        busy_gpu_seconds=busy,
        input_tokens=None if input_tokens is None else input_tokens * finished,
        output_tokens=None if output_tokens is None else output_tokens * finished,
        # A given share stands in for measured prefill/decode time: the busy time, split by it.
        prefill_seconds=None if prefill_share is None else prefill_share * busy,
        decode_seconds=None if prefill_share is None else (1 - prefill_share) * busy,
    )
    cost = cost_of(usage, prices, revenue)

    hosted_api = None
    if api_input_per_million is not None or api_output_per_million is not None:
        api_prices = Prices(
            supporting_cost_per_request=prices.supporting_cost_per_request,
            api_input_per_million=_optional_decimal(api_input_per_million, "api_input_per_million"),
            api_output_per_million=_optional_decimal(api_output_per_million, "api_output_per_million"),
        )
        hosted_api = cost_of(usage, api_prices, revenue)

    budget = None if objective is None else objective.budget
    within = None
    if budget is not None and cost.cost_per_request is not None:
        within = cost.cost_per_request <= budget
    return Estimate(
        usage=usage,
        cost=cost,
        capacity_requests_per_second=float(capacity),
        served_requests_per_second=float(served),
        saturated=requests_per_second > capacity,
        budget=budget,
        within_budget=within,
        hosted_api=hosted_api,
    )
