"""Time to a healthy ML platform baseline on a warm (already running) embedded cluster.

Prints: cluster up, baseline deploy until every Deployment/DaemonSet is available, and the resident
memory of the platform's processes. Target: baseline under 15 s.

    python bench/platform_up.py [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def platform_pids(state: Path) -> list[int]:
    """Processes the process kubelet started for this cluster (they carry its services table)."""
    needle = b"MLOPS_DRILL_SERVICES=" + str(state / "services.json").encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from scratch import rss_mib, scratch_cluster

    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    ups, deploys, mem, pods = [], [], [], []
    for _ in range(args.runs):
        started = time.monotonic()
        with scratch_cluster("bench-platform") as backend:
            ups.append(time.monotonic() - started)
            ctx = context_for(backend)
            deploys.append(baseline.deploy(ctx, timeout=120))
            time.sleep(2)
            mem.append(rss_mib(platform_pids(backend.state)))
            pods.append(len(ctx.core.list_pod_for_all_namespaces(label_selector="mlops-drill.dev/process=true").items))
    print(f"runs: {args.runs} (medians), {os.cpu_count()} cores")
    print(f"cluster up (fresh, binaries cached):   {statistics.median(ups):6.2f} s")
    print(f"baseline deploy until healthy:         {statistics.median(deploys):6.2f} s   (target < 15 s)")
    print(f"process-backed pods:                    {statistics.median(pods):6.0f}")
    print(f"platform processes RSS:                {statistics.median(mem):6.0f} MiB")


if __name__ == "__main__":
    main()
