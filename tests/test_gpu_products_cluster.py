"""A real embedded cluster made with `mlops-drill cluster up --config` so that gpu-node-1 carries H200s.

One extra cluster for the whole module (the session ``cluster`` stays all-H100 for every other
test), started and stopped through the CLI as a user does. What an engineer reads must follow
the config: the ``nvidia.com/gpu.product`` node label, the GPU inventory, ``cluster status``,
dcgm-exporter's ``modelName`` and ``nvidia-smi`` in a pod on the node, which must match the
real H200 captures line for line apart from by-nature values (the golden test's normaliser).

The capture machine was one idle H200. The pod that reproduces it lives in ``gpu-operator``,
where the NVIDIA runtime gives containers ``nvidia-smi``, and names one GPU with
``NVIDIA_VISIBLE_DEVICES`` instead of requesting it: a pod granted a GPU through
``nvidia.com/gpu`` is listed as a process on it (the activity sampler lists every holder,
even one that never opened CUDA), which the idle captures do not show. A GPU-requesting pod
is checked separately for what it must see of the product.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kubectl_runner import KubectlRunner
from polling import wait
from test_dcgm_exporter_cluster import exporter_pods, parse
from test_nvidia_smi_golden import (assert_same, h200_captures, load_h200, load_section,
                                    needs_h200, section_captures)
from test_platform_embedded import port_forward

from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE
from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.products import H200

pytestmark = pytest.mark.cluster

NAME = "gpu-products"
CLI = [sys.executable, "-m", "mlops_drill.cli"]
DCGM_MANIFEST = Path(__file__).parents[1] / "cluster" / "gpu" / "dcgm-exporter.yaml"


@dataclass
class Scratch(KubectlRunner):
    kubectl_path: Path
    kubeconfig: Path
    state: Path  # this cluster's own state folder
    env: dict[str, str]  # MLOPS_DRILL_STATE pointing at it, for the CLI

    def apply_text(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args, "--name", NAME], env=self.env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def h200_cluster(tmp_path_factory):
    from mlops_drill.cluster.toolchain.binaries import resolve_without_building

    root = tmp_path_factory.mktemp("gpu-products")
    config = root / "cluster.yaml"
    config.write_text("# the second GPU pool carries H200s\ngpu_products:\n  gpu-node-1: H200\n")
    env = {**os.environ, "MLOPS_DRILL_STATE": str(root / "state")}
    found, missing = resolve_without_building()
    if "kubectl" not in found:
        pytest.skip(f"embedded toolchain not built: {[c.name for c in missing]}")
    scratch = Scratch(found["kubectl"], root / "state" / "clusters" / NAME / "admin.kubeconfig",
                      root / "state" / "clusters" / NAME, env)
    try:
        up = scratch.cli("cluster", "up", "--config", str(config))
        assert up.returncode == 0, up.stderr
        yield scratch
    finally:
        down = scratch.cli("cluster", "down")
        assert down.returncode == 0, down.stderr


def inventory(cluster) -> dict[str, GpuNode]:
    data = cluster.json("get", "configmap", INVENTORY, "-n", SYSTEM_NAMESPACE)["data"]
    return {n: GpuNode.model_validate_json(text) for n, text in data.items()}


def test_node_label_shows_the_configured_product(h200_cluster) -> None:
    out = h200_cluster.kubectl("get", "node", "gpu-node-1", "-L", "nvidia.com/gpu.product").stdout
    header, row = out.splitlines()
    assert header.split()[-1] == "GPU.PRODUCT" and row.split()[0] == "gpu-node-1"
    assert row.split()[-1] == "NVIDIA-H200", out
    rows = h200_cluster.kubectl("get", "nodes", "-l", "pool=gpu", "-L", "nvidia.com/gpu.product",
                                "--no-headers").stdout.splitlines()
    assert {r.split()[0]: r.split()[-1] for r in rows} == {"gpu-node-0": "NVIDIA-H100-80GB-HBM3",
                                                          "gpu-node-1": "NVIDIA-H200"}
    labels = h200_cluster.json("get", "node", "gpu-node-1")["metadata"]["labels"]
    assert labels["nvidia.com/gpu.memory"] == "143771" and labels["nvidia.com/gpu.count"] == "4"


def test_inventory_and_capacity_follow_the_product(h200_cluster) -> None:
    nodes = inventory(h200_cluster)
    assert nodes["gpu-node-1"].product == "NVIDIA H200" and nodes["gpu-node-0"].product == "NVIDIA H100 80GB HBM3"
    assert [d.pci_bus_id for d in nodes["gpu-node-1"].devices] == list(H200.pci_buses[:4])
    assert {d.power_limit_w for d in nodes["gpu-node-1"].devices} == {700.0}
    status = h200_cluster.json("get", "node", "gpu-node-1")["status"]
    assert status["capacity"]["nvidia.com/gpu"] == status["allocatable"]["nvidia.com/gpu"] == "4"


def test_status_and_a_second_up_keep_the_products(h200_cluster, tmp_path) -> None:
    status = h200_cluster.cli("cluster", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "gpu:        gpu-node-0=NVIDIA H100 80GB HBM3, gpu-node-1=NVIDIA H200" in status.stdout
    assert "gpu=NVIDIA-H200" in next(ln for ln in status.stdout.splitlines() if ln.strip().startswith("gpu-node-1"))
    # `cluster up` without --config reuses the cluster as it was made; another product needs `cluster down`
    again = h200_cluster.cli("cluster", "up")
    assert again.returncode == 0, again.stderr
    other = tmp_path / "a100.yaml"
    other.write_text("gpu_products: {gpu-node-1: A100}\n")
    refused = h200_cluster.cli("cluster", "up", "--config", str(other))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "was made with GPU products gpu-node-0=NVIDIA H100 80GB HBM3, gpu-node-1=NVIDIA H200" in refused.stderr
    assert h200_cluster.json("get", "node", "gpu-node-1")["metadata"]["labels"]["nvidia.com/gpu.product"] \
        == "NVIDIA-H200"


def test_node_nvidia_smi_lists_four_h200s(h200_cluster) -> None:
    """The node's own nvidia-smi (all four GPUs; what the device plugin's pod sees)."""
    env = {"PATH": os.environ["PATH"], "NODE_NAME": "gpu-node-1",
           "MLOPS_DRILL_GPU_STATE": str(h200_cluster.state / "gpu" / "state.json")}
    listing = subprocess.run([str(h200_cluster.state / "bin" / "nvidia-smi"), "-L"], env=env, capture_output=True,
                             text=True, timeout=60)
    uuids = [d.uuid for d in inventory(h200_cluster)["gpu-node-1"].devices]
    assert listing.stdout.splitlines() == [f"GPU {i}: NVIDIA H200 (UUID: {u})" for i, u in enumerate(uuids)]


def _running(cluster, namespace: str, pod: str) -> bool:
    statuses = cluster.json("get", "pod", pod, "-n", namespace)["status"].get("containerStatuses") or [{}]
    return bool(statuses[0].get("state", {}).get("running"))


@pytest.fixture(scope="module")
def probe(h200_cluster) -> str:
    """A pod on gpu-node-1 that sees GPU 0 of the node, as the captured one-GPU machine did."""
    uuid = inventory(h200_cluster)["gpu-node-1"].devices[0].uuid
    h200_cluster.kubectl("create", "namespace", "gpu-operator")
    wait(lambda: h200_cluster.kubectl("get", "serviceaccount", "default", "-n", "gpu-operator",
                                      check=False).returncode == 0, what="default ServiceAccount")
    h200_cluster.apply_text(f"""
apiVersion: v1
kind: Pod
metadata: {{name: smi-probe, namespace: gpu-operator, labels: {{mlops-drill.dev/process: "true"}}}}
spec:
  nodeName: gpu-node-1
  tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]
  containers:
  - name: main
    image: nvcr.io/nvidia/cuda:13.0.0-base-ubuntu24.04
    command: [python, -c, "import time; time.sleep(3600)"]
    env: [{{name: NVIDIA_VISIBLE_DEVICES, value: "{uuid}"}}]
""")
    wait(lambda: _running(h200_cluster, "gpu-operator", "smi-probe"), timeout=60, what="probe pod running")
    return "smi-probe"


def _exec_smi(cluster, pod: str, argv: list[str]) -> subprocess.CompletedProcess:
    return cluster.kubectl("exec", pod, "-n", "gpu-operator", "--", "nvidia-smi", *argv, check=False)


@needs_h200
@pytest.mark.parametrize("name", h200_captures())
def test_pod_nvidia_smi_matches_h200_capture(h200_cluster, probe, name: str) -> None:
    argv, expected = load_h200(name)
    result = _exec_smi(h200_cluster, probe, argv)
    assert_same(expected, result.stdout, argv)
    assert result.returncode == (6 if argv[:2] == ["mig", "-lgi"] else 0), result.stderr


@pytest.mark.parametrize("name", section_captures())
def test_pod_nvidia_smi_matches_h200_section_capture(h200_cluster, probe, name: str) -> None:
    argv, expected, code = load_section(name)
    result = _exec_smi(h200_cluster, probe, argv)
    assert_same(expected, result.stdout, argv)
    assert result.returncode == code, result.stderr


def test_kubectl_exec_passes_nvidia_smis_exit_code_on(h200_cluster, probe) -> None:
    result = _exec_smi(h200_cluster, probe, ["mig", "-lgi"])
    assert result.returncode == 6 and result.stderr.strip() == "command terminated with exit code 6", result.stderr


def test_gpu_pod_on_the_h200_node_sees_an_h200(h200_cluster) -> None:
    h200_cluster.kubectl("create", "namespace", "train")
    wait(lambda: h200_cluster.kubectl("get", "serviceaccount", "default", "-n", "train",
                                      check=False).returncode == 0, what="default ServiceAccount")
    h200_cluster.apply_text("""
apiVersion: v1
kind: Pod
metadata: {name: cuda, namespace: train, labels: {mlops-drill.dev/process: "true"}}
spec:
  nodeSelector: {nvidia.com/gpu.product: NVIDIA-H200}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: main
    image: nvcr.io/nvidia/cuda:13.0.0-base-ubuntu24.04
    command: [python, -c, "import time; time.sleep(3600)"]
    resources: {limits: {nvidia.com/gpu: 1}}
""")
    wait(lambda: _running(h200_cluster, "train", "cuda"), timeout=60, what="GPU pod running")
    assert h200_cluster.json("get", "pod", "cuda", "-n", "train")["spec"]["nodeName"] == "gpu-node-1"
    query = h200_cluster.kubectl("exec", "cuda", "-n", "train", "--", "nvidia-smi",
                                 "--query-gpu=name,memory.total,power.limit,pci.bus_id",
                                 "--format=csv,noheader").stdout.strip()
    name, memory, power, bus = query.split(", ")
    assert (name, memory, power) == ("NVIDIA H200", "143771 MiB", "700.00 W") and bus in H200.pci_buses, query
    table = h200_cluster.kubectl("exec", "cuda", "-n", "train", "--", "nvidia-smi").stdout
    assert "|   0  NVIDIA H200 " in table and "/ 143771MiB |" in table and "|   1  " not in table, table


def test_dcgm_exporter_model_name_follows_each_node(h200_cluster, probe) -> None:
    """probe: made the gpu-operator namespace."""
    h200_cluster.kubectl("apply", "-f", str(DCGM_MANIFEST))
    pods = wait(lambda: (p := exporter_pods(h200_cluster)) and len(p) == 2 and p, timeout=60,
                what="an exporter pod Ready on each GPU node")
    for pod, node in pods.items():
        with port_forward(h200_cluster, h200_cluster.kubeconfig, f"pod/{pod}", "gpu-operator", 9400) as url:
            rows = wait(lambda: [r for r in parse(_get(url)) if r[0] == "DCGM_FI_DEV_GPU_UTIL"], timeout=30,
                        what=f"metrics of {pod}")
        models = {lab["modelName"] for _, lab, _ in rows}
        assert {lab["Hostname"] for _, lab, _ in rows} == {node} and len(rows) == 4
        assert models == {"NVIDIA H200" if node == "gpu-node-1" else "NVIDIA H100 80GB HBM3"}, (node, models)


def _get(url: str) -> str:
    try:
        response = httpx.get(f"{url}/metrics", timeout=5)
    except httpx.HTTPError:
        return ""
    return response.text if response.status_code == 200 else ""



def test_a_drawn_board_swaps_the_product_and_revert_gives_the_configured_one_back(h200_cluster, monkeypatch) -> None:
    """A scenario variant's ``gpu-node-product`` puts A100s on gpu-node-1 for one drill: the labels, the inventory
    and the node's nvidia-smi follow; revert gives back the H200 this cluster was made with, not the pool's H100."""
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend
    from mlops_drill.injector.context import context_for
    from mlops_drill.injector.fault import make

    monkeypatch.setenv("MLOPS_DRILL_STATE", h200_cluster.env["MLOPS_DRILL_STATE"])
    ctx = context_for(EmbeddedBackend(name=NAME))
    fault = make("gpu-node-product", {"node": "gpu-node-1", "product": "NVIDIA A100-SXM4-80GB"})
    env = {"PATH": os.environ["PATH"], "NODE_NAME": "gpu-node-1",
           "MLOPS_DRILL_GPU_STATE": str(h200_cluster.state / "gpu" / "state.json")}

    def listing() -> list[str]:
        return subprocess.run([str(h200_cluster.state / "bin" / "nvidia-smi"), "-L"], env=env, capture_output=True,
                              text=True, timeout=60).stdout.splitlines()

    fault.apply(ctx)
    try:
        wait(lambda: fault.verify_applied(ctx), what="gpu-node-1 carrying A100s")
        labels = h200_cluster.json("get", "node", "gpu-node-1")["metadata"]["labels"]
        assert (labels["nvidia.com/gpu.product"], labels["nvidia.com/gpu.memory"]) == ("NVIDIA-A100-SXM4-80GB", "81920")
        board = inventory(h200_cluster)["gpu-node-1"]
        assert {d.power_limit_w for d in board.devices} == {400.0}
        wait(lambda: all(" NVIDIA A100-SXM4-80GB (UUID: " in line for line in listing()) and len(listing()) == 4,
             what="the node's nvidia-smi listing A100s")
    finally:
        fault.revert(ctx)
    wait(lambda: h200_cluster.json("get", "node", "gpu-node-1")["metadata"]["labels"]["nvidia.com/gpu.product"]
         == "NVIDIA-H200", what="the configured H200 label back")
    assert inventory(h200_cluster)["gpu-node-1"].product == "NVIDIA H200"
    assert inventory(h200_cluster)["gpu-node-0"].product == "NVIDIA H100 80GB HBM3"
