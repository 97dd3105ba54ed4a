"""The KWOK face of the fake GPU layer: node capacity, scheduling, plugin faults, nvidia-smi via exec."""
from __future__ import annotations

import json
import time

import pytest
from polling import wait

from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE
from mlops_drill.cluster.gpu.model import GpuNode

pytestmark = pytest.mark.cluster




def gpu_counts(cluster, node: str) -> tuple[str, str]:
    status = cluster.json("get", "node", node)["status"]
    return status["capacity"].get("nvidia.com/gpu"), status["allocatable"].get("nvidia.com/gpu")


def edit_inventory(cluster, node: str, change) -> GpuNode:
    data = cluster.json("get", "configmap", INVENTORY, "-n", SYSTEM_NAMESPACE)["data"]
    model = GpuNode.model_validate_json(data[node])
    change(model)
    patch = json.dumps({"data": {node: model.model_dump_json()}})
    cluster.kubectl("patch", "configmap", INVENTORY, "-n", SYSTEM_NAMESPACE, "--type=merge", "-p", patch)
    return model


def test_describe_node_shows_four_gpus(cluster):
    describe = cluster.kubectl("describe", "node", "gpu-node-0").stdout
    capacity = describe.split("Capacity:")[1].split("Allocatable:")[0]
    allocatable = describe.split("Allocatable:")[1].split("System Info:")[0]
    assert "nvidia.com/gpu:     4" in capacity
    assert "nvidia.com/gpu:     4" in allocatable
    labels = cluster.json("get", "node", "gpu-node-0")["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "4"
    assert "nvidia.com/gpu" not in cluster.json("get", "node", "cpu-node-0")["status"]["capacity"]


def test_five_gpu_pod_gets_insufficient_gpu_event(cluster):
    ns = cluster.namespace("gpu5")
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: big-train, namespace: {ns}}}
spec:
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
  containers: [{{name: main, image: pytorch/pytorch:2.4.0, resources: {{limits: {{nvidia.com/gpu: 5}}}}}}]
""")
    events = wait(lambda: [e for e in cluster.json("get", "events", "-n", ns)["items"]
                           if e["reason"] == "FailedScheduling"], what="FailedScheduling")
    assert "Insufficient nvidia.com/gpu" in events[0]["message"], events[0]["message"]


def test_crashed_plugin_drops_allocatable_within_3s_and_capacity_stays(cluster):
    assert gpu_counts(cluster, "gpu-node-1") == ("4", "4")
    started = time.monotonic()
    edit_inventory(cluster, "gpu-node-1", lambda m: setattr(m, "plugin_state", "crashed"))
    wait(lambda: gpu_counts(cluster, "gpu-node-1") == ("4", "0"), timeout=3, what="allocatable 0", interval=0.05)
    assert time.monotonic() - started < 3
    edit_inventory(cluster, "gpu-node-1", lambda m: setattr(m, "plugin_state", "ok"))
    wait(lambda: gpu_counts(cluster, "gpu-node-1") == ("4", "4"), timeout=5, what="allocatable back to 4")


def test_unhealthy_device_reduces_allocatable(cluster):
    def break_one(model: GpuNode) -> None:
        model.devices[1].healthy = False

    def heal(model: GpuNode) -> None:
        model.devices[1].healthy = True

    edit_inventory(cluster, "gpu-node-0", break_one)
    wait(lambda: gpu_counts(cluster, "gpu-node-0") == ("4", "3"), timeout=5, what="allocatable 3")
    edit_inventory(cluster, "gpu-node-0", heal)
    wait(lambda: gpu_counts(cluster, "gpu-node-0") == ("4", "4"), timeout=5, what="allocatable 4")


def test_nvidia_smi_through_kubectl_exec_on_a_gpu_pod(cluster):
    ns = cluster.namespace("smi")
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: cuda, namespace: {ns}, labels: {{mlops-drill.dev/process: "true"}}}}
spec:
  nodeName: gpu-node-0
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
  containers:
  - name: main
    image: nvcr.io/nvidia/cuda:13.0.0-base-ubuntu24.04
    command: [python, -c, "import os, time; print('visible', os.environ.get('NVIDIA_VISIBLE_DEVICES')); time.sleep(3600)"]
    resources: {{limits: {{nvidia.com/gpu: 2}}}}
""")
    wait(lambda: cluster.json("get", "pod", "cuda", "-n", ns)["status"].get("containerStatuses", [{}])[0]
         .get("state", {}).get("running"), what="process running")
    result = cluster.kubectl("exec", "cuda", "-n", ns, "--", "nvidia-smi", "-L")
    logs = wait(lambda: cluster.kubectl("logs", "cuda", "-n", ns).stdout, what="pod log")
    visible = logs.split("visible ")[1].split()[0].split(",")
    assert len(visible) == 2 and all(v.startswith("GPU-") for v in visible)
    # As in a real container: only the two granted GPUs, numbered from 0, with their own UUIDs.
    assert result.stdout.strip().splitlines() == [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {uuid})"
                                                  for i, uuid in enumerate(visible)], result.stdout
    table = cluster.kubectl("exec", "cuda", "-n", ns, "--", "nvidia-smi").stdout
    assert "NVIDIA-SMI 580.159.04" in table and "CUDA Version: 13.0" in table
