"""`costslo gpu-exporter`: dcgm-exporter's series from NVML, for clusters without dcgm-exporter.

Each scrape samples every GPU (and MIG device) once and attributes it to the pods whose processes run on
it: NVML gives the PIDs, /proc/<pid>/cgroup the pod UID and container id, the node's pod list their names.
A GPU shared by several pods (time-slicing) gets one series per pod, as dcgm-exporter writes them; an idle
GPU one series without pod labels. Unlike dcgm-exporter, which names the pod a GPU is allocated to
(kubelet's pod-resources API), this names the pods with a process on it: a pod still loading its weights
shows no label until its process opens the GPU. That changes nothing in the cost: GPU time comes from the
pods' requests in kube-state-metrics, and an idle GPU's busy fraction is 0 either way.

NVML that cannot start leaves the exporter up and saying so (costslo_gpu_exporter_nvml_up 0, and the
reason in the log), and it tries again: a driver installed after the DaemonSet's pod started is picked up
without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from aiohttp import web

from costslo.exposition import Family, labels_of, render
from costslo.gpu.cgroups import pod_of_pid
from costslo.gpu.dcgm import GpuReading, dcgm_families
from costslo.gpu.nvml import Device, Nvml, NvmlUnavailable, Sample
from costslo.gpu.pods import PodInfo

log = structlog.get_logger(__name__)
RETRY_SECONDS = 30.0
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


class GpuExporter:
    def __init__(
        self,
        open_nvml: Callable[[], Nvml],
        hostname: str,
        pods: Callable[[str], PodInfo | None],
        proc: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._open, self._hostname, self._pods, self._proc, self._clock = (
            open_nvml,
            hostname,
            pods,
            proc,
            clock,
        )
        self._nvml: Nvml | None = None
        self._failed_at: float | None = None
        self.unavailable: str | None = None
        self.read_errors: dict[str, int] = {}  # gpu index -> fields not read in the last scrape

    def _library(self) -> Nvml | None:
        if self._nvml is not None:
            return self._nvml
        if self._failed_at is not None and self._clock() - self._failed_at < RETRY_SECONDS:
            return None
        try:
            self._nvml = self._open()
        except NvmlUnavailable as exc:
            if self.unavailable != str(exc):
                log.error("NVML is unavailable; GPU series are not exported", reason=str(exc))
            self.unavailable, self._failed_at = str(exc), self._clock()
            return None
        if self.unavailable is not None:
            log.info("NVML is available again")
        self.unavailable, self._failed_at = None, None
        return self._nvml

    def readings(self) -> list[GpuReading]:
        nvml = self._library()
        if nvml is None:
            return []
        out: list[GpuReading] = []
        self.read_errors = {}
        try:
            devices = nvml.devices()
        except Exception as exc:  # the driver lost every GPU at once (e.g. GPU_IS_LOST): say so, keep serving
            log.warning("cannot list the GPUs", error=str(exc))
            self.read_errors["all"] = 1
            return []
        for device in devices:
            sample = nvml.sample(device)
            if sample.errors:
                key = str(device.index) if device.mig is None else f"{device.index}/{device.mig.instance_id}"
                self.read_errors[key] = len(sample.errors)
                log.warning("GPU fields not read", gpu=key, errors=list(sample.errors))
            owners = self._owners(sample)
            for pod in owners or [{}]:
                out.append(self._reading(device, sample, pod))
        return out

    def _owners(self, sample: Sample) -> list[dict[str, str]]:
        owners: list[dict[str, str]] = []
        for process in sample.processes:
            ref = pod_of_pid(process.pid, self._proc)
            try:
                info = self._pods(ref.pod_uid) if ref is not None else None
            except Exception as exc:  # the API server unreachable: the series stay, without pod labels
                log.warning("cannot look up the node's pods", error=str(exc))
                info = None
            if info is None or ref is None:
                continue  # a host process, or one that exited since NVML listed it
            labels = info.labels(ref.container_id)
            if labels not in owners:
                owners.append(labels)
        return owners

    def _reading(self, device: Device, sample: Sample, pod: dict[str, str]) -> GpuReading:
        return GpuReading(
            index=device.index,
            uuid=device.uuid,
            model_name=device.name,
            hostname=self._hostname,
            utilisation_percent=sample.utilisation_percent,
            engine_active=sample.engine_active,
            memory_used_mib=sample.memory_used_mib,
            memory_free_mib=sample.memory_free_mib,
            power_watts=sample.power_watts,
            energy_mj=sample.energy_mj,
            pod=pod,
            pci_bus_id=device.pci_bus_id,
            minor=device.minor,
            mig=device.mig,
        )

    def families(self) -> list[Family]:
        families = dcgm_families(self.readings())
        up = Family("costslo_gpu_exporter_nvml_up", "gauge", "1 when NVML answers, 0 when it cannot start.")
        up.values[()] = 0.0 if self.unavailable else 1.0
        errors = Family(
            "costslo_gpu_exporter_read_errors",
            "gauge",
            "Fields of a GPU NVML could not read in the last scrape (their series are left out).",
        )
        for gpu, count in self.read_errors.items():
            errors.values[labels_of({"gpu": gpu, "Hostname": self._hostname})] = float(count)
        return [*families, up, errors]

    def exposition(self) -> bytes:
        return render(self.families()).encode()

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.close()


def build_app(exporter: GpuExporter) -> web.Application:
    # NVML calls block; one scrape at a time keeps GPM's sample pairs in order.
    lock = asyncio.Lock()

    async def metrics(_: web.Request) -> web.Response:
        async with lock:
            body = await asyncio.to_thread(exporter.exposition)
        return web.Response(body=body, headers={"Content-Type": EXPOSITION})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz)])
    return app


async def serve(exporter: GpuExporter, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(exporter), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving GPU metrics", address=f"http://{host}:{port}/metrics")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        exporter.close()
