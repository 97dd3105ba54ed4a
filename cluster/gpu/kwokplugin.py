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

from mlops_drill.cluster.gpu.nvidia_smi import StateError, load_node
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
    while True:
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
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main())
