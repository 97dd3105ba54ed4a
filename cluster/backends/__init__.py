"""Cluster backends: one interface (:class:`Backend`), three executors."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus
from mlops_drill.errors import DrillError

if TYPE_CHECKING:
    from mlops_drill.cluster.config import ClusterConfig

BACKENDS = ("embedded", "kind", "existing")


def get_backend(kind: str = "embedded", name: str = "mlops-drill", kubeconfig: str | None = None,
                context: str | None = None, config: "ClusterConfig | None" = None) -> Backend:
    """The backend named ``kind``; unknown names are a one-line error.

    ``config`` (``cluster up --config``) chooses the GPU nodes' products; the existing
    backend's nodes are the cluster's own, so it takes none.
    """
    if kind == "embedded":
        from mlops_drill.cluster.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(name, config=config)
    if kind == "kind":
        from mlops_drill.cluster.backends.kind import KindBackend

        return KindBackend(name, config=config)
    if kind == "existing" and config is not None:
        raise DrillError("--config: an existing cluster's nodes are its own; GPU products can be chosen "
                         "for the embedded and kind backends")
    if kind == "existing":
        from mlops_drill.cluster.backends.existing import ExistingBackend

        return ExistingBackend(name, kubeconfig=kubeconfig, context=context)
    raise DrillError(f"--backend {kind}: unknown backend (choose one of {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "ClusterInfo", "ClusterStatus", "get_backend"]
