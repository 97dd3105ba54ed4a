"""``nvidia-smi -q`` (text and ``-x`` XML) and its ``-d SECTION`` filters.

Both layouts are templates cut from a real H100 capture (``templates/query_gpu*.txt``),
so every key, indent and quirk (the trailing space after "GPU Memory Power Readings")
is the real tool's; the model only fills the ``{placeholders}``.
"""
from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib.resources import files
from xml.sax.saxutils import escape

from mlops_drill.cluster.gpu.model import GpuNode, GpuProcess
from mlops_drill.cluster.gpu.smi_readings import (
    BAR1_TOTAL_MIB,
    MAX_VIDEO_CLOCK_MHZ,
    MEM_CLOCK_MHZ,
    TLIMIT_C,
    Readings,
    ctime,
)

KEY_WIDTH = 55

# -d SECTION -> the top-level blocks of one GPU's -q output it keeps (real tool's grouping).
SECTIONS: dict[str, tuple[str, ...]] = {
    "MEMORY": ("FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage"),
    "UTILIZATION": ("Utilization",),
    "ECC": ("ECC Mode", "ECC Errors"),
    "TEMPERATURE": ("Temperature",),
    "POWER": ("GPU Power Readings", "GPU Memory Power Readings", "Module Power Readings",
              "Power Smoothing", "Workload Power Profiles"),
    "CLOCK": ("Clocks", "Applications Clocks", "Default Applications Clocks", "Deferred Clocks",
              "Max Clocks", "Max Customer Boost Clocks", "Clock Policy"),
    "COMPUTE": ("Compute Mode",),
    "PIDS": ("Processes",),
    "PERFORMANCE": ("Performance State", "Clocks Event Reasons", "Clocks Event Reasons Counters",
                    "Sparse Operation Mode"),
    "PAGE_RETIREMENT": ("Retired Pages",),
    "ROW_REMAPPER": ("Remapped Rows",),
    "ENCODER_STATS": ("Encoder Stats",),
    "FBC_STATS": ("FBC Stats",),
}


@cache
def _template(name: str) -> str:
    return files("mlops_drill.cluster.gpu.templates").joinpath(name).read_text(encoding="utf-8")


def kv(indent: int, key: str, value: object) -> str:
    """One ``Key : value`` line with the colon in nvidia-smi's fixed column."""
    return f"{' ' * indent + key:<{KEY_WIDTH}}: {value}"


def _values(r: Readings, node: GpuNode) -> dict[str, object]:
    domain, bus, device = r.pci_parts
    return {
        "bus_id": r.bus_id, "product_name": r.name, "persistence": "Enabled",
        "mig_current": r.mig_mode, "mig_pending": r.mig_mode, "serial": r.serial, "uuid": r.uuid,
        "pdi": r.pdi, "minor": r.index, "module_id": r.module_id,
        "driver_version": node.driver_version,
        "pci_bus": f"0x{bus}", "pci_device": f"0x{device}", "pci_domain": f"0x{domain}",
        "pci_bus_hex": bus, "pci_device_hex": device, "pci_domain_hex": domain,
        "tx_kbps": 800 + 40 * r.util_gpu, "rx_kbps": 410 + 20 * r.util_gpu,
        "pstate": r.pstate, "idle_reason": "Not Active" if r.busy else "Active",
        "mem_total": r.mem_total, "mem_reserved": r.mem_reserved, "mem_used": r.mem_used,
        "mem_free": r.mem_free, "bar1_used": 1 + (2 if r.processes else 0),
        "bar1_free": BAR1_TOTAL_MIB - 1 - (2 if r.processes else 0),
        "compute_mode": "Default", "util_gpu": r.util_gpu, "util_mem": r.util_mem,
        "dbe_volatile": r.dbe_errors, "dbe_aggregate": r.dbe_errors, "remapped_unc": r.dbe_errors,
        "remap_pending": "Yes" if r.dbe_errors else "No",
        "temp_gpu": r.temp_gpu, "temp_tlimit": TLIMIT_C - r.temp_gpu, "temp_mem": r.temp_mem,
        "power_avg": f"{r.power_draw:.2f}", "power_instant": f"{r.power_draw:.2f}",
        "power_limit": f"{r.power_limit:.2f}", "mem_power_avg": f"{40 + r.power_draw / 12:.2f}",
        "clock_graphics": r.clock_sm, "clock_sm": r.clock_sm, "clock_mem": MEM_CLOCK_MHZ,
        "clock_video": MAX_VIDEO_CLOCK_MHZ,
    }


def _process_block(processes: tuple[GpuProcess, ...]) -> str:
    if not processes:
        return kv(4, "Processes", "None")
    lines = ["    Processes"]
    for p in processes:
        lines += [
            kv(8, "GPU instance ID", "N/A"), kv(8, "Compute instance ID", "N/A"),
            kv(8, "Process ID", p.pid), kv(12, "Type", p.type), kv(12, "Name", p.name),
            kv(12, "Used GPU Memory", f"{p.used_memory_mib} MiB"),
        ]
    return "\n".join(lines)


def _xml_process_block(processes: tuple[GpuProcess, ...]) -> str:
    lines = ["\t\t<processes>"]
    for p in processes:
        lines += [
            "\t\t\t<process_info>",
            "\t\t\t\t<gpu_instance_id>N/A</gpu_instance_id>",
            "\t\t\t\t<compute_instance_id>N/A</compute_instance_id>",
            f"\t\t\t\t<pid>{p.pid}</pid>",
            f"\t\t\t\t<type>{p.type}</type>",
            f"\t\t\t\t<process_name>{escape(p.name)}</process_name>",
            f"\t\t\t\t<used_memory>{p.used_memory_mib} MiB</used_memory>",
            "\t\t\t</process_info>",
        ]
    lines.append("\t\t</processes>")
    return "\n".join(lines)


def gpu_section(r: Readings, node: GpuNode) -> list[str]:
    """One GPU's full ``-q`` text, from the ``GPU 0000...`` line to the last capability."""
    text = _template("query_gpu.txt").format(**_values(r, node), processes=_process_block(r.processes))
    return text.rstrip("\n").split("\n")


def _blocks(section: list[str]) -> list[tuple[str, list[str]]]:
    """Split a GPU section into its top-level (4-space indented) blocks, keyed by name."""
    blocks: list[tuple[str, list[str]]] = []
    for line in section[1:]:
        if line.startswith("    ") and not line.startswith("     "):
            blocks.append((line.split(":")[0].strip(), [line]))
        else:
            blocks[-1][1].append(line)
    return blocks


def unknown_sections(names: list[str]) -> list[str]:
    return [n for n in names if n.upper() not in SECTIONS]


def render_text(node: GpuNode, devices: list[Readings], now: datetime,
                sections: list[str] | None = None) -> str:
    lines = [
        "", "==============NVSMI LOG==============", "",
        kv(0, "Timestamp", ctime(now)), kv(0, "Driver Version", node.driver_version),
        kv(0, "CUDA Version", node.cuda_version), "",
        kv(0, "Attached GPUs", len(node.devices)),
    ]
    wanted = {b for s in sections or [] for b in SECTIONS[s.upper()]}
    for r in devices:
        if r.lost:
            lines.append(r.handle_error())
            continue
        section = gpu_section(r, node)
        if wanted:
            section = [section[0]] + [ln for key, block in _blocks(section) if key in wanted
                                      for ln in block]
        lines += [*section, ""]
    return "\n".join(lines) + "\n"


def render_xml(node: GpuNode, devices: list[Readings], now: datetime) -> str:
    lines = [
        '<?xml version="1.0" ?>',
        '<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v13.dtd">',
        "<nvidia_smi_log>",
        f"\t<timestamp>{ctime(now)}</timestamp>",
        f"\t<driver_version>{node.driver_version}</driver_version>",
        f"\t<cuda_version>{node.cuda_version}</cuda_version>",
        f"\t<attached_gpus>{len(node.devices)}</attached_gpus>",
    ]
    for r in devices:
        if r.lost:
            lines.append(r.handle_error())
            continue
        text = _template("query_gpu_xml.txt").format(
            **_values(r, node), processes=_xml_process_block(r.processes))
        lines += [*text.rstrip("\n").split("\n"), ""]
    lines.append("</nvidia_smi_log>")
    return "\n".join(lines) + "\n"
