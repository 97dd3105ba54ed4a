"""crash-device-plugin: a GPU falls off the bus (Xid 79) under a serving replica.

What a real node shows, all from the GPU inventory plus one real process crash:

* the driver logs Xid 79 for the GPU the replica holds; ``nvidia-smi`` on the node
  can no longer get a handle for it;
* the device plugin marks it unhealthy and, re-initialising NVML, dies on the lost
  GPU, so its pod crash-loops and the kubelet withdraws the node's GPUs:
  allocatable ``nvidia.com/gpu`` 0, capacity still 4;
* the replica's CUDA process dies with its GPU; the kubelet restarts it in place
  (it keeps its device assignment) and CUDA initialisation fails with
  ``Error 999: unknown error`` (``mlplatform.cudainit``): CrashLoopBackOff.

Restarting the plugin does not help (it dies on the same lost GPU), and a GPU
that fell off the bus only comes back with a node reset. The fix a person can do
from kubectl is to take the node out of scheduling and move the replica.
"""
from __future__ import annotations

import signal
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.cluster.gpu.model import GpuNode, XidEvent, new_node
from mlops_drill.errors import DrillError
from mlops_drill.injector import pods
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.nodes import restore_node


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = "gpu-node-0"
    xid: int = 79
    namespace: str = "serving"
    workload: str = "deployment/fraud-model"


class CrashDevicePlugin(Fault):
    name = "crash-device-plugin"
    seat_ready = False  # edits the GPU inventory, which the node agent of a shared cluster owns
    Params = Params

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        selector = pods.workload_selector(ctx, p.namespace, p.workload)
        victim = pods.ensure_ready_pod_on(ctx, p.namespace, selector, p.node)
        proc = pods.pod_process(ctx, p.namespace, victim["metadata"]["name"])
        if proc is None or not proc.gpus:
            raise DrillError(f"fault crash-device-plugin: {victim['metadata']['name']} holds no GPU")
        self.applied_at = time.time()

        def lose_gpu(model: GpuNode) -> None:
            device = next(d for d in model.devices if d.uuid == proc.gpus[0])
            device.healthy = False
            model.xid_events.append(XidEvent(xid=p.xid, device_index=device.index, at=self.applied_at))
            model.plugin_state = "crashed"

        ctx.edit_gpu_node(p.node, lose_gpu)
        pods.crash_container(ctx, p.namespace, victim["metadata"]["name"], signal.SIGABRT)
        self.victim = victim["metadata"]["name"]

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The node's GPUs are withdrawn and the replica has crashed at CUDA init since."""
        p = self.params
        node = ctx.core.read_node(p.node)
        if (node.status.allocatable or {}).get("nvidia.com/gpu") != "0":
            return False
        selector = pods.workload_selector(ctx, p.namespace, p.workload)
        since = getattr(self, "applied_at", 0.0)
        return any(pods.node_of(x) == p.node and pods.restarted_with_error(x, since)
                   for x in pods.list_pods(ctx, p.namespace, selector))

    def revert(self, ctx: DrillContext) -> None:
        """The node back from repair: healthy GPUs, a fresh plugin, the pool's scheduling."""
        p = self.params
        old = ctx.gpu_node(p.node)
        ctx.put_gpu_node(new_node(p.node, count=len(old.devices), product_name=old.product))
        self._replaced_plugins = pods.restart_device_plugin(ctx, p.node)
        selector = pods.workload_selector(ctx, p.namespace, p.workload)
        pods.delete_pods_on(ctx, p.namespace, selector, p.node, unready_only=True)  # crash-looping replicas
        restore_node(ctx, p.node)

    def settle(self, ctx: DrillContext) -> None:
        pods.wait_device_plugin(ctx, self.params.node, getattr(self, "_replaced_plugins", []))
