"""Access to the lab from tests: connection details, Kubernetes and Prometheus clients, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "hack" / "lab" / "lab.sh"
T = TypeVar("T")


def lab_dir() -> Path:
    if "COSTSLO_LAB_DIR" in os.environ:
        return Path(os.environ["COSTSLO_LAB_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "costslo" / "lab"


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Polls `check` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # transient API errors while things start
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f": {last_error}" if last_error else "")
    )


@dataclass
class Lab:
    info: dict[str, Any]
    api: client.ApiClient

    @property
    def kubeconfig(self) -> str:
        return str(self.info["kubeconfig"])

    @property
    def prometheus_url(self) -> str:
        return str(self.info["prometheusUrl"])

    @property
    def simulator_url(self) -> str:
        return str(self.info["simulatorUrl"])

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query; returns the result vector."""
        resp = requests.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=10)
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def truth(self) -> dict[str, Any]:
        resp = requests.get(f"{self.simulator_url}/truth", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The lab's kubectl; `stdin` feeds e.g. `apply -f -`."""
        kubectl = Path(self.info["toolsDir"]) / "kubectl"
        return subprocess.run(
            [str(kubectl), "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
        )

    @contextmanager
    def namespace(self, prefix: str = "t") -> Iterator[str]:
        """A fresh namespace, deleted afterwards."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            self.core.delete_namespace(name)

    @contextmanager
    def namespaces(self, *keys: str, prefix: str = "") -> Iterator[dict[str, str]]:
        """One fresh namespace per key ({key: name}), all deleted afterwards."""
        with ExitStack() as stack:
            yield {key: stack.enter_context(self.namespace(f"{prefix}{key}")) for key in keys}


def _running_lab() -> dict[str, Any] | None:
    info_file = lab_dir() / "lab.json"
    if not info_file.exists():
        return None
    info = json.loads(info_file.read_text())
    try:
        requests.get(f"{info['prometheusUrl']}/-/ready", timeout=2).raise_for_status()
        requests.get(f"{info['simulatorUrl']}/healthz", timeout=2).raise_for_status()
        # A lab started before Argo Rollouts joined it lacks the controller: `up` adds what is missing.
        requests.get(f"{info['argoRolloutsUrl']}/healthz", timeout=2).raise_for_status()
    except (requests.RequestException, KeyError):
        return None
    return dict(info)


def run_lab(command: str) -> None:
    """`lab.sh` with its arguments, e.g. "up" or "stop prometheus"."""
    subprocess.run(["bash", str(LAB_SCRIPT), *command.split()], check=True)


@contextmanager
def lab_session() -> Iterator[Lab]:
    """Reuses a healthy lab, or starts one and stops it afterwards (unless COSTSLO_KEEP_LAB=1)."""
    info = _running_lab()
    started_here = info is None
    keep = os.environ.get("COSTSLO_KEEP_LAB") == "1"
    try:
        if started_here:
            run_lab("up")
            info = _running_lab()
            assert info is not None, "the lab did not come up"
        assert info is not None
        api = config.new_client_from_config(config_file=info["kubeconfig"])
        yield Lab(info=info, api=api)
    finally:
        # Whatever state it is in (half started, a process crashed), a lab started here is stopped here.
        if started_here and not keep:
            run_lab("down")


def deployment_available(lab: Lab, ns: str, name: str, replicas: int) -> bool:
    """The Deployment's current generation is fully rolled out with `replicas` available pods."""
    d = lab.apps.read_namespaced_deployment(name, ns)
    return bool(
        d.status.available_replicas == replicas
        and d.status.updated_replicas == replicas
        and d.status.replicas == replicas
        and d.status.observed_generation == d.metadata.generation
    )
