"""Hot standby: whether another operator instance of higher priority is alive, so this one stays idle.

kopf's peering pauses the watches of an outranked instance; the evaluation loop is ours and must pause with
them, or two instances would pause and resume the same Deployments. The rule is kopf's: a peer outranks us
when its priority is higher and its last heartbeat (`lastseen` + `lifetime`) has not expired. Priorities are
drawn at random per process, so two instances practically never tie (kopf freezes every peer on a tie).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"
MAX_PRIORITY = 2**31 - 1


@dataclass(frozen=True)
class Peering:
    name: str
    identity: str
    priority: int
    namespace: str | None = None  # a namespaced operator peers through a KopfPeering in this namespace

    @classmethod
    def drawn(cls, name: str, namespace: str | None = None, priority: int | None = None) -> Peering:
        rng = random.SystemRandom()
        identity = f"costslo@{socket.gethostname()}/{rng.getrandbits(48):012x}"
        return cls(
            name, identity, priority if priority is not None else rng.randint(1, MAX_PRIORITY), namespace
        )


def outranking(peers: Mapping[str, Any], me: Peering, now: datetime) -> list[str]:
    """The live peers of higher priority, from a peering object's status ({identity: {priority, ...}})."""
    out = []
    for identity, info in peers.items():
        if identity == me.identity or not isinstance(info, Mapping):
            continue
        try:
            priority = int(info.get("priority", 0))
            lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
            seen = datetime.fromisoformat(str(info["lastseen"]))
        except (KeyError, TypeError, ValueError):
            continue
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if priority > me.priority and seen + lifetime > now:
            out.append(identity)
    return sorted(out)


class PeerCheck:
    """Reads the peering object; answers whether this instance is the one to act."""

    def __init__(self, api_client: Any, me: Peering) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self.me = me

    def outranked_by(self) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        obj: Any
        try:
            if self.me.namespace:
                obj = self._custom.get_namespaced_custom_object(
                    PEERING_GROUP, PEERING_VERSION, self.me.namespace, "kopfpeerings", self.me.name
                )
            else:
                obj = self._custom.get_cluster_custom_object(
                    PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", self.me.name
                )
        except ApiException as exc:
            if exc.status == 404:
                return []  # no peering object: kopf runs standalone, and so do we
            raise
        return outranking(dict(dict(obj).get("status") or {}), self.me, datetime.now(UTC))
