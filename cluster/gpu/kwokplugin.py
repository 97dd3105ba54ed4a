"""The device-plugin container of the embedded backend (DaemonSet ``nvidia-device-plugin-daemonset``).

It runs as a process-backed pod on each GPU node and prints what the real
NVIDIA k8s-device-plugin prints for that node's GPUs, following the inventory
as faults change it (Xid health events appear in ``kubectl logs -f``). When the
inventory says the plugin is crashed it dies the way the real one does on a
lost GPU, so the pod really goes into CrashLoopBackOff with restarts counting.
Node capacity itself is published by the device manager, as the kubelet does.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
import time

from mlops_drill.cluster.gpu.nvidia_smi import STATE_ENV, StateError, load_node
from mlops_drill.cluster.gpu.plugin_logs import device_plugin_log

POLL_S = 0.5


def _fatal(started: dt.datetime, node) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%m%d %H:%M:%S.%f")
    lost = next((e.device_index for e in node.xid_events if e.xid == 79), 0)
    bus = node.devices[lost].pci_bus_id if node.devices else "00000000:18:00.0"
    return (f"E{stamp}       1 main.go:173] error starting plugins: error creating plugin manager: unable to "
            f"create plugin manager: failed to construct NVML resource managers: error building device map: "
            f"error visiting device: error visiting device {lost} ({bus}): error getting device handle: GPU is lost")


def main() -> int:
    started = dt.datetime.now(dt.timezone.utc)
    printed = 0
    seen: tuple[int, int] | None = None
    while True:
        # The log is a function of the inventory file alone: unchanged file, nothing new to print. The file
        # holds every GPU node of the cluster (a shared cluster has two per seat), so re-reading it twice a
        # second in every plugin pod cost CPU in proportion to seats x seats.
        stamp = _stamp(os.environ.get(STATE_ENV))
        if stamp is not None and stamp == seen:
            time.sleep(POLL_S)
            continue
        try:
            node = load_node(os.environ)
        except StateError:  # inventory not written yet: the real plugin also waits for NVML
            time.sleep(POLL_S)
            continue
        lines = device_plugin_log(node, started).splitlines()
        if node.plugin_state == "crashed":
            # The plugin re-initialises NVML on restart and fails on the lost GPU.
            head = lines[: next((i for i, ln in enumerate(lines) if "Retrieving plugins" in ln), len(lines)) + 1]
            for line in (lines[printed:] if printed else head):
                print(line, flush=True)
            print(_fatal(started, node), file=sys.stderr, flush=True)
            return 1
        for line in lines[printed:]:
            print(line, flush=True)
        printed = len(lines)
        seen = stamp
        time.sleep(POLL_S)


def _stamp(path: str | None) -> tuple[int, int] | None:
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st else None


if __name__ == "__main__":
    sys.exit(main())
