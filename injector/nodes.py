"""Putting a node back as the node pool registered it, after a drill.

GPU drills end with the candidate cordoning, draining, annotating or labelling a
node, which the baseline manifests do not cover (nodes belong to the cluster,
not the platform). ``restore_node`` undoes exactly that: it uncordons, puts the
pool's taints back and drops labels and annotations that neither the node pool,
Kubernetes itself nor GPU feature discovery set.
"""
from __future__ import annotations

from mlops_drill.cluster.nodes import NODE_POOLS, node_manifest
from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext

# Keys in these domains belong to Kubernetes, KWOK or GPU feature discovery, never to a person.
SYSTEM_DOMAINS = ("kubernetes.io", "k8s.io", "nvidia.com")


def _system_key(key: str) -> bool:
    domain = key.split("/", 1)[0] if "/" in key else ""
    return any(domain == d or domain.endswith("." + d) for d in SYSTEM_DOMAINS)


def restore_node(ctx: DrillContext, name: str) -> None:
    """Uncordon ``name``, restore its pool taints and drop hand-added labels and annotations."""
    spec = next((s for s in NODE_POOLS if s.name == name), None)
    if spec is None:
        raise DrillError(f"node {name} is not one of the drill's node pools")
    want = node_manifest(spec)
    node = ctx.core.read_node(name)
    meta = {}
    for field in ("labels", "annotations"):
        current = getattr(node.metadata, field) or {}
        keep = want["metadata"].get(field) or {}
        extra = {k: None for k in current if k not in keep and not _system_key(k)}
        if extra:
            meta[field] = extra
    body = {"metadata": meta, "spec": {"unschedulable": None, "taints": want["spec"].get("taints")}}
    ctx.core.patch_node(name, body)
