"""What the candidate cannot ask the cluster to run (cluster/admission.py), typed with their kubeconfig.

On real kubelets a privileged pod, one sharing the node's namespaces or one mounting a node
folder is the node; the candidate may create pods and edit workloads, so the policy refuses
those from them (and only from them: the platform's own device plugin and training Job keep
their node folders). `kubectl exec` into the device plugin's pods runs nvidia-smi only.
"""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.cluster


def _pod(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "serving"},
            "spec": {"containers": [{"name": "main", "image": "debian:bookworm", "command": ["sleep", "3600"]}],
                     **spec}}


def _container_ctx(**ctx) -> dict:
    return {"containers": [{"name": "main", "image": "debian:bookworm", "command": ["sleep", "3600"],
                            "securityContext": ctx}]}


REFUSED = {
    "privileged-container": (_container_ctx(privileged=True), "privileged containers"),
    "host-network": ({"hostNetwork": True}, "network, PID or IPC"),
    "host-pid": ({"hostPID": True}, "network, PID or IPC"),
    "add-sys-admin": (_container_ctx(capabilities={"add": ["SYS_ADMIN"]}), "capabilities"),
    "unconfined-seccomp": ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "seccomp"),
    "hostpath-root": ({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}, "hostPath"),
    "hostpath-kubelet-plugins": ({"volumes": [{"name": "p", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}]},
                                 "hostPath"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_candidate_cannot_create_a_pod_that_is_the_node(name, candidate, tmp_path) -> None:
    spec, why = REFUSED[name]
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod(name, **spec)))
    result = candidate("apply", "-f", str(manifest), check=False)
    assert result.returncode != 0, f"{name}: created"
    assert "mlops-drill-candidate-workloads" in result.stderr and why in result.stderr, result.stderr


def test_candidate_cannot_put_a_node_folder_into_a_deployment(candidate) -> None:
    patch = [{"op": "add", "path": "/spec/template/spec/volumes/-",
              "value": {"name": "node-root", "hostPath": {"path": "/"}}}]
    result = candidate("patch", "deployment", "fraud-model", "-n", "serving", "--type=json", "-p", json.dumps(patch),
                       check=False)
    assert result.returncode != 0 and "hostPath" in result.stderr, result.stdout + result.stderr


def test_candidate_still_runs_ordinary_pods_and_recreates_the_training_job(candidate, tmp_path) -> None:
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod("ordinary", securityContext={"runAsUser": 0})))
    try:
        candidate("apply", "-f", str(manifest))
    finally:
        candidate("delete", "pod", "ordinary", "-n", "serving", "--ignore-not-found", "--wait=true", check=False)
    job = json.loads(candidate("get", "job", "fraud-train", "-n", "training", "-o", "json").stdout)
    saved = tmp_path / "job.json"
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
        job["metadata"].pop(key, None)
    job.pop("status", None)
    job["spec"]["selector"] = None
    job["spec"]["template"]["metadata"]["labels"].pop("controller-uid", None)
    job["spec"]["template"]["metadata"]["labels"].pop("batch.kubernetes.io/controller-uid", None)
    saved.write_text(json.dumps(job))
    result = candidate("replace", "--force", "-f", str(saved), check=False)  # its own checkpoint hostPath is kept
    assert result.returncode == 0, result.stderr


def test_exec_into_the_device_plugin_runs_nvidia_smi_only(candidate) -> None:
    pods = json.loads(candidate("get", "pods", "-n", "gpu-operator", "-o", "json").stdout)["items"]
    plugin = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("nvidia-device-plugin-"))
    shell = candidate("exec", "-n", "gpu-operator", plugin, "--", "sh", "-c", "id", check=False)
    assert shell.returncode != 0 and "only nvidia-smi" in shell.stderr, shell.stdout + shell.stderr
    smi = candidate("exec", "-n", "gpu-operator", plugin, "--", "nvidia-smi", "-L", check=False)
    assert smi.returncode == 0 and "GPU 0:" in smi.stdout, smi.stderr
