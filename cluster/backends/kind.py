"""kind backend: real kubelets in Docker containers, through pytest-kind's KindCluster.

Needs a Docker engine. Node names are kind's own (``<name>-worker``, ...); we
give them the same pools (labels and GPU taint) as the embedded nodes, and the
GPUs come from the gRPC device plugin (``mlops_drill.cluster.gpu.deviceplugin``)
instead of the KWOK face.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from mlops_drill import paths
from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus, ComponentHealth
from mlops_drill.errors import DrillError

KIND_CONFIG = """\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
- role: worker
  labels: {pool: cpu}
- role: worker
  labels: {pool: cpu}
- role: worker
  labels: {pool: gpu, nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
- role: worker
  labels: {pool: gpu, nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
"""


# Where each GPU node keeps its inventory (the plugin DaemonSet mounts the folder, not the file).
GPU_STATE_FILE = "/etc/mlops-drill/gpu.json"
# Mounted by the plugin's Allocate at /usr/bin/nvidia-smi; runs in our platform image's Python.
NVIDIA_SMI_LAUNCHER = '#!/bin/sh\nexec python3 -m mlops_drill.cluster.gpu.nvidia_smi "$@"\n'


def docker_available() -> tuple[bool, str]:
    """Whether a Docker *engine* answers (the CLI alone is not enough for kind)."""
    docker = shutil.which("docker")
    if not docker:
        return False, "no docker command on PATH"
    try:
        result = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False, "docker info timed out: no Docker engine answers"
    if result.returncode != 0 or not result.stdout.strip():
        return False, "no Docker engine answers (docker info failed)"
    return True, result.stdout.strip()


class KindBackend(Backend):
    kind = "kind"

    def __init__(self, name: str = "mlops-drill") -> None:
        super().__init__(name)
        self.state = paths.cluster_dir(f"kind-{name}")
        self.docker = os.environ.get("MLOPS_DRILL_DOCKER") or "docker"

    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    def _cluster(self):
        from pytest_kind import KindCluster

        kubectl = shutil.which("kubectl")
        return KindCluster(self.name, kubeconfig=self.kubeconfig(),
                           kubectl_path=Path(kubectl) if kubectl else None,
                           kind_path=Path(shutil.which("kind")) if shutil.which("kind") else None)

    def up(self, progress: bool = True) -> ClusterInfo:
        ok, why = docker_available()
        if not ok:
            raise DrillError(f"kind backend needs Docker: {why}; use --backend embedded (no Docker needed)")
        self.state.mkdir(parents=True, exist_ok=True)
        config = self.state / "kind.yaml"
        config.write_text(KIND_CONFIG)
        cluster = self._cluster()
        cluster.create(config)
        nodes = [n.split("/")[-1] for n in cluster.kubectl("get", "nodes", "-l", "pool=gpu", "-o", "name").split()]
        for node in nodes:
            cluster.kubectl("taint", "node", node, "nvidia.com/gpu=present:NoSchedule", "--overwrite")
        self.prepare_gpu_nodes(nodes)
        return ClusterInfo(self.name, self.kind, self.kubeconfig(), "kind", None)

    # -- what the kubelets of kind need from us ------------------------------------------------
    def _on_node(self, node: str, script: str, stdin: str) -> None:
        """Run ``script`` in a kind node's container (the node *is* a Docker container)."""
        result = subprocess.run([self.docker, "exec", "-i", node, "sh", "-c", script], input=stdin,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DrillError(f"docker exec {node}: {last[0][:200]}")

    def _put_file(self, node: str, path: str, text: str, mode: str = "0644") -> None:
        """Atomically replace ``path`` on the node: the plugin and nvidia-smi never read half a file."""
        folder = path.rsplit("/", 1)[0]
        self._on_node(node, f'mkdir -p {folder} && cat > {path}.tmp && chmod {mode} {path}.tmp && '
                            f'mv {path}.tmp {path}', text)

    def prepare_gpu_nodes(self, nodes: list[str]) -> None:
        """The fake nvidia-smi where the plugin's Allocate mounts it from, and a healthy inventory."""
        from kubernetes import client

        from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE, DeviceManager
        from mlops_drill.cluster.gpu.deviceplugin.plugin import DEFAULT_NVIDIA_SMI_HOST_PATH
        from mlops_drill.cluster.kube import api_client

        for node in nodes:
            self._put_file(node, str(DEFAULT_NVIDIA_SMI_HOST_PATH), NVIDIA_SMI_LAUNCHER, mode="0755")
        core = client.CoreV1Api(api_client(self.kubeconfig()))
        DeviceManager(core, self.state / "gpu-state.json", tuple(nodes)).ensure_inventory()
        self.publish_gpu_inventory(core.read_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE).data or {})

    def publish_gpu_inventory(self, data: dict[str, str]) -> None:
        """Each GPU node gets its own inventory file, which its plugin pod and GPU containers read."""
        for node, text in sorted(data.items()):
            self._put_file(node, GPU_STATE_FILE, text)

    def prepare_images(self, images: list[str]) -> None:
        """Build the platform and its release tags once, then ``kind load`` what the nodes lack."""
        from mlops_drill.cluster.backends.kind_images import build_images

        record = self.state / "images-loaded.json"
        loaded = set(json.loads(record.read_text())) if record.is_file() else set()
        missing = [i for i in images if i not in loaded]
        if not missing:
            return
        cluster = self._cluster()
        for image in build_images(missing, docker=self.docker):
            cluster.load_docker_image(image)
            loaded.add(image)
            record.write_text(json.dumps(sorted(loaded)))

    def down(self) -> None:
        ok, _ = docker_available()
        if ok:
            self._cluster().delete()
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> ClusterStatus:
        ok, why = docker_available()
        if not ok:
            return ClusterStatus(None, [ComponentHealth("docker", False, why)], [], problem=why)
        from mlops_drill.cluster.backends.existing import cluster_status

        return cluster_status(ClusterInfo(self.name, self.kind, self.kubeconfig(), "kind", None), None)
