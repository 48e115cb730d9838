"""`costslo gate`: wait until a CostSLO has judged what is deployed now; the verdict becomes the exit code."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import urllib3

from costslo import api
from costslo.actions.status import HEARTBEAT_SECONDS
from costslo.inventory import hash_of, revision_of, whole_revision

MET, BREACHED, NO_VERDICT = 0, 1, 2
STALE_AFTER_SECONDS = 2 * HEARTBEAT_SECONDS


class GateError(RuntimeError):
    """The gate cannot even look: no cluster access, no such CostSLO."""


def _time(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def current_revision(apps: Any, namespace: str, workload: str, kind: str = "Deployment") -> str | None:
    """The pod-template-hash of the workload's (Deployment's or Rollout's) newest ReplicaSet."""
    newest, best = None, -1
    for rs in apps.list_namespaced_replica_set(namespace).items:
        owners = rs.metadata.owner_references or []
        if not any(o.kind == kind and o.name == workload for o in owners):
            continue
        revision = whole_revision(revision_of(rs.metadata.annotations or {}))
        if revision > best:
            newest, best = hash_of(rs.metadata.labels or {}), revision
    return newest


def wait_for_verdict(
    namespace: str, name: str, timeout: float, poll: float, kubeconfig: str | None, say: Callable[[str], Any]
) -> int:
    """Polls until the current generation and revision are judged; returns the exit code."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    try:
        api_client = (
            config.new_client_from_config(config_file=kubeconfig)
            if kubeconfig
            else (config.load_incluster_config(), client.ApiClient())[1]
        )
    except config.ConfigException as exc:
        raise GateError(f"cannot reach the cluster: {exc}") from None
    custom, apps = client.CustomObjectsApi(api_client), client.AppsV1Api(api_client)
    started, last = time.time(), "no status yet"
    while True:
        try:
            obj: dict[str, Any] = dict(
                custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)  # type: ignore[call-overload]
            )
            ref = (obj.get("spec") or {}).get("targetRef") or {}
            revision = current_revision(apps, namespace, ref.get("name", ""), ref.get("kind", "Deployment"))
        except ApiException as exc:
            if exc.status == 404:
                raise GateError(f"no CostSLO {name} in namespace {namespace}") from None
            if exc.status in (401, 403):
                raise GateError(
                    f"not allowed to read {namespace}/{name} or its ReplicaSets: {exc.reason}"
                ) from None
            problem = f"the API server answered {exc.status} {exc.reason}"
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            problem = f"cannot reach the API server ({type(exc).__name__}: {exc})"
        else:
            problem = ""
        # An unreachable API server is not a breach: keep trying until the timeout, then say "no verdict".
        if problem:
            if time.time() - started >= timeout:
                say(f"no verdict within {timeout:g}s: {problem}")
                return NO_VERDICT
            say(f"waiting ({time.time() - started:.0f}s): {problem}; retrying")
            time.sleep(poll)
            continue
        status = obj.get("status") or {}
        phase = status.get("phase")
        generation = obj["metadata"].get("generation")
        judged_revisions = {r.get("podTemplateHash") for r in status.get("revisions") or []}
        # Status is rewritten only when it says something new (or on a 5-minute heartbeat), so a verdict
        # of this generation and revision counts unless the operator has been silent for longer than that.
        fresh = _time(status.get("lastEvaluationTime")) >= time.time() - STALE_AFTER_SECONDS
        judged = (
            status.get("observedGeneration") == generation
            and fresh
            and (revision is None or revision in judged_revisions)
        )
        last = f"phase {phase or '-'}: {status.get('message') or 'not evaluated yet'}"
        if judged and phase == "Met":
            say(f"met: {last}")
            return MET
        if judged and phase in ("Breached", "RolloutBlocked"):
            say(f"breached: {last}")
            return BREACHED
        if time.time() - started >= timeout:
            say(f"no verdict within {timeout:g}s: {last}")
            return NO_VERDICT
        say(f"waiting ({time.time() - started:.0f}s): generation {generation}, revision {revision}; {last}")
        time.sleep(poll)
