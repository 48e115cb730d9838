"""Which pod and container a process belongs to, from its /proc/<pid>/cgroup (no kubelet API needed).

The kubelet names a pod's cgroup after the pod's UID and the runtime names the container's after its ID,
in one of two spellings:
- cgroupfs driver (cgroup v1 or v2): /kubepods/burstable/pod<uid>/<container-id>
- systemd driver (cgroup v1 or v2):  /kubepods.slice/kubepods-burstable.slice/
                                     kubepods-burstable-pod<uid, _ for ->.slice/cri-containerd-<id>.scope
Guaranteed pods have no QoS level in the path. cgroup v1 lists one line per hierarchy, v2 a single
"0::" line; seen from inside a container's cgroup namespace the path may start with "/../..". Any line
that names a pod is enough.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_UID = r"[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}"
_POD = re.compile(rf"pod({_UID})(?:\.slice)?(?:/|$)")
# docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope, or the bare id (cgroupfs).
_CONTAINER = re.compile(r"(?:^|/)(?:[a-z-]+-)?([0-9a-f]{64})(?:\.scope)?$")


@dataclass(frozen=True)
class PodRef:
    pod_uid: str  # with dashes, as in the pod's metadata.uid
    container_id: str | None  # the runtime's 64-hex id, as in status.containerStatuses[].containerID


def pod_of_cgroup(text: str) -> PodRef | None:
    """The pod (and container) named by the contents of a /proc/<pid>/cgroup file; None for a process
    outside any pod (a host process, or one NVML saw exit)."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1].strip()
        match = _POD.search(path)
        if match is None:
            continue
        container = _CONTAINER.search(path[match.end() - 1 :])
        return PodRef(match.group(1).replace("_", "-"), container.group(1) if container else None)
    return None


def pod_of_pid(pid: int, proc: Path = Path("/proc")) -> PodRef | None:
    try:
        return pod_of_cgroup((proc / str(pid) / "cgroup").read_text())
    except OSError:  # gone, or not visible (the exporter needs hostPID to see other pods' processes)
        return None


def container_id(status_id: str) -> str:
    """'containerd://<id>' -> '<id>'."""
    return status_id.rsplit("://", 1)[-1]
