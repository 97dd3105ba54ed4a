"""The kind backend on a real kind cluster: real kubelets, containerd, the gRPC device plugin.

One session cluster (tests/kind_fixtures.py: pytest-kind's ``KindCluster`` with our
``kind_path``), built offline and cached under ~/.cache/mlops-drill/kind. Skips, saying
why, where no Docker engine can be had.
"""
from __future__ import annotations

import json
import uuid


import pytest

from mlops_drill.cluster.nodes import NODE_POOLS

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1200)]  # the first test also creates the kind cluster

DEVICE_PLUGIN_NS = "gpu-operator"


def test_the_catalogue_nodes_are_ready_on_containerd(kind_session):
    # The node lifecycle controller lifts the not-ready taint a few seconds after a node turns Ready.
    kind_session.wait_for("the not-ready taints lifted", lambda: not any(
        t["key"] == "node.kubernetes.io/not-ready" for n in kind_session.json("get", "nodes")["items"]
        for t in n["spec"].get("taints", [])), timeout=120)
    nodes = {n["metadata"]["name"]: n for n in kind_session.json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(spec.name for spec in NODE_POOLS)
    for spec in NODE_POOLS:
        node = nodes[spec.name]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", f"{spec.name}: {ready}"
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.36.3"
        labels = node["metadata"]["labels"]
        assert labels["pool"] == spec.pool and labels["topology.kubernetes.io/zone"] == spec.zone
        taints = [{k: t[k] for k in ("key", "value", "effect") if k in t} for t in node["spec"].get("taints", [])]
        assert taints == [dict(t) for t in spec.taints], f"{spec.name}: {taints}"
    # the kubeconfig is ours alone: kind was told where to write it
    assert kind_session.kubeconfig.is_file() and kind_session.kubeconfig.stat().st_mode & 0o077 == 0


def test_pods_run_as_real_containers_with_dns_and_cluster_networking(kind_session):
    """CoreDNS (locally built image), flannel and kube-proxy (nftables) carry a Service lookup across nodes."""
    ns = f"kind-net-{uuid.uuid4().hex[:6]}"
    kind_session.kubectl("create", "namespace", ns)
    try:
        manifest = {
            "apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "server", "namespace": ns, "labels": {"app": "server"}},
                 "spec": {"nodeName": "cpu-node-1", "containers": [{
                     "name": "web", "image": "mlops-drill/platform:dev",
                     "command": ["python3", "-m", "http.server", "8000"]}]}},
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "server", "namespace": ns},
                 "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8000}]}},
            ]}
        kind_session.backend.prepare_images([])  # the platform image on every node
        kind_session.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        kind_session.kubectl("wait", "-n", ns, "--for=condition=Ready", "pod/server", "--timeout=180s", timeout=200)
        # A finished pod's logs, not `kubectl run --rm -i`: attaching races a container that is
        # already done, and then prints nothing of its output.
        kind_session.kubectl(
            "run", "probe", "-n", ns, "--restart=Never", "--image=mlops-drill/platform:dev",
            "--image-pull-policy=IfNotPresent", "--overrides", json.dumps({"spec": {"nodeName": "cpu-node-0"}}),
            "--", "python3", "-c",
            "import urllib.request; print(urllib.request.urlopen('http://server/', timeout=10).status)")
        kind_session.kubectl("wait", "-n", ns, "--for=jsonpath={.status.phase}=Succeeded", "pod/probe",
                             "--timeout=180s", timeout=200)
        probe = kind_session.kubectl("logs", "-n", ns, "probe")
        assert "200" in probe.stdout.split(), probe.stdout + probe.stderr
    finally:
        kind_session.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="module")
def device_plugin(kind_session):
    """The gRPC device plugin DaemonSet (the baseline's own manifest) on both GPU nodes."""
    from importlib.resources import files

    kind_session.backend.prepare_images([])
    kind_session.kubectl("create", "namespace", DEVICE_PLUGIN_NS, check=False)
    manifest = files("mlops_drill.cluster.gpu").joinpath("deviceplugin/daemonset.yaml").read_text()
    kind_session.kubectl("apply", "-f", "-", input=manifest)
    for node in ("gpu-node-0", "gpu-node-1"):
        kind_session.wait_for(f"nvidia.com/gpu on {node}", lambda n=node: kind_session.allocatable_gpus(n) == "4",
                              timeout=240)
    return kind_session


def _plugin_pod(kind_session, node: str) -> str:
    pods = kind_session.json("get", "pods", "-n", DEVICE_PLUGIN_NS, "--field-selector", f"spec.nodeName={node}")
    running = [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert running, f"no running device plugin pod on {node}"
    return running[0]


def test_the_device_plugin_registers_four_gpus_with_the_real_kubelet(device_plugin):
    for node in ("gpu-node-0", "gpu-node-1"):
        status = device_plugin.json("get", "node", node)["status"]
        assert status["capacity"]["nvidia.com/gpu"] == "4" and status["allocatable"]["nvidia.com/gpu"] == "4"
        logs = device_plugin.kubectl("logs", "-n", DEVICE_PLUGIN_NS, _plugin_pod(device_plugin, node)).stdout
        assert "Registered device plugin for 'nvidia.com/gpu' with Kubelet" in logs
        # the kubelet's own socket directory holds the plugin's socket beside kubelet.sock
        listing = device_plugin.on_node(node, "ls", "/var/lib/kubelet/device-plugins").stdout.split()
        assert "kubelet.sock" in listing and any(name.endswith(".sock") and name != "kubelet.sock" for name in listing)
    for node in ("cpu-node-0", "cpu-node-1"):
        assert device_plugin.allocatable_gpus(node) == "0"


def test_a_gpu_pod_gets_a_device_and_the_fake_nvidia_smi(device_plugin):
    ns = f"kind-gpu-{uuid.uuid4().hex[:6]}"
    device_plugin.kubectl("create", "namespace", ns)
    try:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cuda", "namespace": ns},
               "spec": {"restartPolicy": "Never",
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "nodeSelector": {"pool": "gpu"},
                        "containers": [{"name": "main", "image": "mlops-drill/platform:dev",
                                        "command": ["sh", "-c", "nvidia-smi -L; echo visible=$NVIDIA_VISIBLE_DEVICES"],
                                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
        device_plugin.kubectl("apply", "-f", "-", input=json.dumps(pod))
        device_plugin.wait_for("the GPU pod to finish", lambda: device_plugin.json(
            "get", "pod", "cuda", "-n", ns)["status"].get("phase") in ("Succeeded", "Failed"), timeout=180)
        logs = device_plugin.kubectl("logs", "-n", ns, "cuda").stdout
        assert "GPU 0: NVIDIA H100 80GB HBM3" in logs or "NVIDIA H100" in logs, logs
        assert "visible=GPU-" in logs, logs
    finally:
        device_plugin.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_plugin_registers_again_after_the_kubelet_restarts(device_plugin):
    node = "gpu-node-1"
    pod = _plugin_pod(device_plugin, node)
    before = device_plugin.kubectl("logs", "-n", DEVICE_PLUGIN_NS, pod).stdout.count("Registered device plugin")
    restarted = device_plugin.on_node(node, "systemctl", "restart", "kubelet")
    assert restarted.returncode == 0, restarted.stderr
    # while the kubelet is down its log endpoint refuses: that poll counts as "not yet"
    device_plugin.wait_for("a second registration", lambda: device_plugin.kubectl(
        "logs", "-n", DEVICE_PLUGIN_NS, pod, check=False).stdout.count("Registered device plugin") > before,
        timeout=120)
    device_plugin.wait_for(f"{node} Ready with 4 GPUs again", lambda: device_plugin.allocatable_gpus(node) == "4"
                           and any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in device_plugin.json("get", "node", node)["status"]["conditions"]),
                           timeout=120)


def test_an_unhealthy_device_lowers_allocatable_through_list_and_watch(device_plugin):
    from mlops_drill.injector.context import context_for

    ctx = context_for(device_plugin.backend)
    node = "gpu-node-0"
    before = ctx.gpu_node(node)
    try:
        ctx.edit_gpu_node(node, lambda m: setattr(m.devices[1], "healthy", False))
        device_plugin.wait_for(f"{node} allocatable 3", lambda: device_plugin.allocatable_gpus(node) == "3",
                               timeout=90)
        assert device_plugin.json("get", "node", node)["status"]["capacity"]["nvidia.com/gpu"] == "4"
    finally:
        ctx.put_gpu_node(before)
    device_plugin.wait_for(f"{node} allocatable 4 again", lambda: device_plugin.allocatable_gpus(node) == "4",
                           timeout=90)


def test_status_reports_docker_and_the_ready_nodes(kind_session):
    status = kind_session.backend.status()
    assert status.healthy, status.render()
    assert {n.name for n in status.nodes} == {spec.name for spec in NODE_POOLS}
    assert status.info is not None and status.info.api_server.startswith("https://127.0.0.1:")

