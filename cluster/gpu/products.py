"""The GPU products a node can carry, and everything nvidia-smi reports that follows the product.

Clusters mix products, and a candidate reads the product off ``nvidia-smi`` and the
``nvidia.com/gpu.product`` node label, so a product is more than a name: memory,
power cap, clocks, board numbers and the PCI layout of its baseboard all follow it.

Sources, per product:
- H100 80GB HBM3: the real captures in ``../shared/reference/nvidia-smi-h100`` (one
  SXM5 board, driver 580.159.04).
- H200: the real captures in ``../shared/reference/nvidia-smi-h200`` and
  ``tests/data/nvidia-smi-h200-sections`` (one SXM board, the same driver).
- A100-SXM4-80GB: no capture here. Name, memory (81920 MiB), 400 W cap, 1410 MHz max
  SM clock, 1593 MHz memory clock, PCI device id 0x20B2 and compute capability 8.0 are
  NVIDIA's published figures; the reserved memory, VBIOS/board/part numbers, idle
  readings, the second memory clock and the subsystem id are approximations in the
  shape of the other boards, said so in ``approximated``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Product:
    name: str  # as nvidia-smi prints it
    architecture: str
    memory_total_mib: int
    reserved_mib: int  # driver-reserved framebuffer: Free = Total - Reserved - Used + free_rounding_mib
    # NVML rounds each byte count down to MiB on its own, so Free can be one more than the
    # difference of the rounded figures (143771 - 616 - 0 -> 143156 on the H200 capture).
    free_rounding_mib: int
    bar1_total_mib: int
    power_limit_w: float
    min_power_limit_w: float
    idle_power_w: float
    max_sm_clock_mhz: int
    idle_sm_clock_mhz: int
    mem_clock_mhz: int
    low_mem_clock_mhz: int  # the second supported memory clock
    max_video_clock_mhz: int
    idle_video_clock_mhz: int
    tlimit_c: int  # slowdown threshold; nvidia-smi prints the headroom to it as "T.Limit"
    vbios: str
    board_part_number: str
    gpu_part_number: str
    inforom_image: str
    device_id: str
    subsystem_id: str
    compute_cap: str
    remap_banks: int  # "Bank Remap Availability Histogram / Max"
    pci_buses: tuple[str, ...]  # bus ids of the 8 sockets of its baseboard, in index order
    serial_prefix: str
    nvlinks: int  # links per GPU on its baseboard (``nvidia-smi nvlink -s``)
    nvlink_gbps: str
    approximated: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The ``nvidia.com/gpu.product`` label GPU feature discovery sets: spaces become dashes."""
        return self.name.replace(" ", "-")

    def supported_graphics_clocks(self) -> list[int]:
        """The SM clocks the board accepts, max down to idle in 15 MHz steps (H200 capture)."""
        return list(range(self.max_sm_clock_mhz, self.idle_sm_clock_mhz - 1, -15))


def _buses(*bus: str) -> tuple[str, ...]:
    return tuple(f"00000000:{b}:00.0" for b in bus)


H100 = Product(
    name="NVIDIA H100 80GB HBM3", architecture="Hopper", memory_total_mib=81559, reserved_mib=480, free_rounding_mib=0,
    bar1_total_mib=131072, power_limit_w=700.0, min_power_limit_w=200.0, idle_power_w=71.0,
    max_sm_clock_mhz=1980, idle_sm_clock_mhz=345, mem_clock_mhz=2619, low_mem_clock_mhz=1593,
    max_video_clock_mhz=1545, idle_video_clock_mhz=1545, tlimit_c=87, vbios="96.00.DA.00.0C",
    board_part_number="695-2G520-0200-000", gpu_part_number="2330-885-A1",
    inforom_image="G520.0200.00.05", device_id="0x233010DE", subsystem_id="0x16C110DE",
    compute_cap="9.0", remap_banks=2560,
    pci_buses=_buses("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB"), serial_prefix="17530",
    nvlinks=18, nvlink_gbps="26.562", approximated=("PCI layout of the 8-GPU board",),
)
H200 = Product(
    name="NVIDIA H200", architecture="Hopper", memory_total_mib=143771, reserved_mib=616, free_rounding_mib=1,
    bar1_total_mib=262144, power_limit_w=700.0, min_power_limit_w=200.0, idle_power_w=81.0,
    max_sm_clock_mhz=1980, idle_sm_clock_mhz=345, mem_clock_mhz=3201, low_mem_clock_mhz=2201,
    max_video_clock_mhz=1545, idle_video_clock_mhz=765, tlimit_c=87, vbios="96.00.A5.00.1A",
    board_part_number="692-2G520-0282-001", gpu_part_number="2335-895-A1",
    inforom_image="G520.0282.02.02", device_id="0x233510DE", subsystem_id="0x18BF10DE",
    compute_cap="9.0", remap_banks=3072,
    pci_buses=_buses("1B", "43", "52", "61", "9D", "C3", "D1", "DF"), serial_prefix="16539",
    nvlinks=18, nvlink_gbps="26.562",
    approximated=("NVLink count and speed (the H100 board's; the capture is a one-GPU VM)",
                  "PCI layout of the 8-GPU board (a DGX H200's, from public lspci listings)"),
)
A100 = Product(
    name="NVIDIA A100-SXM4-80GB", architecture="Ampere", memory_total_mib=81920, reserved_mib=429, free_rounding_mib=0,
    bar1_total_mib=131072, power_limit_w=400.0, min_power_limit_w=100.0, idle_power_w=61.0,
    max_sm_clock_mhz=1410, idle_sm_clock_mhz=210, mem_clock_mhz=1593, low_mem_clock_mhz=1215,
    max_video_clock_mhz=1290, idle_video_clock_mhz=585, tlimit_c=85, vbios="92.00.36.00.02",
    board_part_number="692-2G506-0210-002", gpu_part_number="20B2-895-A1",
    inforom_image="G506.0210.00.05", device_id="0x20B210DE", subsystem_id="0x147F10DE",
    compute_cap="8.0", remap_banks=640,
    pci_buses=_buses("07", "0F", "47", "4E", "87", "90", "B7", "BD"), serial_prefix="13230",
    nvlinks=12, nvlink_gbps="25.000", approximated=("reserved memory", "VBIOS, board, GPU and inforom numbers", "subsystem id",
                  "idle power, idle clocks and the second memory clock", "T.Limit threshold",
                  "remap bank count", "the -q layout (a Hopper capture's; no A100 capture here)"),
)

PRODUCTS: dict[str, Product] = {p.name: p for p in (H100, H200, A100)}


class UnknownProduct(ValueError):
    pass


def product(name: str) -> Product:
    """The product named exactly as nvidia-smi prints it, or its node label form."""
    for p in PRODUCTS.values():
        if name in (p.name, p.label):
            return p
    raise UnknownProduct(f"unknown GPU product {name!r}; known: {', '.join(PRODUCTS)}")
