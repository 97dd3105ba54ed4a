"""The drill's node pools: two CPU nodes and two tainted GPU nodes (H100 by default).

The nodes look like a managed cloud node pool (instance types, zones, a real
kubelet version) so that `kubectl describe node` reads like production. GPU
capacity is *not* set here: the fake device plugin owns it, exactly as the real
one does, so a crashed plugin really removes allocatable GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mlops_drill.cluster import versions
from mlops_drill.cluster.gpu.products import H100, product

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_PRODUCT_LABEL = H100.label


@dataclass(frozen=True)
class NodeSpec:
    name: str
    pool: str
    instance_type: str
    zone: str
    cpu: str
    memory: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    # The GPU product of a GPU pool; its ``nvidia.com/gpu.product`` label follows it.
    gpu_product: str | None = None


NODE_POOLS: tuple[NodeSpec, ...] = (
    NodeSpec("cpu-node-0", "cpu", "n2-standard-16", "us-central1-a", "16", "64Gi"),
    NodeSpec("cpu-node-1", "cpu", "n2-standard-16", "us-central1-b", "16", "64Gi"),
    NodeSpec("gpu-node-0", "gpu", "a3-highgpu-4g", "us-central1-a", "104", "936Gi",
             taints=(GPU_TAINT,), gpu_product=H100.name),
    NodeSpec("gpu-node-1", "gpu", "a3-highgpu-4g", "us-central1-b", "104", "936Gi",
             taints=(GPU_TAINT,), gpu_product=H100.name),
)
GPU_NODES = tuple(n.name for n in NODE_POOLS if n.pool == "gpu")


def gpu_product_of(node_name: str) -> str:
    """The GPU product of a node pool's node (H100 for a node not in the pools)."""
    spec = next((n for n in NODE_POOLS if n.name == node_name), None)
    return spec.gpu_product if spec and spec.gpu_product else H100.name


def node_manifest(spec: NodeSpec) -> dict:
    """A Node object as a managed node pool would register it (status included: KWOK keeps it)."""
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": spec.zone.rsplit("-", 1)[0],
        "topology.kubernetes.io/zone": spec.zone,
        "pool": spec.pool,
        **({"nvidia.com/gpu.product": product(spec.gpu_product).label} if spec.gpu_product else {}),
        **spec.labels,
    }
    resources = {"cpu": spec.cpu, "memory": spec.memory, "pods": "110", "ephemeral-storage": "200Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels,
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"taints": [dict(t) for t in spec.taints]} if spec.taints else {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            # One loopback address: the KWOK kubelet API (logs, exec, port-forward) listens there.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": spec.name}],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.3 LTS",
                "kernelVersion": "6.8.0-1036-gcp",
                "containerRuntimeVersion": "containerd://2.1.4",
                "kubeletVersion": versions.KUBERNETES,
                "kubeProxyVersion": versions.KUBERNETES,
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    }


def ensure_nodes(api, pools: tuple[NodeSpec, ...] = NODE_POOLS) -> list[str]:
    """Create the node pools that are missing; returns the names created.

    ``api`` is a ``kubernetes.client.CoreV1Api``; ``pools`` the node pools with the
    cluster config's GPU products (``ClusterConfig.node_pools``). Existing nodes are
    left as they are, so a drill in progress keeps its state across ``cluster up``.
    """
    from kubernetes.client.exceptions import ApiException

    existing = {n.metadata.name for n in api.list_node().items}
    created = []
    for spec in pools:
        if spec.name in existing:
            continue
        try:
            api.create_node(node_manifest(spec))
            created.append(spec.name)
        except ApiException as exc:
            if exc.status != 409:
                raise
    return created
