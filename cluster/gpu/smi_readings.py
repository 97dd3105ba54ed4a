"""What one GPU "reads" right now, derived from the GPU model for every nvidia-smi mode.

The model keeps only what a fault can change (health, utilisation, memory, processes);
everything else a real board reports (serial, clocks, reserved memory, ECC counters)
is derived here once, so the table, ``-q``, CSV and ``dmon`` can never disagree.
Fixed figures (clocks, reserved memory, board numbers) follow the node's product
(``products.py``); the module constants below are the H100's, kept for old importers.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from mlops_drill.cluster.gpu.model import GpuDevice, GpuNode, GpuProcess
from mlops_drill.cluster.gpu.products import H100, Product

# Driver-reserved framebuffer on an H100 80GB: Free = Total - Reserved - Used.
RESERVED_MIB = H100.reserved_mib
BAR1_TOTAL_MIB = H100.bar1_total_mib
MAX_SM_CLOCK_MHZ = H100.max_sm_clock_mhz
MEM_CLOCK_MHZ = H100.mem_clock_mhz
MAX_VIDEO_CLOCK_MHZ = H100.max_video_clock_mhz
IDLE_SM_CLOCK_MHZ = H100.idle_sm_clock_mhz
TLIMIT_C = H100.tlimit_c
XID_FELL_OFF_BUS = 79
XID_DBE_ECC = 48


@dataclass(frozen=True)
class Readings:
    """One device as nvidia-smi sees it; ``lost`` means NVML cannot get a handle for it."""

    index: int
    uuid: str
    name: str
    bus_id: str  # 8-digit domain, as the table and -q print it
    lost: bool
    dbe_errors: int
    serial: str
    pdi: str
    module_id: int
    mem_total: int
    mem_used: int
    util_gpu: int
    util_mem: int
    temp_gpu: int
    power_draw: float
    power_limit: float
    processes: tuple[GpuProcess, ...]
    mig_mode: str
    product: Product = H100

    @property
    def short_bus_id(self) -> str:
        """The 4-digit-domain form NVML error messages use (``0000:18:00.0``)."""
        return self.bus_id[4:] if len(self.bus_id) == 16 else self.bus_id

    @property
    def mem_reserved(self) -> int:
        return self.product.reserved_mib

    @property
    def mem_free(self) -> int:
        return max(self.mem_total - self.mem_reserved - self.mem_used
                   + self.product.free_rounding_mib, 0)

    @property
    def temp_mem(self) -> int:
        return self.temp_gpu + 2

    @property
    def busy(self) -> bool:
        return self.util_gpu > 0

    @property
    def clock_sm(self) -> int:
        """Boost clock under load, the idle floor otherwise (what dmon's pclk shows)."""
        return self.product.max_sm_clock_mhz if self.busy else self.product.idle_sm_clock_mhz

    @property
    def clock_mem(self) -> int:
        return self.product.mem_clock_mhz

    @property
    def clock_video(self) -> int:
        return self.product.max_video_clock_mhz if self.busy else self.product.idle_video_clock_mhz

    @property
    def temp_tlimit(self) -> int:
        """Headroom to the slowdown threshold, as nvidia-smi's "T.Limit" prints it."""
        return self.product.tlimit_c - self.temp_gpu

    @property
    def pstate(self) -> str:
        return "P0"

    @property
    def pci_parts(self) -> tuple[str, str, str]:
        """(domain, bus, device) as hex digits, from ``00000000:18:00.0``."""
        domain, bus, devfn = self.bus_id.split(":")
        return domain[-4:], bus, devfn.split(".")[0]

    def handle_error(self) -> str:
        """The line nvidia-smi prints instead of a GPU that fell off the bus."""
        return f"Unable to determine the device handle for GPU{self.short_bus_id}: Unknown Error"


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def device_readings(node: GpuNode, device: GpuDevice) -> Readings:
    """Derive one device's readings; Xid 79 makes it lost, each Xid 48 is one DRAM DBE."""
    xids = [e.xid for e in node.xid_events if e.device_index == device.index]
    used = max(device.memory_used_mib, sum(p.used_memory_mib for p in device.processes))
    digest = _digest(node.node_name, device.uuid)
    return Readings(
        index=device.index,
        uuid=device.uuid,
        name=node.product,
        bus_id=device.pci_bus_id,
        lost=XID_FELL_OFF_BUS in xids,
        dbe_errors=xids.count(XID_DBE_ECC),
        serial=node.spec.serial_prefix + str(int(digest[:10], 16))[-8:].rjust(8, "0"),
        pdi="0x" + digest[10:26],
        module_id=device.index + 1,
        mem_total=node.memory_total_mib,
        mem_used=min(used, node.memory_total_mib - node.spec.reserved_mib),
        util_gpu=device.utilization_pct,
        util_mem=device.utilization_pct // 3,
        temp_gpu=device.temperature_c,
        power_draw=device.power_draw_w,
        power_limit=device.power_limit_w,
        processes=tuple(device.processes),
        mig_mode=node.mig_mode,
        product=node.spec,
    )


def node_readings(node: GpuNode) -> list[Readings]:
    return [device_readings(node, d) for d in sorted(node.devices, key=lambda d: d.index)]


def nvml_version(driver_version: str) -> str:
    """NVML's own version is the driver's first two components (580.159.04 -> 580.159)."""
    return ".".join(driver_version.split(".")[:2])


def ctime(now: datetime) -> str:
    """The C ``ctime`` layout nvidia-smi stamps its table and ``-q`` with."""
    return now.strftime("%a %b ") + f"{now.day:>2}" + now.strftime(" %H:%M:%S %Y")
