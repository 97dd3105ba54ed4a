"""How fast the embedded cluster starts, and what it costs in memory.

Prints: cold provision (Go build into an empty cache; only with --cold, takes
minutes), warm `cluster up` (binaries cached, no cluster running), time to all
nodes Ready, reuse `up` (cluster already running), resident memory of the
control plane and of our node agent; then the same for a plain
`kwokctl create cluster` with the same binaries, as a ratio.

    python bench/cluster_start.py [--runs 3] [--cold] [--backend kind]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from scratch import children_of, pids_in, rss_mib, scratch_cluster


def cold_build() -> float:
    from mlops_drill.cluster.toolchain import ensure_toolchain

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as gocache:
        env = {"MLOPS_DRILL_CACHE": cache, "GOCACHE": gocache}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            started = time.monotonic()
            ensure_toolchain(progress=False)
            return time.monotonic() - started
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def ours(runs: int) -> dict[str, float]:
    from mlops_drill.cluster import kube
    from mlops_drill.cluster.nodes import NODE_POOLS

    ups, readies, reuses, cp_mem, agent_mem = [], [], [], [], []
    for _ in range(runs):
        with scratch_cluster("bench", up=False) as backend:
            started = time.monotonic()
            backend.up(progress=False)
            ups.append(time.monotonic() - started)
            api = kube.api_client(backend.kubeconfig())
            assert kube.nodes_ready(api, [n.name for n in NODE_POOLS])
            readies.append(backend.timings["nodes_ready"])
            started = time.monotonic()
            backend.up(progress=False)
            reuses.append(time.monotonic() - started)
            time.sleep(2)
            cp_mem.append(rss_mib(pids_in(backend.kwok_cluster / "pids")))
            agent = pids_in(backend.state / "pids")
            agent_mem.append(rss_mib(agent + children_of(agent, "processpods.zygote")))
    return {"up": statistics.median(ups), "ready": statistics.median(readies), "reuse": statistics.median(reuses),
            "cp_mem": statistics.median(cp_mem), "agent_mem": statistics.median(agent_mem)}


def plain_kwokctl(runs: int) -> dict[str, float]:
    from mlops_drill.cluster import kube
    from mlops_drill.cluster.toolchain import ensure_toolchain
    from mlops_drill.interrupts import shielded, stop_on_signals

    chain = ensure_toolchain(progress=False)
    times, mem = [], []
    for _ in range(runs):
        with stop_on_signals(), tempfile.TemporaryDirectory() as work:
            env = {**os.environ, "KWOK_WORKDIR": work}
            cmd = [str(chain["kwokctl"]), "--name", "plain", "create", "cluster", "--runtime", "binary",
                   "--kubeconfig", "", "--wait", "60s",
                   "--kube-apiserver-binary", str(chain["kube-apiserver"]),
                   "--kube-controller-manager-binary", str(chain["kube-controller-manager"]),
                   "--kube-scheduler-binary", str(chain["kube-scheduler"]),
                   "--kwok-controller-binary", str(chain["kwok"]), "--etcd-binary", str(chain["etcd"])]
            started = time.monotonic()
            try:
                subprocess.run(cmd, env=env, check=True, capture_output=True)
                api = kube.api_client(Path(work) / "clusters" / "plain" / "kubeconfig.yaml")
                kube.wait_for(lambda: kube.api_ready(api), timeout=60)
                times.append(time.monotonic() - started)
                time.sleep(2)
                mem.append(rss_mib(pids_in(Path(work) / "clusters" / "plain" / "pids")))
            finally:
                with shielded():
                    subprocess.run([str(chain["kwokctl"]), "--name", "plain", "delete", "cluster"], env=env,
                                   capture_output=True)
    return {"up": statistics.median(times), "cp_mem": statistics.median(mem)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time a Go build into an empty cache (minutes)")
    parser.add_argument("--backend", choices=("embedded", "kind"), default="embedded")
    args = parser.parse_args()
    if args.backend == "kind":  # real kubelets in Docker: bench/kind_start.py
        from kind_start import main as kind_main

        kind_main(args.runs, args.cold)
        return
    if args.cold:
        print(f"cold provision (empty build cache):     {cold_build():7.1f} s")
    a = ours(args.runs)
    b = plain_kwokctl(args.runs)
    print(f"runs: {args.runs} (medians), {os.cpu_count()} cores")
    print(f"warm `cluster up` (4 nodes Ready, GPUs): {a['up']:7.2f} s   (target < 10 s)")
    print(f"  of which: time to all nodes Ready:    {a['ready']:7.2f} s")
    print(f"`cluster up` on a running cluster:      {a['reuse']:7.2f} s")
    print(f"control plane RSS (etcd, apiserver, kcm, scheduler, kwok): {a['cp_mem']:7.0f} MiB")
    print(f"node agent RSS (process kubelet, GPU devices, zygote):     {a['agent_mem']:7.0f} MiB")
    print(f"plain `kwokctl create cluster` (no nodes): {b['up']:7.2f} s, control plane RSS {b['cp_mem']:.0f} MiB")
    print(f"ratio ours/plain: start {a['up'] / b['up']:.2f}x, control plane memory {a['cp_mem'] / b['cp_mem']:.2f}x")


if __name__ == "__main__":
    main()
