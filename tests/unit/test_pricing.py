"""The price catalog: which price a node's labels select, its adjustments, and catalog validation."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from costslo.economics import money
from costslo.pricing import (
    GPU_COUNT_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_REPLICAS_LABEL,
    INSTANCE_TYPE_LABEL,
    SPEC_SOURCE,
    CatalogError,
    GpuPrice,
    PriceCatalog,
    PricingError,
    gpu_price,
    load_catalog,
    read_catalog,
    weighted_gpu_price,
)

pytestmark = pytest.mark.unit

D = Decimal

CATALOG_TEXT = """
gpuProducts:
  NVIDIA-H100-80GB-HBM3: "3.00"
  NVIDIA-A100-SXM4-40GB: 1.40
  NVIDIA-A100-SXM4-40GB-MIG-2g.10gb: "0.33"
  NVIDIA-A30: "0.80"
  Tesla-T4: "0.35"
  Tesla-T4-SHARED: "0.10"
instanceTypes:
  p5.48xlarge: "98.32"
  p4d.24xlarge: "32.77"
migSlices:
  NVIDIA-GH-TEST: 4
"""
CATALOG = load_catalog(CATALOG_TEXT)

H100 = {GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}


def price(labels: dict[str, str], **kwargs: object) -> GpuPrice:
    return gpu_price(labels, catalog=CATALOG, **kwargs)  # type: ignore[arg-type]


# --- resolution order ---------------------------------------------------------------------------------


def test_slo_price_wins_over_the_catalog() -> None:
    found = gpu_price(H100, slo_gpu_hourly=D("2.75"), catalog=CATALOG)
    assert found == GpuPrice(D("2.75"), SPEC_SOURCE)
    assert found.source == "spec:gpuHourly"


def test_slo_price_needs_no_catalog_and_no_labels() -> None:
    assert gpu_price({}, slo_gpu_hourly=D("1.5")).hourly == D("1.5")


def test_negative_slo_price_is_rejected() -> None:
    with pytest.raises(PricingError, match="gpuHourly must be an amount >= 0"):
        gpu_price(H100, slo_gpu_hourly=D("-1"))


def test_no_price_at_all_says_what_to_set() -> None:
    with pytest.raises(
        PricingError, match=r"set spec\.pricing\.gpuHourly .* or configure a cluster price catalog"
    ):
        gpu_price(H100)


def test_gpu_product_from_the_catalog() -> None:
    assert price(H100) == GpuPrice(D("3.00"), "catalog:gpu.product=NVIDIA-H100-80GB-HBM3")


def test_instance_type_is_divided_by_gpu_count_and_wins_over_product() -> None:
    labels = {**H100, INSTANCE_TYPE_LABEL: "p5.48xlarge", GPU_COUNT_LABEL: "8"}
    found = price(labels)
    assert found.hourly == D("12.29")
    assert found.source == "catalog:instance-type=p5.48xlarge; /8 GPUs (nvidia.com/gpu.count)"


def test_instance_type_without_gpu_count_falls_back_to_product() -> None:
    found = price({**H100, INSTANCE_TYPE_LABEL: "p5.48xlarge"})
    assert found.source == "catalog:gpu.product=NVIDIA-H100-80GB-HBM3"


def test_instance_type_without_gpu_count_or_product_says_to_add_the_label() -> None:
    with pytest.raises(PricingError, match=r"add a nvidia\.com/gpu\.count label to the node"):
        price({INSTANCE_TYPE_LABEL: "p5.48xlarge"})


def test_unknown_instance_type_falls_back_to_product() -> None:
    found = price({**H100, INSTANCE_TYPE_LABEL: "m7i.large", GPU_COUNT_LABEL: "1"})
    assert found.hourly == D("3.00")


def test_unpriced_node_names_the_catalog_keys_to_add() -> None:
    labels = {GPU_PRODUCT_LABEL: "NVIDIA-L4-MIG-1g.6gb", INSTANCE_TYPE_LABEL: "g6.xlarge"}
    with pytest.raises(PricingError) as caught:
        price(labels)
    message = str(caught.value)
    assert "nvidia.com/gpu.product=NVIDIA-L4-MIG-1g.6gb" in message
    assert "gpuProducts.NVIDIA-L4 to the price catalog" in message
    assert "instanceTypes.g6.xlarge to the price catalog" in message
    assert "spec.pricing.gpuHourly" in message


def test_node_without_gpu_labels_points_at_feature_discovery() -> None:
    with pytest.raises(PricingError, match="is GPU feature discovery running"):
        price({"kubernetes.io/hostname": "n1"})


def test_empty_catalog_prices_nothing() -> None:
    with pytest.raises(PricingError, match=r"gpuProducts\.NVIDIA-H100-80GB-HBM3"):
        gpu_price(H100, catalog=PriceCatalog())


# --- MIG ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "hourly", "note"),
    [
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", D("0.2"), "MIG 1g.5gb = 1/7 GPU"),
        ("NVIDIA-A100-SXM4-40GB-MIG-3g.20gb", D("0.6"), "MIG 3g.20gb = 3/7 GPU"),
        ("NVIDIA-A100-SXM4-40GB-MIG-7g.40gb", D("1.4"), None),
        ("NVIDIA-A100-SXM4-40GB-MIG-1g.10gb+me", D("0.2"), "MIG 1g.10gb+me = 1/7 GPU"),
        ("NVIDIA-A100-SXM4-40GB-MIG-1c.3g.20gb", D("0.2"), "MIG 1c.3g.20gb = 1/7 GPU"),
        ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", money(D("3") / 7), "MIG 1g.10gb = 1/7 GPU"),
        ("NVIDIA-A30-MIG-2g.12gb", D("0.4"), "MIG 2g.12gb = 2/4 GPU"),
    ],
)
def test_mig_slice_is_priced_as_its_share_of_compute_slices(
    product: str, hourly: Decimal, note: str | None
) -> None:
    found = price({GPU_PRODUCT_LABEL: product, GPU_COUNT_LABEL: "56"})
    assert found.hourly == hourly
    base = product.split("-MIG-")[0]
    assert found.source.startswith(f"catalog:gpu.product={base}")
    if note is None:
        assert found.source == f"catalog:gpu.product={base}"
    else:
        assert found.source.endswith(note)


def test_a_priced_mig_slice_is_taken_as_listed() -> None:
    found = price({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-2g.10gb"})
    assert found == GpuPrice(D("0.33"), "catalog:gpu.product=NVIDIA-A100-SXM4-40GB-MIG-2g.10gb")


def test_mig_slices_per_gpu_can_be_set_in_the_catalog() -> None:
    catalog = load_catalog('gpuProducts: {NVIDIA-GH-TEST: "2"}\nmigSlices: {NVIDIA-GH-TEST: 4}')
    found = gpu_price({GPU_PRODUCT_LABEL: "NVIDIA-GH-TEST-MIG-1g.24gb"}, catalog=catalog)
    assert found.hourly == D("0.5")


def test_mig_single_strategy_instance_price_is_already_per_slice() -> None:
    # GPU feature discovery counts MIG devices in gpu.count: 8 GPUs * 7 slices.
    labels = {
        GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb",
        INSTANCE_TYPE_LABEL: "p4d.24xlarge",
        GPU_COUNT_LABEL: "56",
    }
    found = price(labels)
    assert found.hourly == money(D("32.77") / 56)
    assert "MIG" not in found.source


@pytest.mark.parametrize("profile", ["3g.20gb", "mig-3g.20gb", "nvidia.com/mig-3g.20gb"])
def test_mig_mixed_strategy_takes_the_profile_from_the_pod(profile: str) -> None:
    found = price({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB"}, mig_profile=profile)
    assert found.hourly == D("0.6")
    assert found.source.endswith("MIG 3g.20gb = 3/7 GPU")


def test_mig_mixed_strategy_with_instance_price() -> None:
    labels = {
        GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB",
        INSTANCE_TYPE_LABEL: "p4d.24xlarge",
        GPU_COUNT_LABEL: "8",
    }
    found = price(labels, mig_profile="nvidia.com/mig-1g.5gb")
    assert found.hourly == money(D("32.77") / 8 / 7)
    assert found.source.endswith("/8 GPUs (nvidia.com/gpu.count); MIG 1g.5gb = 1/7 GPU")


def test_unreadable_mig_profile_is_an_error() -> None:
    with pytest.raises(PricingError, match=r"MIG profile 'weird' is not of the form"):
        price({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-weird"})


def test_mig_profile_larger_than_the_gpu_is_an_error() -> None:
    with pytest.raises(PricingError, match="uses 7 compute slices but NVIDIA-A30 has 4"):
        price({GPU_PRODUCT_LABEL: "NVIDIA-A30-MIG-7g.24gb"})


# --- time-slicing -------------------------------------------------------------------------------------


def test_shared_gpu_is_divided_by_replicas() -> None:
    found = price({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-SHARED", GPU_REPLICAS_LABEL: "4"})
    assert found.hourly == D("0.35")
    assert (
        found.source == "catalog:gpu.product=NVIDIA-A100-SXM4-40GB; shared 4 ways (nvidia.com/gpu.replicas)"
    )


def test_a_priced_share_is_taken_as_listed() -> None:
    found = price({GPU_PRODUCT_LABEL: "Tesla-T4-SHARED", GPU_REPLICAS_LABEL: "4"})
    assert found == GpuPrice(D("0.10"), "catalog:gpu.product=Tesla-T4-SHARED")


def test_replicas_divide_even_without_the_shared_suffix() -> None:
    assert price({GPU_PRODUCT_LABEL: "Tesla-T4", GPU_REPLICAS_LABEL: "5"}).hourly == D("0.07")


def test_one_replica_is_no_sharing() -> None:
    assert price({**H100, GPU_REPLICAS_LABEL: "1"}) == price(H100)


def test_shared_mig_slice_applies_both() -> None:
    labels = {GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb-SHARED", GPU_REPLICAS_LABEL: "2"}
    found = price(labels)
    assert found.hourly == D("0.1")
    assert found.source.endswith("MIG 1g.5gb = 1/7 GPU; shared 2 ways (nvidia.com/gpu.replicas)")


def test_shared_instance_gpu_is_divided_by_count_and_replicas() -> None:
    labels = {**H100, INSTANCE_TYPE_LABEL: "p5.48xlarge", GPU_COUNT_LABEL: "8", GPU_REPLICAS_LABEL: "2"}
    assert price(labels).hourly == D("6.145")


def test_shared_suffix_without_replicas_is_an_error() -> None:
    with pytest.raises(
        PricingError, match=r"says the GPU is shared, but the node has no nvidia\.com/gpu\.replicas"
    ):
        price({GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-40GB-SHARED"})


@pytest.mark.parametrize(
    ("label", "value"), [(GPU_REPLICAS_LABEL, "0"), (GPU_REPLICAS_LABEL, "two"), (GPU_COUNT_LABEL, "-8")]
)
def test_nonsense_count_labels_are_errors(label: str, value: str) -> None:
    labels = {**H100, INSTANCE_TYPE_LABEL: "p5.48xlarge", label: value}
    with pytest.raises(
        PricingError, match=re.escape(f"node label {label}='{value}' is not a positive integer")
    ):
        price(labels)


# --- catalog loading ----------------------------------------------------------------------------------


def test_catalog_accepts_strings_and_numbers() -> None:
    assert CATALOG.gpu_products["NVIDIA-H100-80GB-HBM3"] == D("3.00")
    assert CATALOG.gpu_products["NVIDIA-A100-SXM4-40GB"] == D("1.40")
    assert CATALOG.instance_types["p5.48xlarge"] == D("98.32")
    assert CATALOG.mig_slices == {"NVIDIA-GH-TEST": 4}


@pytest.mark.parametrize("text", ["", "# nothing priced yet\n"])
def test_empty_catalog_is_valid(text: str) -> None:
    assert load_catalog(text) == PriceCatalog()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpuProducts: [", "is not valid YAML: while parsing"),
        ("- 3.00", "must be a mapping with gpuProducts, instanceTypes and/or migSlices, not a list"),
        ("gpuProduct: {}", "gpuProduct: unknown key"),
        ("gpuProducts: {NVIDIA-L4: -1}", "gpuProducts.NVIDIA-L4: Input should be greater than or equal to 0"),
        (
            "gpuProducts: {NVIDIA-L4: cheap}",
            "gpuProducts.NVIDIA-L4: Input should be a valid decimal .got 'cheap'.",
        ),
        ("gpuProducts: {NVIDIA-L4: .nan}", "gpuProducts.NVIDIA-L4: Input should be a finite number"),
        ("instanceTypes: 3", "instanceTypes: Input should be a valid dictionary"),
        ("migSlices: {X: 0}", "migSlices.X: Input should be greater than or equal to 1"),
    ],
)
def test_malformed_catalog_is_explained(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as caught:
        load_catalog(text, origin="ConfigMap costslo/prices")
    assert str(caught.value).startswith("ConfigMap costslo/prices ")
    assert "\n" not in str(caught.value)


def test_read_catalog_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(CATALOG_TEXT)
    assert read_catalog(path) == CATALOG
    path.write_text("gpuProducts: {A: -1}")
    with pytest.raises(CatalogError, match=re.escape(f"price catalog {path} is invalid")):
        read_catalog(path)


def test_missing_catalog_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"cannot read price catalog .*absent\.yaml"):
        read_catalog(tmp_path / "absent.yaml")


# --- prices that differ across nodes ------------------------------------------------------------------


def test_weighted_price_by_gpu_seconds() -> None:
    h100 = GpuPrice(D("3"), "catalog:gpu.product=H100")
    a100 = GpuPrice(D("1"), "catalog:gpu.product=A100")
    found = weighted_gpu_price([(h100, 3 * 3600.0), (a100, 3600.0), (h100, 0.0)])
    assert found.hourly == D("2.5")
    assert found.source == "weighted: 75% catalog:gpu.product=H100 + 25% catalog:gpu.product=A100"


def test_weighted_price_of_one_price_is_that_price() -> None:
    h100 = GpuPrice(D("3"), "spec:gpuHourly")
    other = GpuPrice(D("9"), "catalog:gpu.product=B200")
    assert weighted_gpu_price([(h100, 10.0), (h100, 20.0), (other, 0.0)]) is h100


def test_weighted_price_needs_gpu_seconds() -> None:
    with pytest.raises(ValueError, match="no GPU-seconds"):
        weighted_gpu_price([(GpuPrice(D("3"), "x"), 0.0)])
    with pytest.raises(ValueError, match=">= 0"):
        weighted_gpu_price([(GpuPrice(D("3"), "x"), -1.0)])


# --- properties ---------------------------------------------------------------------------------------

twelve_digit_amounts = st.builds(
    lambda coefficient, exponent: Decimal(coefficient).scaleb(exponent),
    st.integers(1, 10**12 - 1),
    st.integers(-8, 2),
)


@given(twelve_digit_amounts)
def test_catalog_prices_round_trip_exactly(amount: Decimal) -> None:
    catalog = load_catalog(f'gpuProducts:\n  NVIDIA-H100-80GB-HBM3: "{amount}"\n')
    assert gpu_price(H100, catalog=catalog).hourly == amount
    assert gpu_price(H100, slo_gpu_hourly=amount, catalog=catalog).hourly is amount


@given(st.decimals(min_value=D("0.01"), max_value=D("100"), places=2), st.integers(1, 64))
def test_replicas_share_the_whole_price(hourly: Decimal, replicas: int) -> None:
    catalog = PriceCatalog(gpu_products={"Tesla-T4": hourly})
    share = gpu_price(
        {GPU_PRODUCT_LABEL: "Tesla-T4-SHARED", GPU_REPLICAS_LABEL: str(replicas)}, catalog=catalog
    )
    assert abs(share.hourly * replicas - hourly) <= hourly * D("1e-11")


@given(st.decimals(min_value=D("0.01"), max_value=D("100"), places=2), st.integers(1, 6))
def test_bigger_mig_slices_cost_more_and_seven_cost_the_gpu(hourly: Decimal, slices: int) -> None:
    catalog = PriceCatalog(gpu_products={"NVIDIA-H100-80GB-HBM3": hourly})

    def slice_price(g: int) -> Decimal:
        return gpu_price(
            {GPU_PRODUCT_LABEL: f"NVIDIA-H100-80GB-HBM3-MIG-{g}g.{10 * g}gb"}, catalog=catalog
        ).hourly

    assert slice_price(slices) < slice_price(slices + 1)
    assert slice_price(7) == hourly


@given(st.decimals(min_value=D("1"), max_value=D("500"), places=2), st.integers(1, 16))
def test_instance_price_is_shared_by_its_gpus(hourly: Decimal, count: int) -> None:
    catalog = PriceCatalog(instance_types={"x": hourly})
    per_gpu = gpu_price({INSTANCE_TYPE_LABEL: "x", GPU_COUNT_LABEL: str(count)}, catalog=catalog)
    assert abs(per_gpu.hourly * count - hourly) <= hourly * D("1e-11")
