"""The small nvidia-smi modes: ``-L``, ``--version``, ``dmon``, ``pmon``, ``topo -m``, ``mig``, ``nvlink``.

Formats are the H100 captures' (note the trailing spaces dmon and pmon leave on every
line, and the ANSI underline ``topo -m`` puts on its header row).
"""
from __future__ import annotations

from functools import cache
from importlib.resources import files

from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.smi_readings import Readings, nvml_version

DMON_HEAD = [
    "# gpu    pwr  gtemp  mtemp     sm    mem    enc    dec    jpg    ofa   mclk   pclk ",
    "# Idx      W      C      C      %      %      %      %      %      %    MHz    MHz ",
]
PMON_HEAD = [
    "# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command ",
    "# Idx           #    C/G      %      %      %      %      %      %    name ",
]
CPU_AFFINITY = "0-15"


@cache
def _legend() -> str:
    return files("mlops_drill.cluster.gpu.templates").joinpath("topo_legend.txt").read_text(
        encoding="utf-8")


def list_gpus(devices: list[Readings]) -> str:
    return "".join(
        (r.handle_error() if r.lost else f"GPU {r.index}: {r.name} (UUID: {r.uuid})") + "\n"
        for r in devices)


def version(node: GpuNode) -> str:
    return (f"NVIDIA-SMI version  : {node.driver_version}\n"
            f"NVML version        : {nvml_version(node.driver_version)}\n"
            f"DRIVER version      : {node.driver_version}\n"
            f"CUDA Version        : {node.cuda_version}\n")


def dmon(devices: list[Readings], samples: int) -> str:
    """``samples`` rounds of one line per GPU, under the two header lines printed once."""
    lines = list(DMON_HEAD)
    for _ in range(samples):
        for r in devices:
            cols = [round(r.power_draw), r.temp_gpu, r.temp_mem, r.util_gpu, r.util_mem,
                    0, 0, 0, 0, r.clock_mem, r.clock_sm]
            lines.append(f"{r.index:>5}" + "".join(f" {c:>6}" for c in cols) + " ")
    return "\n".join(lines) + "\n"


def pmon(devices: list[Readings], samples: int) -> str:
    lines = list(PMON_HEAD)
    for _ in range(samples):
        for r in devices:
            rows = [(str(p.pid), p.type, str(r.util_gpu), str(r.util_mem), p.name[:15])
                    for p in r.processes] or [("-", "-", "-", "-", "-")]
            for pid, kind, sm, mem, cmd in rows:
                cols = [sm, mem, "-", "-", "-", "-"]
                lines.append(f"{r.index:>5} {pid:>10} {kind:>5}" + "".join(f" {c:>6}" for c in cols)
                             + f"    {cmd:<15}")
    return "\n".join(lines) + "\n"


def topo(devices: list[Readings]) -> str:
    names = [f"GPU{r.index}" for r in devices]
    head = "\t\x1b[4m" + "\t".join([*names, "CPU Affinity", "NUMA Affinity", "GPU NUMA ID"]) + "\x1b[0m"
    rows = []
    for r in devices:
        links = [" X " if o.index == r.index else f"NV{o.product.nvlinks}" for o in devices]
        rows.append("\t".join([f"GPU{r.index}", *links, CPU_AFFINITY, "0", "", "N/A"]))
    return "\n".join([head, *rows, ""]) + "\n" + _legend()


def mig_list_instances(node: GpuNode) -> tuple[str, int]:
    """No GPU instance is ever created here: MIG off, or on with no instances carved yet."""
    if node.mig_mode == "Enabled":
        return "No GPU instances found: Not Found\n", 6
    return "No MIG-enabled devices found.\n", 6


def nvlink_status(node: GpuNode, devices: list[Readings]) -> str:
    """A single passthrough GPU (as in the capture) has no NVLink and prints nothing."""
    if len(node.devices) < 2:
        return ""
    lines = []
    for r in devices:
        lines.append(f"GPU {r.index}: {r.name} (UUID: {r.uuid})")
        lines += [f"\t Link {i}: {r.product.nvlink_gbps} GB/s" for i in range(r.product.nvlinks)]
    return "\n".join(lines) + "\n"
