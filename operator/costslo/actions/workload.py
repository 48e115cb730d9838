"""Writing the target workload: the rollout gate's pause, resume and rollback (Deployments only: Argo
Rollouts acts on its own analysis), scaling steps and the phase/cost annotations.

Every write is idempotent (setting a field to a value, not toggling it), so a decision replayed after an
operator restart lands the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from costslo.rollout import OVERRIDE_ANNOTATION, Action, ClearOverride, Pause, RestoreTemplate, Resume

ANNOTATION_COST = "costslo.dev/cost-per-request"
ANNOTATION_PHASE = "costslo.dev/phase"
ARGO_GROUP, ARGO_VERSION, ROLLOUTS = "argoproj.io", "v1alpha1", "rollouts"


def action_name(action: Action) -> str:
    """The `action` label of costslo_actions_total."""
    return {Pause: "pause", Resume: "resume", RestoreTemplate: "rollback", ClearOverride: "clear-override"}[
        type(action)
    ]


def gate_patch(actions: Sequence[Action]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The gate's actions as one JSON patch (template) and one merge patch (paused, annotations)."""
    json_patch: list[dict[str, Any]] = []
    merge: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, RestoreTemplate):
            if action.replacing is not None:
                json_patch.append({"op": "test", "path": "/spec/template", "value": dict(action.replacing)})
            json_patch.append({"op": "replace", "path": "/spec/template", "value": dict(action.template)})
        elif isinstance(action, Pause | Resume):
            merge.setdefault("spec", {})["paused"] = isinstance(action, Pause)
        elif isinstance(action, ClearOverride):
            merge.setdefault("metadata", {}).setdefault("annotations", {})[OVERRIDE_ANNOTATION] = None
    return json_patch, merge


class WorkloadWriter:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._apps = client.AppsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def apply(self, kind: str, namespace: str, name: str, actions: Sequence[Action]) -> None:
        """A Deployment's template first (a rollback), then paused and annotations, so the bad revision
        never resumes."""
        if kind != "Deployment":
            raise ValueError(f"the rollout gate writes Deployments only, not a {kind}")
        json_patch, merge = gate_patch(actions)
        if json_patch:
            self._apps.patch_namespaced_deployment(
                name, namespace, json_patch, _content_type="application/json-patch+json"
            )
        if merge:
            self._apps.patch_namespaced_deployment(
                name, namespace, merge, _content_type="application/merge-patch+json"
            )

    def scale(self, kind: str, namespace: str, name: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        if kind == "Rollout":
            self._custom.patch_namespaced_custom_object_scale(
                ARGO_GROUP, ARGO_VERSION, namespace, ROLLOUTS, name, body
            )
        else:
            self._apps.patch_namespaced_deployment_scale(name, namespace, body)

    def annotate(self, kind: str, namespace: str, name: str, cost: str | None, phase: str) -> None:
        """The phase and cost per request on the target, for `kubectl get -o yaml` readers and GitOps UIs."""
        body = {"metadata": {"annotations": {ANNOTATION_PHASE: phase, ANNOTATION_COST: cost}}}
        if kind == "Rollout":
            self._custom.patch_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, namespace, ROLLOUTS, name, body
            )
        else:
            self._apps.patch_namespaced_deployment(name, namespace, body)
