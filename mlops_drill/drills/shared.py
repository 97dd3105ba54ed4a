"""The one embedded cluster the server's namespace-isolated seats share, and its gateway.

Why one per server and started lazily: a server that only runs per-cluster
drills never starts it; the first seat of a shared drill starts it (seconds, the
cluster is small), and it stops when the last shared drill stops, so an idle
server holds no cluster. A restarted server puts every live seat back on the
gateway port its candidate's kubeconfig names.
"""
from __future__ import annotations

import threading

from mlops_drill.errors import DrillError

CLUSTER_NAME = "drills-shared"


class SharedCluster:
    def __init__(self, name: str = CLUSTER_NAME) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.backend = None
        self.gateway = None

    def ensure(self):
        """(embedded backend, gateway), starting them on first use."""
        from mlops_drill.cluster.backends.embedded import EmbeddedBackend
        from mlops_drill.cluster.seats.gateway import Gateway

        with self.lock:
            if self.gateway is None:
                backend = EmbeddedBackend(name=self.name)
                try:
                    backend.up(progress=False)
                except DrillError:
                    backend.down()  # a half-made cluster (kwokctl gave up): one clean retry
                    backend.up(progress=False)
                self.gateway = Gateway.for_kubeconfig(backend.kubeconfig())
                self.backend = backend
            return self.backend, self.gateway

    def seat_backend(self, route: dict[str, str], port: int | None, state):
        """The seat as a backend, its gateway endpoint serving (on ``port`` when it had one)."""
        from mlops_drill.cluster.seats.backend import SeatBackend
        from mlops_drill.cluster.seats.gateway import Route

        backend, gateway = self.ensure()
        seat_route = Route(**route)
        with self.lock:
            if seat_route.prefix in gateway.routes:
                port = gateway.ports[seat_route.prefix]
            else:
                port = gateway.add(seat_route, port or 0)
        return SeatBackend(backend, seat_route, port, state)

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
            EmbeddedBackend(name=self.name).down()
