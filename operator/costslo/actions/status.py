"""Writing CostSLO status: only when something material changed, so a steady SLO costs no API writes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from costslo import api

ANNOTATION_COST = "costslo.dev/cost-per-request"
ANNOTATION_PHASE = "costslo.dev/phase"
# lastEvaluationTime still moves this often on a steady SLO, so a stale status can be told from a calm one.
HEARTBEAT_SECONDS = 300.0
_VOLATILE = {"lastEvaluationTime", "lastTransitionTime"}


def _rounded(value: Any) -> Any:
    """Three significant digits: noise in the last digits of a cost is no reason to write."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(f"{value:.3g}") if math.isfinite(value) else value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return float(f"{number:.3g}") if math.isfinite(number) else value
    if isinstance(value, Mapping):
        return {k: _rounded(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def material(status: Mapping[str, Any]) -> Any:
    """What of a status counts when deciding whether to write: rounded numbers, phase, conditions."""
    return _rounded(status)


def needs_write(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any], seconds_since_write: float
) -> bool:
    """Write when the material content differs, or the heartbeat is due."""
    if previous is None:
        return True
    return material(previous) != material(new) or seconds_since_write >= HEARTBEAT_SECONDS


class StatusWriter:
    """Patches CostSLO status and the target's annotations through the Kubernetes API."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self.writes = 0

    def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        body = {"status": dict(status)}
        self._custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, body
        )
        self.writes += 1

    def annotate_target(self, namespace: str, deployment: str, cost: str | None, phase: str) -> None:
        annotations = {ANNOTATION_PHASE: phase, ANNOTATION_COST: cost}
        self._apps.patch_namespaced_deployment(
            deployment, namespace, {"metadata": {"annotations": annotations}}
        )

    def event(
        self,
        namespace: str,
        name: str,
        uid: str | None,
        kind: str,
        api_version: str,
        type_: str,
        reason: str,
        message: str,
        now_iso: str,
    ) -> None:
        from kubernetes import client

        self._core.create_namespaced_event(
            namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
                involved_object=client.V1ObjectReference(
                    kind=kind, name=name, namespace=namespace, uid=uid, api_version=api_version
                ),
                type=type_,
                reason=reason,
                message=message[:1000],
                first_timestamp=now_iso,
                last_timestamp=now_iso,
                count=1,
                source=client.V1EventSource(component="costslo"),
            ),
        )
