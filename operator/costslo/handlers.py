"""kopf registrations, and nothing else: each handler hands the event to the operator loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from costslo import api, kubeclient, server
from costslo.loop import OperatorLoop
from costslo.settings import OperatorSettings

_settings: OperatorSettings | None = None
_api_client: Any = None


def configure(settings: OperatorSettings, api_client: Any) -> None:
    """Settings and API client for the next operator start (kopf calls the handlers; `costslo run` calls
    this first, having built the client from the same kubeconfig kopf logs in with)."""
    global _settings, _api_client
    _settings, _api_client = settings, api_client


@kopf.on.login()
def login(settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
    # Watches and writes must reach the same cluster as the same identity: --kubeconfig wins for both.
    if _settings is not None and _settings.kubeconfig:
        return kubeclient.connection_info(_settings.kubeconfig, trust_env=settings.networking.trust_env)
    return kopf.login_via_client(settings=settings, **kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    if _settings is None:
        raise kopf.PermanentError("costslo.handlers.configure() was not called; start with `costslo run`")
    # Watch streams can go quiet without an error; reconnect before that goes unnoticed.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.posting.enabled = False  # our own Events carry the numbers
    # Every status write comes back as a watch event; kopf's per-handler success lines would drown the log.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    memo.loop = OperatorLoop(_settings, _api_client)
    memo.task = asyncio.create_task(memo.loop.run())
    memo.http = await server.start(
        memo.loop.verdict, _settings.http_host, _settings.http_port, memo.loop.telemetry.exposition
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    http = getattr(memo, "http", None)
    if http is not None:
        await http.cleanup()


def _deleted(event: kopf.RawEvent) -> bool:
    return event["type"] == "DELETED"


@kopf.on.event("", "v1", "pods")
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.loop.inventory.pod(event["object"], deleted=_deleted(event))


def _wake_for(memo: kopf.Memo, body: Mapping[str, Any], kind: str, name: str) -> None:
    memo.loop.wake_for(str(body["metadata"].get("namespace")), kind, name)


@kopf.on.event("apps", "v1", "replicasets")
async def replicaset_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # A new ReplicaSet may be a new revision: the gate pauses it now, not at the next interval.
    body: Mapping[str, Any] = event["object"]
    if memo.loop.inventory.replicaset(body, deleted=_deleted(event)):
        owners: list[Mapping[str, Any]] = body["metadata"].get("ownerReferences") or []
        for owner in owners:
            if owner.get("controller"):
                _wake_for(memo, body, str(owner.get("kind")), str(owner.get("name")))


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # A resumed, re-templated or overridden Deployment is answered now, not at the next interval.
    body = event["object"]
    if memo.loop.inventory.deployment(body, deleted=_deleted(event)):
        _wake_for(memo, body, "Deployment", str(body["metadata"].get("name")))


@kopf.on.event("argoproj.io", "v1alpha1", "rollouts")
async def rollout_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    # Watched only where Argo Rollouts is installed: kopf finds the resource once its CRD appears.
    body = event["object"]
    if memo.loop.inventory.rollout(body, deleted=_deleted(event)):
        _wake_for(memo, body, "Rollout", str(body["metadata"].get("name")))


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def autoscaler_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.loop.inventory.autoscaler_object(event["object"], deleted=_deleted(event))


@kopf.on.event("", "v1", "nodes")
async def node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.loop.inventory.node(event["object"], deleted=_deleted(event))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def costslo_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.loop.costslo(event["object"], deleted=_deleted(event))
    if _deleted(event):
        # A CostSLO deleted while its gate holds a pause must not leave the Deployment paused for good.
        await asyncio.to_thread(memo.loop.release, event["object"])
