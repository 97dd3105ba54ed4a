"""A 2-seat group drill on the kind cluster reached as an existing cluster (`serve --shared-kubeconfig`).

On kind the nodes are real kubelets, so the seats share them and the cluster's one
GPU device plugin; each seat is its own namespaces behind its own gateway endpoint,
exactly as on the embedded shared cluster. Asserted as the candidate meets it: the
seat's kubeconfig shows the catalogue's nodes and the seat's own platform, nothing of
the other seat; a node write is refused (every seat schedules there); a fix typed in
seat 1 fixes seat 1 only; stopping the drill leaves the cluster's own namespaces and
nodes as they were. A fault that acts on a node is refused for such a server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from kind_fixtures import kind_platform, kind_session  # noqa: F401  (one kind cluster and platform per session)

pytestmark = [
    pytest.mark.kind, pytest.mark.timeout(1500),
    # Opt-in for now: it passed on kind here four times, but in the one fresh-clone rehearsal that ran it
    # (where it failed early, its 2-seat drill refused for free GPUs while the device plugin tests' GPUs
    # came back) the kind API server stopped answering right after it, and the kind tests after it all
    # errored. Until that is understood, CI's kind suite runs without it.
    pytest.mark.skipif(os.environ.get("MLOPS_DRILL_KIND_DRILL") != "1",
                       reason="the 2-seat kind drill runs with MLOPS_DRILL_KIND_DRILL=1 (see the module)"),
]

TOKEN = "instructor-kind-drill"
SCENARIO = "stale-feature-cache"  # its fault stays in the seat's `features` namespace and takes no GPU


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def kind_drill_server(kind_platform, kind_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("kind-drills")
    port = _free_port()
    env = {**os.environ, "MLOPS_DRILL_STATE": str(root / "state"), "MLOPS_DRILL_INSTRUCTOR_TOKEN": TOKEN,
           "PYTHONUNBUFFERED": "1", "PATH": f"{kind_session.kubectl_path.parent}{os.pathsep}{os.environ['PATH']}"}
    log = open(root / "serve.log", "w")
    cli = Path(sys.executable).with_name("mlops-drill")
    proc = subprocess.Popen([str(cli), "serve", "--port", str(port), "--shared-kubeconfig",
                             str(kind_session.kubeconfig)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
    deadline = time.monotonic() + 60
    while True:
        try:
            http.get("/api/drills", timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlops-drill serve did not start: {(root / 'serve.log').read_text()}")
            time.sleep(0.3)
    try:
        yield {"url": base, "http": http, "env": env, "root": root}
    finally:
        for drill in http.get("/api/drills").json():
            if drill["state"] != "stopped":
                http.delete(f"/api/drills/{drill['id']}")
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _seat_kubectl(server: dict, code: str, home: Path):
    answer = httpx.post(server["url"] + "/api/join", json={"code": code}).json()
    seat = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {answer['token']}"}, timeout=60)
    kubeconfig = home / "kubeconfig"
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(seat.get("/api/seat/kubeconfig").text)
    env = {**server["env"], "KUBECONFIG": str(kubeconfig)}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=180, env=env)

    return kubectl


def _nodes(kubectl) -> dict[str, bool]:
    listed = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    return {n["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in n["status"]["conditions"]) for n in listed}


def test_two_seats_share_the_kind_nodes_and_nothing_else(kind_drill_server, kind_session, tmp_path):
    http = kind_drill_server["http"]
    # The device plugin tests before this one restart kubelets and fail GPUs: wait for all eight to be back,
    # since the server counts free GPUs before it takes a drill.
    kind_session.wait_for("4 allocatable GPUs on each GPU node",
                          lambda: all(kind_session.allocatable_gpus(n) == "4" for n in ("gpu-node-0", "gpu-node-1")),
                          timeout=300, interval=2)
    refused = http.post("/api/drills", json={"scenario": "training-no-checkpoint", "seats": 2})
    assert refused.status_code == 422 and "node" in refused.json()["detail"], refused.text
    crowded = http.post("/api/drills", json={"scenario": SCENARIO, "seats": 5})  # 10 GPUs: the cluster has 8
    assert crowded.status_code == 422 and "GPUs" in crowded.json()["detail"], crowded.text

    t0 = time.monotonic()
    answer = http.post("/api/drills", json={"scenario": SCENARIO, "seats": 2})
    assert answer.status_code == 200, answer.text
    created = answer.json()
    while True:
        board = http.get(f"/api/drills/{created['id']}").json()
        states = [s["state"] for s in board["seats"]]
        if all(s in ("ready", "failed") for s in states):
            break
        assert time.monotonic() - t0 < 900, f"seats not ready after 900 s: {states}"
        time.sleep(3)
    assert states == ["ready", "ready"], [(s["seat"], s.get("error")) for s in board["seats"]]
    print(f"\n2 seats ready on kind in {time.monotonic() - t0:.0f}s: "
          + "; ".join(f"seat {s['seat']} {s['setup_s']}" for s in board["seats"]))
    codes = {s["seat"]: s["code"] for s in created["seats"]}
    one = _seat_kubectl(kind_drill_server, codes[1], tmp_path / "seat1")
    two = _seat_kubectl(kind_drill_server, codes[2], tmp_path / "seat2")

    # The catalogue's nodes, real and Ready, by their own names; the seat's own platform under the product's names.
    assert _nodes(one) == {"cpu-node-0": True, "cpu-node-1": True, "gpu-node-0": True, "gpu-node-1": True}
    pods = one("get", "pods", "-n", "features", "-o", "name")
    assert pods.returncode == 0 and "pod/feature-store-" in pods.stdout, pods.stderr
    assert "--" not in one("get", "pods", "-A", "-o", "wide").stdout  # no seat prefix shows, its own or another's
    namespaces = one("get", "ns", "-o", "name").stdout.split()
    assert "namespace/features" in namespaces and not any("--" in n for n in namespaces), namespaces
    # The other seat's namespaces as the cluster names them are refused; a node write would reach every seat.
    other = f"{created['id']}-2--features"
    assert one("get", "pods", "-n", f"s-{other}").returncode != 0
    cordon = one("cordon", "gpu-node-0")  # kubectl cordon reports a refused patch on stderr and still exits 0
    assert "shared by every seat" in cordon.stderr, cordon.stderr
    taint = one("taint", "node", "gpu-node-1", "drill=x:NoSchedule")
    assert taint.returncode != 0 and "shared by every seat" in taint.stderr, taint.stderr
    assert not kind_session.json("get", "node", "gpu-node-0")["spec"].get("unschedulable")

    # Seat 1 fixes its feature refresh; seat 2 stays broken.
    for line in (["set", "env", "cronjob/feature-refresh", "-n", "features",
                  "SOURCE_TABLE=payments.account_snapshot"],
                 ["create", "job", "feature-refresh-manual", "-n", "features", "--from=cronjob/feature-refresh"],
                 ["wait", "job/feature-refresh-manual", "-n", "features", "--for=condition=complete",
                  "--timeout=150s"]):
        done = one(*line)
        assert done.returncode == 0, (line, done.stderr)
    deadline = time.monotonic() + 120
    while True:
        fixed = http.post(f"/api/drills/{created['id']}/verify").json()["fixed"]
        if fixed.get("1") or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert fixed == {"1": True, "2": False}, fixed
    assert two("get", "job", "feature-refresh-manual", "-n", "features").returncode != 0

    cluster_ns = set(kind_session.kubectl("get", "ns", "-o", "name").stdout.split())
    assert {f"namespace/s-{created['id']}-1--features", f"namespace/s-{created['id']}-2--features"} <= cluster_ns
    http.delete(f"/api/drills/{created['id']}")
    deadline = time.monotonic() + 300
    while any(f"s-{created['id']}-" in n for n in kind_session.kubectl("get", "ns", "-o", "name").stdout.split()):
        assert time.monotonic() < deadline, "the seats' namespaces outlived the drill"
        time.sleep(3)
    after = set(kind_session.kubectl("get", "ns", "-o", "name").stdout.split())
    assert {"namespace/serving", "namespace/features", "namespace/gpu-operator"} <= after
    assert _nodes(lambda *a: kind_session.kubectl(*a)) == {
        "cpu-node-0": True, "cpu-node-1": True, "gpu-node-0": True, "gpu-node-1": True}
