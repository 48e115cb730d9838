"""The price of one GPU a pod requests: a CostSLO's own `gpuHourly`, else the cluster price catalog.

The catalog is YAML, the text a ConfigMap carries; every price is per hour:

    gpuProducts:                      # by the node label nvidia.com/gpu.product
      NVIDIA-H100-80GB-HBM3: "3.00"   # one whole GPU
    instanceTypes:                    # by the node label node.kubernetes.io/instance-type
      p5.48xlarge: "98.32"            # the whole node, shared by its nvidia.com/gpu.count GPUs
    migSlices:                        # optional: compute slices of a whole GPU (default 7; A30: 4)
      NVIDIA-A30: 4

Resolution, first match wins:
1. `spec.pricing.gpuHourly` of the CostSLO, as given: it is the price of one GPU the pod requests.
2. `instanceTypes[instance-type]` / `nvidia.com/gpu.count`. Under the MIG single strategy GPU feature
   discovery counts MIG devices in `gpu.count`, so the division already yields the price of one slice.
3. `gpuProducts[gpu.product]`, trying the label as is, then without `-SHARED`, then without `-MIG-<profile>`.
   A key prices the device it names: a `-MIG-1g.10gb` key one such slice, a `-SHARED` key one share.
   What the matched key does not encode is applied from the labels.

Adjustments:
- MIG: a profile `<g>g.<mem>gb` (from the `-MIG-` product suffix, or from the pod's `nvidia.com/mig-<profile>`
  resource under the mixed strategy) is priced at g / S of the whole GPU, where S is its number of compute
  slices: 7 for A100, H100, H200 and B200, 4 for A30, or `migSlices` in the catalog. A compute-instance
  profile `<c>c.<g>g.<mem>gb` is priced at c / S. A slice carries its share of the GPU's compute, not of
  its memory, because compute is what bounds the requests it serves.
- Time-slicing and MPS: GPU feature discovery appends `-SHARED` to the product and sets
  `nvidia.com/gpu.replicas`; the price of a whole GPU is divided by that count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from costslo.economics import money

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_REPLICAS_LABEL = "nvidia.com/gpu.replicas"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"

SPEC_SOURCE = "spec:gpuHourly"
SHARED_SUFFIX = "-SHARED"
DEFAULT_MIG_SLICES = 7
# GPUs whose MIG geometry has other than seven compute slices; matched as a dash-separated token.
_MIG_SLICES_BY_FAMILY = {"A30": 4}

_MIG_PRODUCT = re.compile(r"^(?P<base>.+)-MIG-(?P<profile>[^-]+)$")
_MIG_PROFILE = re.compile(r"^(?:(?P<compute>\d+)c\.)?(?P<slices>\d+)g\.\d+gb(?:\+[a-z]+)?$")

Price = Annotated[Decimal, Field(ge=0)]


class PricingError(ValueError):
    """No GPU price can be found for a node, or its labels contradict each other."""


class CatalogError(ValueError):
    """The price catalog is not valid YAML or does not have the expected shape."""


class PriceCatalog(BaseModel):
    """Hourly prices by GPU product and by instance type."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    gpu_products: dict[str, Price] = Field(default_factory=dict, alias="gpuProducts")
    instance_types: dict[str, Price] = Field(default_factory=dict, alias="instanceTypes")
    mig_slices: dict[str, Annotated[int, Field(ge=1, le=8)]] = Field(default_factory=dict, alias="migSlices")


@dataclass(frozen=True)
class GpuPrice:
    """The hourly price of one requested GPU, and where it came from."""

    hourly: Decimal
    source: str


def load_catalog(text: str, origin: str = "price catalog") -> PriceCatalog:
    """Parse and validate a price catalog from YAML text; `origin` names it in error messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{origin} is not valid YAML: {' '.join(str(exc).split())}") from None
    if raw is None:
        return PriceCatalog()
    if not isinstance(raw, dict):
        raise CatalogError(
            f"{origin} must be a mapping with gpuProducts, instanceTypes and/or migSlices, "
            f"not a {type(raw).__name__}"
        )
    try:
        return PriceCatalog.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(error) for error in exc.errors())
        raise CatalogError(f"{origin} is invalid: {problems}") from None


def _problem(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key (expected gpuProducts, instanceTypes or migSlices)"
    return f"{where}: {error['msg']} (got {error['input']!r})"


def read_catalog(path: Path) -> PriceCatalog:
    """Load a price catalog from a file, such as a mounted ConfigMap key."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read price catalog {path}: {exc.strerror}") from None
    return load_catalog(text, origin=f"price catalog {path}")


def gpu_price(
    node_labels: Mapping[str, str],
    *,
    slo_gpu_hourly: Decimal | None = None,
    catalog: PriceCatalog | None = None,
    mig_profile: str | None = None,
) -> GpuPrice:
    """The hourly price of one GPU a pod requests on a node with these labels; PricingError if none."""
    if slo_gpu_hourly is not None:
        if not slo_gpu_hourly.is_finite() or slo_gpu_hourly < 0:
            raise PricingError(f"spec.pricing.gpuHourly must be an amount >= 0, got {slo_gpu_hourly}")
        return GpuPrice(slo_gpu_hourly, SPEC_SOURCE)
    if catalog is None:
        raise PricingError(
            "no GPU price: set spec.pricing.gpuHourly on the CostSLO or configure a cluster price catalog"
        )
    profile = None if mig_profile is None else _profile_name(mig_profile)
    found = _by_instance_type(node_labels, catalog, profile)
    if found is None:
        found = _by_product(node_labels, catalog, profile)
    if found is None:
        raise PricingError(_no_match(node_labels, catalog))
    return found


def weighted_gpu_price(parts: Iterable[tuple[GpuPrice, float]]) -> GpuPrice:
    """One price for GPUs priced differently, weighted by the GPU-seconds each price covers."""
    weights: dict[GpuPrice, float] = {}
    for price, gpu_seconds in parts:
        if gpu_seconds < 0:
            raise ValueError(f"GPU-seconds must be >= 0, got {gpu_seconds!r}")
        weights[price] = weights.get(price, 0.0) + gpu_seconds
    used = {price: seconds for price, seconds in weights.items() if seconds > 0}
    if not used:
        raise ValueError("no GPU-seconds to weight the prices by")
    if len(used) == 1:
        return next(iter(used))
    total = sum(used.values())
    hourly = money(
        sum((Decimal(seconds) * price.hourly for price, seconds in used.items()), Decimal(0)) / Decimal(total)
    )
    ordered = sorted(used.items(), key=lambda item: -item[1])
    source = "weighted: " + " + ".join(f"{seconds / total:.0%} {price.source}" for price, seconds in ordered)
    return GpuPrice(hourly, source)


@dataclass(frozen=True)
class _Product:
    label: str
    base: str
    mig_profile: str | None
    shared: bool


def _parse_product(label: str) -> _Product:
    core = label.removesuffix(SHARED_SUFFIX)
    match = _MIG_PRODUCT.match(core)
    if match is None:
        return _Product(label, core, None, core != label)
    return _Product(label, match["base"], match["profile"], core != label)


def _profile_name(profile: str) -> str:
    """Accept `1g.10gb`, `mig-1g.10gb` or the resource name `nvidia.com/mig-1g.10gb`."""
    return profile.removeprefix("nvidia.com/").removeprefix("mig-")


def _mig_slices(base: str, catalog: PriceCatalog) -> int:
    if base in catalog.mig_slices:
        return catalog.mig_slices[base]
    tokens = set(base.split("-"))
    for family, slices in _MIG_SLICES_BY_FAMILY.items():
        if family in tokens:
            return slices
    return DEFAULT_MIG_SLICES


def _mig_fraction(base: str, profile: str, catalog: PriceCatalog) -> tuple[int, int]:
    match = _MIG_PROFILE.match(profile)
    if match is None:
        raise PricingError(
            f"MIG profile {profile!r} is not of the form <g>g.<memory>gb (or <c>c.<g>g.<memory>gb), "
            "so its share of the GPU is unknown; price it directly in the catalog as "
            f"gpuProducts.{base}-MIG-{profile}"
        )
    used = int(match["compute"] or match["slices"])
    whole = _mig_slices(base, catalog)
    if not 1 <= used <= whole:
        raise PricingError(
            f"MIG profile {profile!r} uses {used} compute slices but {base} has {whole}; "
            f"set migSlices.{base} in the price catalog if that count is wrong"
        )
    return used, whole


def _positive_int_label(labels: Mapping[str, str], name: str) -> int | None:
    value = labels.get(name)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise PricingError(f"node label {name}={value!r} is not a positive integer; fix the node's labels")
    return number


def _adjust(hourly: Decimal, source: str, steps: list[tuple[int, int, str]]) -> GpuPrice:
    """Apply price * numerator / denominator steps, each recorded in the source."""
    notes = [source]
    for numerator, denominator, note in steps:
        if numerator == denominator:
            continue
        hourly = hourly * numerator / denominator
        notes.append(note)
    return GpuPrice(money(hourly), "; ".join(notes))


def _sharing_step(labels: Mapping[str, str], product: _Product | None) -> tuple[int, int, str] | None:
    replicas = _positive_int_label(labels, GPU_REPLICAS_LABEL)
    if replicas is None:
        if product is not None and product.shared:
            raise PricingError(
                f"node label {GPU_PRODUCT_LABEL}={product.label} says the GPU is shared, but the node has no "
                f"{GPU_REPLICAS_LABEL} label to say by how many; check GPU feature discovery on the node "
                f"or price the share directly as gpuProducts.{product.label}"
            )
        return None
    return 1, replicas, f"shared {replicas} ways ({GPU_REPLICAS_LABEL})"


def _by_instance_type(
    labels: Mapping[str, str], catalog: PriceCatalog, mig_profile: str | None
) -> GpuPrice | None:
    instance_type = labels.get(INSTANCE_TYPE_LABEL)
    if instance_type is None or instance_type not in catalog.instance_types:
        return None
    count = _positive_int_label(labels, GPU_COUNT_LABEL)
    if count is None:
        # Without the count the node price cannot be split; the product price may still apply.
        return None
    product_label = labels.get(GPU_PRODUCT_LABEL)
    product = None if product_label is None else _parse_product(product_label)
    steps = [(1, count, f"/{count} GPUs ({GPU_COUNT_LABEL})")]
    # Under the MIG single strategy gpu.count already counts slices; only a mixed-strategy profile divides.
    if mig_profile is not None and (product is None or product.mig_profile is None):
        used, whole = _mig_fraction("" if product is None else product.base, mig_profile, catalog)
        steps.append((used, whole, f"MIG {mig_profile} = {used}/{whole} GPU"))
    sharing = _sharing_step(labels, product)
    if sharing is not None:
        steps.append(sharing)
    source = f"catalog:instance-type={instance_type}"
    return _adjust(catalog.instance_types[instance_type], source, steps)


def _by_product(labels: Mapping[str, str], catalog: PriceCatalog, mig_profile: str | None) -> GpuPrice | None:
    label = labels.get(GPU_PRODUCT_LABEL)
    if label is None:
        return None
    product = _parse_product(label)
    profile = product.mig_profile or mig_profile
    # Most specific key first: the label as is, then without the share suffix, then the whole GPU.
    unshared = label.removesuffix(SHARED_SUFFIX)
    candidates = [(label, product.mig_profile is not None, product.shared)]
    if unshared != label:
        candidates.append((unshared, product.mig_profile is not None, False))
    if product.base != unshared:
        candidates.append((product.base, False, False))
    for key, encodes_mig, encodes_share in candidates:
        if key not in catalog.gpu_products:
            continue
        steps: list[tuple[int, int, str]] = []
        if profile is not None and not encodes_mig:
            used, whole = _mig_fraction(product.base, profile, catalog)
            steps.append((used, whole, f"MIG {profile} = {used}/{whole} GPU"))
        if not encodes_share:
            sharing = _sharing_step(labels, product)
            if sharing is not None:
                steps.append(sharing)
        return _adjust(catalog.gpu_products[key], f"catalog:gpu.product={key}", steps)
    return None


def _no_match(labels: Mapping[str, str], catalog: PriceCatalog) -> str:
    product = labels.get(GPU_PRODUCT_LABEL)
    instance_type = labels.get(INSTANCE_TYPE_LABEL)
    if product is None and instance_type is None:
        return (
            f"no GPU price: the node has neither a {GPU_PRODUCT_LABEL} nor a {INSTANCE_TYPE_LABEL} label "
            "(is GPU feature discovery running?); set spec.pricing.gpuHourly on the CostSLO"
        )
    seen = [
        f"{name}={value}"
        for name, value in labels.items()
        if name in (GPU_PRODUCT_LABEL, INSTANCE_TYPE_LABEL)
    ]
    fixes: list[str] = []
    if instance_type in catalog.instance_types:
        fixes.append(
            f"a {GPU_COUNT_LABEL} label to the node (instanceTypes.{instance_type} prices the whole node)"
        )
    if product is not None:
        fixes.append(f"gpuProducts.{_parse_product(product).base} to the price catalog")
    if instance_type is not None and instance_type not in catalog.instance_types:
        fixes.append(f"instanceTypes.{instance_type} to the price catalog")
    return (
        f"no GPU price for a node with {' and '.join(seen)}: add {' or '.join(fixes)}, "
        "or set spec.pricing.gpuHourly on the CostSLO"
    )
