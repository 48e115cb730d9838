"""Writing CostSLO status: only when it says something new, so a steady SLO costs no API writes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from costslo import api

ANNOTATION_COST = "costslo.dev/cost-per-request"
ANNOTATION_PHASE = "costslo.dev/phase"
# lastEvaluationTime still moves this often on a steady SLO, so a stale status can be told from a calm one.
HEARTBEAT_SECONDS = 300.0
_VOLATILE = {"lastEvaluationTime", "lastTransitionTime"}


# Numbers within this fraction of the last written value are the same number: a steady load measured
# through Prometheus' extrapolation wobbles by a few percent from one cycle to the next.
TOLERANCE = 0.05
# Prose fields carry the numbers of the moment; their wording, not their digits, decides a write.
_PROSE = {"message", "reason"}
# Names that may consist of digits alone and still are names, never amounts.
_IDENTIFIERS = {
    "revision",
    "podTemplateHash",
    "stableRevision",
    "rejectedRevisions",
    "observedGeneration",
    "judgedGeneration",
}
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def same(previous: Any, new: Any, key: str | None = None) -> bool:
    """Whether two statuses (or parts) say the same thing: numbers within TOLERANCE, prose alike in words,
    timestamps of evaluation ignored, everything else equal."""
    if isinstance(previous, Mapping) and isinstance(new, Mapping):
        keys = (set(previous) | set(new)) - _VOLATILE
        return all(k in previous and k in new and same(previous[k], new[k], k) for k in keys)
    if isinstance(previous, list) and isinstance(new, list):
        return len(previous) == len(new) and all(same(a, b, key) for a, b in zip(previous, new, strict=True))
    a, b = _number(previous), _number(new)
    if a is not None and b is not None and key not in _IDENTIFIERS:
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=1e-12)
    if key in _PROSE and isinstance(previous, str) and isinstance(new, str):
        return _DIGITS.sub("#", previous) == _DIGITS.sub("#", new)
    return bool(previous == new)


def needs_write(
    previous: Mapping[str, Any] | None, new: Mapping[str, Any], seconds_since_write: float
) -> bool:
    """Write when the status says something new, or the heartbeat is due."""
    if previous is None:
        return True
    return not same(previous, new) or seconds_since_write >= HEARTBEAT_SECONDS


class StatusWriter:
    """Patches CostSLO status and the target's annotations through the Kubernetes API."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self.writes = 0

    def write_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        # The whole status is replaced (a JSON patch), not merged: a field the new status leaves out, such
        # as the gate's pausedByGate once the resume went through, must not linger from an older write.
        body = [{"op": "add", "path": "/status", "value": dict(status)}]
        self._custom.patch_namespaced_custom_object_status(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            body,
            _content_type="application/json-patch+json",
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
