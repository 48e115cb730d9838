"""The pods of this node, by UID: who a GPU process belongs to once its cgroup named the pod."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from costslo.gpu.cgroups import container_id


@dataclass(frozen=True)
class PodInfo:
    namespace: str
    name: str
    containers: Mapping[str, str]  # container id -> container name

    def labels(self, container: str | None) -> dict[str, str]:
        """dcgm-exporter's pod labels; the container is named when its id is known."""
        return {
            "namespace": self.namespace,
            "pod": self.name,
            "container": self.containers.get(container or "", ""),
        }


def pod_infos(items: list[Mapping[str, Any]]) -> dict[str, PodInfo]:
    out: dict[str, PodInfo] = {}
    for pod in items:
        meta, status = pod["metadata"], pod.get("status") or {}
        containers = {
            container_id(c["containerID"]): c["name"]
            for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
            if c.get("containerID")
        }
        out[str(meta["uid"])] = PodInfo(str(meta["namespace"]), str(meta["name"]), containers)
    return out


class NodePods:
    """The node's pods from the API server (list with a nodeName field selector), cached briefly; a UID
    not in the cache triggers a re-list, at most every `min_refresh` seconds."""

    def __init__(
        self,
        list_pods: Callable[[], list[Mapping[str, Any]]],
        max_age: float = 30.0,
        min_refresh: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list, self._max_age, self._min_refresh, self._clock = list_pods, max_age, min_refresh, clock
        self._pods: dict[str, PodInfo] = {}
        self._at: float | None = None
        self._lock = threading.Lock()

    def lookup(self, uid: str) -> PodInfo | None:
        with self._lock:
            now = self._clock()
            stale = self._at is None or now - self._at > self._max_age
            unknown = uid not in self._pods and (self._at is None or now - self._at >= self._min_refresh)
            if stale or unknown:
                self._pods, self._at = pod_infos(self._list()), now
            return self._pods.get(uid)

    @classmethod
    def from_api(cls, api_client: Any, node: str) -> NodePods:
        import json

        from kubernetes import client

        core = client.CoreV1Api(api_client)

        def list_pods() -> list[Mapping[str, Any]]:
            response: Any = core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}", _preload_content=False, _request_timeout=10
            )
            items: list[Mapping[str, Any]] = json.loads(response.data)["items"]
            return items

        return cls(list_pods)
