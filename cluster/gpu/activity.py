"""What the processes holding each GPU are doing: the live part of the GPU inventory.

A real GPU is busy when the process it was given launches kernels. The drill's
workloads compute on the CPU, so the node agent measures each GPU-holding
container's CPU time (``/proc/<pid>/stat``: the serving model's requests, a
training job's epochs, an idle squatter's nothing) and reads it as the GPU's
utilisation. It writes the result beside the inventory state file, and every
GPU face (``nvidia-smi``, dcgm-exporter) overlays it on the inventory, so they
agree with each other and with the workload. The inventory stays what faults
edit; this file is never edited by anyone but the sampler.

The workloads stand for their GPU work by waiting (an epoch, an inference's device
time), which costs no CPU; they count those seconds with :class:`DeviceClock` in a
file of their own ``/dev/shm``, which the agent reads through ``/proc/<pid>/root`` as a
driver sees kernel time. A GPU's utilisation is the larger of that busy share and
``GAIN`` x the container's CPU share, over the last ``WINDOW_S`` seconds, capped at 100.

Approximations (no GPU here): the utilisation above; memory used = a CUDA context
plus the process's resident memory; power and temperature rise linearly with
utilisation from the product's idle figures.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from mlops_drill.cluster.gpu.model import GpuNode, GpuProcess

ACTIVITY_FILE = "activity.json"
#: A CPU share of 1 % reads as 10 % GPU: a serving pod at a few requests a second shows 10-40 %.
GAIN = 10.0
WINDOW_S = 3.0
PERIOD_S = 1.0
#: What a CUDA context of PyTorch holds on a Hopper board before any tensor (MiB).
CONTEXT_MIB = 518
IDLE_TEMP_C = 33
TEMP_PER_PCT = 0.3
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def busy_file(namespace: str, pod: str) -> str:
    """Where a container counts its GPU-busy seconds: its own /dev/shm (where CUDA and NCCL keep
    their segments too, out of the way of HOME=/tmp), named per pod for unsandboxed runs."""
    return f"/dev/shm/.nvidia-gpu-busy-{namespace}-{pod}"


class DeviceClock:
    """Seconds this process kept its GPUs busy, counted where the node agent reads them.

    Inert without GPUs (``NVIDIA_VISIBLE_DEVICES`` unset, ``void`` or ``none``) or outside a pod.
    """

    def __init__(self, environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
        visible = environ.get("NVIDIA_VISIBLE_DEVICES", "").strip().lower()
        pod = environ.get("POD_NAME", "")
        self.path = (Path(busy_file(environ.get("POD_NAMESPACE", ""), pod))
                     if pod and visible not in ("", "void", "none") else None)
        self.total = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        if self.path is None or seconds <= 0:
            return
        with self._lock:
            self.total += seconds
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                tmp.write_text(f"{self.total:.6f}")
                os.replace(tmp, self.path)
            except OSError:
                self.path = None  # no writable /tmp: the agent falls back to CPU time


class PodRef(BaseModel):
    """The pod a GPU was allocated to, as the kubelet's pod-resources API names it."""

    namespace: str
    pod: str
    container: str


class DeviceUse(BaseModel):
    holder: PodRef
    utilization_pct: int
    process: GpuProcess | None = None  # None while the container has no process (restarting)


@dataclass(frozen=True)
class Holder:
    """One GPU allocated to one running container, with the host pid of its process."""

    node: str
    uuid: str
    namespace: str
    pod: str
    container: str
    pid: int

    @property
    def busy_path(self) -> Path:
        """The container's busy counter as the host sees it (through the process's root)."""
        return Path(f"/proc/{self.pid}/root{busy_file(self.namespace, self.pod)}")


def read_activity(state_file: str | Path) -> dict[str, dict[str, DeviceUse]]:
    """node -> GPU UUID -> use; empty when the sampler has written nothing (kind, tests)."""
    path = Path(state_file).with_name(ACTIVITY_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    try:
        return {node: {uuid: DeviceUse.model_validate(use) for uuid, use in devices.items()}
                for node, devices in data.items()}
    except (AttributeError, ValueError):
        return {}


def overlay(node: GpuNode, uses: dict[str, DeviceUse]) -> GpuNode:
    """The node with its live use applied: utilisation, memory, processes, power, temperature.

    A device no pod holds keeps the inventory's figures (idle, or what a fault set).
    """
    if not uses:
        return node
    spec = node.spec
    devices = []
    for d in node.devices:
        use = uses.get(d.uuid)
        if use is None:
            devices.append(d)
            continue
        util = max(d.utilization_pct, use.utilization_pct)
        processes = d.processes + ([use.process] if use.process else [])
        devices.append(d.model_copy(update={
            "utilization_pct": util,
            "processes": processes,
            "power_draw_w": round(spec.idle_power_w + (spec.power_limit_w - spec.idle_power_w) * 0.8
                                  * util / 100, 2),
            "temperature_c": max(d.temperature_c, IDLE_TEMP_C + round(util * TEMP_PER_PCT)),
        }))
    return node.model_copy(update={"devices": devices})


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process, all its threads included."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])


def _busy_seconds(path: Path) -> float:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return 0.0


def _process(pid: int) -> GpuProcess | None:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return GpuProcess(pid=pid, name=name, used_memory_mib=CONTEXT_MIB + round(rss_pages * _PAGE_MIB))


class Sampler:
    """Keeps a few CPU-time samples per container and turns them into GPU use."""

    def __init__(self, state_file: Path) -> None:
        self.path = Path(state_file).with_name(ACTIVITY_FILE)
        self.samples: dict[int, deque[tuple[float, int, float]]] = {}
        self.written = ""

    def utilisation(self, pid: int, now: float, busy_path: Path | None = None) -> int:
        ticks = _cpu_ticks(pid)
        if ticks is None:
            return 0
        busy = _busy_seconds(busy_path) if busy_path is not None else 0.0
        window = self.samples.setdefault(pid, deque())
        window.append((now, ticks, busy))
        while len(window) > 2 and now - window[0][0] > WINDOW_S:
            window.popleft()
        (t0, c0, b0), (t1, c1, b1) = window[0], window[-1]
        if t1 - t0 <= 0:
            return 0
        cpu = (c1 - c0) / _TICK / (t1 - t0) * GAIN
        device = (b1 - b0) / (t1 - t0)
        return max(0, min(100, round(max(cpu, device) * 100)))

    def sample(self, holders: Iterable[Holder], now: float | None = None) -> dict[str, dict[str, DeviceUse]]:
        now = time.monotonic() if now is None else now
        uses: dict[str, dict[str, DeviceUse]] = {}
        live = set()
        for h in holders:
            live.add(h.pid)
            util = self.utilisation(h.pid, now, h.busy_path) if h.pid else 0
            uses.setdefault(h.node, {})[h.uuid] = DeviceUse(
                holder=PodRef(namespace=h.namespace, pod=h.pod, container=h.container),
                utilization_pct=util, process=_process(h.pid) if h.pid else None)
        for pid in set(self.samples) - live:
            del self.samples[pid]
        return uses

    def write(self, uses: dict[str, dict[str, DeviceUse]]) -> None:
        """Atomically replace the file, and only when something changed."""
        text = json.dumps({n: {u: use.model_dump(mode="json") for u, use in sorted(d.items())}
                           for n, d in sorted(uses.items())}, indent=1)
        if text == self.written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
        self.written = text


def holders_of(runners: Iterable[object]) -> list[Holder]:
    """GPU holders among the process kubelet's pod runners (duck-typed: gpus, node, pid...)."""
    out = []
    for r in runners:
        gpus = getattr(r, "gpus", None)
        if not gpus or getattr(r, "stopping", False):
            continue
        spec = getattr(r, "spec", None)
        container = getattr(spec, "container", "") or "app"
        for uuid in gpus:
            out.append(Holder(node=r.node, uuid=uuid, namespace=r.namespace, pod=r.name,
                              container=container, pid=int(getattr(r, "container_pid", 0) or 0)))
    return out
