"""Small helpers around the official Kubernetes Python client."""
from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client, config


def api_client(kubeconfig: Path | str, context: str | None = None) -> client.ApiClient:
    """An ApiClient bound to one kubeconfig, never the process-wide default."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), context=context, client_configuration=cfg)
    cfg.retries = 0
    return client.ApiClient(cfg)


def api_ready(api: client.ApiClient, timeout: float = 2.0) -> bool:
    """True when the API server answers /readyz with ok."""
    try:
        method, url, headers, body, post = api.param_serialize("GET", "/readyz", auth_settings=["BearerToken"])
        response = api.call_api(method, url, headers, body, post, _request_timeout=timeout)
        return response.status == 200
    except Exception:  # connection refused, TLS errors, timeouts: all mean "not ready"
        return False


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition") -> None:
    """Poll ``predicate`` until it is truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def nodes_ready(api: client.ApiClient, names: tuple[str, ...] | list[str]) -> bool:
    core = client.CoreV1Api(api)
    try:
        items = core.list_node(_request_timeout=5).items
    except Exception:
        return False
    ready = {
        n.metadata.name
        for n in items
        if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
    }
    return set(names) <= ready
