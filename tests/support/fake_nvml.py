"""A stand-in for NVML at the `costslo.gpu.nvml.Nvml` boundary: fixed devices and samples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from costslo.gpu.nvml import Device, Sample


@dataclass
class FakeNvml:
    gpus: Sequence[Device]
    samples: Mapping[tuple[int, int | None], Sample] = field(default_factory=dict)
    closed: bool = False

    def devices(self) -> Sequence[Device]:
        return self.gpus

    def sample(self, device: Device) -> Sample:
        key = (device.index, device.mig.instance_id if device.mig else None)
        return self.samples.get(key, Sample(errors=("not found",)))

    def close(self) -> None:
        self.closed = True
