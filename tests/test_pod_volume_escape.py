"""A pod cannot reach the host through its volumes: links planted by one pod, or '..' in a path.

Pods write their volumes. A candidate (who may create pods, also as root) plants
`ln -s / /data/esc` in a hostPath folder; a second pod then names that link as its
hostPath, or as the subPath of a mount. bubblewrap resolves a bind's source on the host,
so without a check the second pod would get the machine's root bound read-write. Each
attempt here is typed as a candidate would (`kubectl apply`, `kubectl exec`) and must end
as a kubelet refusing the mount (CreateContainerConfigError, the container never started) or,
for '..', as the API server's own validation refusing the pod.
"""
from __future__ import annotations

import json

import pytest
from polling import wait

pytestmark = pytest.mark.cluster

PLANTER = "link-planter"


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
    "hostpath-through-planted-link": ({"hostPath": {"path": "/data/esc", "type": "DirectoryOrCreate"}},
                                      {"mountPath": "/host"}),
    "hostpath-through-planted-link-to-home": ({"hostPath": {"path": "/data/home"}}, {"mountPath": "/host"}),
    "subpath-through-planted-link": ({"hostPath": {"path": "/data"}}, {"mountPath": "/host", "subPath": "esc"}),
    "hostpath-with-dot-dot": ({"hostPath": {"path": "/data/../../../../../../.."}}, {"mountPath": "/host"}),
}


@pytest.fixture(scope="module")
def planted(candidate, tmp_path_factory):
    """A root pod with hostPath /data that has planted links to / and /root in it."""
    manifest = tmp_path_factory.mktemp("planter") / "pod.json"
    manifest.write_text(json.dumps(_pod(PLANTER, {"hostPath": {"path": "/data", "type": "DirectoryOrCreate"}},
                                        {"mountPath": "/data"},
                                        "ln -sfn / /data/esc && ln -sfn /root /data/home && echo planted "
                                        "&& sleep 3600", root=True)))
    candidate("apply", "-f", str(manifest))
    wait(lambda: "planted" in candidate("logs", "-n", "serving", PLANTER, check=False).stdout,
         timeout=60, what="the links planted")
    yield
    candidate("delete", "pod", "-n", "serving", PLANTER, "--ignore-not-found", "--wait=true", check=False)


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_volume_escape_attempt_is_refused(name, planted, candidate, tmp_path) -> None:
    volume, mount = ATTEMPTS[name]
    manifest = tmp_path / "pod.json"
    manifest.write_text(json.dumps(_pod(name, volume, mount, "ls /host/ && echo ESCAPED; sleep 3600")))
    try:
        applied = candidate("apply", "-f", str(manifest), check=False)
        if applied.returncode != 0:  # the API server's own validation ('..' in a path) refused it first
            assert "must not contain '..'" in applied.stderr, applied.stderr
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
