"""The default ``nvidia-smi`` view: the device table and the Processes table.

Column widths are the 5xx/58x driver layout (91 characters wide), checked line for
line against the H100 captures by ``tests/test_nvidia_smi_golden.py``.
"""
from __future__ import annotations

from datetime import datetime

from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.smi_readings import Readings, ctime

WIDTH = 91
RULE = "+" + "-" * (WIDTH - 2) + "+"
GPU_RULE = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
GPU_HEAD = [
    "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
    "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
    "|                                         |                        |               MIG M. |",
    "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
]
PROC_HEAD = [
    "| Processes:" + " " * (WIDTH - 13) + "|",
    "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |",
    "|        ID   ID                                                               Usage      |",
    "|" + "=" * (WIDTH - 2) + "|",
]
NAME_WIDTH = 29
PROC_NAME_WIDTH = 37


def _boxed(text: str) -> str:
    return "|" + text.ljust(WIDTH - 2) + "|"


def _fit(text: str, width: int) -> str:
    """Long names are cut from the left behind '...', as nvidia-smi does for process paths."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


def header_lines(node: GpuNode) -> list[str]:
    return [
        RULE,
        f"| NVIDIA-SMI {node.driver_version:<23}Driver Version: {node.driver_version:<15}"
        f"CUDA Version: {node.cuda_version:<9}|",
    ]


def device_lines(r: Readings) -> list[str]:
    """The three rows of one GPU block (without the closing rule)."""
    ecc = str(r.dbe_errors)
    name = r.name if len(r.name) <= NAME_WIDTH else r.name[: NAME_WIDTH - 3] + "..."
    return [
        f"| {r.index:>3}  {name:<{NAME_WIDTH}}{'On':>4}  |{r.bus_id:>19} {'Off':<3} |{ecc:>21} |",
        f"| {'N/A':<3}  {r.temp_gpu:>3}C    {r.pstate:<2}{round(r.power_draw):>15}W / "
        f"{round(r.power_limit):>4}W |{r.mem_used:>8}MiB / {r.mem_total:>6}MiB |"
        f"{r.util_gpu:>7}%{'Default':>13} |",
        f"|{'':41}|{'':24}|{r.mig_mode:>21} |",
    ]


def process_lines(devices: list[Readings]) -> list[str]:
    rows = [
        f"| {r.index:>4}   {'N/A':<3}  {'N/A':<3}{p.pid:>16}{p.type:>7}   "
        f"{_fit(p.name, PROC_NAME_WIDTH - 1):<{PROC_NAME_WIDTH}}{p.used_memory_mib:>6}MiB |"
        for r in devices for p in r.processes
    ]
    return rows or [_boxed("  No running processes found")]


def render(node: GpuNode, devices: list[Readings], now: datetime) -> str:
    lines = [ctime(now) + " " * 7, *header_lines(node), GPU_RULE, *GPU_HEAD]
    for r in devices:
        lines += [*device_lines(r), GPU_RULE]
    lines += ["", RULE, *PROC_HEAD, *process_lines(devices), RULE]
    return "\n".join(lines) + "\n"
