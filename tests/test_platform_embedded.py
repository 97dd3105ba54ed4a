"""The ML platform as real pods on the embedded cluster, seen through the candidate's kubeconfig."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager

import httpx
import pytest
from answer_markers import candidate_view, markers_in
from polling import wait

pytestmark = pytest.mark.cluster




@contextmanager
def port_forward(cluster, kubeconfig, target: str, namespace: str, remote: int):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
    proc = subprocess.Popen([str(cluster.kubectl_path), "port-forward", "-n", namespace, target, f"{local}:{remote}"],
                            env={**os.environ, "KUBECONFIG": str(kubeconfig)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "Forwarding from" in line, line
        yield f"http://127.0.0.1:{local}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def process_of(cluster, namespace: str, pod: str) -> int | None:
    """The pid of the live local process running ``pod``, from the record its kubelet wrote.

    (A container forked by the zygote shows the zygote's environment in /proc,
    so POD_NAME cannot be searched for there; the record is checked against the
    process's start time, so a recycled pid is not taken for it.)
    """
    from mlops_drill.cluster.processpods import records

    found = records.find(cluster.state, namespace, pod)
    return found[0] if found else None


def pod_pids(cluster, namespace: str, selector: str) -> dict[str, int | None]:
    """Running pod name -> pid of its real process."""
    pods = cluster.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return {p["metadata"]["name"]: process_of(cluster, namespace, p["metadata"]["name"])
            for p in pods if not p["metadata"].get("deletionTimestamp")}


PLATFORM_APPS = {"registry": "model-registry", "features": "feature-store", "serving": "fraud-model,traffic-replay"}


def test_the_baseline_comes_up_with_no_restarts(platform, cluster, candidate):
    """Every platform pod starting at once, as on a fresh baseline, must come up with RESTARTS 0.

    Each app waits for the Services it calls (registry, fraud-model, feature store) while they have no
    ready endpoint yet. Before, traffic-replay and fraud-model died with exit 141 (SIGPIPE, left at its
    default by the zygote's fork) on the closed connection and showed RESTARTS 2 after every start: a red
    herring for every candidate. The Deployments are scaled to zero and the baseline deployed again, so
    the test sees a cold start (Services with no endpoint at all) whatever earlier tests did.
    """
    from mlops_drill.injector import baseline

    started = time.time()
    for namespace in PLATFORM_APPS:
        cluster.kubectl("scale", "deployment", "--all", "-n", namespace, "--replicas=0")

    def pods() -> list[dict]:
        return [p for namespace, apps in PLATFORM_APPS.items()
                for p in cluster.json("get", "pods", "-n", namespace, "-l", f"app in ({apps})")["items"]]

    wait(lambda: not pods(), timeout=60, what="every platform pod gone")
    baseline.deploy(platform, timeout=120)
    time.sleep(5)  # the crashes came within 2 s of a start; give a late one time to show
    restarts = {p["metadata"]["name"]: (s["restartCount"], s.get("lastState", {}).get("terminated"))
                for p in pods() for s in p["status"]["containerStatuses"]}
    assert len(restarts) == 5 and all(count == 0 for count, _ in restarts.values()), restarts
    # What the candidate's `kubectl get pods -n serving` shows: the RESTARTS column all 0.
    rows = [line.split() for line in candidate("get", "pods", "-n", "serving").stdout.splitlines()[1:]]
    serving = sum(int(d["spec"].get("replicas", 1)) for d in baseline.documents(platform)
                  if d["kind"] == "Deployment" and d["metadata"]["namespace"] == "serving")
    assert serving >= 3 and len(rows) == serving and all(row[3] == "0" for row in rows), rows
    # A feature-refresh run the CronJob fires during the start waits for the store instead of failing.
    jobs = cluster.json("get", "pods", "-n", "features", "-l", "app=feature-refresh")["items"]
    failed = [p["metadata"]["name"] for p in jobs if p["status"].get("phase") == "Failed"
              and _epoch(p["metadata"]["creationTimestamp"]) >= started - 1]
    assert not failed, failed


def test_a_client_that_hangs_up_early_does_not_kill_a_platform_pod(platform, cluster):
    """Clients close connections before reading the whole answer (the prober reads only the status line).

    In a container `python` ignores SIGPIPE, so the app's next write raises BrokenPipeError and the app
    goes on. A zygote child that kept SIGPIPE at its default died of it (exit 141): that was the
    RESTARTS 2 of traffic-replay and fraud-model after every start, when probes and their timeouts race.
    """
    pods = {p["metadata"]["name"]: (namespace, p)
            for namespace, apps in PLATFORM_APPS.items()
            for p in cluster.json("get", "pods", "-n", namespace, "-l", f"app in ({apps})")["items"]
            if not p["metadata"].get("deletionTimestamp")}
    before = {}
    for name, (namespace, pod) in pods.items():
        found = wait(lambda: process_of_record(cluster, namespace, name), timeout=30, what=f"{name}'s process")
        before[name] = (found, pod["status"]["containerStatuses"][0]["restartCount"])
    refused = {}
    for name, ((pid, env), _) in before.items():
        for _ in range(30):  # ask for the largest answer and hang up at once, as a probe that timed out does
            try:
                with socket.create_connection(("127.0.0.1", int(env["PORT"])), timeout=5) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            except OSError as exc:  # the process is gone
                refused[name] = str(exc)
                break
            time.sleep(0.01)
    assert not refused, f"stopped answering after clients hung up: {refused}"
    time.sleep(2)
    for name, ((pid, _), restarts) in before.items():
        namespace, _ = pods[name]
        now = process_of_record(cluster, namespace, name)
        status = cluster.json("get", "pod", "-n", namespace, name)["status"]["containerStatuses"][0]
        assert now and now[0] == pid and status["restartCount"] == restarts, (name, status)


def process_of_record(cluster, namespace: str, pod: str) -> tuple[int, dict[str, str]] | None:
    from mlops_drill.cluster.processpods import records

    return records.find(cluster.state, namespace, pod)


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_predict_through_port_forward_and_request_in_logs(platform, cluster, candidate):
    from mlops_drill.injector import baseline

    kubeconfig = baseline.candidate_kubeconfig_path(platform)
    with port_forward(cluster, kubeconfig, "svc/fraud-model", "serving", 80) as base:
        response = httpx.post(base + "/predict", json={"entity_id": "acct-000042"}, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert 0.0 <= body["score"] <= 1.0 and body["model_version"] == "3"
        request_id = body["request_id"]
    # What the on-call engineer types: the Deployment's logs (both replicas; the Service picked one).
    found = wait(lambda: request_id in candidate("logs", "deploy/fraud-model", "-n", "serving",
                                                 "--all-pods=true").stdout,
                 what="the request's log line", timeout=15)
    assert found


def _ready_since(cluster, namespace: str, selector: str) -> dict[str, str]:
    """Pod name -> when its running container started, for the pods that are Ready."""
    pods = cluster.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return {p["metadata"]["name"]: s["state"]["running"]["startedAt"]
            for p in pods if not p["metadata"].get("deletionTimestamp")
            for s in (p["status"].get("containerStatuses") or []) if s.get("ready") and "running" in s["state"]}


def test_port_forward_reaches_the_new_process_after_the_node_agent_restarts(platform, cluster, candidate):
    """`cluster up` after a dead API server restarts the node agent, and with it every pod's process on a new
    port: `kubectl port-forward` must follow (a PortForward left pointing at the old port drops the connection)."""
    from mlops_drill.cluster import daemons
    from mlops_drill.injector import baseline

    before = _ready_since(cluster, "serving", "app=fraud-model")
    assert before
    daemons.stop("agent", cluster.backend.state)
    cluster.backend._start_agent()
    wait(lambda: (now := _ready_since(cluster, "serving", "app=fraud-model")).keys() == before.keys()
         and all(now[p] != before[p] for p in before), what="fraud-model Ready again in new processes", timeout=60)
    baseline.wait_healthy(platform, timeout=60)
    kubeconfig = baseline.candidate_kubeconfig_path(platform)
    with port_forward(cluster, kubeconfig, "svc/fraud-model", "serving", 80) as base:
        response = httpx.post(base + "/predict", json={"entity_id": "acct-000042"}, timeout=10)
    assert response.status_code == 200, response.text


def test_metrics_parse_and_metadata_agrees_with_registry(platform, cluster):
    from prometheus_client.parser import text_string_to_metric_families

    with platform.service("serving", "fraud-model") as base:
        metrics = httpx.get(base + "/metrics", timeout=10).text
        metadata = httpx.get(base + "/metadata", timeout=10).json()
    names = {f.name for f in text_string_to_metric_families(metrics)}
    assert {"inference_request_duration_seconds", "prediction_confidence", "feature_null_rate",
            "model_load_seconds"} <= names, names
    with platform.service("registry", "model-registry") as base:
        latest = httpx.get(base + "/api/2.0/mlflow/registered-models/get-latest-versions",
                           params={"name": "fraud-model", "stages": "Production"}, timeout=10).json()
    production = latest["model_versions"][0]
    assert metadata["model_version"] == production["version"]
    assert metadata["stage"] == "Production"


def test_pending_pod_has_no_process_and_service_refuses(platform, cluster):
    """A pod that cannot schedule has no process: curl through its own Service really fails."""
    ns = cluster.namespace("pend")
    cluster.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: lonely, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: lonely}}}}
  template:
    metadata: {{labels: {{app: lonely, mlops-drill.dev/process: "true"}}}}
    spec:
      nodeSelector: {{pool: gpu}}
      containers:
      - {{name: app, image: mlops-drill/fraud-model:1.4.0, command: [python, -m, http.server],
          ports: [{{containerPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: lonely, namespace: {ns}}}
spec:
  selector: {{app: lonely}}
  ports: [{{port: 80, targetPort: 8080}}]
""")
    wait(lambda: any(e["reason"] == "FailedScheduling" for e in cluster.json("get", "events", "-n", ns)["items"]),
         what="FailedScheduling")
    with platform.service(ns, "lonely") as base:
        with pytest.raises(httpx.HTTPError):
            httpx.get(base + "/", timeout=3)


def test_rollout_restart_and_undo_start_new_processes(platform, cluster, candidate):
    before = pod_pids(cluster, "registry", "app=model-registry")
    candidate("rollout", "restart", "deploy/model-registry", "-n", "registry")
    candidate("rollout", "status", "deploy/model-registry", "-n", "registry", "--timeout=90s")
    after = wait(lambda: (p := pod_pids(cluster, "registry", "app=model-registry")) and set(p).isdisjoint(before)
                 and len(p) == len(before) and all(p.values()) and p, what="new registry pods")
    assert set(after.values()).isdisjoint(before.values())
    new_pod = next(iter(after))
    log = candidate("logs", new_pod, "-n", "registry").stdout
    assert log.strip(), "a new process writes a new log"
    candidate("rollout", "undo", "deploy/model-registry", "-n", "registry")
    candidate("rollout", "status", "deploy/model-registry", "-n", "registry", "--timeout=90s")
    final = wait(lambda: (p := pod_pids(cluster, "registry", "app=model-registry")) and set(p).isdisjoint(after)
                 and all(p.values()) and p, what="pods after undo")
    assert set(final.values()).isdisjoint(after.values())


def test_candidate_sees_no_fault_markers_or_answers(platform, cluster, candidate):
    """With a fault injected, everything the candidate can list is free of markers and answer keys."""
    from mlops_drill.injector import engine

    engine.start(platform, "gpu-missing-toleration")
    try:
        found = markers_in(candidate_view(candidate))
        assert not found, f"candidate can read {found}"
        denied = candidate("get", "configmaps", "-n", "mlops-drill-system", check=False)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
        denied = candidate("get", "portforwards.kwok.x-k8s.io", "-A", check=False)
        assert denied.returncode != 0
    finally:
        engine.reset(platform)


def test_relist_stops_the_process_of_a_pod_deleted_behind_the_watchs_back(cluster, tmp_path):
    """A watch that reconnects never replays deletions: the kubelet's periodic relist must catch them.

    A second process kubelet runs in this test and is never told of the deletion
    (no watch at all); only its relist against the real API server can see it. It
    owns only this test's pod (its selector), so it leaves the platform's pods alone.
    """
    import asyncio

    from mlops_drill.cluster.processpods.kubelet import ProcessKubelet
    from mlops_drill.cluster.processpods.podspec import PROCESS_LABEL

    ns = cluster.namespace("relist")
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: sleeper, namespace: {ns}, labels: {{{PROCESS_LABEL}: "true", relist-test: {ns}}}}}
spec:
  nodeSelector: {{pool: cpu}}
  containers: [{{name: main, image: python:3.11, command: [python, -c, "import time; time.sleep(3600)"]}}]
""")
    wait(lambda: cluster.json("get", "pod", "sleeper", "-n", ns)["status"].get("podIP"), what="sleeper Running")
    kubelet = ProcessKubelet(tmp_path, cluster.kubeconfig, selector=f"{PROCESS_LABEL}=true,relist-test={ns}")

    async def scenario() -> tuple[bool, int | None]:
        core = kubelet.kubelet.core
        pod = core.api_client.sanitize_for_serialization(core.read_namespaced_pod("sleeper", ns))
        await kubelet.pod_event("ADDED", pod)
        runner = kubelet.runners[pod["metadata"]["uid"]]
        for _ in range(100):
            if runner.proc is not None:
                break
            await asyncio.sleep(0.1)
        assert runner.proc is not None and runner.proc.returncode is None, "the sleeper's process started"
        await kubelet.resync()
        kept = pod["metadata"]["uid"] in kubelet.runners
        await asyncio.to_thread(cluster.kubectl, "delete", "pod", "sleeper", "-n", ns, "--grace-period=0",
                                "--force")
        await kubelet.resync()
        assert pod["metadata"]["uid"] not in kubelet.runners
        await kubelet.shutdown()
        return kept, runner.proc.returncode

    kept, returncode = asyncio.run(scenario())
    assert kept, "a pod that still exists keeps its process"
    assert returncode is not None, "the deleted pod's process was stopped"
