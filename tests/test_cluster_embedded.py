"""The embedded cluster behaves like Kubernetes because it is Kubernetes: real scheduler,
real controllers, real kubectl. These tests read what a user would read."""
from __future__ import annotations

import os
import subprocess
import time

import pytest
from polling import wait

from mlops_drill.errors import DrillError

pytestmark = pytest.mark.cluster




def test_kubectl_lists_four_ready_nodes_with_pools(cluster):
    out = cluster.kubectl("get", "nodes", "-L", "pool", "--no-headers").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in out}
    assert sorted(rows) == ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1"]
    for name, cols in rows.items():
        assert cols[1] == "Ready", cols
        assert cols[-1] == name.split("-")[0]
    taints = cluster.json("get", "node", "gpu-node-0")["spec"]["taints"]
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in taints


def test_kubectl_reports_its_real_version(cluster):
    out = cluster.kubectl("version").stdout
    assert "Client Version: v1.36.3" in out and "Server Version: v1.36.3" in out


def test_gpu_pod_without_toleration_stays_pending_with_scheduler_event(cluster):
    ns = cluster.namespace("sched")
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: trainer, namespace: {ns}}}
spec:
  nodeSelector: {{pool: gpu}}
  containers: [{{name: main, image: pytorch/pytorch:2.4.0, resources: {{limits: {{nvidia.com/gpu: 1}}}}}}]
""")
    events = wait(lambda: [e for e in cluster.json("get", "events", "-n", ns)["items"]
                           if e["reason"] == "FailedScheduling"], what="FailedScheduling event")
    message = events[0]["message"]
    assert "untolerated taint" in message, message
    assert events[0]["source"].get("component", events[0].get("reportingComponent")) in ("default-scheduler", None) \
        or events[0].get("reportingComponent") == "default-scheduler"
    assert cluster.json("get", "pod", "trainer", "-n", ns)["status"]["phase"] == "Pending"
    describe = cluster.kubectl("describe", "pod", "trainer", "-n", ns).stdout
    assert "FailedScheduling" in describe and "untolerated taint" in describe


def test_deployment_scales_rolls_out_and_rolls_back(cluster):
    ns = cluster.namespace("roll")
    cluster.kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "-n", ns)
    cluster.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
    cluster.kubectl("scale", "deploy/web", "--replicas=3", "-n", ns)
    wait(lambda: cluster.json("get", "deploy", "web", "-n", ns)["status"].get("readyReplicas") == 3,
         what="3 ready replicas")
    cluster.kubectl("set", "image", "deploy/web", "nginx=nginx:1.26", "-n", ns)
    cluster.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
    cluster.kubectl("rollout", "undo", "deploy/web", "-n", ns)
    cluster.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s")
    image = cluster.json("get", "deploy", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "nginx:1.25"
    history = cluster.kubectl("rollout", "history", "deploy/web", "-n", ns).stdout
    assert "3" in history.split()  # revisions 2 and 3 remain after the undo


def test_up_twice_reuses_the_running_cluster(cluster):
    before = cluster.backend.info().api_server
    started = time.monotonic()
    info = cluster.backend.up(progress=False)
    assert info.api_server == before
    assert time.monotonic() - started < 30
    assert cluster.backend.status().healthy


def test_kubeconfig_stays_out_of_the_users_kube_config(cluster):
    assert str(cluster.kubeconfig).startswith(str(cluster.state))
    user_config = os.path.expanduser("~/.kube/config")
    if os.path.exists(user_config):
        assert "drill-test" not in open(user_config).read()


def test_dry_run_shows_local_binaries_and_no_download(cluster):
    from mlops_drill.cluster.toolchain import ensure_toolchain

    chain = ensure_toolchain(progress=False)
    cmd = cluster.backend.create_command(chain, dry_run=True)
    env = {**os.environ, "KWOK_WORKDIR": str(cluster.state / "dry-run")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    sources = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("# Download ")]
    # kwokctl "downloads" each binary by copying it from our cache: every source is a local file.
    assert len(sources) == 5, result.stdout
    assert all(src.startswith(str(chain.bin_dir)) for src in sources), sources
    assert "://" not in "".join(sources)


def test_port_in_use_is_one_clear_line(tmp_path, monkeypatch):
    import socket

    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DrillError) as err:
            EmbeddedBackend(name="busy", api_port=port).up(progress=False)
    assert f"port {port}" in str(err.value) and "\n" not in str(err.value)


def test_missing_go_is_one_clear_line(monkeypatch):
    from mlops_drill.cluster.toolchain.binaries import go_binary

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("GO", raising=False)
    with pytest.raises(DrillError) as err:
        go_binary()
    assert "go: command not found" in str(err.value) and "\n" not in str(err.value)


def test_killed_apiserver_is_reported_and_up_recovers(cluster):
    import signal

    from mlops_drill.cluster import daemons

    pid = daemons.running_pid(cluster.backend._pid_file("kube-apiserver"))
    assert pid
    os.kill(pid, signal.SIGKILL)
    wait(lambda: not cluster.backend.status().healthy, what="status to notice the dead apiserver")
    status = cluster.backend.status()
    assert "kube-apiserver" in status.render() and status.problem
    cluster.backend.up(progress=False)
    assert cluster.backend.status().healthy
    assert len(cluster.kubectl("get", "nodes", "--no-headers").stdout.splitlines()) == 4


def test_stale_cluster_directory_is_recovered(tmp_path, monkeypatch):
    """A cluster folder left by a crash (no processes, broken config) must not block `up`."""
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path))
    backend = EmbeddedBackend(name="stale")
    backend.kwok_cluster.mkdir(parents=True)
    (backend.kwok_cluster / "pids").mkdir()
    (backend.kwok_cluster / "pids" / "kube-apiserver.pid").write_text("999999")
    try:
        info = backend.up(progress=False)
        assert backend.status().healthy, backend.status().render()
        assert info.kubeconfig.is_file()
        assert len(_processes_under(backend.state)) >= 6, "etcd, apiserver, kcm, scheduler, kwok, agent"
    finally:
        backend.down()
    assert not backend.state.exists()
    # A killed process can take a moment to exit; an unreaped zombie has ended already.
    wait(lambda: _processes_under(backend.state) == [], timeout=10, what="`cluster down` to leave nothing running")


def _processes_under(folder) -> list[str]:
    """Live processes whose command line or working directory lies in ``folder`` (a cluster's state)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if not cmdline.strip():  # a zombie, or a process already tearing down its memory
            continue
        if str(folder) in cmdline or cwd.startswith(str(folder)):
            found.append(f"{entry}: {cmdline[:120]}")
    return found
