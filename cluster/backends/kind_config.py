"""The kind cluster config: the catalogue's nodes (names, labels, taints) on real kubelets.

kind names its containers itself (``<cluster>-control-plane``, ``<cluster>-worker2``),
but the Kubernetes node name is kubeadm's ``nodeRegistration.name``, which a
per-node ``kubeadmConfigPatches`` entry sets. So ``kubectl get nodes`` shows
``cpu-node-0`` .. ``gpu-node-1`` exactly as on the embedded cluster. Four
containers, not five: ``cpu-node-0`` is also the control plane, untainted, as a
single-node kind cluster is.
"""
from __future__ import annotations

from mlops_drill.cluster.kindbuild.gobuild import COREDNS_VERSION
from mlops_drill.cluster.gpu.products import product
from mlops_drill.cluster.nodes import NODE_POOLS, NodeSpec

CONTROL_PLANE_NODE = NODE_POOLS[0].name


def node_labels(spec: NodeSpec) -> dict[str, str]:
    """The catalogue's labels a kubelet may set on itself (``--node-labels``)."""
    return {
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": spec.zone.rsplit("-", 1)[0],
        "topology.kubernetes.io/zone": spec.zone,
        "pool": spec.pool,
        # GPU feature discovery's label; kubelets may set nvidia.com labels on themselves
        **({"nvidia.com/gpu.product": product(spec.gpu_product).label} if spec.gpu_product else {}),
        **spec.labels,
    }


def _registration(spec: NodeSpec, control_plane: bool) -> dict:
    taints = [dict(t) for t in spec.taints]
    return {"kind": "InitConfiguration" if control_plane else "JoinConfiguration",
            "nodeRegistration": {"name": spec.name, "taints": taints}}


def kind_config(nodes: tuple[NodeSpec, ...] = NODE_POOLS) -> dict:
    """kind's ``Cluster`` document for ``nodes`` (the first is the control plane)."""
    import yaml

    entries = []
    for index, spec in enumerate(nodes):
        control_plane = index == 0
        entries.append({
            "role": "control-plane" if control_plane else "worker",
            "labels": node_labels(spec),
            "kubeadmConfigPatches": [yaml.safe_dump(_registration(spec, control_plane))],
        })
    cluster_patches = [
        # kubelet 1.36 refuses cgroup v1 hosts unless told otherwise; on cgroup v2 this changes nothing
        # seccompDefault: every container gets the runtime's default seccomp profile, as hardened
        # clusters do (no user namespaces, mounts or kernel log from a pod; embedded pods have the same)
        yaml.safe_dump({"kind": "KubeletConfiguration", "failCgroupV1": False, "seccompDefault": True}),
        # kubeadm 1.36 names CoreDNS v1.14.2; the locally built image is the proxy's nearest, v1.14.3
        yaml.safe_dump({"kind": "ClusterConfiguration", "dns": {"imageTag": COREDNS_VERSION}}),
    ]
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "networking": {"kubeProxyMode": "nftables"},
        "kubeadmConfigPatches": cluster_patches,
        "nodes": entries,
    }
