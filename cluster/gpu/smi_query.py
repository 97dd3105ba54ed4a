"""``nvidia-smi -q`` (text and ``-x`` XML) and its ``-d SECTION`` filters.

Both layouts are templates cut from a real H100 capture (``templates/query_gpu*.txt``),
so every key, indent and quirk (the trailing space after "GPU Memory Power Readings")
is the real tool's; the model and its product only fill the ``{placeholders}``. The
blocks only ``-d`` prints (sampling windows, supported clocks, accounted processes)
are built here in the layout of the H200 captures in ``tests/data/nvidia-smi-h200-sections``.
"""
from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib.resources import files
from xml.sax.saxutils import escape

from mlops_drill.cluster.gpu.model import GpuNode, GpuProcess
from mlops_drill.cluster.gpu.smi_readings import Readings, ctime

KEY_WIDTH = 55

# -d SECTION -> the top-level blocks of one GPU it prints. Blocks print in the order of
# one GPU's full record (``_record``), whatever the order of the -d list, as the real tool
# does (``-d POWER,TEMPERATURE`` prints Temperature first). VOLTAGE prints no block on
# these boards; RESET_STATUS is in the man page but the 580 driver refuses it.
SECTIONS: dict[str, tuple[str, ...]] = {
    "MEMORY": ("FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage"),
    "UTILIZATION": ("Utilization", "GPU Utilization Samples", "Memory Utilization Samples",
                    "ENC Utilization Samples", "DEC Utilization Samples",
                    "JPG Utilization Samples", "OFA Utilization Samples"),
    "ECC": ("ECC Mode", "ECC Errors"),
    "TEMPERATURE": ("Temperature",),
    "POWER": ("GPU Power Readings", "Power Samples", "GPU Memory Power Readings",
              "Module Power Readings"),
    "CLOCK": ("Clocks", "Applications Clocks", "Default Applications Clocks", "Deferred Clocks",
              "Max Clocks", "Max Customer Boost Clocks", "SM Clock Samples",
              "Memory Clock Samples", "Clock Policy"),
    "COMPUTE": ("Compute Mode",),
    "PIDS": ("Processes",),
    "PERFORMANCE": ("Performance State", "Clocks Event Reasons", "Clocks Event Reasons Counters",
                    "Sparse Operation Mode"),
    "SUPPORTED_CLOCKS": ("Supported Clocks",),
    "PAGE_RETIREMENT": ("Retired Pages",),
    "ACCOUNTING": ("Accounting Mode", "Accounting Mode Buffer Size", "Accounted Processes"),
    "ENCODER_STATS": ("Encoder Stats",),
    "SUPPORTED_GPU_TARGET_TEMP": ("Supported GPU_TARGET_TEMP",),
    "VOLTAGE": (),
    "FBC_STATS": ("FBC Stats",),
    "ROW_REMAPPER": ("Remapped Rows",),
    "GSP_FIRMWARE_VERSION": ("GSP Firmware Version",),
    "POWER_SMOOTHING": ("Power Smoothing",),
    "POWER_PROFILES": ("Workload Power Profiles",),
}
BAD_SECTION = "Failed to parse --display/-d flags\n"
# Sampling windows nvidia-smi reports (its sample buffer; live values, like the readings).
UTIL_WINDOW = ("14.00 sec", 71)
POWER_WINDOW = ("2.36 sec", 119)
NOT_FOUND = "Not Found"


@cache
def _template(name: str) -> str:
    return files("mlops_drill.cluster.gpu.templates").joinpath(name).read_text(encoding="utf-8")


def kv(indent: int, key: str, value: object) -> str:
    """One ``Key : value`` line with the colon in nvidia-smi's fixed column."""
    return f"{' ' * indent + key:<{KEY_WIDTH}}: {value}"


def _values(r: Readings, node: GpuNode) -> dict[str, object]:
    domain, bus, device = r.pci_parts
    spec = r.product
    return {
        "architecture": spec.architecture, "vbios": spec.vbios,
        "board_part": spec.board_part_number, "gpu_part": spec.gpu_part_number,
        "inforom_image": spec.inforom_image, "device_id": spec.device_id,
        "subsystem_id": spec.subsystem_id, "device_id_hex": spec.device_id[2:],
        "subsystem_id_hex": spec.subsystem_id[2:], "bar1_total": spec.bar1_total_mib,
        "remap_banks": spec.remap_banks, "power_default": f"{spec.power_limit_w:.2f}",
        "power_min": f"{spec.min_power_limit_w:.2f}", "max_sm": spec.max_sm_clock_mhz,
        "max_mem": spec.mem_clock_mhz, "max_video": spec.max_video_clock_mhz, "replays": 0,
        "supported_clocks": _xml_supported_clocks(r),
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
        "bar1_free": spec.bar1_total_mib - 1 - (2 if r.processes else 0),
        "compute_mode": "Default", "util_gpu": r.util_gpu, "util_mem": r.util_mem,
        "dbe_volatile": r.dbe_errors, "dbe_aggregate": r.dbe_errors, "remapped_unc": r.dbe_errors,
        "remap_pending": "Yes" if r.dbe_errors else "No",
        "temp_gpu": r.temp_gpu, "temp_tlimit": r.temp_tlimit, "temp_mem": r.temp_mem,
        "power_avg": f"{r.power_draw:.2f}", "power_instant": f"{r.power_draw:.2f}",
        "power_limit": f"{r.power_limit:.2f}", "mem_power_avg": f"{40 + r.power_draw / 12:.2f}",
        "clock_graphics": r.clock_sm, "clock_sm": r.clock_sm, "clock_mem": r.clock_mem,
        "clock_video": r.clock_video,
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


def _xml_supported_clocks(r: Readings) -> str:
    spec = r.product
    lines = ["\t\t<supported_clocks>"]
    for mem in (spec.mem_clock_mhz, spec.low_mem_clock_mhz):
        lines += ["\t\t\t<supported_mem_clock>", f"\t\t\t\t<value>{mem} MHz</value>"]
        lines += [f"\t\t\t\t<supported_graphics_clock>{g} MHz</supported_graphics_clock>"
                  for g in spec.supported_graphics_clocks()]
        lines.append("\t\t\t</supported_mem_clock>")
    lines.append("\t\t</supported_clocks>")
    return "\n".join(lines)


def _samples(name: str, window: tuple[str, int], high: object, low: object, avg: object,
             unit: str) -> list[str]:
    duration, count = window
    return [f"    {name}", kv(8, "Duration", duration), kv(8, "Number of Samples", count),
            kv(8, "Max", f"{high} {unit}"), kv(8, "Min", f"{low} {unit}"),
            kv(8, "Avg", f"{avg} {unit}")]


def _not_found(name: str) -> list[str]:
    return [f"    {name}", *(kv(8, k, NOT_FOUND) for k in
                             ("Duration", "Number of Samples", "Max", "Min", "Avg"))]


def _util_samples(r: Readings) -> list[list[str]]:
    """The sampling windows ``-d UTILIZATION`` adds: busy GPUs peak at 100 %, idle ones stay low."""
    gpu_max = min(100, r.util_gpu + 12) if r.busy else 0
    mem_max = min(100, r.util_mem + 6) if r.busy else 0
    blocks = [_samples("GPU Utilization Samples", UTIL_WINDOW, gpu_max, max(r.util_gpu - 9, 0),
                       r.util_gpu, "%"),
              _samples("Memory Utilization Samples", UTIL_WINDOW, mem_max, max(r.util_mem - 4, 0),
                       r.util_mem, "%")]
    return blocks + [_samples(f"{e} Utilization Samples", UTIL_WINDOW, 0, 0, 0, "%")
                     for e in ("ENC", "DEC", "JPG", "OFA")]


def _power_samples(r: Readings) -> list[str]:
    draw = r.power_draw
    return _samples("Power Samples", POWER_WINDOW, f"{draw + 1.08:.2f}", f"{max(draw - 0.6, 0):.2f}",
                    f"{draw:.2f}", "W")


def _supported_clocks(r: Readings) -> list[str]:
    lines = ["    Supported Clocks"]
    for mem in (r.product.mem_clock_mhz, r.product.low_mem_clock_mhz):
        lines.append(kv(8, "Memory", f"{mem} MHz"))
        lines += [kv(12, "Graphics", f"{g} MHz") for g in r.product.supported_graphics_clocks()]
    return lines


def _accounted(r: Readings) -> list[str]:
    return [kv(4, "Accounted Processes", "None")]


def _record(r: Readings, node: GpuNode) -> list[tuple[str, list[str]]]:
    """Every block ``-d`` can print for one GPU, in the real tool's order: the ``-q`` blocks
    with the ones only ``-d`` shows put where the ``-q -x`` record has them."""
    extra: dict[str, list[list[str]]] = {
        "Utilization": _util_samples(r),
        "GPU Power Readings": [_power_samples(r)],
        "Max Customer Boost Clocks": [_not_found("SM Clock Samples"),
                                      _not_found("Memory Clock Samples")],
        "Temperature": [["    Supported GPU_TARGET_TEMP", kv(8, "Min", "N/A"), kv(8, "Max", "N/A")]],
        "Fabric": [_supported_clocks(r)],
        "Processes": [_accounted(r)],
    }
    record: list[tuple[str, list[str]]] = []
    for key, block in _blocks(gpu_section(r, node)):
        record.append((key, block))
        record += [(_block_name(b[0]), b) for b in extra.get(key, [])]
    return record


def _block_name(line: str) -> str:
    return line.split(":")[0].strip()


def _blocks(section: list[str]) -> list[tuple[str, list[str]]]:
    """Split a GPU section into its top-level (4-space indented) blocks, keyed by name."""
    blocks: list[tuple[str, list[str]]] = []
    for line in section[1:]:
        if line.startswith("    ") and not line.startswith("     "):
            blocks.append((_block_name(line), [line]))
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
        if sections:
            section = [section[0]] + [ln for key, block in _record(r, node) if key in wanted
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
