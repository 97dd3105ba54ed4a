"""The kubelet's device manager, for KWOK nodes: GPU inventory -> node status.

A real kubelet learns about GPUs from the device plugin and publishes
``nvidia.com/gpu`` in the node's capacity (every device ever advertised) and
allocatable (healthy devices; zero once the plugin's socket is gone). Here the
inventory lives in ConfigMap ``gpu-inventory`` in the engine's namespace, which
faults edit; this controller renders it onto the nodes (capacity, allocatable,
GPU feature-discovery labels) and into the state file ``nvidia-smi`` and the
device-plugin pods read.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_drill.cluster.gpu.model import GpuNode, new_node
from mlops_drill.cluster.nodes import gpu_product_of

log = logging.getLogger("mlops_drill.gpu")

SYSTEM_NAMESPACE = "mlops-drill-system"
INVENTORY = "gpu-inventory"
RESOURCE = "nvidia.com/gpu"


def parse_inventory(data: dict[str, str] | None) -> dict[str, GpuNode]:
    nodes = {}
    for name, text in (data or {}).items():
        try:
            nodes[name] = GpuNode.model_validate_json(text)
        except ValueError as exc:
            log.error("gpu-inventory key %s is not a valid GPU node model: %s", name, str(exc).splitlines()[0])
    return nodes


def node_patch(model: GpuNode) -> dict[str, Any]:
    """Status and labels for one node, as the kubelet and GPU feature discovery would set them."""
    driver = (model.driver_version.split(".") + ["", "", ""])[:3]
    runtime = (model.cuda_version.split(".") + ["", ""])[:2]
    return {
        "status": {
            "capacity": {RESOURCE: str(model.capacity)},
            "allocatable": {RESOURCE: str(model.allocatable)},
        },
        "labels": {
            "nvidia.com/gpu.product": model.product.replace(" ", "-"),
            "nvidia.com/gpu.memory": str(model.memory_total_mib),
            "nvidia.com/gpu.count": str(model.capacity),
            "nvidia.com/cuda.driver.major": model.driver_version.split(".")[0],
            "nvidia.com/cuda.driver.minor": model.driver_version.split(".")[1],
            "nvidia.com/cuda.driver.rev": model.driver_version.split(".")[2] if model.driver_version.count(".") > 1 else "",
            "nvidia.com/cuda.runtime.major": model.cuda_version.split(".")[0],
            "nvidia.com/cuda.runtime.minor": model.cuda_version.split(".")[1],
            # The labels current GPU feature discovery sets (the ones above are its older names).
            "nvidia.com/cuda.driver-version.full": model.driver_version,
            "nvidia.com/cuda.driver-version.major": driver[0],
            "nvidia.com/cuda.driver-version.minor": driver[1],
            "nvidia.com/cuda.driver-version.revision": driver[2],
            "nvidia.com/cuda.runtime-version.full": model.cuda_version,
            "nvidia.com/cuda.runtime-version.major": runtime[0],
            "nvidia.com/cuda.runtime-version.minor": runtime[1],
            "nvidia.com/mig.capable": "true",
            "nvidia.com/gpu.present": "true",
        },
    }


def write_state(path: Path, nodes: dict[str, GpuNode]) -> None:
    """Atomically replace the JSON state file (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({n: m.model_dump(mode="json") for n, m in sorted(nodes.items())}, indent=1))
    os.replace(tmp, path)


class DeviceManager:
    """Keeps nodes and the state file in step with the inventory ConfigMap."""

    def __init__(self, core, state_file: Path, gpu_nodes: tuple[str, ...],
                 products: Mapping[str, str] | None = None) -> None:
        self.core = core
        self.state_file = state_file
        self.gpu_nodes = gpu_nodes
        # node -> GPU product, from the cluster config (``ClusterConfig.products``); H100 where unset.
        self.products = dict(products or {})

    def ensure_inventory(self) -> None:
        """Create the namespace and a healthy inventory if there is none (first start)."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.create_namespace({"metadata": {"name": SYSTEM_NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        body = {"metadata": {"name": INVENTORY, "namespace": SYSTEM_NAMESPACE},
                "data": {n: new_node(n, product_name=self.products.get(n) or gpu_product_of(n)).model_dump_json()
                         for n in self.gpu_nodes}}
        try:
            self.core.create_namespaced_config_map(SYSTEM_NAMESPACE, body)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def apply(self, data: dict[str, str] | None) -> None:
        nodes = parse_inventory(data)
        write_state(self.state_file, nodes)
        for name, model in nodes.items():
            patch = node_patch(model)
            try:
                self.core.patch_node_status(name, {"status": patch["status"]})
                self.core.patch_node(name, {"metadata": {"labels": patch["labels"]}})
            except Exception as exc:  # node not created yet: the next inventory event retries
                log.warning("node %s: GPU status not updated: %s", name, str(exc).splitlines()[0])
