"""Writing the target Deployment: the rollout gate's pause, resume and rollback, and scaling steps.

Every write is idempotent (setting a field to a value, not toggling it), so a decision replayed after an
operator restart lands the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from costslo.rollout import OVERRIDE_ANNOTATION, Action, ClearOverride, Pause, RestoreTemplate, Resume


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


class DeploymentWriter:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._apps = client.AppsV1Api(api_client)

    def apply(self, namespace: str, name: str, actions: Sequence[Action]) -> None:
        """The template first (a rollback), then paused and annotations, so the bad revision never resumes."""
        json_patch, merge = gate_patch(actions)
        if json_patch:
            self._apps.patch_namespaced_deployment(
                name, namespace, json_patch, _content_type="application/json-patch+json"
            )
        if merge:
            self._apps.patch_namespaced_deployment(
                name, namespace, merge, _content_type="application/merge-patch+json"
            )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        self._apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
