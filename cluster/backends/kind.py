"""kind backend: real kubelets and containerd in Docker containers, built and run offline.

``up`` builds (once, cached: ``mlops_drill.cluster.kindbuild``) kind, the node
image and the platform image, then creates the cluster with the catalogue's
nodes (``kind_config``). The kubeconfig is written to our state directory with
``--kubeconfig``; ``~/.kube/config`` is never touched. GPUs come from the gRPC
device plugin (``mlops_drill.cluster.gpu.deviceplugin``) registered with each
GPU node's real kubelet; each GPU node holds its inventory file and the fake
``nvidia-smi`` the plugin mounts into GPU containers.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mlops_drill import paths
from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus, ComponentHealth
from mlops_drill.cluster.config import ClusterConfig, saved_config, settle_config
from mlops_drill.errors import DrillError

# Where each GPU node keeps its inventory (the plugin DaemonSet mounts the folder, not the file).
GPU_STATE_FILE = "/etc/mlops-drill/gpu.json"
# Mounted by the plugin's Allocate at /usr/bin/nvidia-smi; runs in our platform image's Python.
NVIDIA_SMI_LAUNCHER = '#!/bin/sh\nexec python3 -m mlops_drill.cluster.gpu.nvidia_smi "$@"\n'
#: The platform's hostPath folders on GPU nodes (fraud-train's checkpoints and ledger), made ahead and
#: owned by the image's user (uid 1000): a kubelet would create them root-owned, unwritable to the pod.
#: The embedded kubelet does the same for its pods' host folders.
POD_HOST_FOLDERS = ("/var/lib/mlops-drill/fraud-train",)
POD_UID = 1000


def docker_available() -> tuple[bool, str]:
    """Whether a Docker *engine* answers (the CLI alone is not enough for kind)."""
    from mlops_drill.cluster.kindbuild.engine import engine_answers

    return engine_answers()


class KindBackend(Backend):
    kind = "kind"
    #: the platform's images are loaded into four nodes and its pods are real containers on two cores
    platform_start_timeout: float = 300

    def __init__(self, name: str = "mlops-drill", config: "ClusterConfig | None" = None,
                 state: Path | None = None) -> None:
        super().__init__(name)
        # ``state``: the cluster's folder, for a process started to act on it (the spot reclaimer), which
        # should not depend on the environment it inherited naming the same state root.
        self.state = Path(state) if state is not None else paths.cluster_dir(f"kind-{name}")
        self.requested_config = config  # None: the products the cluster was made with (or the defaults)
        self.docker = os.environ.get("MLOPS_DRILL_DOCKER") or "docker"
        self.timings: dict[str, float] = {}  # seconds per phase of the last `up` (for bench/)

    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    # -- tools ---------------------------------------------------------------------------------
    def _build(self, progress: bool):
        from mlops_drill.cluster.kindbuild.pipeline import ensure_kind_build

        return ensure_kind_build(progress=progress)

    @staticmethod
    def _kind_path() -> Path:
        from mlops_drill.cluster.kindbuild.gobuild import bin_dir

        return bin_dir() / "kind"

    @staticmethod
    def _kubectl_path() -> Path:
        from mlops_drill.cluster.kindbuild.gobuild import path_of

        return path_of("kubectl")

    def kubectl_path(self) -> Path | None:
        return self._kubectl_path()

    def _kind(self, *args: str, timeout: float = 600, stream: bool = False) -> subprocess.CompletedProcess:
        kind = self._kind_path()
        if not kind.is_file():
            raise DrillError(f"{kind}: not built yet; run `mlops-drill toolchain build --backend kind`")
        if stream:  # kind's own progress lines go to the user's terminal
            return subprocess.run([str(kind), *args], timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
        return subprocess.run([str(kind), *args], capture_output=True, text=True, timeout=timeout)

    def exists(self) -> bool:
        if not self._kind_path().is_file() or not docker_available()[0]:
            return False
        result = self._kind("get", "clusters")
        return self.name in result.stdout.split()

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        result = subprocess.run([str(self._kubectl_path()), "--kubeconfig", str(self.kubeconfig()), *args],
                                input=input, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise DrillError(f"kubectl {' '.join(args[:3])}: {(result.stderr or result.stdout).strip()[-300:]}")
        return result.stdout

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, progress: bool = True) -> ClusterInfo:
        import yaml

        from mlops_drill.cluster.backends.kind_config import kind_config

        started = time.monotonic()
        build = self._build(progress)
        self.timings["build"] = time.monotonic() - started
        self.state.mkdir(parents=True, exist_ok=True)
        ours = self.exists() and self.kubeconfig().is_file()
        cluster_config = settle_config(self.state, self.requested_config, ours, self.name)
        if not ours:
            if self.exists():  # a cluster whose kubeconfig we lost: only a fresh one is ours for sure
                self._kind("delete", "cluster", "--name", self.name)
            config = self.state / "kind.yaml"
            config.write_text(yaml.safe_dump(kind_config(cluster_config.node_pools()), sort_keys=False))
            if progress:
                print(f"creating kind cluster {self.name} from {build.node_image}", file=sys.stderr, flush=True)
            result = self._kind("create", "cluster", "--name", self.name, "--image", build.node_image,
                                "--config", str(config), "--kubeconfig", str(self.kubeconfig()), "--wait", "5m",
                                stream=progress)
            if result.returncode != 0:
                raise DrillError(f"kind create cluster {self.name} failed (exit {result.returncode}); "
                                 f"see `{self._kind_path()} export logs --name {self.name}`")
        self.kubeconfig().chmod(0o600)
        self.timings["create"] = time.monotonic() - started - self.timings["build"]
        self.wait_nodes_ready(timeout=300)
        self.timings["nodes_ready"] = time.monotonic() - started
        self.prepare_gpu_nodes(self.gpu_nodes())
        self.timings["total"] = time.monotonic() - started
        return self.info()

    def info(self) -> ClusterInfo:
        import yaml

        server = "(unknown)"
        try:
            server = yaml.safe_load(self.kubeconfig().read_text())["clusters"][0]["cluster"]["server"]
        except Exception:  # a missing or half-written kubeconfig only costs the address in the summary
            pass
        return ClusterInfo(self.name, self.kind, self.kubeconfig(), server, self._kubectl_path())

    def wait_nodes_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
            ready = [n["metadata"]["name"] for n in nodes
                     if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))]
            if nodes and len(ready) == len(nodes):
                return
            if time.monotonic() > deadline:
                raise DrillError(f"kind nodes not Ready after {timeout:.0f}s: "
                                 f"{sorted(set(n['metadata']['name'] for n in nodes) - set(ready))}")
            time.sleep(1)

    def node_containers(self) -> dict[str, str]:
        """Kubernetes node name -> kind's container (from the provider ID ``kind://docker/<cluster>/<container>``)."""
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json"))["items"]
        return {n["metadata"]["name"]: n["spec"]["providerID"].rsplit("/", 1)[-1] for n in nodes
                if n["spec"].get("providerID", "").startswith("kind://")}

    def gpu_nodes(self) -> list[str]:
        out = self.kubectl("get", "nodes", "-l", "pool=gpu", "-o", "jsonpath={.items[*].metadata.name}")
        return sorted(out.split())

    # -- what the kubelets of kind need from us ------------------------------------------------
    def _on_node(self, node: str, script: str, stdin: str) -> None:
        """Run ``script`` in a kind node's container (the node *is* a Docker container)."""
        container = self._containers().get(node, node)
        result = subprocess.run([self.docker, "exec", "-i", container, "sh", "-c", script], input=stdin,
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DrillError(f"docker exec {container}: {last[0][:200]}")

    def _containers(self) -> dict[str, str]:
        cached = getattr(self, "_container_map", None)
        if cached is None and not self.kubeconfig().is_file():
            return {}  # no cluster to ask: node names are taken as container names
        if cached is None:
            cached = self.node_containers()
            self._container_map = cached
        return cached

    def _pod_container(self, namespace: str, pod: str) -> tuple[str, str] | None:
        """(kind node, containerd container ID) of the pod's first running container."""
        obj = json.loads(self.kubectl("get", "pod", pod, "-n", namespace, "-o", "json"))
        node = obj["spec"].get("nodeName")
        for status in obj["status"].get("containerStatuses") or []:
            if status.get("containerID") and "running" in (status.get("state") or {}):
                return node, status["containerID"].split("://", 1)[1]
        return None

    def _crictl_inspect(self, namespace: str, pod: str) -> tuple[str, dict] | None:
        found = self._pod_container(namespace, pod)
        if found is None:
            return None
        node, container_id = found
        container = self._containers().get(node, node)
        result = subprocess.run([self.docker, "exec", container, "crictl", "inspect", container_id],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            return None
        return container, json.loads(result.stdout)

    def container_env(self, namespace: str, pod: str) -> dict[str, str] | None:
        inspected = self._crictl_inspect(namespace, pod)
        if inspected is None:
            return None
        env = inspected[1].get("info", {}).get("runtimeSpec", {}).get("process", {}).get("env") or []
        return dict(item.split("=", 1) for item in env if "=" in item)

    def signal_container(self, namespace: str, pod: str, signum: int) -> bool:
        """The signal goes to the container's main process from its node, where it is an ordinary process."""
        inspected = self._crictl_inspect(namespace, pod)
        if inspected is None:
            return False
        container, info = inspected
        pid = info.get("info", {}).get("pid")
        if not pid:
            return False
        signum = self._deliverable(container, int(pid), int(signum))
        result = subprocess.run([self.docker, "exec", container, "kill", f"-{signum}", str(int(pid))],
                                capture_output=True, text=True, timeout=30)
        return result.returncode == 0

    def _deliverable(self, container: str, pid: int, signum: int) -> int:
        """``signum``, or SIGKILL where the kernel would drop it.

        A container's main process is PID 1 of its PID namespace, and the kernel drops any
        signal sent to such an init from outside unless it has a handler (SIGKILL excepted).
        An embedded pod's process is no init, so a SIGABRT crashes it; here the same crash
        is a SIGKILL: the container still dies with an error and the kubelet restarts it
        (exit 137 instead of 134 for that first crash).
        """
        import signal as signals

        status = subprocess.run([self.docker, "exec", container, "cat", f"/proc/{pid}/status"],
                                capture_output=True, text=True, timeout=30).stdout
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        is_init = fields.get("NSpid", "").split()[-1:] == ["1"]
        caught = int(fields.get("SigCgt", "0").strip() or "0", 16)
        if is_init and signum not in (signals.SIGKILL, signals.SIGSTOP) and not caught & (1 << (signum - 1)):
            return int(signals.SIGKILL)
        return signum

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
            self._on_node(node, " && ".join(f"mkdir -p {f} && chown {POD_UID}:{POD_UID} {f}"
                                            for f in POD_HOST_FOLDERS), "")
        core = client.CoreV1Api(api_client(self.kubeconfig()))
        DeviceManager(core, self.state / "gpu-state.json", tuple(nodes),
                      saved_config(self.state).products()).ensure_inventory()
        self.publish_gpu_inventory(core.read_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE).data or {})

    def clear_node_folders(self, folders: list[str]) -> None:
        """Empty hostPath folders on every GPU node (a training run's checkpoints), keeping their owner."""
        for node in self.gpu_nodes():
            self._on_node(node, " && ".join(f"mkdir -p {f} && find {f} -mindepth 1 -delete" for f in folders)
                          or "true", "")

    def publish_gpu_inventory(self, data: dict[str, str]) -> None:
        """Each GPU node gets its own inventory file, which its plugin pod and GPU containers read."""
        for node, text in sorted(data.items()):
            self._put_file(node, GPU_STATE_FILE, text)

    def prepare_images(self, images: list[str]) -> None:
        """Build the release tags on the platform image once, then ``kind load`` what the nodes lack."""
        from mlops_drill.cluster.backends.kind_images import BASE_IMAGE, build_images
        from mlops_drill.cluster.kindbuild.platform import platform_stamp

        record = self.state / "images-loaded.json"
        stamp = platform_stamp()
        loaded = json.loads(record.read_text()) if record.is_file() else {}
        if loaded.get("platform") != stamp:  # new code in the platform image: every tag is new
            loaded = {"platform": stamp, "images": []}
        missing = [i for i in images if i not in loaded["images"]]
        if not missing and BASE_IMAGE in loaded["images"]:
            return
        built = build_images(missing, docker=self.docker)
        result = self._kind("load", "docker-image", "--name", self.name, *built)
        if result.returncode != 0:
            raise DrillError(f"kind load docker-image: {(result.stderr or '').strip()[-300:]}")
        loaded["images"] = sorted(set(loaded["images"]) | set(built))
        record.write_text(json.dumps(loaded))

    def down(self) -> None:
        if self.exists():
            result = self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig()))
            if result.returncode != 0:
                raise DrillError(f"kind delete cluster {self.name}: {(result.stderr or '').strip()[-300:]}")
        import shutil

        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> ClusterStatus:
        ok, why = docker_available()
        if not ok:
            return ClusterStatus(None, [ComponentHealth("docker", False, why)], [], problem=why)
        if not self.exists() or not self.kubeconfig().is_file():
            return ClusterStatus(None, [ComponentHealth("docker", True, why)], [],
                                 problem=f"no kind cluster {self.name}; run `mlops-drill cluster up --backend kind`")
        from mlops_drill.cluster.backends.existing import cluster_status

        status = cluster_status(self.info(), None)
        return ClusterStatus(status.info, [ComponentHealth("docker", True, why), *status.components], status.nodes,
                             status.problem, gpu_products=saved_config(self.state).products())
