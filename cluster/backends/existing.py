"""existing backend: any cluster a kubeconfig reaches (for drills beyond one machine).

We never create or delete nodes on a real cluster; ``up`` checks that the API
answers and that GPU and CPU pools exist (``pool=gpu`` / ``pool=cpu`` labels),
and records a flattened copy of the chosen context in our state directory.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlops_drill import paths
from mlops_drill.cluster import kube
from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus, ComponentHealth, NodeState
from mlops_drill.errors import DrillError


def cluster_status(info: ClusterInfo, context: str | None) -> ClusterStatus:
    from kubernetes import client

    try:
        api = kube.api_client(info.kubeconfig, context)
    except Exception as exc:
        return ClusterStatus(info, [], [], problem=f"kubeconfig {info.kubeconfig}: {exc}".splitlines()[0])
    if not kube.api_ready(api, timeout=5):
        return ClusterStatus(info, [ComponentHealth("kube-apiserver", False, "no answer on /readyz")], [],
                             problem=f"the API server at {info.api_server} does not answer")
    nodes = [
        NodeState(n.metadata.name,
                  any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])),
                  dict(n.metadata.labels or {}))
        for n in client.CoreV1Api(api).list_node().items
    ]
    return ClusterStatus(info, [ComponentHealth("kube-apiserver", True)], nodes)


class ExistingBackend(Backend):
    kind = "existing"

    def __init__(self, name: str = "mlops-drill", kubeconfig: str | None = None, context: str | None = None) -> None:
        super().__init__(name)
        source = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        self.source = Path(source.split(os.pathsep)[0]).expanduser()
        self.context = context
        self.state = paths.cluster_dir(f"existing-{name}")

    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    def up(self, progress: bool = True) -> ClusterInfo:
        if not self.source.is_file():
            raise DrillError(f"kubeconfig {self.source}: no such file (pass --kubeconfig)")
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = ["kubectl", "config", "view", "--flatten", "--minify", "--kubeconfig", str(self.source)]
        if self.context:
            cmd += ["--context", self.context]
        try:
            flat = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        except FileNotFoundError:
            raise DrillError("kubectl: command not found (run `mlops-drill toolchain build`, or install kubectl)")
        if flat.returncode != 0:
            raise DrillError(f"kubeconfig {self.source}: {flat.stderr.strip().splitlines()[-1]}")
        self.kubeconfig().write_text(flat.stdout)
        self.kubeconfig().chmod(0o600)
        status = cluster_status(self.info(), None)
        if status.problem:
            raise DrillError(status.problem)
        pools = {n.labels.get("pool") for n in status.nodes}
        missing = {"cpu", "gpu"} - pools
        if missing:
            raise DrillError(f"cluster has no node labelled pool={'/'.join(sorted(missing))}: "
                             "label a node pool (kubectl label node NAME pool=gpu) before running drills")
        return self.info()

    def info(self) -> ClusterInfo:
        server = "(unknown)"
        try:
            import yaml

            server = yaml.safe_load(self.kubeconfig().read_text())["clusters"][0]["cluster"]["server"]
        except Exception:
            pass
        return ClusterInfo(self.name, self.kind, self.kubeconfig(), server, None)

    def down(self) -> None:
        # A real cluster is not ours to stop: forget it only.
        import shutil

        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> ClusterStatus:
        if not self.kubeconfig().is_file():
            return ClusterStatus(None, [], [], problem="not connected; run `mlops-drill cluster up --backend existing`")
        return cluster_status(self.info(), None)
