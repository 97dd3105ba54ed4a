"""``--query-gpu=...`` and ``--query-compute-apps=...`` with ``--format=csv[,noheader][,nounits]``.

Scripts (exporters, schedulers, the candidate's one-liners) parse this output, so field
names, header spelling (an alias is echoed under its canonical name, e.g. ``clocks.sm``
as ``clocks.current.sm [MHz]``), units and the error for an unknown field follow the
real tool exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from mlops_drill.cluster.gpu.model import GpuNode, GpuProcess
from mlops_drill.cluster.gpu.smi_readings import Readings

NA = "[N/A]"


@dataclass(frozen=True)
class Field:
    header: str
    unit: str  # "" when the real tool prints the value bare
    value: Callable[[Readings, GpuNode, datetime], object]


def _w(x: float) -> str:
    return f"{x:.2f}"


def _stamp(now: datetime) -> str:
    return now.strftime("%Y/%m/%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"


GPU_FIELDS: dict[str, Field] = {
    "timestamp": Field("timestamp", "", lambda r, n, t: _stamp(t)),
    "driver_version": Field("driver_version", "", lambda r, n, t: n.driver_version),
    "count": Field("count", "", lambda r, n, t: len(n.devices)),
    "name": Field("name", "", lambda r, n, t: r.name),
    "serial": Field("serial", "", lambda r, n, t: r.serial),
    "uuid": Field("uuid", "", lambda r, n, t: r.uuid),
    "pci.bus_id": Field("pci.bus_id", "", lambda r, n, t: r.bus_id),
    "pci.domain": Field("pci.domain", "", lambda r, n, t: "0x" + r.pci_parts[0]),
    "pci.bus": Field("pci.bus", "", lambda r, n, t: "0x" + r.pci_parts[1]),
    "pci.device": Field("pci.device", "", lambda r, n, t: "0x" + r.pci_parts[2]),
    "pci.device_id": Field("pci.device_id", "", lambda r, n, t: r.product.device_id),
    "pci.sub_device_id": Field("pci.sub_device_id", "", lambda r, n, t: r.product.subsystem_id),
    "index": Field("index", "", lambda r, n, t: r.index),
    "persistence_mode": Field("persistence_mode", "", lambda r, n, t: "Enabled"),
    "accounting.mode": Field("accounting.mode", "", lambda r, n, t: "Disabled"),
    "display_active": Field("display_active", "", lambda r, n, t: "Disabled"),
    "driver_model.current": Field("driver_model.current", "", lambda r, n, t: NA),
    "vbios_version": Field("vbios_version", "", lambda r, n, t: r.product.vbios),
    "compute_mode": Field("compute_mode", "", lambda r, n, t: "Default"),
    "compute_cap": Field("compute_cap", "", lambda r, n, t: r.product.compute_cap),
    "pstate": Field("pstate", "", lambda r, n, t: r.pstate),
    "fan.speed": Field("fan.speed", "%", lambda r, n, t: NA),
    "pcie.link.gen.current": Field("pcie.link.gen.current", "", lambda r, n, t: 5),
    "pcie.link.gen.max": Field("pcie.link.gen.max", "", lambda r, n, t: 5),
    "pcie.link.width.current": Field("pcie.link.width.current", "", lambda r, n, t: 16),
    "pcie.link.width.max": Field("pcie.link.width.max", "", lambda r, n, t: 16),
    "memory.total": Field("memory.total", "MiB", lambda r, n, t: r.mem_total),
    "memory.reserved": Field("memory.reserved", "MiB", lambda r, n, t: r.mem_reserved),
    "memory.used": Field("memory.used", "MiB", lambda r, n, t: r.mem_used),
    "memory.free": Field("memory.free", "MiB", lambda r, n, t: r.mem_free),
    "utilization.gpu": Field("utilization.gpu", "%", lambda r, n, t: r.util_gpu),
    "utilization.memory": Field("utilization.memory", "%", lambda r, n, t: r.util_mem),
    "temperature.gpu": Field("temperature.gpu", "", lambda r, n, t: r.temp_gpu),
    "temperature.gpu.tlimit": Field("temperature.gpu.tlimit", "",
                                    lambda r, n, t: r.temp_tlimit),
    "temperature.memory": Field("temperature.memory", "", lambda r, n, t: r.temp_mem),
    "power.draw": Field("power.draw", "W", lambda r, n, t: _w(r.power_draw)),
    "power.draw.average": Field("power.draw.average", "W", lambda r, n, t: _w(r.power_draw)),
    "power.draw.instant": Field("power.draw.instant", "W", lambda r, n, t: _w(r.power_draw)),
    "power.limit": Field("power.limit", "W", lambda r, n, t: _w(r.power_limit)),
    "enforced.power.limit": Field("enforced.power.limit", "W", lambda r, n, t: _w(r.power_limit)),
    "power.default_limit": Field("power.default_limit", "W", lambda r, n, t: _w(r.product.power_limit_w)),
    "power.min_limit": Field("power.min_limit", "W", lambda r, n, t: _w(r.product.min_power_limit_w)),
    "power.max_limit": Field("power.max_limit", "W", lambda r, n, t: _w(r.product.power_limit_w)),
    "clocks.current.graphics": Field("clocks.current.graphics", "MHz", lambda r, n, t: r.clock_sm),
    "clocks.current.sm": Field("clocks.current.sm", "MHz", lambda r, n, t: r.clock_sm),
    "clocks.current.memory": Field("clocks.current.memory", "MHz", lambda r, n, t: r.clock_mem),
    "clocks.current.video": Field("clocks.current.video", "MHz",
                                  lambda r, n, t: r.clock_video),
    "clocks.max.graphics": Field("clocks.max.graphics", "MHz", lambda r, n, t: r.product.max_sm_clock_mhz),
    "clocks.max.sm": Field("clocks.max.sm", "MHz", lambda r, n, t: r.product.max_sm_clock_mhz),
    "clocks.max.memory": Field("clocks.max.memory", "MHz",
                               lambda r, n, t: r.product.mem_clock_mhz),
    "clocks_event_reasons.active": Field(
        "clocks_event_reasons.active", "",
        lambda r, n, t: "0x0000000000000000" if r.busy else "0x0000000000000001"),
    "mig.mode.current": Field("mig.mode.current", "", lambda r, n, t: r.mig_mode),
    "mig.mode.pending": Field("mig.mode.pending", "", lambda r, n, t: r.mig_mode),
    "ecc.mode.current": Field("ecc.mode.current", "", lambda r, n, t: "Enabled"),
    "ecc.mode.pending": Field("ecc.mode.pending", "", lambda r, n, t: "Enabled"),
    "ecc.errors.corrected.volatile.total": Field(
        "ecc.errors.corrected.volatile.total", "", lambda r, n, t: 0),
    "ecc.errors.corrected.aggregate.total": Field(
        "ecc.errors.corrected.aggregate.total", "", lambda r, n, t: 0),
    "ecc.errors.uncorrected.volatile.total": Field(
        "ecc.errors.uncorrected.volatile.total", "", lambda r, n, t: r.dbe_errors),
    "ecc.errors.uncorrected.aggregate.total": Field(
        "ecc.errors.uncorrected.aggregate.total", "", lambda r, n, t: r.dbe_errors),
}

GPU_ALIASES = {
    "gpu_name": "name", "gpu_serial": "serial", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
    "clocks.gr": "clocks.current.graphics", "clocks.sm": "clocks.current.sm",
    "clocks.mem": "clocks.current.memory", "clocks.video": "clocks.current.video",
    "clocks.max.gr": "clocks.max.graphics", "clocks.max.mem": "clocks.max.memory",
    "clocks_throttle_reasons.active": "clocks_event_reasons.active",
    "pcie.link.gen.gpucurrent": "pcie.link.gen.current", "pcie.link.gen.gpumax": "pcie.link.gen.max",
    "temperature.gpu_tlimit": "temperature.gpu.tlimit", "persistence.mode": "persistence_mode",
    "mig.mode": "mig.mode.current",
}

AppValue = Callable[[GpuProcess, Readings, datetime], object]
APP_FIELDS: dict[str, tuple[str, str, AppValue]] = {
    "timestamp": ("timestamp", "", lambda p, r, t: _stamp(t)),
    "gpu_name": ("gpu_name", "", lambda p, r, t: r.name),
    "gpu_bus_id": ("gpu_bus_id", "", lambda p, r, t: r.bus_id),
    "gpu_serial": ("gpu_serial", "", lambda p, r, t: r.serial),
    "gpu_uuid": ("gpu_uuid", "", lambda p, r, t: r.uuid),
    "pid": ("pid", "", lambda p, r, t: p.pid),
    "process_name": ("process_name", "", lambda p, r, t: p.name),
    "used_gpu_memory": ("used_gpu_memory", "MiB", lambda p, r, t: p.used_memory_mib),
}
APP_ALIASES = {"name": "process_name", "used_memory": "used_gpu_memory"}


class CsvError(Exception):
    """A query nvidia-smi itself rejects; ``str()`` is the tool's own message."""


def parse_format(spec: str) -> tuple[bool, bool]:
    """``csv[,noheader][,nounits]`` -> (header, units)."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts or parts[0] != "csv" or any(p not in ("noheader", "nounits") for p in parts[1:]):
        raise CsvError(f'"{spec}" is not a valid format.')
    return "noheader" not in parts, "nounits" not in parts


def _names(spec: str) -> list[str]:
    return [f.strip() for f in spec.split(",") if f.strip()]


def _cell(value: object, unit: str, units: bool) -> str:
    text = str(value)
    return f"{text} {unit}" if unit and units and not text.startswith("[") else text


def _head(header: str, unit: str) -> str:
    return f"{header} [{unit}]" if unit else header


def query_gpu(node: GpuNode, devices: list[Readings], spec: str, header: bool, units: bool,
              now: datetime) -> str:
    fields: list[Field] = []
    for name in _names(spec):
        canonical = GPU_ALIASES.get(name, name)
        if canonical not in GPU_FIELDS:
            raise CsvError(f'Field "{name}" is not a valid field to query.')
        fields.append(GPU_FIELDS[canonical])
    lines = [", ".join(_head(f.header, f.unit) for f in fields)] if header else []
    for r in devices:
        if r.lost:
            lines += [r.handle_error(), ", ".join(["[Unknown Error]"] * len(fields))]
            continue
        lines.append(", ".join(_cell(f.value(r, node, now), f.unit, units) for f in fields))
    return "\n".join(lines) + "\n" if lines else ""


def query_apps(devices: list[Readings], spec: str, header: bool, units: bool,
               now: datetime) -> str:
    fields = []
    for name in _names(spec):
        canonical = APP_ALIASES.get(name, name)
        if canonical not in APP_FIELDS:
            raise CsvError(f'Field "{name}" is not a valid field to query.')
        fields.append(APP_FIELDS[canonical])
    lines = [", ".join(_head(h, u) for h, u, _ in fields)] if header else []
    for r in devices:
        if r.lost:
            continue
        for p in r.processes:
            lines.append(", ".join(_cell(get(p, r, now), u, units) for _, u, get in fields))
    return "\n".join(lines) + "\n" if lines else ""
