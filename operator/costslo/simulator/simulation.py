"""The simulated fleet: model-server pods on GPUs, advanced in time, with their exact ground truth."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from costslo.exposition import Family
from costslo.gpu.dcgm import GpuReading, Mig, dcgm_families
from costslo.kubeobjects import GPU_RESOURCE
from costslo.simulator.cluster import SHARED_GPU_RESOURCE, ClusterView, Group, NodeView, PodView, unit_share
from costslo.simulator.exporters import Load, RuntimeExporter
from costslo.simulator.profiles import PerformanceProfile, ProfileCatalog, ProfileError
from costslo.simulator.serving import Arrivals, Request, RequestSampler, mean_queue_seconds, operating_point

log = structlog.get_logger(__name__)

BUSY_WINDOW_SECONDS = 5.0  # the DCGM busy gauge averages over this, like DCGM's sampling does
TRUTH_RETENTION_SECONDS = 6 * 3600.0
LATENCY_RECORDS = 200_000  # per pod: over an hour at 50 requests/s


@dataclass
class Truth:
    """Exact totals for one pod since the simulator first saw it."""

    provisioned_gpu_seconds: float = 0.0
    ready_seconds: float = 0.0
    busy_gpu_seconds: float = 0.0
    prefill_gpu_seconds: float = 0.0
    finished: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    e2e_seconds: float = 0.0

    def add(self, r: Request) -> None:
        self.finished += 1
        self.delivered += r.ok
        self.failed += not r.ok
        self.dropped += r.dropped
        self.busy_gpu_seconds += r.gpu_seconds
        self.prefill_gpu_seconds += r.prefill_gpu_seconds
        if not r.dropped:
            self.input_tokens += r.input_tokens
            self.output_tokens += r.output_tokens
        self.prefill_seconds += r.prefill_seconds
        self.decode_seconds += r.decode_seconds
        self.e2e_seconds += r.e2e_seconds


@dataclass
class GpuSlot:
    """What one unit of a GPU resource is: a whole GPU, a MIG instance, or a time-slicing replica."""

    index: int  # the physical GPU's
    uuid: str  # the physical GPU's
    energy_mj: float = 0.0
    owner: str | None = None  # pod uid
    resource: str = GPU_RESOURCE
    share: float = 1.0  # of the physical GPU's compute
    mig: Mig | None = None


@dataclass
class SimPod:
    view: PodView
    profile: PerformanceProfile
    exporter: RuntimeExporter
    sampler: RequestSampler
    first_seen: float
    served: Arrivals = field(default_factory=Arrivals)
    drops: Arrivals = field(default_factory=Arrivals)
    truth: Truth = field(default_factory=Truth)
    gpu_slots: list[GpuSlot] = field(default_factory=list)
    busy_window: deque[tuple[float, float]] = field(default_factory=deque)  # (dt, busy GPU-seconds)
    latencies: deque[tuple[float, float]] = field(  # (unix time finished, e2e seconds)
        default_factory=lambda: deque(maxlen=LATENCY_RECORDS)
    )
    offered_rps: float = 0.0
    utilisation: float = 0.0
    deleted_at: float | None = None

    @property
    def busy_fraction(self) -> float:
        """Mean GPU busy fraction over the last few seconds."""
        span = sum(dt for dt, _ in self.busy_window)
        if span <= 0 or self.view.gpus <= 0:
            return 0.0
        return min(1.0, sum(b for _, b in self.busy_window) / (span * self.view.gpus))


def _seed(uid: str) -> int:
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")


def _gpu_uuid(node: str, index: int) -> str:
    return "GPU-" + str(uuid.UUID(bytes=hashlib.sha256(f"{node}/{index}".encode()).digest()[:16]))


class Simulation:
    """Advances every simulated pod in time and renders what the exporters would expose."""

    def __init__(
        self, catalog: ProfileCatalog, clock: Any = time.monotonic, wall_clock: Any = time.time
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._wall = wall_clock
        self._pods: dict[str, SimPod] = {}
        self._view = ClusterView()
        self._gpus: dict[str, list[GpuSlot]] = {}
        self._bad_pods: dict[str, str] = {}  # uid -> error already reported
        self.started = clock()

    # -- cluster changes -------------------------------------------------------------------------------
    def apply(self, view: ClusterView) -> None:
        """Takes a fresh view of the cluster: new pods join, vanished pods leave."""
        now = self._clock()
        self._view = view
        for name, node in view.nodes.items():
            self._ensure_node(name, node)
        seen: set[str] = set()
        for pv in view.pods:
            if pv.node is None or pv.gpus <= 0:
                continue
            sim = self._pods.get(pv.uid)
            if sim is None or sim.deleted_at is not None:
                sim = self._admit(pv, now)
                if sim is None:
                    continue
            sim.view = pv
            seen.add(pv.uid)
        for uid, sim in self._pods.items():
            if uid not in seen and sim.deleted_at is None:
                sim.deleted_at = now
                for slot in sim.gpu_slots:
                    slot.owner = None
        cutoff = now - TRUTH_RETENTION_SECONDS
        for uid in [u for u, s in self._pods.items() if s.deleted_at is not None and s.deleted_at < cutoff]:
            del self._pods[uid]

    def _ensure_node(self, name: str, node: NodeView) -> None:
        slots = self._gpus.setdefault(name, [])
        units = dict(node.units) or {GPU_RESOURCE: node.gpus}
        for resource, count in sorted(units.items(), key=lambda kv: kv[0] != GPU_RESOURCE):
            have = [s for s in slots if s.resource == resource]
            for i in range(len(have), count):
                slots.append(self._slot(name, node, resource, i, slots))

    @staticmethod
    def _slot(name: str, node: NodeView, resource: str, i: int, slots: list[GpuSlot]) -> GpuSlot:
        """Unit i of a resource on a node: whole GPUs first, then each further physical GPU carved into
        MIG instances or time-slicing replicas."""
        share = unit_share(resource, node.replicas) or 1.0
        if resource == GPU_RESOURCE:
            return GpuSlot(i, _gpu_uuid(name, i))
        per_gpu = node.replicas if resource == SHARED_GPU_RESOURCE else max(1, int(1 / share + 1e-9))
        first = 1 + max((s.index for s in slots if s.resource != resource), default=-1)
        index = first + i // per_gpu
        mig = None
        if resource.startswith("nvidia.com/mig-"):
            mig = Mig(instance_id=1 + i % per_gpu, profile=resource.removeprefix("nvidia.com/mig-"))
        return GpuSlot(index, _gpu_uuid(name, index), resource=resource, share=share, mig=mig)

    def _admit(self, pv: PodView, now: float) -> SimPod | None:
        try:
            profile = self._catalog.resolve(pv.annotations)
        except ProfileError as exc:
            if self._bad_pods.get(pv.uid) != str(exc):
                self._bad_pods[pv.uid] = str(exc)
                log.warning("pod not simulated", namespace=pv.namespace, pod=pv.name, reason=str(exc))
            return None
        if profile is None:
            return None
        labels = {"namespace": pv.namespace, "pod": pv.name, "container": pv.container}
        sim = SimPod(
            view=pv,
            profile=profile,
            exporter=RuntimeExporter.for_pod(profile, labels),
            sampler=RequestSampler(profile, _seed(pv.uid)),
            first_seen=now,
        )
        assert pv.node is not None
        slots = self._gpus.setdefault(pv.node, [])
        node = self._view.nodes.get(pv.node) or NodeView(pv.node, 0, "NVIDIA-H100-80GB-HBM3", 81559.0)
        for resource, count in (dict(pv.units) or {GPU_RESOURCE: round(pv.gpus)}).items():
            free = [s for s in slots if s.owner is None and s.resource == resource]
            while len(free) < count:  # more asked than the node advertises: give it more
                have = sum(s.resource == resource for s in slots)
                slot = self._slot(pv.node, node, resource, have, slots)
                slots.append(slot)
                free.append(slot)
            for slot in free[:count]:
                slot.owner = pv.uid
                sim.gpu_slots.append(slot)
        self._pods[pv.uid] = sim
        log.info(
            "simulating pod",
            namespace=pv.namespace,
            pod=pv.name,
            runtime=profile.runtime,
            model=profile.model_name,
            gpus=pv.gpus,
            node=pv.node,
        )
        return sim

    # -- time ------------------------------------------------------------------------------------------
    def live_pods(self) -> Iterator[SimPod]:
        return (s for s in self._pods.values() if s.deleted_at is None)

    def advance(self, dt: float) -> None:
        """Moves every live pod `dt` seconds forward."""
        ready: dict[Group, list[SimPod]] = {}
        for sim in self.live_pods():
            if sim.view.ready:
                ready.setdefault(sim.view.group, []).append(sim)
        for group, members in ready.items():
            per_pod = self._view.offered_rps.get(group, 0.0) / len(members)
            for sim in members:
                self._serve(sim, per_pod, dt)
        for sim in self.live_pods():
            sim.truth.provisioned_gpu_seconds += sim.view.gpus * dt
            if sim.view.ready:
                sim.truth.ready_seconds += dt
            else:
                sim.offered_rps = sim.utilisation = 0.0
                self._note_busy(sim, dt, 0.0)
                sim.exporter.set_load(Load(0.0, 0.0, 0.0))
        for slots in self._gpus.values():
            for slot in slots:
                slot.energy_mj += self._power(slot) * dt * 1000.0

    def _serve(self, sim: SimPod, offered_rps: float, dt: float) -> None:
        op = operating_point(sim.profile, sim.view.gpus, offered_rps)
        sim.offered_rps, sim.utilisation = offered_rps, op.utilisation
        busy, now = 0.0, self._wall()
        for _ in range(sim.served.take(op.served_rps, dt)):
            r = sim.sampler.served(op.utilisation, sim.view.gpus)
            self._finish(sim, r, now)
            busy += r.gpu_seconds
        for _ in range(sim.drops.take(op.dropped_rps, dt)):
            self._finish(sim, sim.sampler.dropped(), now)
        self._note_busy(sim, dt, busy)
        p = sim.profile
        service = p.ttft_seconds + p.mean_output_tokens * p.itl_seconds * (1 + min(op.utilisation, 0.98))
        wait = mean_queue_seconds(p, sim.view.gpus, op.utilisation)
        # Little's law: requests in flight = arrival rate x time spent.
        sim.exporter.set_load(Load(op.served_rps * service, op.served_rps * wait, op.utilisation))

    @staticmethod
    def _finish(sim: SimPod, r: Request, now: float) -> None:
        sim.exporter.record(r)
        sim.truth.add(r)
        sim.latencies.append((now, r.e2e_seconds))

    @staticmethod
    def _note_busy(sim: SimPod, dt: float, busy: float) -> None:
        sim.busy_window.append((dt, busy))
        span = sum(d for d, _ in sim.busy_window)
        while sim.busy_window and span - sim.busy_window[0][0] >= BUSY_WINDOW_SECONDS:
            span -= sim.busy_window.popleft()[0]

    def _power(self, slot: GpuSlot) -> float:
        sim = self._pods.get(slot.owner) if slot.owner else None
        if sim is None:
            return 60.0
        p = sim.profile
        return p.power_idle_watts + (p.power_max_watts - p.power_idle_watts) * sim.busy_fraction

    # -- what is exposed -------------------------------------------------------------------------------
    def runtime_families(self) -> list[Family]:
        fams: list[Family] = []
        for sim in self.live_pods():
            if sim.view.ready:
                fams.extend(sim.exporter.families())
        return fams

    def dcgm_families(self) -> list[Family]:
        readings: list[GpuReading] = []
        for node_name, slots in self._gpus.items():
            node = self._view.nodes.get(node_name)
            product = node.product if node else "NVIDIA-H100-80GB-HBM3"
            total_mib = node.memory_mib if node else 81559.0
            for slot in slots:
                if slot.resource == SHARED_GPU_RESOURCE:
                    continue
                sim = self._pods.get(slot.owner) if slot.owner else None
                pod: dict[str, str] = {}
                busy = used = 0.0
                if sim is not None:
                    pod = self._pod_labels(sim)
                    busy = sim.busy_fraction  # of the pod's GPUs; a MIG instance's ratio is its own
                    used = min(total_mib * slot.share, sim.profile.memory_used_mib) if sim.view.ready else 0.0
                reading = GpuReading.from_busy(
                    index=slot.index,
                    uuid=slot.uuid,
                    model_name=_marketing_name(product),
                    hostname=node_name,
                    busy=busy,
                    memory_used_mib=used,
                    memory_total_mib=total_mib * slot.share,
                    # A MIG instance repeats its whole GPU's power and energy, as dcgm-exporter does.
                    power_watts=sum(self._power(s) for s in self._same_gpu(slot, slots)),
                    energy_mj=sum(s.energy_mj for s in self._same_gpu(slot, slots)),
                    pod=pod,
                )
                # dcgm-exporter exports no GPU_UTIL for a MIG instance.
                readings.append(
                    reading if slot.mig is None else replace(reading, mig=slot.mig, utilisation_percent=None)
                )
            readings += self._time_sliced(node_name, product, total_mib, slots)
        return dcgm_families(readings)

    @staticmethod
    def _same_gpu(slot: GpuSlot, slots: list[GpuSlot]) -> list[GpuSlot]:
        if slot.mig is None:
            return [slot]
        return [s for s in slots if s.mig is not None and s.index == slot.index]

    @staticmethod
    def _pod_labels(sim: SimPod) -> dict[str, str]:
        return {"namespace": sim.view.namespace, "pod": sim.view.name, "container": sim.view.container}

    def _time_sliced(
        self, node: str, product: str, total_mib: float, slots: list[GpuSlot]
    ) -> list[GpuReading]:
        """A time-sliced GPU as dcgm-exporter with --kubernetes-virtual-gpus shows it: the physical GPU's
        series once per pod sharing it (label vgpu), each with the whole GPU's activity; once, without pod
        labels, while no pod holds a replica."""
        physical: dict[int, list[GpuSlot]] = {}
        for slot in slots:
            if slot.resource == SHARED_GPU_RESOURCE:
                physical.setdefault(slot.index, []).append(slot)
        readings: list[GpuReading] = []
        for index, replicas in sorted(physical.items()):
            holders = [(i, self._pods[s.owner]) for i, s in enumerate(replicas) if s.owner in self._pods]
            busy = min(
                1.0,
                sum(sim.busy_fraction * s.share for s in replicas if (sim := self._pods.get(s.owner or ""))),
            )
            used = sum(
                min(total_mib * s.share, sim.profile.memory_used_mib)
                for s in replicas
                if (sim := self._pods.get(s.owner or ""))
            )
            base = GpuReading.from_busy(
                index=index,
                uuid=replicas[0].uuid,
                model_name=_marketing_name(product),
                hostname=node,
                busy=busy,
                memory_used_mib=min(total_mib, used),
                memory_total_mib=total_mib,
                power_watts=sum(self._power(s) for s in replicas) / len(replicas),
                energy_mj=sum(s.energy_mj for s in replicas) / len(replicas),
                pod={},
            )
            if not holders:
                readings.append(base)
            for i, sim in holders:
                readings.append(replace(base, pod={**self._pod_labels(sim), "vgpu": str(i)}))
        return readings

    def truth(self) -> dict[str, Any]:
        """Exact ground truth for tests: per pod totals and the offered load per group."""
        now = self._clock()
        pods = []
        for sim in self._pods.values():
            v, t = sim.view, sim.truth
            pods.append(
                {
                    "namespace": v.namespace,
                    "pod": v.name,
                    "uid": v.uid,
                    "node": v.node,
                    "gpus": v.gpus,
                    "ownerKind": v.group[1],
                    "owner": v.group[2],
                    "replicaSet": v.replicaset,
                    "podTemplateHash": v.pod_template_hash,
                    "runtime": sim.profile.runtime,
                    "model": sim.profile.model_name,
                    "ready": v.ready and sim.deleted_at is None,
                    "deleted": sim.deleted_at is not None,
                    "offeredRps": sim.offered_rps,
                    "utilisation": sim.utilisation,
                    "busyFraction": sim.busy_fraction,
                    "capacityRps": sim.profile.capacity_rps(v.gpus),
                    "gpuSecondsPerRequest": sim.profile.gpu_seconds_per_request,
                    "provisionedGpuSeconds": t.provisioned_gpu_seconds,
                    "readySeconds": t.ready_seconds,
                    "busyGpuSeconds": t.busy_gpu_seconds,
                    "prefillGpuSeconds": t.prefill_gpu_seconds,
                    "requests": {
                        "finished": t.finished,
                        "delivered": t.delivered,
                        "failed": t.failed,
                        "dropped": t.dropped,
                    },
                    "tokens": {"input": t.input_tokens, "output": t.output_tokens},
                    "prefillSeconds": t.prefill_seconds,
                    "decodeSeconds": t.decode_seconds,
                    "e2eSeconds": t.e2e_seconds,
                }
            )
        groups = [
            {"namespace": g[0], "kind": g[1], "name": g[2], "offeredRps": rps}
            for g, rps in self._view.offered_rps.items()
        ]
        return {"uptimeSeconds": now - self.started, "pods": pods, "groups": groups}

    def latency_quantile(self, namespace: str, start: float, end: float, q: float) -> dict[str, Any]:
        """The exact q-quantile (nearest rank) of e2e latency of requests finished in (start, end]."""
        values = sorted(
            e2e
            for sim in self._pods.values()
            if sim.view.namespace == namespace
            for t, e2e in sim.latencies
            if start < t <= end
        )
        if not values:
            return {"count": 0, "seconds": None}
        rank = max(0, min(len(values) - 1, int(q * len(values) + 0.999999) - 1))
        return {"count": len(values), "seconds": values[rank]}


def _marketing_name(product_label: str) -> str:
    """GPU feature discovery writes 'NVIDIA-H100-80GB-HBM3'; DCGM's modelName says 'NVIDIA H100 80GB HBM3'."""
    return product_label.replace("-", " ")
