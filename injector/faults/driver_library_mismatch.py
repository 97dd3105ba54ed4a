"""driver-library-mismatch: a node's NVIDIA user-space libraries upgraded under a loaded kernel module.

An unattended package upgrade installed driver ``library_version`` on the node
while kernel module ``kernel_module_version`` stays loaded until a reboot. From
then on every new NVML/CUDA client on the node fails:

* ``nvidia-smi``: ``Failed to initialize NVML: Driver/library version mismatch``;
* the device plugin, restarted after the upgrade, finds no devices, so the
  node's allocatable ``nvidia.com/gpu`` is 0, and GPU feature discovery labels the
  node with the new library's version;
* the serving replica on the node, once its container restarts, dies at CUDA
  initialisation with ``Error 803: system has unsupported display driver / cuda
  driver combination`` (``mlplatform.cudainit``) and crash-loops there, since a
  restarted container keeps its node and GPU.

Nothing in the cluster can reload a kernel module; the fix is to keep work off
the node (cordon) and move the replica, then reboot the node in a window.
"""
from __future__ import annotations

import signal
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.cluster.gpu.model import DEFAULT_DRIVER, GpuNode
from mlops_drill.injector import pods
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.nodes import restore_node


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = "gpu-node-1"
    library_version: str = "580.173.02"
    kernel_module_version: str = DEFAULT_DRIVER
    crash_workload: str = "deployment/fraud-model"
    namespace: str = "serving"


class DriverLibraryMismatch(Fault):
    name = "driver-library-mismatch"
    seat_ready = False  # edits the GPU inventory, which the node agent of a shared cluster owns
    Params = Params

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        selector = pods.workload_selector(ctx, p.namespace, p.crash_workload)
        victim = pods.ensure_ready_pod_on(ctx, p.namespace, selector, p.node)
        self.applied_at = time.time()

        def upgrade_libraries(model: GpuNode) -> None:
            model.driver_version = p.library_version
            model.kernel_module_version = p.kernel_module_version
            model.driver_state = "library-mismatch"

        ctx.edit_gpu_node(p.node, upgrade_libraries)
        # The plugin restarted after the upgrade and came back without NVML; the replica's
        # container restarted (a routine OOM kill) and now has to initialise CUDA again.
        pods.restart_device_plugin(ctx, p.node)
        pods.crash_container(ctx, p.namespace, victim["metadata"]["name"], signal.SIGKILL)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The replica on the node has crashed at CUDA initialisation since the upgrade."""
        p = self.params
        selector = pods.workload_selector(ctx, p.namespace, p.crash_workload)
        since = getattr(self, "applied_at", 0.0)
        return any(pods.node_of(x) == p.node and pods.restarted_with_error(x, since)
                   for x in pods.list_pods(ctx, p.namespace, selector))

    def revert(self, ctx: DrillContext) -> None:
        """The node after its reboot: module and libraries agree again, fresh plugin, pool scheduling."""
        p = self.params

        def rebooted(model: GpuNode) -> None:
            model.driver_version = model.kernel_module_version = DEFAULT_DRIVER
            model.driver_state = "ok"

        ctx.edit_gpu_node(p.node, rebooted)
        self._replaced_plugins = pods.restart_device_plugin(ctx, p.node)
        selector = pods.workload_selector(ctx, p.namespace, p.crash_workload)
        pods.delete_pods_on(ctx, p.namespace, selector, p.node, unready_only=True)  # crash-looping replicas
        restore_node(ctx, p.node)

    def settle(self, ctx: DrillContext) -> None:
        pods.wait_device_plugin(ctx, self.params.node, getattr(self, "_replaced_plugins", []))
