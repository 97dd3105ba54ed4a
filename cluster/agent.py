"""The node agent of the embedded cluster: one kopf operator playing the kubelets' parts.

It combines the process kubelet (pods labelled ``mlops-drill.dev/process`` run
as real local processes, Services get a local proxy) and the GPU device manager
(GPU inventory -> node capacity, allocatable and labels). Only ``on.event``
handlers are used: they store nothing in the watched objects, so pods carry no
operator annotations or finalizers a candidate could spot.

Run: ``python -m mlops_drill.cluster.agent --state DIR --kubeconfig FILE``.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
from pathlib import Path

import kopf

from mlops_drill.cluster.config import saved_config
from mlops_drill.cluster.gpu import activity
from mlops_drill.cluster.gpu.devicemanager import INVENTORY, SYSTEM_NAMESPACE, DeviceManager
from mlops_drill.cluster.nodes import GPU_NODES
from mlops_drill.cluster.processpods.execfront import ExecFront
from mlops_drill.cluster.processpods.kubelet import ProcessKubelet
from mlops_drill.cluster.processpods.podspec import PROCESS_LABEL

registry = kopf.OperatorRegistry()
KUBELET: ProcessKubelet | None = None
DEVICES: DeviceManager | None = None
FRONT: "tuple[ExecFront, int] | None" = None  # the nodes' kubelet endpoint, and its port
GPU_SAMPLER: "asyncio.Task | None" = None


@kopf.on.login(registry=registry)
def login(**kwargs):
    """Credentials from $KUBECONFIG (set by :func:`run`), never from in-cluster config."""
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=registry)
async def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 30
    # Keep retrying through an API server restart (`cluster up` recovering a dead one) instead of giving up.
    settings.networking.error_backoffs = [0.5, 1, 2, 3] + [5] * 10_000
    assert DEVICES is not None and KUBELET is not None
    if KUBELET.kubelet.zygote is not None:
        await KUBELET.kubelet.zygote.start()  # warms up while the inventory is made and the watches start
    if FRONT is not None:
        await FRONT[0].start(FRONT[1])
    await asyncio.to_thread(DEVICES.ensure_inventory)
    KUBELET.resync_task = asyncio.get_running_loop().create_task(KUBELET.resync_forever())
    global GPU_SAMPLER
    GPU_SAMPLER = asyncio.get_running_loop().create_task(_sample_gpu_use())


async def _sample_gpu_use() -> None:
    """Once a second: what each GPU-holding container is doing, for nvidia-smi and dcgm-exporter."""
    assert KUBELET is not None
    sampler = activity.Sampler(KUBELET.kubelet.gpu_state_file)
    while True:
        try:
            sampler.write(sampler.sample(activity.holders_of(list(KUBELET.runners.values()))))
        except Exception:  # a pod going away mid-read must not end the sampling
            logging.getLogger("mlops_drill.gpu").exception("GPU activity sampling failed")
        await asyncio.sleep(activity.PERIOD_S)


@kopf.on.event("", "v1", "pods", labels={PROCESS_LABEL: "true"}, registry=registry)
async def on_pod(event, body, **_) -> None:
    assert KUBELET is not None
    await KUBELET.pod_event(event.get("type"), dict(body))


@kopf.on.event("", "v1", "services", registry=registry)
async def on_service(event, body, **_) -> None:
    assert KUBELET is not None
    await KUBELET.proxy.service_changed(dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
async def on_endpoints(event, body, **_) -> None:
    assert KUBELET is not None
    KUBELET.proxy.endpoints_changed(dict(body), deleted=event.get("type") == "DELETED")


@kopf.on.event("", "v1", "configmaps", field="metadata.name", value=INVENTORY, registry=registry)
async def on_inventory(event, body, namespace, **_) -> None:
    if namespace != SYSTEM_NAMESPACE or event.get("type") == "DELETED":
        return
    assert DEVICES is not None
    await asyncio.to_thread(DEVICES.apply, dict(body.get("data") or {}))


@kopf.on.event("", "v1", "nodes", registry=registry)
async def on_node(event, body, **_) -> None:
    """A node (re)created after the inventory: give it its GPUs."""
    if event.get("type") != "ADDED" or body["metadata"]["name"] not in GPU_NODES:
        return
    assert DEVICES is not None
    if "nvidia.com/gpu" not in (body.get("status", {}).get("capacity") or {}):
        data = await asyncio.to_thread(lambda: DEVICES.core.read_namespaced_config_map(INVENTORY, SYSTEM_NAMESPACE).data)
        await asyncio.to_thread(DEVICES.apply, dict(data or {}))


@kopf.on.cleanup(registry=registry)
async def cleanup(**_) -> None:
    if FRONT is not None:
        FRONT[0].close()
    if KUBELET is not None:
        await KUBELET.shutdown()


def _exec_rewriter(namespace: str, name: str, command: list[str]) -> list[str] | None:
    runner = KUBELET.runner_of(namespace, name) if KUBELET is not None else None
    return runner.exec_argv(command) if runner is not None else None


def run(state: Path, kubeconfig: Path, front_port: int = 0, upstream: str = "", pki: Path | None = None) -> None:
    global KUBELET, DEVICES, FRONT
    os.environ["KUBECONFIG"] = str(kubeconfig)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("kopf", "httpx", "httpcore", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    KUBELET = ProcessKubelet(state, kubeconfig)
    # The GPU products `cluster up --config` chose, kept in the state folder for this process.
    products = saved_config(state).products()
    DEVICES = DeviceManager(KUBELET.kubelet.core, KUBELET.kubelet.gpu_state_file, GPU_NODES, products)
    if front_port and upstream and pki is not None:
        host, _, port = upstream.rpartition(":")
        FRONT = (ExecFront(_exec_rewriter, (host, int(port)), pki), front_port)
    asyncio.run(kopf.operator(registry=registry, standalone=True, clusterwide=True))


def main() -> None:
    parser = argparse.ArgumentParser(prog="mlops-drill-agent")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--kubelet-front", type=int, default=0, help="port of the nodes' kubelet endpoint")
    parser.add_argument("--kubelet-upstream", default="", help="KWOK's own kubelet server, host:port")
    parser.add_argument("--pki", type=Path, help="kwokctl's pki folder (ca.crt, admin.crt, admin.key)")
    args = parser.parse_args()
    run(args.state, args.kubeconfig, args.kubelet_front, args.kubelet_upstream, args.pki)


if __name__ == "__main__":
    main()
