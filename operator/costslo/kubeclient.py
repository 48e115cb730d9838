"""A Kubernetes API client from a kubeconfig path, else in-cluster, else the default kubeconfig."""

from __future__ import annotations

from typing import Any


def api_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()
