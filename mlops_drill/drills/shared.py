"""The one cluster the server's namespace-isolated seats share, and its gateway.

Why one per server and started lazily: a server that only runs per-cluster
drills never starts it; the first seat of a shared drill starts it (seconds, the
cluster is small), and it stops when the last shared drill stops, so an idle
server holds no cluster. A restarted server puts every live seat back on the
gateway port its candidate's kubeconfig names.

By default it is an embedded cluster of the server's own. ``mlops-drill serve
--shared-kubeconfig FILE`` puts the seats on a cluster that already exists (a
kind cluster, a team's cluster): we neither start nor stop that one, and its
nodes and GPU device plugin are shared by every seat.
"""
from __future__ import annotations

import threading

from mlops_drill.errors import DrillError

CLUSTER_NAME = "drills-shared"


class SharedCluster:
    def __init__(self, name: str = CLUSTER_NAME, kubeconfig: str | None = None) -> None:
        self.name = name
        self.kubeconfig = kubeconfig
        self.lock = threading.Lock()
        self.backend = None
        self.gateway = None

    @property
    def shares_nodes(self) -> bool:
        """True when the seats run on an existing cluster's own nodes (see ``Fault.shared_nodes_ready``)."""
        return self.kubeconfig is not None

    def ensure(self):
        """(backend, gateway), starting them on first use."""
        from mlops_drill.cluster.seats.gateway import Gateway

        with self.lock:
            if self.gateway is None:
                if self.kubeconfig is not None:
                    backend = self._existing()
                    self.gateway = Gateway.for_kubeconfig(backend.kubeconfig(), own_tls=backend.state / "gateway")
                else:
                    backend = self._embedded()
                    self.gateway = Gateway.for_kubeconfig(backend.kubeconfig())
                self.backend = backend
            return self.backend, self.gateway

    def _embedded(self):
        from mlops_drill.cluster.backends.embedded import EmbeddedBackend

        backend = EmbeddedBackend(name=self.name)
        try:
            backend.up(progress=False)
        except DrillError:
            backend.down()  # a half-made cluster (kwokctl gave up): one clean retry
            backend.up(progress=False)
        return backend

    def _existing(self):
        from mlops_drill.cluster.backends.existing import ExistingBackend
        from mlops_drill.drills.shared_gpu import ensure_device_plugin

        backend = ExistingBackend(name=self.name, kubeconfig=self.kubeconfig)
        backend.up(progress=False)
        ensure_device_plugin(backend)
        return backend

    def seat_backend(self, route: dict[str, str], port: int | None, state):
        """The seat as a backend, its gateway endpoint serving (on ``port`` when it had one)."""
        from mlops_drill.cluster.seats.backend import SeatBackend
        from mlops_drill.cluster.seats.gateway import Route

        backend, gateway = self.ensure()
        seat_route = Route(**route, shared_nodes=self.shares_nodes)
        with self.lock:
            if seat_route.prefix in gateway.routes:
                port = gateway.ports[seat_route.prefix]
            else:
                port = gateway.add(seat_route, port or 0)
        return SeatBackend(backend, seat_route, port, state,
                           ca_file=gateway.serving_ca if self.shares_nodes else None)

    def release(self, prefix: str) -> None:
        with self.lock:
            if self.gateway is not None:
                self.gateway.remove(prefix)

    def down(self) -> None:
        """Stop the gateway and the cluster (every seat must be gone already)."""
        from mlops_drill.cluster.backends.embedded import EmbeddedBackend

        with self.lock:
            if self.gateway is not None:
                self.gateway.close()
            self.gateway = self.backend = None
            if self.kubeconfig is None:  # an existing cluster is not ours to stop
                EmbeddedBackend(name=self.name).down()
