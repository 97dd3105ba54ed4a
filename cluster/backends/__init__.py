"""Cluster backends: one interface (:class:`Backend`), three executors."""
from __future__ import annotations

from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus
from mlops_drill.errors import DrillError

BACKENDS = ("embedded", "kind", "existing")


def get_backend(kind: str = "embedded", name: str = "mlops-drill", kubeconfig: str | None = None,
                context: str | None = None) -> Backend:
    """The backend named ``kind``; unknown names are a one-line error."""
    if kind == "embedded":
        from mlops_drill.cluster.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(name)
    if kind == "kind":
        from mlops_drill.cluster.backends.kind import KindBackend

        return KindBackend(name)
    if kind == "existing":
        from mlops_drill.cluster.backends.existing import ExistingBackend

        return ExistingBackend(name, kubeconfig=kubeconfig, context=context)
    raise DrillError(f"--backend {kind}: unknown backend (choose one of {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "ClusterInfo", "ClusterStatus", "get_backend"]
