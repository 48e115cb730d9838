"""dcgm-exporter's series, names, types, units and labels: written by the GPU exporter from NVML readings
and by the lab's simulator from its model, so every runtime preset reads either without a change.

A reading leaves out what its GPU could not tell (a failed NVML call, utilisation on a MIG device): the
series is then absent for that GPU, as with dcgm-exporter, rather than a made-up zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from costslo.exposition import Family, labels_of


@dataclass(frozen=True)
class Mig:
    """A MIG device's GPU instance, as dcgm-exporter labels it."""

    instance_id: int  # GPU_I_ID
    profile: str  # GPU_I_PROFILE, e.g. "1g.10gb"


@dataclass(frozen=True)
class GpuReading:
    """One GPU (or MIG device) as dcgm-exporter reads it; None where the value could not be read."""

    index: int  # the GPU's index (a MIG device carries its parent's)
    uuid: str  # the GPU's UUID (a MIG device carries its parent's)
    model_name: str
    hostname: str
    utilisation_percent: float | None  # DCGM_FI_DEV_GPU_UTIL: share of time a kernel ran, 0..100
    engine_active: float | None  # DCGM_FI_PROF_GR_ENGINE_ACTIVE: graphics engine busy, 0..1
    memory_used_mib: float | None
    memory_free_mib: float | None
    power_watts: float | None
    energy_mj: float | None  # since the driver loaded
    pod: Mapping[str, str] = field(default_factory=dict)  # namespace/pod/container; empty when none
    pci_bus_id: str | None = None
    minor: int | None = None  # /dev/nvidiaN
    mig: Mig | None = None

    @classmethod
    def from_busy(
        cls,
        index: int,
        uuid: str,
        model_name: str,
        hostname: str,
        busy: float,
        memory_used_mib: float,
        memory_total_mib: float,
        power_watts: float,
        energy_mj: float,
        pod: Mapping[str, str],
    ) -> GpuReading:
        """A modelled GPU, whose one busy fraction stands for both utilisation series."""
        return cls(
            index=index,
            uuid=uuid,
            model_name=model_name,
            hostname=hostname,
            utilisation_percent=round(100 * busy),
            engine_active=busy,
            memory_used_mib=round(memory_used_mib),
            memory_free_mib=round(memory_total_mib - memory_used_mib),
            power_watts=power_watts,
            energy_mj=round(energy_mj),
            pod=pod,
        )


Reader = Callable[[GpuReading], float | None]
DCGM_SERIES: tuple[tuple[str, str, str, Reader], ...] = (
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", lambda g: g.utilisation_percent),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "gauge",
        "Ratio of time the graphics engine is active.",
        lambda g: g.engine_active,
    ),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", lambda g: g.memory_used_mib),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", lambda g: g.memory_free_mib),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda g: g.power_watts),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        lambda g: g.energy_mj,
    ),
)


def dcgm_labels(g: GpuReading) -> dict[str, str]:
    labels = {
        "gpu": str(g.index),
        "UUID": g.uuid,
        "pci_bus_id": g.pci_bus_id or f"00000000:{0x18 + g.index:02X}:00.0",
        "device": f"nvidia{g.index if g.minor is None else g.minor}",
        "modelName": g.model_name,
        "Hostname": g.hostname,
        **g.pod,
    }
    if g.mig is not None:
        labels.update(GPU_I_ID=str(g.mig.instance_id), GPU_I_PROFILE=g.mig.profile)
    return labels


def dcgm_families(gpus: list[GpuReading]) -> list[Family]:
    """dcgm-exporter's series for these GPUs, with Kubernetes pod mapping on."""
    families = [Family(name, kind, help_) for name, kind, help_, _ in DCGM_SERIES]
    for g in gpus:
        labels = labels_of(dcgm_labels(g))
        for fam, (_, _, _, read) in zip(families, DCGM_SERIES, strict=True):
            value = read(g)
            if value is not None:
                fam.values[labels] = float(value)
    return families
