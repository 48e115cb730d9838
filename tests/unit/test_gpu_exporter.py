"""The GPU exporter: dcgm-exporter's series from NVML readings (a fake NVML), processes mapped to pods
through cgroup files of both cgroup versions, and a node that keeps exporting when one GPU fails."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from costslo.gpu.cgroups import PodRef, pod_of_cgroup
from costslo.gpu.dcgm import Mig
from costslo.gpu.exporter import RETRY_SECONDS, GpuExporter
from costslo.gpu.nvml import Device, NvmlUnavailable, Process, Sample, mig_profile
from costslo.gpu.pods import NodePods, PodInfo, pod_infos
from tests.support.fake_nvml import FakeNvml
from tests.support.lab import REPO

SAMPLE = Path(__file__).parent / "data" / "dcgm-exporter.txt"
UID_A = "5f0c8f7e-1d2b-4c3a-9e8d-7f6a5b4c3d2e"
UID_B = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
CID_A = "a" * 64
CID_B = "b" * 64

CGROUP_V2_SYSTEMD = (
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
    f"{UID_A.replace('-', '_')}.slice/cri-containerd-{CID_A}.scope\n"
)
CGROUP_V1_CGROUPFS = (
    "".join(
        f"{i}:{c}:/kubepods/besteffort/pod{UID_B}/{CID_B}\n"
        for i, c in enumerate(["memory", "cpu,cpuacct", "devices", "pids"], start=2)
    )
    + "1:name=systemd:/system.slice/containerd.service\n"
)


def parsed(text: str) -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    return {
        fam.name: (fam.type, [(dict(s.labels), s.value) for s in fam.samples])
        for fam in text_string_to_metric_families(text)
    }


# -- cgroups -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(CGROUP_V2_SYSTEMD, PodRef(UID_A, CID_A), id="v2-systemd-containerd"),
        pytest.param(CGROUP_V1_CGROUPFS, PodRef(UID_B, CID_B), id="v1-cgroupfs"),
        pytest.param(
            "12:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            f"{UID_B.replace('-', '_')}.slice/docker-{CID_B}.scope\n",
            PodRef(UID_B, CID_B),
            id="v1-systemd-docker",
        ),
        pytest.param(f"0::/kubepods/pod{UID_A}/{CID_A}\n", PodRef(UID_A, CID_A), id="v2-cgroupfs-guaranteed"),
        pytest.param(
            f"0::/../../kubepods-pod{UID_A.replace('-', '_')}.slice/crio-{CID_A}.scope\n",
            PodRef(UID_A, CID_A),
            id="v2-seen-from-a-cgroup-namespace",
        ),
        pytest.param(
            f"0::/kubepods.slice/kubepods-pod{UID_A.replace('-', '_')}.slice\n",
            PodRef(UID_A, None),
            id="pod-level-only",
        ),
        pytest.param("0::/system.slice/sshd.service\n", None, id="host-process"),
        pytest.param("", None, id="empty"),
    ],
)
def test_a_process_cgroup_names_its_pod_and_container(text: str, expected: PodRef | None) -> None:
    assert pod_of_cgroup(text) == expected


# -- the exporter --------------------------------------------------------------------------------------


def proc_dir(tmp_path: Path, cgroups: dict[int, str]) -> Path:
    for pid, text in cgroups.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "cgroup").write_text(text)
    return tmp_path


PODS = {
    UID_A: PodInfo("ml", "chat-7c9f8d-abcde", {CID_A: "vllm"}),
    UID_B: PodInfo("ml", "embedder-5d6f7-xyz12", {CID_B: "embed"}),
}
H100 = "NVIDIA H100 80GB HBM3"


def busy_sample(*pids: int, power: float | None = 312.5, errors: tuple[str, ...] = ()) -> Sample:
    return Sample(
        utilisation_percent=37.0,
        engine_active=0.352112,
        memory_used_mib=71234.0,
        memory_free_mib=10325.0,
        power_watts=power,
        energy_mj=98234512345.0,
        processes=tuple(Process(p, 70000.0) for p in pids),
        errors=errors,
    )


def exporter(tmp_path: Path, nvml: FakeNvml, **kwargs: Any) -> GpuExporter:
    proc = proc_dir(tmp_path, {4242: CGROUP_V2_SYSTEMD, 4343: CGROUP_V1_CGROUPFS, 99: "0::/init.scope\n"})
    return GpuExporter(lambda: nvml, "gpu-node-1", PODS.get, proc, **kwargs)


def test_series_match_dcgm_exporter_names_types_and_labels(tmp_path: Path) -> None:
    gpu0 = Device(0, "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", H100, "00000000:18:00.0", 0)
    gpu1 = Device(1, "GPU-1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d", H100, "00000000:2A:00.0", 1, None, True)
    mig = Device(1, gpu1.uuid, H100, gpu1.pci_bus_id, 1, Mig(9, "1g.10gb"))
    nvml = FakeNvml(
        [gpu0, gpu1, mig],
        {
            (0, None): busy_sample(4242, 99),  # a pod's process and a host process
            (1, None): Sample(None, None, 2000.0, 79559.0, 150.0, 5.0e9),
            (1, 9): Sample(None, 0.12, 9000.0, 900.0, None, None, (Process(4343),)),
        },
    )
    ours = parsed(exporter(tmp_path, nvml).exposition().decode())
    reference = parsed(SAMPLE.read_text())
    for name, (kind, samples) in reference.items():
        assert name in ours, name
        assert ours[name][0] == kind, name
        for labels, _ in samples:
            mine = [lab for lab, _ in ours[name][1] if lab.get("gpu") == labels["gpu"] and lab.get("pod")]
            assert mine, (name, labels)
            assert set(labels) == set(mine[0]), (name, set(labels) ^ set(mine[0]))
            assert mine[0] == labels, name  # the same values, too: the fixture mirrors these readings
    gpu0_values = {name: samples[0][1] for name, (_, samples) in ours.items() if name.startswith("DCGM")}
    assert gpu0_values["DCGM_FI_DEV_GPU_UTIL"] == 37 and gpu0_values["DCGM_FI_DEV_POWER_USAGE"] == 312.5
    # A GPU in MIG mode: board-level power and memory on the GPU itself, no utilisation (NVML has none).
    whole = [lab for lab, _ in ours["DCGM_FI_DEV_POWER_USAGE"][1] if lab["gpu"] == "1"]
    assert whole == [{k: v for k, v in whole[0].items() if k not in ("pod", "namespace", "container")}]
    assert not [lab for lab, _ in ours["DCGM_FI_DEV_GPU_UTIL"][1] if lab["gpu"] == "1"]
    assert ours["costslo_gpu_exporter_nvml_up"][1][0][1] == 1.0


def test_one_failing_gpu_leaves_out_only_what_could_not_be_read(tmp_path: Path) -> None:
    gpus = [Device(i, f"GPU-{i}", H100, None, i) for i in range(3)]
    nvml = FakeNvml(
        gpus,
        {
            (0, None): busy_sample(4242),
            (1, None): busy_sample(power=None, errors=("power: Unknown Error",)),
            # gpu 2 has fallen off the bus: nothing can be read.
        },
    )
    exp = exporter(tmp_path, nvml)
    ours = parsed(exp.exposition().decode())
    power = {lab["gpu"] for lab, _ in ours["DCGM_FI_DEV_POWER_USAGE"][1]}
    memory = {lab["gpu"] for lab, _ in ours["DCGM_FI_DEV_FB_USED"][1]}
    assert power == {"0"} and memory == {"0", "1"}
    errors = {lab["gpu"]: value for lab, value in ours["costslo_gpu_exporter_read_errors"][1]}
    assert errors == {"1": 1.0, "2": 1.0}


def test_a_time_sliced_gpu_gets_a_series_per_pod_and_an_idle_one_none(tmp_path: Path) -> None:
    nvml = FakeNvml(
        [Device(0, "GPU-0", H100), Device(1, "GPU-1", H100)],
        {(0, None): busy_sample(4242, 4343, 4242), (1, None): busy_sample()},
    )
    ours = parsed(exporter(tmp_path, nvml).exposition().decode())
    util = [lab for lab, _ in ours["DCGM_FI_DEV_GPU_UTIL"][1]]
    assert sorted((lab["gpu"], lab.get("pod", "")) for lab in util) == [
        ("0", "chat-7c9f8d-abcde"),
        ("0", "embedder-5d6f7-xyz12"),
        ("1", ""),
    ]
    assert {lab.get("container") for lab in util if lab["gpu"] == "0"} == {"vllm", "embed"}


def test_nvml_that_cannot_start_is_reported_and_retried(tmp_path: Path) -> None:
    now = [0.0]
    attempts: list[float] = []
    nvml = FakeNvml([Device(0, "GPU-0", H100)], {(0, None): busy_sample()})

    def open_nvml() -> FakeNvml:
        attempts.append(now[0])
        if now[0] < 100:
            raise NvmlUnavailable("NVML could not start (Driver Not Loaded)")
        return nvml

    exp = GpuExporter(open_nvml, "n", PODS.get, tmp_path, clock=lambda: now[0])
    first = parsed(exp.exposition().decode())
    assert first["costslo_gpu_exporter_nvml_up"][1][0][1] == 0.0
    assert "DCGM_FI_DEV_GPU_UTIL" not in first and "Driver Not Loaded" in (exp.unavailable or "")
    now[0] = 10.0
    exp.exposition()
    assert attempts == [0.0]  # not hammered at every scrape
    now[0] = 100.0 + RETRY_SECONDS
    again = parsed(exp.exposition().decode())
    assert again["costslo_gpu_exporter_nvml_up"][1][0][1] == 1.0 and "DCGM_FI_DEV_GPU_UTIL" in again
    exp.close()
    assert nvml.closed


def test_without_a_driver_the_command_says_what_to_check() -> None:
    """The real pynvml on a machine without the NVIDIA driver (as in CI)."""
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "costslo"), "gpu-exporter", "--once", "--log-format", "json"],
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        pytest.skip("this machine has a working NVIDIA driver")
    assert result.returncode == 1
    assert "NVIDIA driver installed" in result.stderr
    assert "costslo_gpu_exporter_nvml_up 0.0" in result.stdout


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "1g.10gb"),
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "3g.20gb"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "1g.10gb+me"),
    ],
)
def test_mig_profiles_are_read_off_the_device_name(name: str, profile: str) -> None:
    assert mig_profile(name) == profile


def test_the_node_pod_list_is_cached_and_refreshed_for_unknown_pods() -> None:
    now = [0.0]
    calls: list[float] = []
    items = [
        {
            "metadata": {"uid": UID_A, "namespace": "ml", "name": "chat"},
            "status": {"containerStatuses": [{"name": "vllm", "containerID": f"containerd://{CID_A}"}]},
        }
    ]

    def list_pods() -> list[dict[str, Any]]:
        calls.append(now[0])
        return items

    pods = NodePods(list_pods, max_age=30, min_refresh=2, clock=lambda: now[0])
    info = pods.lookup(UID_A)
    assert info is not None and info.labels(CID_A) == {"namespace": "ml", "pod": "chat", "container": "vllm"}
    assert pods.lookup(UID_B) is None and calls == [0.0]  # just listed: an unknown pod waits
    now[0] = 3.0
    assert pods.lookup(UID_B) is None and calls == [0.0, 3.0]
    now[0] = 4.0
    assert pods.lookup(UID_A) is not None and calls == [0.0, 3.0]
    assert pod_infos(items)[UID_A].containers == {CID_A: "vllm"}
