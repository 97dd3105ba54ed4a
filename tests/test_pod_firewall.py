"""The engine's loopback ports stay closed to pods that ask for root, and a killed cluster's rules go.

A candidate may create a pod whose securityContext asks for uid 0 (their namespace role
allows pods). Such a container is uid 0 on the host, where the per-user iptables rule
would let it through; the per-cgroup rule must reset it like any other pod. The attempts
are typed the way a candidate would: `kubectl apply` of the pod, `kubectl exec` into it,
and the pod's own command, read back with `kubectl logs`.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest
from polling import wait
from test_pod_sandbox import RESET, host_facts

from mlops_drill.cluster.processpods import firewall

ROOT_POD = "root-probe"


def _root_pod(etcd_port: int) -> dict:
    probe = (f"curl -sS -m 5 http://127.0.0.1:{etcd_port}/version && echo ESCAPED; "
             "id -u; sleep 3600")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": ROOT_POD, "namespace": "serving", "labels": {"mlops-drill.dev/process": "true"}},
        "spec": {"securityContext": {"runAsUser": 0},
                 "containers": [{"name": "probe", "image": "debian:bookworm", "command": ["sh", "-c", probe]}]},
    }


@pytest.mark.cluster
def test_a_pod_running_as_root_cannot_reach_etcd(cluster, platform, candidate, tmp_path) -> None:
    from mlops_drill.injector import baseline

    facts = host_facts(cluster.backend, baseline.candidate_kubeconfig_path(platform))
    manifest = tmp_path / "root-pod.json"
    manifest.write_text(json.dumps(_root_pod(facts.etcd_port)))
    candidate("apply", "-f", str(manifest))
    try:
        wait(lambda: "\n0\n" in "\n" + candidate("logs", "-n", "serving", ROOT_POD, check=False).stdout,
             timeout=60, what="the root pod's own probe to finish")
        own = candidate("logs", "-n", "serving", ROOT_POD).stdout
        assert "ESCAPED" not in own, f"the root container's own process reached etcd:\n{own}"
        result = candidate("exec", "-n", "serving", ROOT_POD, "--", "sh", "-c",
                           f"id -u; curl -sS -m 5 http://127.0.0.1:{facts.etcd_port}/version && echo ESCAPED; "
                           f"curl -sS -m 5 http://127.0.0.1:{facts.kwok_port}/healthz && echo ESCAPED",
                           check=False)
        assert result.stdout.splitlines()[:1] == ["0"], result.stdout + result.stderr  # it is root in there
        assert "ESCAPED" not in result.stdout, result.stdout + result.stderr
        assert len(__import__("re").findall(RESET, result.stderr)) >= 2, result.stderr
    finally:
        candidate("delete", "pod", "-n", "serving", ROOT_POD, "--ignore-not-found", "--wait=true", check=False)


needs_iptables = pytest.mark.skipif(shutil.which("iptables") is None or firewall.cgroup2_root() is None,
                                    reason="needs iptables and cgroup v2 (root)")


@needs_iptables
def test_rules_of_a_killed_cluster_are_swept_and_a_live_ones_kept(tmp_path) -> None:
    """Two clusters' rules as a killed run and a live one leave them: only the dead one's go."""
    live = socket.socket()
    live.bind(("127.0.0.1", 0))
    live.listen()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()  # nobody listens there any more: its cluster is gone
    dead_state, live_state = str(tmp_path / "dead"), str(tmp_path / "live")
    try:
        assert firewall.close_ports(dead_state, [dead_port]) is None
        assert firewall.close_ports(live_state, [live.getsockname()[1]]) is None
        assert firewall.closed_ports(live_state).count("\n") == 1  # two rules: by user and by cgroup
        assert firewall.closed_ports(dead_state) == ""  # swept when the live one closed its ports
        assert not (firewall.cgroup2_root() / firewall.tag(dead_state)).exists()
    finally:
        firewall.open_ports(dead_state)
        firewall.open_ports(live_state)
        live.close()
    assert firewall.closed_ports(live_state) == ""
    assert not (firewall.cgroup2_root() / firewall.tag(live_state)).exists()


@needs_iptables
def test_a_process_in_the_pods_cgroup_is_reset_even_as_root(tmp_path) -> None:
    """The rule itself, without a cluster: root on the host, but in the pods' cgroup, gets a reset."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    state = str(tmp_path / "cluster")
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')"
    try:
        assert firewall.close_ports(state, [port]) is None
        group = firewall.pods_cgroup(state)
        outside = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, timeout=10)
        inside = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, timeout=10,
                                preexec_fn=lambda: firewall.join(group))
    finally:
        firewall.open_ports(state)
        server.close()
    assert outside.stdout.strip() == "connected", outside.stderr
    assert "ConnectionRefused" in inside.stderr or "ConnectionReset" in inside.stderr, inside.stdout + inside.stderr


@needs_iptables
def test_a_cluster_started_again_keeps_one_copy_of_its_rules(tmp_path) -> None:
    """`up` on a running cluster closes its ports again: new rules go in before the old go, none doubled."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    state = str(tmp_path / "cluster")
    try:
        assert firewall.close_ports(state, [server.getsockname()[1]]) is None
        first = firewall.closed_ports(state)
        assert firewall.close_ports(state, [server.getsockname()[1]]) is None
        assert firewall.closed_ports(state) == first and first.count("\n") == 1
        assert firewall.pods_cgroup(state).is_dir()
    finally:
        firewall.open_ports(state)
        server.close()
