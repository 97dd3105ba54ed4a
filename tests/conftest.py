"""Shared fixtures: one embedded cluster per test session.

The cluster's state lives in a temporary folder (never the user's own
cluster), the binaries come from the user's build cache, and every test that
needs the cluster gets it through the ``cluster`` fixture so the suite starts
the control plane once.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubectl_runner import KubectlRunner
from kind_fixtures import kind_platform, kind_session  # noqa: F401  (one kind cluster and platform per session)


@dataclass
class Cluster(KubectlRunner):
    backend: "object"
    kubeconfig: Path
    kubectl_path: Path
    state: Path
    created: list = None  # namespaces made by tests, removed after each test

    def __post_init__(self) -> None:
        self.created = []

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def namespace(self, prefix: str = "t") -> str:
        import time

        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        self.created.append(name)
        # Pods are refused until the controller-manager has created the namespace's default ServiceAccount.
        deadline = time.monotonic() + 30
        while self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"namespace {name} never got its default ServiceAccount")
            time.sleep(0.2)
        return name


@pytest.fixture(scope="session")
def cluster_state(tmp_path_factory) -> Path:
    state = tmp_path_factory.mktemp("drill-state")
    return state


@pytest.fixture(scope="session")
def cluster(cluster_state: Path):
    """The session's embedded cluster (built from Go modules into the user cache on first use)."""
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    old = os.environ.get("MLOPS_DRILL_STATE")
    os.environ["MLOPS_DRILL_STATE"] = str(cluster_state)
    backend = EmbeddedBackend(name="drill-test")
    try:
        info = backend.up(progress=False)
        assert info.kubectl is not None
        yield Cluster(backend, info.kubeconfig, info.kubectl, backend.state)
    finally:
        backend.down()
        if old is None:
            os.environ.pop("MLOPS_DRILL_STATE", None)
        else:
            os.environ["MLOPS_DRILL_STATE"] = old


@pytest.fixture(autouse=True)
def _drop_test_namespaces(request):
    """A test's namespaces go with it, so its pods hold no GPUs and block no drain in later tests."""
    yield
    if "cluster" in request.fixturenames:
        shared = request.getfixturevalue("cluster")
        if shared.created:
            shared.kubectl("delete", "namespace", *shared.created, "--wait=true", "--timeout=60s", check=False,
                           timeout=90)
            shared.created.clear()


@pytest.fixture(scope="session")
def platform(cluster):
    """The healthy ML platform on the session cluster, and a drill context to drive it."""
    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    ctx = context_for(cluster.backend)
    baseline.deploy(ctx, timeout=120)
    return ctx


@pytest.fixture(scope="session")
def agent_api(platform):
    """The agent API (FastAPI on uvicorn, an ephemeral loopback port) over the session's platform: (app, url).

    Shared by the agent API's tests and the MCP server's, which compares its grade with this API's.
    """
    from mlops_drill.server import create_app, serving

    app = create_app(lambda: platform)
    with serving(app) as url:
        yield app, url


@pytest.fixture(scope="session")
def candidate(platform, cluster):
    """The real kubectl with the candidate's kubeconfig (what `mlops-drill shell` hands out)."""
    from mlops_drill.injector import baseline

    env = {**os.environ, "KUBECONFIG": str(baseline.candidate_kubeconfig_path(platform))}

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(cluster.kubectl_path), *args], capture_output=True, text=True, timeout=60,
                                env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result

    return kubectl
