"""Find another platform service the way the architecture contract says.

1. env ``<NAME>_URL`` (``model-registry`` -> ``MODEL_REGISTRY_URL``);
2. the ``MLOPS_DRILL_SERVICES`` table the process kubelet keeps current
   (``{"<namespace>/<service>": "127.0.0.1:<port>"}``), in the pod's own seat of a
   shared cluster when its namespace carries a seat prefix;
3. cluster DNS, ``http://<name>.<namespace>.svc.cluster.local``.

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
    table_path = os.environ.get("MLOPS_DRILL_SERVICES")
    if table_path:
        # A seat of a shared cluster finds its own copy of the service: same prefix as this pod's namespace.
        seat = namespace_prefix(os.environ.get("POD_NAMESPACE", ""))
        address = _table(table_path).get(f"{seat}{namespace}/{name}")
        if address:
            return address if "://" in address else f"http://{address}"
    return f"http://{name}.{namespace}.svc.cluster.local"


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
