"""The one boundary to NVML: which GPUs (and MIG devices) a node has, and one sample of each.

Everything above this module works on the plain records below, so tests run the exporter and the profiler
against a fake `Nvml` and only this file touches pynvml (nvidia-ml-py). Each field is read on its own: a
call that fails leaves that field None and says why in `Sample.errors`, so one bad GPU (or one field a GPU
does not support) never blanks the node.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from costslo.gpu.dcgm import Mig

MIB = 1024 * 1024


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used on this machine at all (no driver, no library, no device access)."""


@dataclass(frozen=True)
class Device:
    """A GPU, or a MIG device on one (which keeps its parent's index and UUID, as dcgm-exporter does)."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str | None = None
    minor: int | None = None
    mig: Mig | None = None
    mig_enabled: bool = False  # a whole GPU whose work runs in its MIG devices


@dataclass(frozen=True)
class Process:
    pid: int
    used_memory_mib: float | None = None


@dataclass(frozen=True)
class Sample:
    """One reading of one device; None where NVML could not tell."""

    utilisation_percent: float | None = None
    engine_active: float | None = None  # 0..1, from GPM on Hopper and newer
    memory_used_mib: float | None = None
    memory_free_mib: float | None = None
    power_watts: float | None = None
    energy_mj: float | None = None
    processes: tuple[Process, ...] = ()
    errors: tuple[str, ...] = field(default=(), compare=False)


class Nvml(Protocol):
    def devices(self) -> Sequence[Device]: ...

    def sample(self, device: Device) -> Sample: ...

    def close(self) -> None: ...


def mig_profile(name: str) -> str:
    """'NVIDIA H100 80GB HBM3 MIG 1g.10gb' -> '1g.10gb' (the GPU instance profile dcgm-exporter reports)."""
    match = re.search(r"(\d+g\.\d+gb(?:\+me)?)\s*$", name)
    return match.group(1) if match else name


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class PynvmlBackend:
    """NVML through nvidia-ml-py."""

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise NvmlUnavailable(f"the nvidia-ml-py package is missing: {exc}") from None
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(
                f"NVML could not start ({exc}): is the NVIDIA driver installed on this node, and does the "
                "container see the GPUs (the nvidia runtime class, or NVIDIA_VISIBLE_DEVICES=all)?"
            ) from None
        self._handles: dict[tuple[int, int | None], Any] = {}
        self._gpm_previous: dict[tuple[int, int | None], Any] = {}
        self._gpm_unsupported: set[int] = set()  # GPUs (index) without GPM: asked once, not every scrape
        self._lock = threading.Lock()

    def close(self) -> None:
        for sample in self._gpm_previous.values():
            self._call(self._nvml.nvmlGpmSampleFree, sample)
        self._gpm_previous.clear()
        self._call(self._nvml.nvmlShutdown)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def devices(self) -> list[Device]:
        nv = self._nvml
        out: list[Device] = []
        self._handles.clear()
        for i in range(nv.nvmlDeviceGetCount()):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(nv.nvmlDeviceGetUUID(h))
                name = _text(nv.nvmlDeviceGetName(h))
            except nv.NVMLError:
                continue  # a GPU NVML cannot even name is left out; the others are read
            pci = self._call(nv.nvmlDeviceGetPciInfo, h)
            minor = self._call(nv.nvmlDeviceGetMinorNumber, h)
            mode = self._call(nv.nvmlDeviceGetMigMode, h)
            mig_on = bool(mode) and mode[0] == nv.NVML_DEVICE_MIG_ENABLE
            base = Device(i, uuid, name, _text(pci.busId) if pci else None, minor, None, mig_on)
            self._handles[(i, None)] = h
            out.append(base)
            if not mig_on:
                continue
            for j in range(self._call(nv.nvmlDeviceGetMaxMigDeviceCount, h) or 0):
                mh = self._call(nv.nvmlDeviceGetMigDeviceHandleByIndex, h, j)
                if mh is None:
                    continue
                gi = self._call(nv.nvmlDeviceGetGpuInstanceId, mh)
                if gi is None:
                    continue
                mig_name = _text(self._call(nv.nvmlDeviceGetName, mh) or "")
                self._handles[(i, gi)] = mh
                out.append(Device(i, uuid, name, base.pci_bus_id, minor, Mig(gi, mig_profile(mig_name))))
        return out

    def sample(self, device: Device) -> Sample:
        nv = self._nvml
        key = (device.index, device.mig.instance_id if device.mig else None)
        h = self._handles.get(key)
        if h is None:
            return Sample(errors=("device not found; it may have been reset",))
        errors: list[str] = []

        def read(what: str, fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):
                return None  # this GPU or driver has no such field: absent, as with dcgm-exporter
            except nv.NVMLError as exc:
                errors.append(f"{what}: {exc}")
                return None

        whole_gpu = device.mig is None
        # NVML has no utilisation for MIG (on the GPU nor its instances): GPM's engine activity covers MIG.
        mig_side = device.mig is not None or device.mig_enabled
        util = read("utilisation", nv.nvmlDeviceGetUtilizationRates, h) if not mig_side else None
        memory = read("memory", nv.nvmlDeviceGetMemoryInfo, h)
        # Power and energy belong to the whole board; a MIG device reports neither.
        power = read("power", nv.nvmlDeviceGetPowerUsage, h) if whole_gpu else None
        energy = read("energy", nv.nvmlDeviceGetTotalEnergyConsumption, h) if whole_gpu else None
        # A GPU in MIG mode lists every instance's processes (to privileged callers only): each MIG
        # device lists its own.
        procs = (
            [] if device.mig_enabled else read("processes", nv.nvmlDeviceGetComputeRunningProcesses, h) or []
        )
        return Sample(
            utilisation_percent=float(util.gpu) if util is not None else None,
            engine_active=self._engine_active(device, key, errors),
            memory_used_mib=memory.used / MIB if memory is not None else None,
            memory_free_mib=memory.free / MIB if memory is not None else None,
            power_watts=power / 1000.0 if power is not None else None,
            energy_mj=float(energy) if energy is not None else None,
            processes=tuple(
                Process(int(p.pid), p.usedGpuMemory / MIB if p.usedGpuMemory else None) for p in procs
            ),
            errors=tuple(errors),
        )

    def _engine_active(self, device: Device, key: tuple[int, int | None], errors: list[str]) -> float | None:
        """Graphics engine activity between this sample and the last (GPM: Hopper and newer); the first
        sample of a device only starts the interval."""
        nv = self._nvml
        if device.mig_enabled or device.index in self._gpm_unsupported:
            return None  # the MIG devices carry it; or this GPU has no GPM (before Hopper)
        parent = self._handles[(device.index, None)]
        with self._lock:
            try:
                supported = bool(nv.nvmlGpmQueryDeviceSupport(parent).isSupportedDevice)
            except nv.NVMLError:
                supported = False  # a driver without GPM
            if not supported:
                self._gpm_unsupported.add(device.index)
                return None
            sample = None
            try:
                sample = nv.nvmlGpmSampleAlloc()
                if device.mig is not None:
                    nv.nvmlGpmMigSampleGet(parent, device.mig.instance_id, sample)
                else:
                    nv.nvmlGpmSampleGet(parent, sample)
            except nv.NVMLError as exc:
                if sample is not None:
                    self._call(nv.nvmlGpmSampleFree, sample)
                errors.append(f"engine activity: {exc}")
                return None
            previous = self._gpm_previous.get(key)
            self._gpm_previous[key] = sample
            if previous is None:
                return None
            try:
                request = nv.c_nvmlGpmMetricsGet_t()
                request.version = nv.NVML_GPM_METRICS_GET_VERSION
                request.numMetrics = 1
                request.sample1, request.sample2 = previous, sample
                request.metrics[0].metricId = nv.NVML_GPM_METRIC_GRAPHICS_UTIL
                nv.nvmlGpmMetricsGet(request)
                if request.metrics[0].nvmlReturn != nv.NVML_SUCCESS:
                    errors.append(f"engine activity: NVML return code {request.metrics[0].nvmlReturn}")
                    return None
                return max(0.0, min(1.0, float(request.metrics[0].value) / 100.0))
            except nv.NVMLError as exc:
                errors.append(f"engine activity: {exc}")
                return None
            finally:
                self._call(nv.nvmlGpmSampleFree, previous)
