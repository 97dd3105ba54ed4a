"""The Service proxy picks endpoints the way kube-proxy does, from EndpointSlices alone."""
from __future__ import annotations

from pathlib import Path

from mlops_drill.cluster.processpods.kubeproxy import ServiceProxy


def _slice(service: str, endpoints: list[tuple[str, str, bool]]) -> dict:
    return {"metadata": {"name": f"{service}-abc", "namespace": "registry",
                         "labels": {"kubernetes.io/service-name": service}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready},
                           "targetRef": {"kind": "Pod", "name": uid, "namespace": "registry", "uid": uid}}
                          for uid, ip, ready in endpoints]}


def test_an_endpoint_reaches_its_own_pod_when_another_process_holds_the_same_ip(tmp_path: Path):
    """KWOK reuses a deleted pod's IP at once: the old pod's process must not get the new pod's traffic."""
    processes = {("old-uid", "10.244.0.1"): 40001, ("new-uid", "10.244.0.1"): 40002}

    def resolve(uid: str, ip: str, port: int) -> int | None:
        return next((local for (u, addr), local in processes.items() if addr == ip and (u == uid or not uid)), None)

    proxy = ServiceProxy(tmp_path / "services.json", resolve)
    proxy.target_ports[("registry", "model-registry", 80)] = "http"
    proxy.endpoints_changed(_slice("model-registry", [("new-uid", "10.244.0.1", True)]))
    assert {proxy._pick(("registry", "model-registry", 80)) for _ in range(4)} == {40002}


def test_unready_endpoints_get_no_traffic(tmp_path: Path):
    proxy = ServiceProxy(tmp_path / "services.json", lambda uid, ip, port: 40001)
    proxy.target_ports[("registry", "model-registry", 80)] = "http"
    proxy.endpoints_changed(_slice("model-registry", [("a", "10.244.0.1", False)]))
    assert proxy._pick(("registry", "model-registry", 80)) is None
    proxy.endpoints_changed(_slice("model-registry", [("a", "10.244.0.1", True)]))
    assert proxy._pick(("registry", "model-registry", 80)) == 40001
