"""How fast the kind backend starts, and what it costs in memory (``cluster_start.py --backend kind``).

Prints: the cached build check (every step cached), warm `cluster up` (images built, no
cluster running) with time to all four nodes Ready, `up` on a running cluster, each node
container's memory (cgroup usage as `docker stats` reports it), then the same for a plain
`kind create cluster` of four nodes (one control plane, three workers) from the same node
image, as a ratio. With --cold, the per-step times of the last full build from the build log.

    python bench/cluster_start.py --backend kind [--runs 1] [--cold]
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def _mib(text: str) -> float:
    number, unit = re.match(r"([\d.]+)\s*([KMG]i?B)", text).groups()
    return float(number) * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "KB": 1 / 1000, "MB": 1, "GB": 1000}[unit]


def container_memory(prefix: str) -> dict[str, float]:
    """MiB per container whose name starts with ``prefix`` (kind's node containers)."""
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[0]: _mib(line.split(None, 1)[1]) for line in out.splitlines()
            if line.startswith(prefix + "-")}


def build_log_steps() -> list[tuple[str, float]]:
    """The `# step NAME: Ns` lines of the kind build log: the last time each step was really built."""
    from mlops_drill.cluster.kindbuild.steps import log_file

    last: dict[str, float] = {}
    for line in log_file().read_text(errors="replace").splitlines():
        match = re.match(r"# step (.+): ([\d.]+)s$", line)
        if match:
            last[match.group(1)] = float(match.group(2))
    return list(last.items())


def ours(runs: int) -> dict[str, float]:
    from scratch import scratch_kind_cluster

    ups, readies, reuses, builds, mems = [], [], [], [], []
    for _ in range(runs):
        with scratch_kind_cluster("bench-kind", up=False) as backend:
            started = time.monotonic()
            backend.up(progress=False)
            ups.append(time.monotonic() - started)
            builds.append(backend.timings["build"])
            readies.append(backend.timings["nodes_ready"])
            started = time.monotonic()
            backend.up(progress=False)
            reuses.append(time.monotonic() - started)
            time.sleep(20)  # let the system pods settle before reading memory
            mems.append(container_memory("bench-kind"))
    return {"up": statistics.median(ups), "build": statistics.median(builds), "ready": statistics.median(readies),
            "reuse": statistics.median(reuses), "mem": mems[-1]}


def plain_kind(runs: int) -> dict[str, float]:
    """`kind create cluster` of four nodes from the same node image, until all nodes are Ready."""
    from mlops_drill.cluster.kindbuild.pipeline import ensure_kind_build
    from mlops_drill.interrupts import shielded, stop_on_signals

    build = ensure_kind_build(progress=False)
    config = ("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nkubeadmConfigPatches:\n"
              "- |\n  kind: KubeletConfiguration\n  failCgroupV1: false\n"
              "nodes:\n- role: control-plane\n- role: worker\n- role: worker\n- role: worker\n")
    times, mems = [], []
    for _ in range(runs):
        with stop_on_signals(), tempfile.TemporaryDirectory() as work:
            kubeconfig, cfg = Path(work) / "kubeconfig", Path(work) / "kind.yaml"
            cfg.write_text(config)
            started = time.monotonic()
            try:
                subprocess.run([str(build.kind), "create", "cluster", "--name", "plain", "--image", build.node_image,
                                "--config", str(cfg), "--kubeconfig", str(kubeconfig), "--wait", "5m"],
                               check=True, capture_output=True)
                subprocess.run([str(build.kubectl), "--kubeconfig", str(kubeconfig), "wait", "--for=condition=Ready",
                                "nodes", "--all", "--timeout=300s"], check=True, capture_output=True)
                times.append(time.monotonic() - started)
                time.sleep(20)
                mems.append(container_memory("plain"))
            finally:
                with shielded():
                    subprocess.run([str(build.kind), "delete", "cluster", "--name", "plain", "--kubeconfig",
                                    str(kubeconfig)], capture_output=True)
    return {"up": statistics.median(times), "mem": mems[-1]}


def main(runs: int = 1, cold: bool = False) -> None:
    if cold:
        steps = build_log_steps()
        print("last full build, per step (from the kind build log):")
        for name, seconds in steps:
            print(f"  {name:<70} {seconds:7.1f} s")
        print(f"  {'sum':<70} {sum(s for _, s in steps):7.1f} s")
    a = ours(runs)
    b = plain_kind(runs)
    print(f"runs: {runs} (medians), {os.cpu_count()} cores, 4 node containers each")
    print(f"warm `cluster up --backend kind` (4 nodes Ready, GPU files): {a['up']:7.2f} s")
    print(f"  of which: build check (all steps cached):  {a['build']:7.2f} s")
    print(f"  of which: until all nodes Ready:           {a['ready']:7.2f} s (from the start of `up`)")
    print(f"`cluster up` on a running kind cluster:      {a['reuse']:7.2f} s")
    for name, mib in sorted(a["mem"].items()):
        print(f"  memory {name:<36} {mib:7.0f} MiB")
    print(f"  memory total                                {sum(a['mem'].values()):7.0f} MiB")
    print(f"plain `kind create cluster` (same image, 4 nodes Ready): {b['up']:7.2f} s, "
          f"memory {sum(b['mem'].values()):.0f} MiB")
    print(f"ratio ours/plain: start {a['up'] / b['up']:.2f}x, memory {sum(a['mem'].values()) / sum(b['mem'].values()):.2f}x")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    main(args.runs, args.cold)
