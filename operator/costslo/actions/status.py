"""Writing CostSLO status: only when it says something new, so a steady SLO costs no API writes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from costslo import api

# lastEvaluationTime still moves this often on a steady SLO, so a stale status can be told from a calm one.
HEARTBEAT_SECONDS = 300.0
_VOLATILE = {"lastEvaluationTime", "lastTransitionTime"}


# Numbers within these bounds of the last written value are the same number: a steady load measured through
# Prometheus' extrapolation wobbles from one cycle to the next. Money per request is held tightest (the
# headline); a p95 of a few minutes' requests, token costs of random-length answers and request counts wobble
# by 10-20% at a steady load; fractions move in points. A move that matters changes the phase, a condition or
# the wording, which is written at once; /metrics always carries the live values.
TOLERANCE = 0.05
_LOOSE_TOLERANCE = 0.20
_MONEY = {"costPerRequest", "projectedCostPerRequest", "hourlyCost", "budget"}
# GPUs held over the window do not wobble at all once it is full; any move is the fleet changing.
_ALLOCATION = {"gpus"}
_ALLOCATION_TOLERANCE = 0.01
_FRACTIONS = {"failureRate", "gpuUtilisation", "idleCostFraction", "grossMargin"}
_FRACTION_POINTS = 0.02
# Prose fields carry the numbers of the moment; their wording, not their digits, decides a write.
_PROSE = {"message", "reason"}
# Names and counts compared exactly: a hash of digits alone is still a name; one replica more is news.
_IDENTIFIERS = {
    "revision",
    "podTemplateHash",
    "stableRevision",
    "rejectedRevisions",
    "observedGeneration",
    "judgedGeneration",
    "recommendedReplicas",
}
_DISPLAY = "display"
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
    if key == _DISPLAY and isinstance(previous, Mapping) and isinstance(new, Mapping):
        # Text of the numbers in `current`: it changes when they do, so its digits are no news of their own.
        return set(previous) == set(new) and all(same(previous[k], new[k], "message") for k in previous)
    if isinstance(previous, Mapping) and isinstance(new, Mapping):
        keys = (set(previous) | set(new)) - _VOLATILE
        return all(k in previous and k in new and same(previous[k], new[k], k) for k in keys)
    if isinstance(previous, list) and isinstance(new, list):
        return len(previous) == len(new) and all(same(a, b, key) for a, b in zip(previous, new, strict=True))
    a, b = _number(previous), _number(new)
    if a is not None and b is not None and key not in _IDENTIFIERS:
        if key in _FRACTIONS:
            return abs(a - b) <= _FRACTION_POINTS
        if key in _ALLOCATION:
            return math.isclose(a, b, rel_tol=_ALLOCATION_TOLERANCE)
        return math.isclose(a, b, rel_tol=TOLERANCE if key in _MONEY else _LOOSE_TOLERANCE, abs_tol=1e-12)
    if key in _PROSE and isinstance(previous, str) and isinstance(new, str):
        return _DIGITS.sub("#", previous) == _DIGITS.sub("#", new)
    return bool(previous == new)


def differences(previous: Any, new: Any, path: str = "", key: str | None = None) -> list[str]:
    """Where `same` finds news, for the log: "current.costPerRequest: '0.0002' -> '0.00025'", ..."""
    if key == _DISPLAY and same(previous, new, key):
        return []
    if isinstance(previous, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted((set(previous) | set(new)) - _VOLATILE):
            where = f"{path}.{k}" if path else k
            if k not in previous or k not in new:
                out.append(where)
            else:
                out.extend(differences(previous[k], new[k], where, k))
        return out
    if isinstance(previous, list) and isinstance(new, list) and len(previous) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(previous, new, strict=True)):
            out.extend(differences(a, b, f"{path}[{i}]", key))
        return out
    if same(previous, new, key):
        return []
    if isinstance(previous, Mapping | list) or isinstance(new, Mapping | list):
        return [path or "status"]
    return [f"{path or 'status'}: {previous!r} -> {new!r}"]


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
