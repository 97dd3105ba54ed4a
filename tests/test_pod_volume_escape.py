"""A pod cannot reach the host through its volumes: links planted by one pod, or '..' in a path.

Pods write their volumes. The candidate may create a pod (also as root) with the one node
folder the admission policy lets them have again, the training Job's checkpoint folder, and
plant `ln -s / esc` in it; a second pod then names that link as the subPath of its mount, or
as a hostPath of its own. bubblewrap resolves a bind's source on the host, so without a check
the second pod would get the machine's root bound read-write (it listed it, before the
check). Each attempt is typed as a candidate would (`kubectl apply`, `kubectl exec`) and must
end refused: by the kubelet (CreateContainerConfigError, the container never started), or
before that by the API server (its validation of '..', the candidate admission policy).
"""
from __future__ import annotations

import json

import pytest
from polling import wait

pytestmark = pytest.mark.cluster

PLANTER = "link-planter"
TRAIN_STATE = "/var/lib/mlops-drill/fraud-train"  # the training Job's own node folder


def _pod(name: str, volume: dict, mount: dict, script: str = "sleep 3600", root: bool = False) -> dict:
    spec: dict = {"containers": [{"name": "main", "image": "debian:bookworm", "command": ["sh", "-c", script],
                                  "volumeMounts": [{"name": "v", **mount}]}],
                  "volumes": [{"name": "v", **volume}]}
    if root:
        spec["securityContext"] = {"runAsUser": 0}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "serving", "labels": {"mlops-drill.dev/process": "true"}},
            "spec": spec}


def _state(candidate, name: str) -> dict:
    pod = json.loads(candidate("get", "pod", "-n", "serving", name, "-o", "json").stdout)
    statuses = pod["status"].get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


ATTEMPTS = {
    "subpath-through-planted-link": ({"hostPath": {"path": TRAIN_STATE}}, {"mountPath": "/host", "subPath": "esc"}),
    "subpath-through-planted-link-to-home": ({"hostPath": {"path": TRAIN_STATE}},
                                             {"mountPath": "/host", "subPath": "home"}),
    "hostpath-through-planted-link": ({"hostPath": {"path": f"{TRAIN_STATE}/esc"}}, {"mountPath": "/host"}),
    "hostpath-with-dot-dot": ({"hostPath": {"path": f"{TRAIN_STATE}/../../../../.."}}, {"mountPath": "/host"}),
}
REFUSED_BY_API = ("must not contain '..'", "a hostPath volume is only allowed")


@pytest.fixture(scope="module")
def planted(candidate, tmp_path_factory):
    """A root pod with the training Job's folder that has planted links to / and /root in it."""
    manifest = tmp_path_factory.mktemp("planter") / "pod.json"
    manifest.write_text(json.dumps(_pod(PLANTER, {"hostPath": {"path": TRAIN_STATE, "type": "DirectoryOrCreate"}},
                                        {"mountPath": "/data"},
                                        "ln -sfn / /data/esc && ln -sfn /root /data/home && echo planted "
                                        "&& sleep 3600", root=True)))
    candidate("apply", "-f", str(manifest))
    wait(lambda: "planted" in candidate("logs", "-n", "serving", PLANTER, check=False).stdout,
         timeout=60, what="the links planted")
    yield
    candidate("exec", "-n", "serving", PLANTER, "--", "rm", "-f", "/data/esc", "/data/home", check=False)
    candidate("delete", "pod", "-n", "serving", PLANTER, "--ignore-not-found", "--wait=true", check=False)


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_volume_escape_attempt_is_refused(name, planted, candidate, tmp_path) -> None:
    volume, mount = ATTEMPTS[name]
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod(name, volume, mount, "ls /host/ && echo ESCAPED; sleep 3600")))
    try:
        applied = candidate("apply", "-f", str(manifest), check=False)
        if applied.returncode != 0:  # refused before any kubelet saw it
            assert any(why in applied.stderr for why in REFUSED_BY_API), applied.stderr
            return

        def answered() -> dict:
            s = _state(candidate, name)
            return s if "running" in s or s.get("waiting", {}).get("reason") not in (None, "ContainerCreating") else {}

        state = wait(answered, timeout=60, what=f"{name}: the kubelet's answer")
        logs = candidate("logs", "-n", "serving", name, check=False).stdout
        assert "ESCAPED" not in logs, f"{name}: the pod saw the host:\n{logs}"
        assert state.get("waiting", {}).get("reason") == "CreateContainerConfigError", (name, state)
        assert "symlink" in state["waiting"]["message"] or "'..'" in state["waiting"]["message"], state
    finally:
        candidate("delete", "pod", "-n", "serving", name, "--ignore-not-found", "--wait=true", check=False)
