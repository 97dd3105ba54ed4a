"""The GPU inventory of one node: the single source of truth every GPU face renders.

Faults change only this model (a device goes unhealthy, the plugin crashes, the
driver no longer matches its library, a stray process holds memory); node
capacity, device-plugin logs, the gRPC plugin's ListAndWatch and ``nvidia-smi``
all read it. It is plain data that round-trips through JSON, so it can live in
a ConfigMap the candidate cannot read, or in a file beside a kind node.
"""
from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from mlops_drill.cluster.gpu.products import H100, PRODUCTS, Product, UnknownProduct, product

PluginState = Literal["ok", "crashed"]
DriverState = Literal["ok", "library-mismatch", "missing"]

H100_PRODUCT = H100.name
H100_MEMORY_MIB = H100.memory_total_mib
DEFAULT_DRIVER = "580.159.04"
DEFAULT_CUDA = "13.0"


class GpuProcess(BaseModel):
    """A process holding GPU memory, as nvidia-smi's Processes table shows it."""

    pid: int
    name: str
    used_memory_mib: int
    type: Literal["C", "G", "C+G"] = "C"


class XidEvent(BaseModel):
    """An NVIDIA Xid error the driver reported for one device (79: fell off the bus, 48: DBE ECC)."""

    xid: int
    device_index: int
    at: float = 0.0  # unix time; 0 = when the fault was applied


class GpuDevice(BaseModel):
    index: int
    uuid: str
    pci_bus_id: str
    healthy: bool = True
    utilization_pct: int = 0
    memory_used_mib: int = 0
    temperature_c: int = 33
    power_draw_w: float = 71.0
    power_limit_w: float = 700.0
    processes: list[GpuProcess] = Field(default_factory=list)


class GpuNode(BaseModel):
    """Everything about the GPUs of one node that a fault may change."""

    node_name: str
    product: str = H100_PRODUCT
    memory_total_mib: int = H100_MEMORY_MIB
    driver_version: str = DEFAULT_DRIVER
    cuda_version: str = DEFAULT_CUDA
    # The kernel module's version; differs from driver_version under a library mismatch.
    kernel_module_version: str = DEFAULT_DRIVER
    plugin_state: PluginState = "ok"
    driver_state: DriverState = "ok"
    mig_mode: Literal["Disabled", "Enabled"] = "Disabled"
    devices: list[GpuDevice] = Field(default_factory=list)
    xid_events: list[XidEvent] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _memory_follows_product(cls, data: object) -> object:
        """A node given only a product gets that product's memory (older state files say both)."""
        if isinstance(data, dict) and "memory_total_mib" not in data and "product" in data:
            try:
                return {**data, "memory_total_mib": product(str(data["product"])).memory_total_mib}
            except UnknownProduct:
                return data  # the field validator says why
        return data

    @field_validator("product")
    @classmethod
    def _known_product(cls, name: str) -> str:
        try:
            return product(name).name
        except UnknownProduct as err:
            raise ValueError(str(err)) from None

    @property
    def spec(self) -> Product:
        """The product's fixed figures (clocks, board numbers, PCI layout)."""
        return PRODUCTS[self.product]

    @property
    def capacity(self) -> int:
        """What the kubelet reports as capacity: every device the plugin ever advertised."""
        return len(self.devices)

    @property
    def allocatable(self) -> int:
        """Healthy devices, and none at all while the plugin is down (as a real kubelet does)."""
        if self.plugin_state != "ok" or self.driver_state != "ok":
            return 0
        return sum(1 for d in self.devices if d.healthy)


def _uuid(node_name: str, index: int) -> str:
    """Stable per node and index, shaped like a real GPU UUID."""
    h = hashlib.sha256(f"{node_name}/{index}".encode()).hexdigest()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def new_node(node_name: str, count: int = 4, product_name: str = H100.name) -> GpuNode:
    """A healthy, idle node with ``count`` devices of one product on its board's PCI buses."""
    spec = product(product_name)
    buses = spec.pci_buses
    devices = [
        GpuDevice(index=i, uuid=_uuid(node_name, i), pci_bus_id=buses[i % len(buses)],
                  power_draw_w=spec.idle_power_w, power_limit_w=spec.power_limit_w)
        for i in range(count)
    ]
    return GpuNode(node_name=node_name, product=spec.name, memory_total_mib=spec.memory_total_mib,
                   devices=devices)


def visible_devices(node: GpuNode, spec: str | None) -> GpuNode:
    """The node as a container granted ``NVIDIA_VISIBLE_DEVICES=spec`` sees it.

    The container runtime exposes only the granted device nodes, so nvidia-smi in a
    2-GPU pod lists two GPUs, numbered 0 and 1 in host order, with their real UUIDs
    and bus ids; Xid events of the hidden devices are not its to see. Unset, empty
    or ``all`` shows every device (the device plugin's own pod), ``none``/``void`` none.
    """
    spec = (spec or "").strip()
    if spec in ("", "all"):
        return node
    wanted = set() if spec in ("none", "void") else {t.strip() for t in spec.split(",") if t.strip()}
    kept = [d for d in node.devices if d.uuid in wanted or str(d.index) in wanted]
    renumber = {d.index: i for i, d in enumerate(kept)}
    return node.model_copy(update={
        "devices": [d.model_copy(update={"index": renumber[d.index]}) for d in kept],
        "xid_events": [x.model_copy(update={"device_index": renumber[x.device_index]})
                       for x in node.xid_events if x.device_index in renumber],
    })
