"""Time to a healthy ML platform baseline on a warm (already running) embedded cluster.

Prints: cluster up, baseline deploy until every Deployment/DaemonSet is available, and the resident
and proportional memory of the platform's processes (the containers and the zygote they fork from). Target: baseline under 15 s.
``--compare`` runs each run twice, pods without sandboxes then with, and prints the ratios (target: within 1.25x).

    python bench/platform_up.py [--runs 3] [--compare]
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


def measure(figures: dict[str, list[float]]) -> None:
    """One fresh cluster and one baseline deploy, in the mode ``MLOPS_DRILL_SANDBOX`` names; figures appended."""
    from scratch import pss_mib, rss_mib, scratch_cluster

    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    started = time.monotonic()
    with scratch_cluster("bench-platform") as backend:
        figures["up"].append(time.monotonic() - started)
        ctx = context_for(backend)
        figures["deploy"].append(baseline.deploy(ctx, timeout=120))
        time.sleep(2)
        pids = platform_pids(backend.state)
        figures["rss"].append(rss_mib(pids))
        figures["pss"].append(pss_mib(pids))
        figures["pods"].append(len(ctx.core.list_pod_for_all_namespaces(
            label_selector="mlops-drill.dev/process=true").items))
        figures["exec"].append(exec_latency(backend))
        extra = sandbox_pids(backend.state)
        running = max(1, len(container_pids_of(backend.state)))
        figures["sandbox_rss"].append(rss_mib(extra) / running)
        figures["sandbox_pss"].append(pss_mib(extra) / running)


def report(figures: dict[str, list[float]], sandboxed: bool) -> None:
    median = {k: statistics.median(v) for k, v in figures.items() if v}
    print(f"cluster up (fresh, binaries cached):   {median['up']:6.2f} s")
    print(f"baseline deploy until healthy:         {median['deploy']:6.2f} s   (target < 15 s)")
    print(f"process-backed pods:                    {median['pods']:6.0f}")
    print(f"platform processes RSS:                {median['rss']:6.0f} MiB   (zygote included)")
    print(f"platform processes PSS:                {median['pss']:6.0f} MiB   (shared pages counted once)")
    print(f"kubectl exec deploy/fraud-model -- true: {median['exec'] * 1000:6.0f} ms   (median of 5 per run)")
    if not sandboxed:
        print("pods not sandboxed (MLOPS_DRILL_SANDBOX=0)")
    else:
        print(f"sandbox per running pod (bwrap, /pause, waiter): RSS {median['sandbox_rss']:5.1f} MiB, "
              f"PSS {median['sandbox_pss']:5.1f} MiB")


def _figures() -> dict[str, list[float]]:
    return {k: [] for k in ("up", "deploy", "rss", "pss", "pods", "exec", "sandbox_rss", "sandbox_pss")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", action="store_true",
                        help="each run twice, pods without sandboxes (MLOPS_DRILL_SANDBOX=0) then with: "
                             "the two modes interleaved, so load from others on the machine hits both alike")
    args = parser.parse_args()
    print(f"runs: {args.runs} (medians), {os.cpu_count()} cores")
    if not args.compare:
        figures = _figures()
        for _ in range(args.runs):
            measure(figures)
        report(figures, os.environ.get("MLOPS_DRILL_SANDBOX", "1") not in ("0", "false", "no", "off"))
        return
    plain, boxed = _figures(), _figures()
    for _ in range(args.runs):
        for mode, figures in (("0", plain), ("1", boxed)):
            os.environ["MLOPS_DRILL_SANDBOX"] = mode  # read by the node agent the cluster starts
            measure(figures)
    print("-- without sandboxes (MLOPS_DRILL_SANDBOX=0)")
    report(plain, False)
    print("-- with sandboxes")
    report(boxed, True)
    for key, what in (("up", "cluster up"), ("deploy", "baseline deploy")):
        ratio = statistics.median(boxed[key]) / statistics.median(plain[key])
        each = " ".join(f"{b / p:.2f}" for p, b in zip(plain[key], boxed[key]))
        print(f"{what} sandboxed / not: {ratio:5.2f}x (ratio of medians; run by run: {each})")
    start_ratio = (statistics.median([u + d for u, d in zip(boxed["up"], boxed["deploy"])])
                   / statistics.median([u + d for u, d in zip(plain["up"], plain["deploy"])]))
    print(f"start-up (cluster up + baseline deploy) sandboxed / not: {start_ratio:5.2f}x   (target <= 1.25x)")


def container_pids_of(state: Path) -> list[int]:
    from scratch import container_pids

    return container_pids(state)


if __name__ == "__main__":
    main()
