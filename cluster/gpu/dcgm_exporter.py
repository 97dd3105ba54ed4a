"""dcgm-exporter's face of the GPU inventory: ``/metrics`` on port 9400, as the GPU Operator runs it.

On a real cluster engineers read GPU utilisation, memory, power and Xid errors from
NVIDIA's dcgm-exporter, through Prometheus or straight from
``kubectl port-forward -n gpu-operator svc/dcgm-exporter 9400`` + ``curl``.
This container renders that page from the inventory plus the live use of each GPU
(``activity.py``), so it agrees with ``nvidia-smi`` and follows the workloads.

The format is written from dcgm-exporter's public documentation and counter lists
(``etc/dcp-metrics-included.csv``, the list the GPU Operator deploys): per counter a
``# HELP`` and ``# TYPE`` line, then one series per GPU labelled ``gpu``, ``UUID``,
``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION``
(a ``label`` field of that list) and, for a GPU allocated to a pod (the kubelet's
pod-resources API), ``container``, ``namespace`` and ``pod``. Integer fields print
as integers, floating-point fields with six decimals, as the exporter formats them.

Left out, as the real exporter leaves out blank fields: ``DCGM_FI_DEV_VGPU_LICENSE_STATUS``
(no vGPU here). A GPU that fell off the bus (Xid 79) answers no field but the Xid.
A broken driver leaves the page without GPU series (the exporter keeps running, so a
reset does not wait for its restart back-off).
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.smi_readings import XID_FELL_OFF_BUS, Readings, node_readings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PORT = 9400
STARTUP_LOG = (
    'level=info msg="Starting dcgm-exporter"',
    'level=info msg="DCGM successfully initialized!"',
    'level=info msg="Collecting DCP Metrics"',
    'level=info msg="Falling back to metric file \'/etc/dcgm-exporter/dcp-metrics-included.csv\'"',
    'level=info msg="Initializing system entities of type: GPU"',
    'level=info msg="Kubernetes metrics collection enabled!"',
    'level=info msg="Starting webserver"',
    f'level=info msg="Listening on" address="[::]:{PORT}"',
)


@dataclass(frozen=True)
class Counter:
    field: str
    kind: str  # gauge | counter
    help: str
    floating: bool = False


# dcp-metrics-included.csv, in its order (the page lists counters in the order of the list).
COUNTERS: tuple[Counter, ...] = (
    Counter("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    Counter("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    Counter("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    Counter("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    Counter("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", floating=True),
    Counter("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    Counter("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    Counter("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    Counter("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    Counter("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    Counter("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    Counter("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    Counter("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    Counter("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    Counter("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    Counter("DCGM_FI_DEV_RETIRED_SBE", "counter", "Total number of retired pages due to single-bit errors."),
    Counter("DCGM_FI_DEV_RETIRED_DBE", "counter", "Total number of retired pages due to double-bit errors."),
    Counter("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter",
            "Total number of NVLink bandwidth counters for all lanes."),
    Counter("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter",
            "Number of remapped rows for uncorrectable errors"),
    Counter("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    Counter("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    Counter("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active.",
            floating=True),
    Counter("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active.",
            floating=True),
    Counter("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
            "Ratio of cycles the device memory interface is active sending or receiving data.", floating=True),
    Counter("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge",
            "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads "
            "- in bytes per second.", floating=True),
    Counter("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge",
            "The rate of data received over the PCIe bus - including both protocol headers and data payloads "
            "- in bytes per second.", floating=True),
)
COUNTER_NAMES = tuple(c.field for c in COUNTERS)


@dataclass
class Clock:
    """Counters that integrate over time (energy, NVLink traffic), kept per device by the exporter."""

    since: dict[str, tuple[float, float, float]]  # uuid -> (monotonic time, energy mJ, nvlink)

    def advance(self, r: Readings, now: float) -> tuple[int, int]:
        last = self.since.get(r.uuid)
        if last is None:
            # Energy since boot: a board up for about a week at idle draw (stable per device).
            boot_s = 6 * 86400 + int(hashlib.sha256(r.uuid.encode()).hexdigest()[:5], 16) % 86400
            last = (now, r.power_draw * boot_s * 1000, 0.0)
        t, energy, nvlink = last
        dt = max(now - t, 0.0)
        energy += r.power_draw * dt * 1000
        nvlink += (r.util_gpu / 100) * dt * 2_000_000 if r.product.nvlinks else 0.0
        self.since[r.uuid] = (now, energy, nvlink)
        return int(energy), int(nvlink)


def _last_xid(node: GpuNode, index: int) -> int:
    xids = [e for e in node.xid_events if e.device_index == index]
    return max(xids, key=lambda e: e.at).xid if xids else 0


def _values(node: GpuNode, r: Readings, energy: int, nvlink: int) -> dict[str, float | int]:
    busy = r.util_gpu / 100
    return {
        "DCGM_FI_DEV_SM_CLOCK": r.clock_sm, "DCGM_FI_DEV_MEM_CLOCK": r.clock_mem,
        "DCGM_FI_DEV_MEMORY_TEMP": r.temp_mem, "DCGM_FI_DEV_GPU_TEMP": r.temp_gpu,
        "DCGM_FI_DEV_POWER_USAGE": r.power_draw, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": energy,
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 0, "DCGM_FI_DEV_GPU_UTIL": r.util_gpu,
        "DCGM_FI_DEV_MEM_COPY_UTIL": r.util_mem, "DCGM_FI_DEV_ENC_UTIL": 0, "DCGM_FI_DEV_DEC_UTIL": 0,
        "DCGM_FI_DEV_XID_ERRORS": _last_xid(node, r.index),
        "DCGM_FI_DEV_FB_FREE": r.mem_free, "DCGM_FI_DEV_FB_USED": r.mem_used,
        "DCGM_FI_DEV_FB_RESERVED": r.mem_reserved,
        "DCGM_FI_DEV_RETIRED_SBE": 0, "DCGM_FI_DEV_RETIRED_DBE": 0,
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": nvlink,
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": r.dbe_errors, "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": 0,
        "DCGM_FI_DEV_ROW_REMAP_FAILURE": 0,
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE": busy, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": busy * 0.42,
        "DCGM_FI_PROF_DRAM_ACTIVE": r.util_mem / 100,
        "DCGM_FI_PROF_PCIE_TX_BYTES": 819200 + 40960.0 * r.util_gpu,
        "DCGM_FI_PROF_PCIE_RX_BYTES": 419840 + 20480.0 * r.util_gpu,
    }


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(node: GpuNode, r: Readings, hostname: str, holders: dict[str, tuple[str, str, str]]) -> str:
    pairs = [("gpu", str(r.index)), ("UUID", r.uuid), ("pci_bus_id", r.bus_id), ("device", f"nvidia{r.index}"),
             ("modelName", r.name), ("Hostname", hostname), ("DCGM_FI_DRIVER_VERSION", node.driver_version)]
    if r.uuid in holders:
        namespace, pod, container = holders[r.uuid]
        pairs += [("container", container), ("namespace", namespace), ("pod", pod)]
    return ",".join(f'{k}="{_quote(v)}"' for k, v in pairs)


def _number(value: float | int, floating: bool) -> str:
    return f"{float(value):f}" if floating else str(int(value))


def render(node: GpuNode, hostname: str, holders: dict[str, tuple[str, str, str]], clock: Clock,
           now: float | None = None) -> str:
    """The whole ``/metrics`` page for one node's GPUs."""
    now = time.monotonic() if now is None else now
    devices = [] if node.driver_state != "ok" else node_readings(node)
    series: dict[str, list[str]] = {c.field: [] for c in COUNTERS}
    for r in devices:
        lab = labels(node, r, hostname, holders)
        if r.lost:  # DCGM answers nothing for a GPU it cannot reach, but the Xid
            series["DCGM_FI_DEV_XID_ERRORS"].append(f"DCGM_FI_DEV_XID_ERRORS{{{lab}}} {XID_FELL_OFF_BUS}")
            continue
        energy, nvlink = clock.advance(r, now)
        values = _values(node, r, energy, nvlink)
        for c in COUNTERS:
            series[c.field].append(f"{c.field}{{{lab}}} {_number(values[c.field], c.floating)}")
    lines = []
    for c in COUNTERS:
        lines += [f"# HELP {c.field} {c.help}", f"# TYPE {c.field} {c.kind}", *series[c.field]]
    return "\n".join(lines) + "\n"


def holders_of(state_file: str, node_name: str) -> dict[str, tuple[str, str, str]]:
    """GPU UUID -> (namespace, pod, container), as the kubelet's pod-resources API tells it.

    On a seat of a shared cluster the namespace loses the seat's prefix, as every answer
    the seat's candidate gets does (the page is read through a port-forward, not the gateway).
    """
    from mlops_drill.cluster.gpu.activity import read_activity
    from mlops_drill.cluster.seats.names import split

    return {uuid: (split(use.holder.namespace)[1], use.holder.pod, use.holder.container)
            for uuid, use in read_activity(state_file).get(node_name, {}).items()}


def main() -> int:
    from mlops_drill.cluster.gpu.nvidia_smi import STATE_ENV, StateError, load_node

    clock = Clock({})
    lock = threading.Lock()
    from mlops_drill.cluster.seats.names import split

    hostname = split(os.environ.get("NODE_NAME") or os.uname().nodename)[1]  # a seat sees gpu-node-0

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] == "/health":
                return self._send(200, "text/plain; charset=utf-8", "OK")
            if self.path.split("?")[0] != "/metrics":
                return self._send(404, "text/plain; charset=utf-8", "404 page not found\n")
            try:
                node = load_node(os.environ)
                holders = holders_of(os.environ.get(STATE_ENV, ""), node.node_name)
            except StateError as err:
                print(f'level=error msg="{err}"', file=sys.stderr, flush=True)
                return self._send(200, CONTENT_TYPE, "")
            with lock:
                page = render(node, hostname, holders, clock)
            self._send(200, CONTENT_TYPE, page)

        def _send(self, code: int, ctype: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # the real exporter does not log each scrape
            return

    port = int(os.environ.get("PORT", PORT))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    for line in STARTUP_LOG:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f'time="{stamp}" {line}', file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
