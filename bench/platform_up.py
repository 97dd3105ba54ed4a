"""Time to a healthy ML platform baseline on a warm (already running) embedded cluster.

Prints: cluster up, baseline deploy until every Deployment/DaemonSet is available, and the resident
and proportional memory of the platform's processes (the containers and the zygote they fork from). Target: baseline under 15 s.

    python bench/platform_up.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def platform_pids(state: Path) -> list[int]:
    """The container processes the process kubelet started for this cluster, and the zygote they fork from."""
    from scratch import children_of, container_pids, pids_in

    return container_pids(state) + children_of(pids_in(state / "pids"), "processpods.zygote")


def sandbox_pids(state: Path) -> list[int]:
    """What each pod's sandbox adds: its bwrap monitor, its /pause, and the waiter outside it (zygote child)."""
    from scratch import children_of, container_pids, pids_in

    monitors = children_of(pids_in(state / "pids"), "bwrap")
    waiters = []
    for pid in container_pids(state):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        waiters.append(parent)
    return monitors + children_of(monitors) + [w for w in waiters if w not in monitors]


def exec_latency(backend) -> float:
    """Median wall time of `kubectl exec` into a platform pod (API server, kubelet front, sandbox entry)."""
    import subprocess

    from mlops_drill.cluster.toolchain.binaries import resolve_without_building

    kubectl = str(resolve_without_building()[0]["kubectl"])
    env = {**os.environ, "KUBECONFIG": str(backend.kubeconfig())}
    times = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([kubectl, "exec", "-n", "serving", "deploy/fraud-model", "--", "true"], env=env,
                       capture_output=True, timeout=60, check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from scratch import pss_mib, rss_mib, scratch_cluster

    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    ups, deploys, mem, pss, pods, sandbox_rss, sandbox_pss, execs = [], [], [], [], [], [], [], []
    for _ in range(args.runs):
        started = time.monotonic()
        with scratch_cluster("bench-platform") as backend:
            ups.append(time.monotonic() - started)
            ctx = context_for(backend)
            deploys.append(baseline.deploy(ctx, timeout=120))
            time.sleep(2)
            pids = platform_pids(backend.state)
            mem.append(rss_mib(pids))
            pss.append(pss_mib(pids))
            pods.append(len(ctx.core.list_pod_for_all_namespaces(label_selector="mlops-drill.dev/process=true").items))
            execs.append(exec_latency(backend))
            extra = sandbox_pids(backend.state)
            running = max(1, len(container_pids_of(backend.state)))
            sandbox_rss.append(rss_mib(extra) / running)
            sandbox_pss.append(pss_mib(extra) / running)
    print(f"runs: {args.runs} (medians), {os.cpu_count()} cores")
    print(f"cluster up (fresh, binaries cached):   {statistics.median(ups):6.2f} s")
    print(f"baseline deploy until healthy:         {statistics.median(deploys):6.2f} s   (target < 15 s)")
    print(f"process-backed pods:                    {statistics.median(pods):6.0f}")
    print(f"platform processes RSS:                {statistics.median(mem):6.0f} MiB   (zygote included)")
    print(f"platform processes PSS:                {statistics.median(pss):6.0f} MiB   (shared pages counted once)")
    print(f"kubectl exec deploy/fraud-model -- true: {statistics.median(execs) * 1000:6.0f} ms   (median of 5 per run)")
    if os.environ.get("MLOPS_DRILL_SANDBOX", "1") in ("0", "false", "no", "off"):
        print("pods not sandboxed (MLOPS_DRILL_SANDBOX=0)")
    else:
        print(f"sandbox per running pod (bwrap, /pause, waiter): RSS {statistics.median(sandbox_rss):5.1f} MiB, "
              f"PSS {statistics.median(sandbox_pss):5.1f} MiB")


def container_pids_of(state: Path) -> list[int]:
    from scratch import container_pids

    return container_pids(state)


if __name__ == "__main__":
    main()
