"""The one GPU device plugin the seats of an existing cluster share.

Why the server deploys it and not each seat: on real kubelets a device plugin
registers ``nvidia.com/gpu`` with the kubelet of its node, and a second plugin
per seat would take the registration from the first. A cluster that already
advertises GPUs (NVIDIA's plugin, or a kind cluster of ours where a drill ran)
is left as it is; one that has none gets ours, as the single-user baseline
deploys it.
"""
from __future__ import annotations

import copy
import logging

log = logging.getLogger("mlops_drill.drills")

PLUGIN_NAMESPACE = "gpu-operator"


def advertises_gpus(core) -> bool:
    return any(int((n.status.allocatable or {}).get("nvidia.com/gpu", "0") or 0) > 0
               for n in core.list_node().items)


def ensure_device_plugin(backend) -> bool:
    """Deploy the baseline's device plugin DaemonSet when no node advertises a GPU; True when deployed."""
    from kubernetes import client

    from mlops_drill.cluster import kube
    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    core = client.CoreV1Api(kube.api_client(backend.kubeconfig(), None))
    if advertises_gpus(core):
        return False
    ctx = context_for(backend)
    plugin = copy.deepcopy(baseline._plugin_manifest("deviceplugin/daemonset.yaml"))
    ctx.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PLUGIN_NAMESPACE}}])
    ctx.apply([plugin])
    log.info("no node of %s advertised nvidia.com/gpu: deployed the device plugin in %s",
             backend.name, PLUGIN_NAMESPACE)
    return True


def _gpus(resources: dict | None) -> int:
    return int(((resources or {}).get("requests") or {}).get("nvidia.com/gpu", 0) or 0)


def gpus_per_seat() -> int:
    """GPUs one seat's baseline Deployments hold (replicas x requests): what each seat takes for good."""
    from mlops_drill.mlplatform.manifests import baseline_documents

    total = 0
    for doc in baseline_documents():
        if doc["kind"] == "Deployment":
            spec = doc["spec"]
            total += int(spec.get("replicas", 1)) * sum(
                _gpus(c.get("resources")) for c in spec["template"]["spec"]["containers"])
    return total


def gpus_free(backend) -> int:
    """Allocatable nvidia.com/gpu of the cluster's nodes, less what the pods bound to a node request
    (a pod the scheduler could not place holds no GPU)."""
    from kubernetes import client

    from mlops_drill.cluster import kube

    core = client.CoreV1Api(kube.api_client(backend.kubeconfig(), None))
    allocatable = sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", "0") or 0)
                      for n in core.list_node().items)
    held = sum(_gpus(c.resources.to_dict() if c.resources else None)
               for p in core.list_pod_for_all_namespaces().items
               if p.spec.node_name and p.status.phase in ("Pending", "Running")
               for c in p.spec.containers)
    return allocatable - held
