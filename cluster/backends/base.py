"""The one interface every cluster backend implements.

The rest of the product talks to a cluster only through a :class:`Backend`
(lifecycle, kubeconfig) and the Kubernetes API itself, so a drill written once
runs on the embedded cluster, on kind, or on any real cluster.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path


GPU_LABEL = "nvidia.com/gpu.product"


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterInfo:
    """What a user needs to reach the cluster."""

    name: str
    backend: str
    kubeconfig: Path
    api_server: str
    kubectl: Path | None = None

    def summary(self) -> str:
        kubectl = str(self.kubectl) if self.kubectl else "kubectl"
        return (
            f"cluster {self.name} ({self.backend}) is up at {self.api_server}\n"
            f"  export KUBECONFIG={self.kubeconfig}\n"
            f"  {kubectl} get nodes"
        )


@dataclass(frozen=True)
class ClusterStatus:
    info: ClusterInfo | None
    components: list[ComponentHealth]
    nodes: list[NodeState]
    problem: str = ""
    #: GPU node -> product the cluster was made with (``cluster up --config``); empty where not ours to choose
    gpu_products: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.info is not None and not self.problem and all(c.ok for c in self.components) \
            and bool(self.nodes) and all(n.ready for n in self.nodes)

    def render(self) -> str:
        if self.info is None:
            return f"no cluster: {self.problem or 'not created'}"
        lines = [
            f"cluster:    {self.info.name} ({self.info.backend})",
            f"api server: {self.info.api_server}",
            f"kubeconfig: {self.info.kubeconfig}",
        ]
        if self.problem:
            lines.append(f"problem:    {self.problem}")
        if self.gpu_products:
            lines.append("gpu:        " + ", ".join(f"{n}={p}" for n, p in self.gpu_products.items()))
        lines.append("components:")
        lines += [f"  {c.name:<26} {'ok' if c.ok else 'DOWN'} {c.detail}".rstrip() for c in self.components]
        lines.append("nodes:")
        lines += [f"  {n.name:<26} {'Ready' if n.ready else 'NotReady'} pool={n.labels.get('pool', '-')}"
                  + (f" gpu={n.labels[GPU_LABEL]}" if GPU_LABEL in n.labels else "") for n in self.nodes]
        return "\n".join(lines)


class Backend(abc.ABC):
    """Lifecycle of one cluster. ``up`` is idempotent; ``down`` leaves nothing running."""

    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    def up(self, progress: bool = True) -> ClusterInfo:
        """Start (or reuse) the cluster, with the drill's node pools, and return how to reach it."""

    @abc.abstractmethod
    def down(self) -> None:
        """Stop the cluster and remove what ``up`` created."""

    @abc.abstractmethod
    def status(self) -> ClusterStatus:
        """Health of the API server, the control-plane components and the nodes."""

    @abc.abstractmethod
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (never the candidate's)."""

    def kubectl_path(self) -> Path | None:
        """The kubectl this backend was built with (same version as its API server); None: the one on PATH."""
        return None

    def container_env(self, namespace: str, pod: str) -> dict[str, str] | None:
        """The environment of the pod's (first) running container, as its runtime started it; None: not reachable.

        Faults that act on a container (a crash, the GPUs it was granted) use it where pods are
        not local processes (kind); the embedded backend reads /proc instead.
        """
        return None

    def signal_container(self, namespace: str, pod: str, signum: int) -> bool:
        """Send ``signum`` to the pod's (first) container's main process, as a crash would; False: not reachable."""
        return False

    @property
    def runs_processes(self) -> bool:
        """True where pods are local processes started by our process kubelet (embedded)."""
        return False

    @property
    def process_state(self) -> Path | None:
        """Folder where the process kubelet keeps ``services.json``, ``pods/`` and ``volumes/`` (embedded only)."""
        state = getattr(self, "state", None)
        return Path(state) if state is not None and self.runs_processes else None

    @property
    def owns_gpu_plugin(self) -> bool:
        """True where the platform's baseline deploys the GPU device plugin (False: the cluster's own serves)."""
        return True

    def cluster_namespace(self, namespace: str) -> str:
        """The name the cluster itself gives a namespace this backend shows as ``namespace``."""
        return namespace

    #: Seconds a fresh platform may take to become healthy before ``start`` gives up.
    platform_start_timeout: float = 90

    def replay_rate(self) -> str | None:
        """Requests per second of the platform's traffic replay; None: the manifests' own rate."""
        return None

    def candidate_token(self) -> str | None:
        """The token the candidate's kubeconfig carries; None: a ServiceAccount token minted by the API."""
        return None

    def prepare_images(self, images: list[str]) -> None:
        """Make ``images`` pullable by the nodes before the platform uses them.

        Embedded: nothing to do (pods are local processes; the image is only a name).
        kind: built from the repo and loaded into the nodes. A real cluster pulls
        from its registry: pushing there is the operator's job.
        """

    def publish_gpu_inventory(self, data: dict[str, str]) -> None:
        """Carry the inventory ConfigMap's ``data`` (node -> GpuNode JSON) to where the nodes read it.

        Embedded: nothing to do, the node agent watches the ConfigMap. kind: each GPU node's file,
        which the gRPC plugin and the nvidia-smi in its containers read. A real cluster's nodes are
        out of our reach, so there GPU faults change only what the API shows.
        """
