"""dcgm-exporter on the embedded cluster, read the way an engineer does: port-forward and curl.

``kubectl port-forward svc/dcgm-exporter`` reaches one exporter pod, which serves its own
node's GPUs (as on a real cluster, where Prometheus scrapes every pod); forwarding to each
pod of the DaemonSet covers every GPU node. Utilisation comes from the processes holding
the GPUs, so it is higher while the traffic replay drives the serving model than once the
replay is scaled to zero.
"""
from __future__ import annotations

import re
import time

import httpx
import pytest
from polling import wait
from test_platform_embedded import port_forward

from mlops_drill.cluster.nodes import GPU_NODES

pytestmark = pytest.mark.cluster

SERIES = re.compile(r'^(DCGM_FI_[A-Z_0-9]+)\{([^}]*)\} (\S+)$')


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    rows = []
    for line in text.splitlines():
        m = SERIES.match(line)
        if m:
            rows.append((m.group(1), dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', m.group(2))), float(m.group(3))))
    return rows


def pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def exporter_pods(cluster) -> dict[str, str]:
    """Ready exporter pod -> its node (a pod Running but not yet listening would end a port-forward)."""
    pods = cluster.json("get", "pods", "-n", "gpu-operator", "-l", "app.kubernetes.io/name=dcgm-exporter")["items"]
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods
            if pod_ready(p) and not p["metadata"].get("deletionTimestamp")}


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    try:
        response = httpx.get(f"{url}/metrics", timeout=5)
    except httpx.HTTPError:
        return []
    return parse(response.text) if response.status_code == 200 else []


def serving_util(urls: list[str]) -> float:
    """Summed GPU utilisation of the GPUs the serving pods hold, over every exporter."""
    return sum(v for url in urls for f, lab, v in scrape(url)
               if f == "DCGM_FI_DEV_GPU_UTIL" and lab.get("namespace") == "serving"
               and lab.get("pod", "").startswith("fraud-model-"))


def mean_serving_util(urls: list[str], seconds: float = 4.0) -> float:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(serving_util(urls))
        time.sleep(0.5)
    return sum(samples) / len(samples)


def test_service_port_forward_shows_one_nodes_gpus_in_dcgm_format(platform, cluster, candidate) -> None:
    from mlops_drill.injector import baseline

    with port_forward(cluster, baseline.candidate_kubeconfig_path(platform), "svc/dcgm-exporter",
                      "gpu-operator", 9400) as url:
        rows = wait(lambda: scrape(url), timeout=30, what="dcgm-exporter /metrics through the Service")
        text = httpx.get(f"{url}/metrics", timeout=5).text
    assert "# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n" in text
    hosts = {lab["Hostname"] for _, lab, _ in rows}
    assert len(hosts) == 1 and hosts <= set(GPU_NODES), hosts
    util = [lab for f, lab, _ in rows if f == "DCGM_FI_DEV_GPU_UTIL"]
    assert [lab["gpu"] for lab in util] == ["0", "1", "2", "3"]
    assert all(lab["modelName"] == "NVIDIA H100 80GB HBM3" and lab["UUID"].startswith("GPU-") for lab in util)


def test_every_gpu_node_has_series_and_utilisation_follows_the_replay(platform, cluster) -> None:
    from mlops_drill.injector import baseline

    kubeconfig = baseline.candidate_kubeconfig_path(platform)
    pods = wait(lambda: (p := exporter_pods(cluster)) and len(p) == len(GPU_NODES) and p,
                timeout=60, what="one dcgm-exporter pod per GPU node")
    replay = cluster.json("get", "deployment", "traffic-replay", "-n", "serving")
    replicas = replay["spec"]["replicas"]
    assert replicas >= 1
    with port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[0]}", "gpu-operator", 9400) as first, \
            port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[1]}", "gpu-operator", 9400) as second:
        urls = [first, second]
        nodes = set()
        for url in urls:
            rows = wait(lambda url=url: scrape(url), timeout=30, what=f"metrics at {url}")
            nodes |= {lab["Hostname"] for _, lab, _ in rows}
            per_gpu = {lab["UUID"] for f, lab, _ in rows if f == "DCGM_FI_DEV_FB_USED"}
            assert len(per_gpu) == 4
        assert nodes == set(GPU_NODES)
        # The serving pods' GPUs carry their pod labels on whichever node they run.
        wait(lambda: any(lab.get("pod", "").startswith("fraud-model-")
                         for url in urls for _, lab, _ in scrape(url)), timeout=30,
             what="fraud-model's GPUs labelled with its pods")
        busy = mean_serving_util(urls)
        try:
            cluster.kubectl("scale", "deployment", "traffic-replay", "-n", "serving", "--replicas=0")
            wait(lambda: not [p for p in cluster.json("get", "pods", "-n", "serving", "-l", "app=traffic-replay")["items"]],
                 timeout=30, what="traffic-replay gone")
            time.sleep(4)  # the sampler's window (3 s) moves past the last requests
            idle = mean_serving_util(urls)
        finally:
            cluster.kubectl("scale", "deployment", "traffic-replay", "-n", "serving", f"--replicas={replicas}")
            baseline.wait_healthy(platform, timeout=60)
    print(f"serving GPUs' summed utilisation: {busy:.1f} % with the replay, {idle:.1f} % without")
    assert busy > idle + 5, (busy, idle)


def test_idle_shadow_gpus_read_lower_than_productions(platform, cluster) -> None:
    """gpu-allocated-idle's evidence: the forgotten copy's GPUs carry its pods and sit low, while
    production's GPUs, driven by the replay, read higher."""
    from mlops_drill.injector import baseline, engine

    kubeconfig = baseline.candidate_kubeconfig_path(platform)
    from mlops_drill.scenarios.loader import load_catalogue
    from variant_seeds import far_variant_seed

    seed = far_variant_seed(load_catalogue()["gpu-allocated-idle"])  # a copy not named shadow, its own GPU count
    drawn = engine.start(platform, "gpu-allocated-idle", seed=seed).session.values
    copy, replicas = drawn["copy"], drawn["replicas"]
    try:
        pods = exporter_pods(cluster)
        with port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[0]}", "gpu-operator", 9400) as first, \
                port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[1]}", "gpu-operator", 9400) as second:
            urls = [first, second]

            def util_by_workload() -> dict[str, list[float]]:
                out: dict[str, list[float]] = {"shadow": [], "production": []}
                for url in urls:
                    for f, lab, v in scrape(url):
                        pod = lab.get("pod", "")
                        if f == "DCGM_FI_DEV_GPU_UTIL" and lab.get("namespace") == "serving":
                            out["shadow" if pod.startswith(f"{copy}-") else "production"].append(v)
                return out

            wait(lambda: len(util_by_workload()["shadow"]) == replicas, timeout=30,
                 what=f"{replicas} GPUs of {copy} labelled")
            time.sleep(3)  # the sampler's window covers the shadow's steady state, past its start-up
            shadow, production = [], []
            for _ in range(8):
                seen = util_by_workload()
                shadow += seen["shadow"]
                production += seen["production"]
                time.sleep(0.5)
    finally:
        engine.reset(platform)
    mean_shadow, mean_production = sum(shadow) / len(shadow), sum(production) / len(production)
    print(f"GPU utilisation: shadow {mean_shadow:.1f} %, production {mean_production:.1f} %")
    assert mean_shadow < mean_production, (shadow, production)
    assert max(shadow) <= 15, shadow


def test_training_epochs_read_as_a_busy_gpu(platform, cluster) -> None:
    """A fresh run of the training Job: its GPU carries its pod and reads busy while epochs run."""
    from mlops_drill.injector import baseline
    from mlops_drill.injector.faults import _workload

    kubeconfig = baseline.candidate_kubeconfig_path(platform)
    cluster.kubectl("delete", "job", "fraud-train", "-n", "training", "--ignore-not-found", "--wait=true")
    # Fresh: once an earlier run has finished all its epochs, its checkpoint would make a rerun
    # resume at the last epoch and exit at once, before any sample could see its GPU busy.
    _workload.clear_run_state(platform, baseline.find(platform, "Job", "fraud-train", "training"))
    baseline.restore(platform, "Job", "fraud-train", "training")
    pods = exporter_pods(cluster)
    with port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[0]}", "gpu-operator", 9400) as first, \
            port_forward(cluster, kubeconfig, f"pod/{sorted(pods)[1]}", "gpu-operator", 9400) as second:

        def training_util() -> list[float]:
            return [v for url in (first, second) for f, lab, v in scrape(url)
                    if f == "DCGM_FI_DEV_GPU_UTIL" and lab.get("namespace") == "training"
                    and lab.get("pod", "").startswith("fraud-train-")]

        # The Job's pod must be scheduled, sandboxed and sampled.
        first_seen = wait(training_util, timeout=90, what="fraud-train's GPU labelled with its pod")
        # Its first readings cover the start (imports, data loading: about 10 %); once epochs (2 s each) run
        # the GPU reads busy. Waited for, not sampled at a fixed moment: a loaded machine starts epochs later.
        busy = wait(lambda: [v for v in training_util() if v >= 80], timeout=60,
                    what="fraud-train's GPU reading busy while its epochs run")
    print(f"training GPU utilisation: first {first_seen}, busy {busy}")
    assert busy and max(busy) <= 100
