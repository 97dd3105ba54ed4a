"""The session's kind cluster, created through pytest-kind's ``KindCluster`` (with our ``kind_path``).

Used by tests marked ``kind``. Where no Docker engine can be had (no docker
command, not root, dockerd will not start) they skip, saying why; on a machine
where one can, they run: nothing here is mocked.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubectl_runner import KubectlRunner

KIND_CLUSTER_NAME = "drill-kind-test"


@dataclass
class KindSession(KubectlRunner):
    backend: "object"
    cluster: "object"  # pytest_kind.KindCluster
    kubeconfig: Path
    kubectl_path: Path
    state: Path

    def node_container(self, node: str) -> str:
        return self.backend.node_containers()[node]

    def on_node(self, node: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", self.node_container(node), *cmd], capture_output=True, text=True,
                              timeout=timeout)

    def allocatable_gpus(self, node: str) -> str:
        return self.json("get", "node", node)["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")

    def wait_for(self, what: str, predicate, timeout: float = 120, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)


def docker_or_skip() -> None:
    """Start (or find) the Docker engine the kind backend needs; skip the test saying why when it cannot be had."""
    from mlops_drill.cluster.kindbuild import engine, gobuild
    from mlops_drill.errors import DrillError

    if not engine.engine_answers()[0]:
        import shutil

        if not shutil.which("dockerd") and not shutil.which("docker"):
            pytest.skip("kind tests need Docker: no docker or dockerd here (Debian: apt-get install docker.io)")
        if os.geteuid() != 0 and not shutil.which("docker"):
            pytest.skip("kind tests need Docker: no engine answers and starting dockerd needs root")
    import shutil

    from mlops_drill.cluster.kindbuild import rootfs

    for tool, package, why in (("debootstrap", "debootstrap", "the node image's Debian rootfs"),
                               ("go", "golang", "kind and the Kubernetes binaries")):
        if not shutil.which(tool) and not rootfs.image_exists(f"{rootfs.NODE_BASE_IMAGE}:{rootfs.node_base_stamp()}"):
            pytest.skip(f"kind tests need {tool} for the first build ({why}); Debian: apt-get install {package}")
    try:
        wrapper = gobuild.bin_dir() / "runcwrap"
        if engine.cap_sys_resource_missing() and not wrapper.is_file():
            gobuild.build(gobuild.BY_NAME["runcwrap"])
        engine.ensure_engine(wrapper)
    except DrillError as exc:
        pytest.skip(f"kind tests need a Docker engine: {exc}")


def _backend_in(state: Path, backend_class):
    """The kind backend with its state folder under ``state``.

    The backend fixes its folder when it is made, so the environment names ``state`` only
    for that moment: left set for the session, every later test that starts the CLI would
    find its state here instead of the embedded session cluster's, and start a cluster of
    its own (it did, and left it running)."""
    old = os.environ.get("MLOPS_DRILL_STATE")
    os.environ["MLOPS_DRILL_STATE"] = str(state)
    try:
        return backend_class(name=KIND_CLUSTER_NAME)
    finally:
        if old is None:
            os.environ.pop("MLOPS_DRILL_STATE", None)
        else:
            os.environ["MLOPS_DRILL_STATE"] = old


@pytest.fixture(scope="session")
def kind_session(tmp_path_factory):
    """One kind cluster for the session: built (cached), created by pytest-kind, set up by the kind backend."""
    from pytest_kind import KindCluster

    from mlops_drill.cluster.backends.kind import KindBackend
    from mlops_drill.cluster.backends.kind_config import kind_config
    from mlops_drill.cluster.kindbuild.pipeline import ensure_kind_build

    docker_or_skip()
    build = ensure_kind_build(progress=True)
    # MLOPS_DRILL_KIND_KEEP=1 (for working on these tests): keep the cluster after the session and reuse it
    keep = os.environ.get("MLOPS_DRILL_KIND_KEEP") == "1"
    state = Path.home() / ".local" / "state" / "mlops-drill-kind-tests" if keep else tmp_path_factory.mktemp("kind-state")
    backend = _backend_in(state, KindBackend)
    cluster = KindCluster(KIND_CLUSTER_NAME, kubeconfig=backend.kubeconfig(), image=build.node_image,
                          kind_path=build.kind, kubectl_path=build.kubectl)
    try:
        if backend.exists() and not (keep and backend.kubeconfig().is_file()):
            backend.down()  # left over from an interrupted session: start clean
        backend.state.mkdir(parents=True, exist_ok=True)
        import yaml

        config = backend.state / "kind.yaml"
        config.write_text(yaml.safe_dump(kind_config(), sort_keys=False))
        cluster.create(config)  # pytest-kind runs `kind create cluster`; the backend then reuses it
        backend.up(progress=False)
        yield KindSession(backend, cluster, backend.kubeconfig(), build.kubectl, backend.state)
    finally:
        try:
            if not keep:
                cluster.delete()
        finally:
            if not keep:
                backend.down()


@pytest.fixture(scope="session")
def kind_platform(kind_session):
    """The healthy ML platform on the kind cluster (images built from the repo and loaded into the nodes)."""
    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    ctx = context_for(kind_session.backend)
    baseline.deploy(ctx, timeout=600)
    return ctx


def candidate_kubectl(ctx, kubectl_path):
    """The real kubectl with the candidate's kubeconfig on ``ctx``'s cluster (what `mlops-drill shell` hands out)."""
    from mlops_drill.injector import baseline

    env = {**os.environ, "KUBECONFIG": str(baseline.candidate_kubeconfig_path(ctx))}

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(kubectl_path), *args], capture_output=True, text=True, timeout=60, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    return kubectl
