"""Find another platform service the way the architecture contract says.

1. env ``<NAME>_URL`` (``model-registry`` -> ``MODEL_REGISTRY_URL``);
2. the ``MLOPS_DRILL_SERVICES`` table the process kubelet keeps current
   (``{"<namespace>/<service>": "127.0.0.1:<port>"}``), in the pod's own seat of a
   shared cluster when its namespace carries a seat prefix;
3. cluster DNS, ``http://<name>.<namespace>.svc.cluster.local``, the namespace
   with the pod's seat prefix (seats of an existing cluster run on real kubelets).

The table is re-read whenever its file changes, because Services come and go
while an app runs (a fault may delete one; a fix brings it back).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mlops_drill.cluster.seats.names import namespace_prefix

_cache: dict[str, tuple[tuple[int, int], dict[str, str]]] = {}


def env_var_name(name: str) -> str:
    """``model-registry`` -> ``MODEL_REGISTRY_URL``."""
    return name.upper().replace("-", "_").replace(".", "_") + "_URL"


def service_url(name: str, namespace: str) -> str:
    """Base URL (no trailing slash) of Service ``name`` in ``namespace``."""
    explicit = os.environ.get(env_var_name(name))
    if explicit:
        return explicit.rstrip("/")
    # A seat of a shared cluster finds its own copy of the service: same prefix as this pod's namespace.
    seat = namespace_prefix(own_namespace())
    table_path = os.environ.get("MLOPS_DRILL_SERVICES")
    if table_path:
        address = _table(table_path).get(f"{seat}{namespace}/{name}")
        if address:
            return address if "://" in address else f"http://{address}"
    return f"http://{name}.{seat}{namespace}.svc.cluster.local"


def own_namespace(resolv_conf: str = "/etc/resolv.conf") -> str:
    """The pod's namespace: ``POD_NAMESPACE`` (the process kubelet sets it), else the first DNS search domain.

    Why resolv.conf: a kubelet writes ``search <namespace>.svc.cluster.local ...`` into every
    ClusterFirst pod, so a container of a real cluster knows its namespace without the
    downward API or a service-account token mounted.
    """
    explicit = os.environ.get("POD_NAMESPACE")
    if explicit is not None:
        return explicit
    try:
        lines = Path(resolv_conf).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        words = line.split()
        if words[:1] == ["search"]:
            for domain in words[1:]:
                if domain.endswith(".svc.cluster.local") and domain.count(".") == 3:
                    return domain.split(".", 1)[0]
    return ""


def _table(path: str) -> dict[str, str]:
    try:
        st = Path(path).stat()
    except OSError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return cached[1] if cached else {}  # mid-write: keep the last good table
    table = {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}
    _cache[path] = (stamp, table)
    return table
