"""gpu-node-product: the GPU board a node carries for this incident (the setting of a fault, not a fault).

Clusters mix products, and a candidate reads the product off ``nvidia-smi``, the
``nvidia.com/gpu.product`` and ``nvidia.com/gpu.memory`` node labels and
dcgm-exporter's ``modelName``. A scenario variant that draws a product lists this
first, so the incident's own faults act on a board of that product: the same Xid 79
then reads differently on an A100 than on an H200 (memory, power cap, bus ids). A scenario
gives every GPU node the drawn product, so no node stands out from the others by its board.

Only what follows the product changes (name, memory, power figures, the board's PCI
layout); health, driver and plugin state stay as the other faults leave them, so the
order of reverts does not matter. The labels are patched here as GPU feature
discovery would after a board swap: on the embedded cluster the node agent sets the
same values from the inventory, on kind nothing else would.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from mlops_drill.cluster.config import saved_config
from mlops_drill.cluster.gpu.devicemanager import node_patch
from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.products import H100, product
from mlops_drill.cluster.nodes import gpu_product_of
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault

#: The labels GPU feature discovery derives from the board (the driver labels follow the driver, not the board).
PRODUCT_LABELS = ("nvidia.com/gpu.product", "nvidia.com/gpu.memory")


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node: str = "gpu-node-0"
    product: str = H100.name

    @field_validator("product")
    @classmethod
    def _known(cls, name: str) -> str:
        return product(name).name  # UnknownProduct (a ValueError) names the products there are


def with_product(model: GpuNode, name: str) -> None:
    """Make ``model`` a board of product ``name``, in place, keeping its health and state."""
    spec = product(name)
    model.product, model.memory_total_mib = spec.name, spec.memory_total_mib
    for device in model.devices:
        device.pci_bus_id = spec.pci_buses[device.index % len(spec.pci_buses)]
        device.power_limit_w = spec.power_limit_w
        if not device.processes and device.utilization_pct == 0:
            device.power_draw_w = spec.idle_power_w


def configured_product(ctx: DrillContext, node: str) -> str:
    """The product the cluster was made with (``cluster up --config``); the node pool's default elsewhere."""
    state = getattr(ctx.backend, "state", None)
    return saved_config(state).product_of(node) if state is not None else gpu_product_of(node)


class GpuNodeProduct(Fault):
    name = "gpu-node-product"
    seat_ready = False  # edits the GPU inventory, which the node agent of a shared cluster owns
    Params = Params

    def _set(self, ctx: DrillContext, name: str) -> None:
        model = ctx.edit_gpu_node(self.params.node, lambda m: with_product(m, name))
        # Only the labels the node carries: kind's nodes are registered with the product label alone, and a
        # memory label on one node only would single it out (and stay after the drill).
        have = ctx.core.read_node(self.params.node).metadata.labels or {}
        labels = node_patch(model)["labels"]
        wanted = {k: labels[k] for k in PRODUCT_LABELS if k in have and have[k] != labels[k]}
        if wanted:
            ctx.core.patch_node(self.params.node, {"metadata": {"labels": wanted}})

    def apply(self, ctx: DrillContext) -> None:
        self._set(ctx, self.params.product)

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        labels = ctx.core.read_node(p.node).metadata.labels or {}
        return ctx.gpu_node(p.node).product == p.product and labels.get(PRODUCT_LABELS[0]) == product(p.product).label

    def revert(self, ctx: DrillContext) -> None:
        self._set(ctx, configured_product(ctx, self.params.node))
