"""A seat of a shared embedded cluster, as a backend of its own.

Why a backend: the engine, the faults and the checks take a backend and the
Kubernetes API; a seat that is a backend whose kubeconfig points at its gateway
endpoint runs every one of them unchanged. Only the files of the process
kubelet (``services.json``, process records, host folders) are the shared
cluster's, reached through :attr:`process_state` and :meth:`cluster_namespace`.

On the embedded cluster a seat's nodes are real Node objects (KWOK keeps them
Ready), named with the seat's prefix and labelled with its id; each namespace of
the seat selects them (the API server's PodNodeSelector admission), so a seat's
pods land only on its own nodes and take only its own GPUs.

On a cluster we did not make (``existing``, a kind cluster among them) the nodes
are real kubelets: a seat cannot have its own, so seats share the cluster's nodes
and its GPU device plugin, take only faults that stay inside their namespaces
(``Fault.shared_nodes_ready``), and their candidates may only read nodes.
"""
from __future__ import annotations

import functools
import secrets
from pathlib import Path

import yaml

from mlops_drill.cluster.access import CANDIDATE_SA_NAMESPACE, ENGINE_NAMESPACE, PLATFORM_NAMESPACES
from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus, NodeState
from mlops_drill.cluster.backends.embedded import EmbeddedBackend
from mlops_drill.cluster.config import saved_config
from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE
from mlops_drill.cluster.gpu.model import new_node
from mlops_drill.cluster.nodes import NODE_POOLS, node_manifest
from mlops_drill.cluster.seats.gateway import Gateway, Route
from mlops_drill.cluster.seats.names import NODE_SELECTOR_ANNOTATION, SEAT_LABEL, SEAT_NAME, seat_id
from mlops_drill.errors import DrillError

#: The namespaces a seat has before its baseline is applied: where its engine and candidate identity live.
SEAT_NAMESPACES = (*PLATFORM_NAMESPACES, ENGINE_NAMESPACE, CANDIDATE_SA_NAMESPACE, "default")


SEAT_REPLAY_RATE = "1"


def new_route(prefix: str) -> Route:
    return Route(prefix=prefix, admin_token=secrets.token_urlsafe(24), candidate_token=secrets.token_urlsafe(24))


class SeatBackend(Backend):
    kind = "seat"
    # Tens of seats start side by side on two cores: at N = 50 the last few took longer than 90 s.
    platform_start_timeout = 300

    def __init__(self, shared: Backend, route: Route, port: int, state: Path, ca_file: Path | None = None) -> None:
        super().__init__(f"{shared.name}/{seat_id(route.prefix)}")
        self.shared, self.route, self.port = shared, route, port
        self.state = Path(state)
        self.ca_file = ca_file  # the CA the gateway's endpoint is served under (None: the cluster's own)

    @property
    def shared_nodes(self) -> bool:
        """True on a cluster of real kubelets: the seat runs on the cluster's own nodes."""
        return self.route.shared_nodes

    @property
    def owns_gpu_plugin(self) -> bool:
        # Shared nodes have one device plugin, the cluster's: a second per seat would re-register the GPUs.
        return not self.shared_nodes

    def shared_api(self):
        """The shared cluster's own API (admin), for what is cluster-wide and not the seat's to own."""
        if isinstance(self.shared, EmbeddedBackend):
            return self.shared._api()
        return self._existing_api

    @functools.cached_property
    def _existing_api(self):
        from mlops_drill.cluster import kube

        return kube.api_client(self.shared.kubeconfig(), None)

    def signal_container(self, namespace: str, pod: str, signum: int) -> bool:
        return self.shared_nodes and self.shared.signal_container(self.cluster_namespace(namespace), pod, signum)

    def prepare_images(self, images: list[str]) -> None:
        if self.shared_nodes:
            self.shared.prepare_images(images)

    # -- what the engine reaches ---------------------------------------------------------------
    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @functools.cached_property
    def _kubeconfig_text(self) -> str:
        """Made once: ``kubeconfig()`` is asked for on every kubectl call of the engine."""
        ca_file = self.ca_file
        if ca_file is None:
            cfg = yaml.safe_load(self.shared.kubeconfig().read_text())
            ca_file = Path(cfg["clusters"][0]["cluster"]["certificate-authority"])
        return kubeconfig_text(self.server, ca_file, self.route.admin_token, "seat-admin", "default")

    def kubeconfig(self) -> Path:
        path = self.state / "admin.kubeconfig"
        text = self._kubeconfig_text
        if not path.is_file() or path.read_text() != text:  # the gateway's port may differ after a restart
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o600)
        return path

    @property
    def runs_processes(self) -> bool:
        return self.shared.runs_processes

    @property
    def process_state(self) -> Path | None:
        return self.shared.state if self.shared.runs_processes else None

    def cluster_namespace(self, namespace: str) -> str:
        return self.route.ns(namespace)

    def candidate_token(self) -> str | None:
        return self.route.candidate_token

    def replay_rate(self) -> str | None:
        # Tens of platforms share two cores: at the single-user 10 requests/s each, ten seats' replays
        # alone kept the machine busy. One request a second still moves every metric a drill reads.
        return SEAT_REPLAY_RATE

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self, progress: bool = True) -> ClusterInfo:
        """The seat's nodes, namespaces and GPU inventory on the shared cluster (idempotent)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.shared_api())
        label = seat_id(self.route.prefix)
        if self.shared_nodes:
            for ns in SEAT_NAMESPACES:
                _create(core.create_namespace, {"metadata": {"name": self.route.ns(ns), "labels": {SEAT_LABEL: label}}})
            return self.info()
        # A seat's nodes carry the products the shared cluster was made with (`cluster up --config`).
        config = saved_config(self.shared.state)
        pools = config.node_pools()
        for spec in pools:
            node = node_manifest(spec)
            name = self.route.prefix + spec.name
            node["metadata"]["name"] = name
            node["metadata"]["labels"].update({"kubernetes.io/hostname": name, SEAT_LABEL: label})
            node["status"]["addresses"] = [a if a["type"] != "Hostname" else {**a, "address": name}
                                           for a in node["status"]["addresses"]]
            _create(core.create_node, node)
        for ns in SEAT_NAMESPACES:
            _create(core.create_namespace, {"metadata": {
                "name": self.route.ns(ns), "labels": {SEAT_LABEL: label},
                "annotations": {NODE_SELECTOR_ANNOTATION: f"{SEAT_LABEL}={label}"}}})
        gpus = {self.route.prefix + s.name:
                new_node(self.route.prefix + s.name, product_name=config.product_of(s.name)).model_dump_json()
                for s in pools if s.pool == "gpu"}
        try:
            core.patch_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE, {"data": gpus})
        except ApiException as exc:
            raise DrillError(f"seat {label}: GPU inventory not updated: {exc.reason}") from exc
        return self.info()

    def down(self) -> None:
        """Remove everything of the seat from the shared cluster (its processes stop with its pods).

        By name, not by listing: the seat's objects are known (its namespaces, the
        candidate's cluster roles, its nodes), and listing the whole cluster for
        each of fifty seats made a drill's stop take minutes.
        """
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        from mlops_drill.cluster.access import rbac_objects

        api = self.shared_api()
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        prefix = self.route.prefix
        quiet = {"_preload_content": False}
        for ns in SEAT_NAMESPACES:
            _ignore_missing(core.delete_namespace, prefix + ns, **quiet)
        for obj in rbac_objects():
            delete = {"ClusterRole": rbac.delete_cluster_role,
                      "ClusterRoleBinding": rbac.delete_cluster_role_binding}.get(obj["kind"])
            if delete is not None:
                _ignore_missing(delete, self.route.owned("clusterroles", obj["metadata"]["name"]), **quiet)
        if self.shared_nodes:
            return  # the nodes are the cluster's, not the seat's
        for spec in NODE_POOLS:
            _ignore_missing(core.delete_node, prefix + spec.name, **quiet)
        gone = {prefix + s.name: None for s in NODE_POOLS if s.pool == "gpu"}
        try:
            core.patch_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE, {"data": gone}, **quiet)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def info(self) -> ClusterInfo:
        return ClusterInfo(self.name, self.kind, self.kubeconfig(), self.server)

    def status(self) -> ClusterStatus:
        shared = self.shared.status()
        if self.shared_nodes:
            nodes = [n for n in shared.nodes if not SEAT_NAME.match(n.name)]
        else:
            nodes = [NodeState(n.name[len(self.route.prefix):], n.ready, n.labels) for n in shared.nodes
                     if n.name.startswith(self.route.prefix)]
        return ClusterStatus(self.info() if shared.info else None, shared.components, nodes, shared.problem)


def kubeconfig_text(server: str, ca_file: Path, token: str, user: str, namespace: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "drill", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "drill", "context": {"cluster": "drill", "user": user, "namespace": namespace}}],
        "current-context": "drill",
    }, sort_keys=False)


def _create(create, body: dict) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        create(body)
    except ApiException as exc:
        if exc.status != 409:
            raise


def _ignore_missing(delete, name: str, **kwargs) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        delete(name, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise


__all__ = ["Gateway", "Route", "SeatBackend", "new_route", "kubeconfig_text", "SEAT_NAMESPACES"]
