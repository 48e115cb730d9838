"""A Kubernetes API client from a kubeconfig path, else in-cluster, else the default kubeconfig; and the same
identity for kopf's own watches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import kopf


def api_client(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def connection_info(kubeconfig: str, *, trust_env: bool) -> kopf.ConnectionInfo:
    """kopf's credentials from one kubeconfig file. kopf's default login prefers in-cluster credentials,
    so without this an explicit --kubeconfig would steer the operator's writes but not its watches."""
    import kopf
    from kubernetes import client, config

    loaded = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=loaded)
    # The client keeps the bearer token (a static token, a token file or an exec/auth-provider result)
    # as an Authorization header value: "Bearer <token>".
    header = loaded.get_api_key_with_prefix("BearerToken") or loaded.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=loaded.host,
        ca_path=loaded.ssl_ca_cert,
        insecure=not loaded.verify_ssl,
        username=loaded.username or None,
        password=loaded.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=loaded.cert_file,
        private_key_path=loaded.key_file,
        trust_env=trust_env,
    )
