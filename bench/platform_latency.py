"""Figures for the ML platform processes: start-up to ready, and /predict latency GPU vs CPU.

Starts the registry, the feature store and inference services as real local
processes (as the process kubelet would) and prints:

* artifact build time (all five versions, cold);
* python start -> /readyz 200 for each app, and for fraud-model with v3 and v5
  (the 4x larger model) on a GPU pod;
* client-side p50/p99 of /predict and mean device time, GPU pod vs CPU fallback.

Usage: .venv/bin/python bench/platform_latency.py [--requests 200]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from mlops_drill.mlplatform.artifacts import build_artifacts
from mlops_drill.mlplatform.manifests import transforms_configmap

GPU = {"NVIDIA_VISIBLE_DEVICES": "GPU-bench-0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, module: str, env: dict[str, str], logdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if k != "NVIDIA_VISIBLE_DEVICES"}
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", f"mlops_drill.mlplatform.{module}"],
                                     env={**base, **env, "PORT": str(self.port)},
                                     stdout=(logdir / f"{module}-{self.port}.log").open("w"), stderr=subprocess.STDOUT)

    def ready_seconds(self, timeout: float = 60.0) -> float:
        while time.perf_counter() - self.t0 < timeout:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - self.t0
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.01)
        raise TimeoutError(self.url)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def post(url: str, body: dict) -> float:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    t = time.perf_counter()
    urllib.request.urlopen(req, timeout=30).read()
    return time.perf_counter() - t


def device_mean(url: str) -> float:
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    s = {x.name: x.value for f in text_string_to_metric_families(text) for x in f.samples
         if x.name.startswith("model_inference_seconds_")}
    return s["model_inference_seconds_sum"] / s["model_inference_seconds_count"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlp-bench-"))
    t = time.perf_counter()
    build_artifacts(work / "artifacts")
    print(f"artifact build (5 versions): {time.perf_counter() - t:.2f} s")
    env = {"ARTIFACT_DIR": str(work / "artifacts")}
    procs: list[Proc] = []
    try:
        registry = Proc("registry", env, work)
        store = Proc("featurestore", env, work)
        procs += [registry, store]
        print(f"start-up to ready: model-registry {registry.ready_seconds():.2f} s, "
              f"feature-store {store.ready_seconds():.2f} s")
        serving_env = {**env, "MODEL_REGISTRY_URL": registry.url, "FEATURE_STORE_URL": store.url,
                       "TRANSFORM_CONFIG": transforms_configmap(work / "artifacts")["data"]["transforms.json"]}
        modes = {"gpu": Proc("serving", {**serving_env, **GPU}, work)}
        procs.append(modes["gpu"])
        print(f"start-up to ready: fraud-model v3 on GPU {modes['gpu'].ready_seconds():.2f} s")
        v5 = Proc("serving", {**serving_env, **GPU, "MODEL_VERSION": "5"}, work)
        procs.append(v5)
        print(f"start-up to ready: fraud-model v5 (4x larger) on GPU {v5.ready_seconds():.2f} s")
        v5.stop()
        modes["cpu"] = Proc("serving", serving_env, work)
        procs.append(modes["cpu"])
        print(f"start-up to ready: fraud-model v3 on CPU {modes['cpu'].ready_seconds():.2f} s")

        rng = np.random.default_rng(0)
        for mode, proc in modes.items():
            lat = []
            for i in range(args.requests):
                body = {"entity_id": f"acct-{int(rng.integers(1000)):06d}",
                        "features": {"amount": float(rng.lognormal(3.6, 1.0)), "hour_of_day": int(rng.integers(24)),
                                     "distance_km": float(rng.exponential(12)), "card_present": int(rng.random() < .6)}}
                lat.append(post(proc.url + "/predict", body))
            ms = np.array(lat) * 1000
            print(f"/predict {mode}: n={len(ms)} p50 {np.percentile(ms, 50):.1f} ms  p99 {np.percentile(ms, 99):.1f} ms"
                  f"  device mean {device_mean(proc.url) * 1000:.2f} ms")
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.stop()


if __name__ == "__main__":
    main()
