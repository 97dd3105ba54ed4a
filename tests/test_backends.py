"""The three backends behind one interface: kind (needs Docker), existing (any kubeconfig), and the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_drill.errors import DrillError


def test_unknown_backend_is_one_line():
    from mlops_drill.cluster.backends import get_backend

    with pytest.raises(DrillError) as err:
        get_backend("minikube")
    assert "unknown backend" in str(err.value) and "\n" not in str(err.value)


def test_cli_status_of_a_missing_cluster_is_one_line(tmp_path):
    env = {**os.environ, "MLOPS_DRILL_STATE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "cluster", "status", "--name", "nothing"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert result.stdout.strip() == "no cluster: cluster nothing is not created"
    assert "Traceback" not in result.stderr


def test_existing_backend_missing_kubeconfig_is_one_line(tmp_path):
    from mlops_drill.cluster.backends import get_backend

    with pytest.raises(DrillError) as err:
        get_backend("existing", kubeconfig=str(tmp_path / "nope")).up(progress=False)
    assert "no such file" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.cluster
def test_existing_backend_drives_a_real_cluster(cluster, tmp_path, monkeypatch):
    """The embedded cluster seen through `--backend existing`: what a user with a real cluster gets."""
    from mlops_drill.cluster.backends import get_backend

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path))
    monkeypatch.setenv("PATH", f"{cluster.kubectl_path.parent}{os.pathsep}{os.environ['PATH']}")
    backend = get_backend("existing", name="real", kubeconfig=str(cluster.kubeconfig))
    info = backend.up(progress=False)
    assert info.api_server.startswith("https://127.0.0.1:")
    status = backend.status()
    assert status.healthy, status.render()
    assert sorted(n.name for n in status.nodes) == ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1"]
    backend.down()
    assert cluster.backend.status().healthy, "forgetting an existing cluster must not stop it"


def test_kind_backend_without_docker_says_so(monkeypatch, tmp_path):
    """Where no Docker engine answers and none can be started, the refusal is one clear line (kind on Docker:
    tests/test_kind_backend.py).

    The engine is made unreachable for real, whatever this machine runs: a `docker` that cannot connect and a
    PATH without `dockerd`. Asking `KindBackend.up` itself would start the Debian engine where it is installed
    but stopped, and then create a kind cluster (it did, once, in this test).
    """
    from mlops_drill.cluster.kindbuild import engine, gobuild

    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///nonexistent.sock' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("MLOPS_DRILL_DOCKER", str(docker))
    monkeypatch.setenv("PATH", os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                                               if d and not (Path(d) / "dockerd").exists()))
    with pytest.raises(DrillError) as err:
        engine.ensure_engine(gobuild.bin_dir() / "runcwrap")  # the path the kind build registers, nothing new
    assert "Docker" in str(err.value) and "\n" not in str(err.value)