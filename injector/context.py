"""What a fault, a check or the engine may use: the admin's view of one cluster.

Everything goes through the Kubernetes API (official client, or the pinned
kubectl for server-side apply), so the same faults run on every backend.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from mlops_drill.cluster.backends.base import Backend
from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE
from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.errors import DrillError

FIELD_MANAGER = "mlops-drill"
# Faults edit objects the way a hurried human would, so managedFields shows an ordinary kubectl edit.
HUMAN_MANAGER = "kubectl-edit"


#: (apiVersion, kind) -> collection path of the kinds ``DrillContext.apply`` sends straight to the API.
_COLLECTIONS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
    ("apps/v1", "DaemonSet"): "/apis/apps/v1/namespaces/{ns}/daemonsets",
    ("batch/v1", "CronJob"): "/apis/batch/v1/namespaces/{ns}/cronjobs",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs",
}


#: kubectl's names for the kinds above (singular, plural, short), for get/patch/delete by name.
_KIND_NAMES = {
    **dict.fromkeys(("namespace", "namespaces", "ns"), ("v1", "Namespace")),
    **dict.fromkeys(("configmap", "configmaps", "cm"), ("v1", "ConfigMap")),
    **dict.fromkeys(("secret", "secrets"), ("v1", "Secret")),
    **dict.fromkeys(("service", "services", "svc"), ("v1", "Service")),
    **dict.fromkeys(("serviceaccount", "serviceaccounts", "sa"), ("v1", "ServiceAccount")),
    **dict.fromkeys(("pod", "pods", "po"), ("v1", "Pod")),
    **dict.fromkeys(("deployment", "deployments", "deploy"), ("apps/v1", "Deployment")),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), ("apps/v1", "DaemonSet")),
    **dict.fromkeys(("cronjob", "cronjobs", "cj"), ("batch/v1", "CronJob")),
    **dict.fromkeys(("job", "jobs"), ("batch/v1", "Job")),
}


def _object_path(kind: str, name: str, namespace: str | None) -> str | None:
    """API path of one object named the way kubectl names it (``deploy``, ``cm``, ...); None: use kubectl."""
    key = _KIND_NAMES.get(kind.lower())
    if key is None or "/" in name:
        return None
    api_version, real_kind = key
    collection = _collection({"apiVersion": api_version, "kind": real_kind, "metadata": {"namespace": namespace}})
    return f"{collection}/{name}" if collection else None


def _api_message(data: bytes, status: int) -> str:
    try:
        return json.loads(data).get("message") or f"HTTP {status}"
    except (TypeError, ValueError):
        return f"HTTP {status}"


def _collection(doc: dict) -> str | None:
    template = _COLLECTIONS.get((doc.get("apiVersion"), doc.get("kind")))
    namespace = (doc.get("metadata") or {}).get("namespace")
    if template is None or ("{ns}" in template and not namespace):
        return None
    return template.format(ns=namespace)


@dataclass
class DrillContext:
    backend: Backend
    kubectl_path: Path
    _api: Any = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        return self.backend.kubeconfig()

    @property
    def api(self):
        if self._api is None:
            from mlops_drill.cluster.kube import api_client

            self._api = api_client(self.kubeconfig)
        return self._api

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def apps(self):
        from kubernetes import client

        return client.AppsV1Api(self.api)

    @property
    def batch(self):
        from kubernetes import client

        return client.BatchV1Api(self.api)

    # -- kubectl -------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run([str(self.kubectl_path), *args], input=input, capture_output=True, text=True,
                                env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise DrillError(f"kubectl {' '.join(args[:4])}: {result.stderr.strip().splitlines()[-1:] or ['failed']}")
        return result

    def apply(self, docs: list[dict], manager: str = FIELD_MANAGER) -> None:
        """Server-side apply, forcing our ownership: restores the baseline whatever edited it.

        The kinds the platform uses go straight to the API (the same apply PATCH
        kubectl sends, namespaces first, the rest concurrently): a reset applies
        the whole baseline, and a kubectl start-up plus one request after another
        cost about 0.5 s of it. Any other kind goes through kubectl.
        """
        if not docs:
            return
        if not all(_collection(d) for d in docs):
            self.kubectl("apply", "--server-side", "--force-conflicts", f"--field-manager={manager}", "-f", "-",
                         input=yaml.safe_dump_all(docs, sort_keys=False), timeout=120)
            return
        from concurrent.futures import ThreadPoolExecutor

        for doc in docs:
            if doc["kind"] == "Namespace":
                self._apply_one(doc, manager)
        rest = [d for d in docs if d["kind"] != "Namespace"]
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(rest)))) as pool:
            list(pool.map(lambda d: self._apply_one(d, manager), rest))

    def _apply_one(self, doc: dict, manager: str) -> None:
        meta = doc["metadata"]
        status, data = self._request("PATCH", _collection(doc) + "/" + meta["name"],
                                     [("fieldManager", manager), ("force", "true")], doc,
                                     "application/apply-patch+yaml")
        if not 200 <= status < 300:
            why = _api_message(data, status)
            if doc["kind"] == "Job" and status == 422 and "field is immutable" in why:
                # A Job's pod template cannot change: one made by an older release of the baseline (a
                # cluster kept across an upgrade) is replaced, as `kubectl replace --force` would.
                self._replace_job(doc, manager)
                return
            where = f"{meta.get('namespace')}/{meta['name']}" if meta.get("namespace") else meta["name"]
            raise DrillError(f"apply {doc['kind']} {where}: {why}")

    def _replace_job(self, doc: dict, manager: str, timeout: float = 60) -> None:
        import time

        path = _collection(doc) + "/" + doc["metadata"]["name"]
        # Foreground: the Job is gone only once its pods are, so the new one never runs beside the old one.
        self._request("DELETE", path, [("propagationPolicy", "Foreground")])
        deadline = time.monotonic() + timeout
        while self._request("GET", path)[0] != 404:
            if time.monotonic() > deadline:
                raise DrillError(f"apply Job {doc['metadata'].get('namespace')}/{doc['metadata']['name']}: "
                                 f"its template changed and the old Job was not gone after {timeout:.0f}s")
            time.sleep(0.5)
        self._apply_one(doc, manager)

    def _request(self, method: str, path: str, query: list[tuple[str, str]] | None = None,
                 body: Any = None, content_type: str = "application/json") -> tuple[int, bytes]:
        """One API request with the admin's credentials: (status, body)."""
        method, url, headers, _body, _post = self.api.param_serialize(
            method, path, query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"}, auth_settings=["BearerToken"])
        if body is not None and not content_type.endswith("json"):
            body = json.dumps(body)  # JSON is YAML: the client sends a string as it is
        response = self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=60)
        return response.status, response.read()

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The object as ``kubectl get -o json`` prints it; None when it does not exist."""
        path = _object_path(kind, name, namespace)
        if path is None:
            args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
            result = self.kubectl(*args, check=False)
            if result.returncode != 0:
                if "NotFound" in result.stderr:
                    return None
                raise DrillError(f"kubectl get {kind}/{name}: {result.stderr.strip()}")
            return json.loads(result.stdout)
        status, data = self._request("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise DrillError(f"get {kind}/{name}: {_api_message(data, status)}")
        return json.loads(data)

    def list_objects(self, api_version: str, kind: str, namespace: str | None = None,
                     selector: str | None = None) -> list[dict]:
        """Objects of a known kind (in one namespace, or all), as ``kubectl get -o json`` lists them.

        Why not the typed client or kubectl: turning a list into model objects
        costs the engine milliseconds of CPU per object, and a kubectl start-up
        costs 0.1-0.3 s of a core; a reset lists many times a second beside the
        rollout it waits for.
        """
        template = _COLLECTIONS[(api_version, kind)]
        path = template.format(ns=namespace) if namespace else template.replace("/namespaces/{ns}", "")
        status, data = self._request("GET", path, [("labelSelector", selector)] if selector else None)
        if status != 200:
            raise DrillError(f"list {kind}: {_api_message(data, status)}")
        return json.loads(data).get("items") or []

    def patch(self, kind: str, name: str, namespace: str, patch: list | dict, patch_type: str = "json") -> None:
        """A patch recorded as a hand edit (field manager ``kubectl-edit``), as ``kubectl patch`` makes it."""
        path = _object_path(kind, name, namespace)
        if path is None:
            self.kubectl("patch", kind, name, "-n", namespace, f"--type={patch_type}", "-p", json.dumps(patch),
                         f"--field-manager={HUMAN_MANAGER}")
            return
        content = {"json": "application/json-patch+json", "merge": "application/merge-patch+json",
                   "strategic": "application/strategic-merge-patch+json"}[patch_type]
        status, data = self._request("PATCH", path, [("fieldManager", HUMAN_MANAGER)], patch, content)
        if status != 200:
            raise DrillError(f"patch {kind}/{name}: {_api_message(data, status)}")

    def delete(self, kind: str, name: str, namespace: str | None = None, wait: bool = False,
               timeout: float = 120) -> None:
        """Delete if present (``--ignore-not-found``); ``wait``: until the object is gone, as kubectl waits."""
        path = _object_path(kind, name, namespace)
        if path is None:
            args = ["delete", kind, name, "--ignore-not-found", f"--wait={'true' if wait else 'false'}"]
            self.kubectl(*args + (["-n", namespace] if namespace else []))
            return
        status, data = self._request("DELETE", path, body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                           "propagationPolicy": "Background"})
        if status == 404:
            return
        if status not in (200, 202):
            raise DrillError(f"delete {kind}/{name}: {_api_message(data, status)}")
        deadline = time.monotonic() + timeout
        while wait and self._request("GET", path)[0] != 404:
            if time.monotonic() > deadline:
                raise DrillError(f"delete {kind}/{name}: still there after {timeout:.0f}s")
            time.sleep(0.05)

    # -- GPU inventory -------------------------------------------------------------------
    def gpu_node(self, node: str) -> GpuNode:
        data = self.core.read_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE).data or {}
        if node not in data:
            raise DrillError(f"GPU inventory has no node {node}")
        return GpuNode.model_validate_json(data[node])

    def put_gpu_node(self, model: GpuNode) -> None:
        inventory = self.core.patch_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE,
                                                          {"data": {model.node_name: model.model_dump_json()}})
        self.backend.publish_gpu_inventory(dict(inventory.data or {}))

    def edit_gpu_node(self, node: str, change: Callable[[GpuNode], None]) -> GpuNode:
        model = self.gpu_node(node)
        change(model)
        self.put_gpu_node(model)
        return model

    # -- reaching services ---------------------------------------------------------------
    @contextlib.contextmanager
    def service(self, namespace: str, name: str, port: int = 80) -> Iterator[str]:
        """Base URL of a Service: the embedded proxy directly, else a kubectl port-forward."""
        state = self.backend.process_state
        table_file = state / "services.json" if state else None
        if table_file and table_file.is_file():
            table = json.loads(table_file.read_text())
            address = table.get(f"{self.backend.cluster_namespace(namespace)}/{name}:{port}")
            if not address:
                raise DrillError(f"service {namespace}/{name}:{port} has no local proxy (does it exist?)")
            yield f"http://{address}"
            return
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
        proc = subprocess.Popen([str(self.kubectl_path), "port-forward", "-n", namespace, f"svc/{name}",
                                 f"{local}:{port}"], env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", local), timeout=0.2):
                    break
                time.sleep(0.1)
            yield f"http://127.0.0.1:{local}"
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def context_for(backend: Backend) -> DrillContext:
    """A context with the pinned kubectl (embedded, kind) or the one on PATH (existing)."""
    import shutil

    if backend.runs_processes:
        from mlops_drill.cluster.toolchain import ensure_toolchain

        return DrillContext(backend, ensure_toolchain(progress=False)["kubectl"])
    own = backend.kubectl_path()
    if own is not None:
        return DrillContext(backend, own)
    found = shutil.which("kubectl")
    if not found:
        raise DrillError("kubectl: command not found on PATH")
    return DrillContext(backend, Path(found))
