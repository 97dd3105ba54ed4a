"""``python -m mlops_drill.cluster.gpu.deviceplugin``: the DaemonSet container's entry point.

Logs in klog's layout, as the real NVIDIA device plugin does, so ``kubectl logs`` of the
plugin pod reads like the real one. Exits non-zero when the inventory says the plugin or the
driver is down, so the pod crash-loops the way a real node shows it.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from mlops_drill.cluster.gpu.deviceplugin.plugin import (
    DEFAULT_NVIDIA_SMI_HOST_PATH,
    DEFAULT_PLUGIN_DIR,
    NvidiaDevicePlugin,
    PluginCrashed,
)
from mlops_drill.cluster.gpu.deviceplugin.source import JsonFileSource
from mlops_drill.errors import DrillError


class KlogFormatter(logging.Formatter):
    """``I0822 08:51:42.921468       1 plugin.py:154] message``"""

    def format(self, record: logging.LogRecord) -> str:
        level = {"WARNING": "W", "ERROR": "E", "CRITICAL": "F"}.get(record.levelname, "I")
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        return (f"{level}{stamp}.{micros:06d} {record.process:7d} "
                f"{record.filename}:{record.lineno}] {record.getMessage()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlops_drill.cluster.gpu.deviceplugin",
                                     description="Fake NVIDIA kubelet device plugin (v1beta1).")
    parser.add_argument("--plugin-dir", type=Path, default=DEFAULT_PLUGIN_DIR,
                        help="kubelet device-plugin directory holding kubelet.sock")
    parser.add_argument("--state", type=Path, required=True,
                        help="GPU inventory JSON (one node, or {node: inventory})")
    parser.add_argument("--node", default=os.environ.get("NODE_NAME"),
                        help="this node's name (default: $NODE_NAME)")
    parser.add_argument("--nvidia-smi-host-path", type=Path, default=DEFAULT_NVIDIA_SMI_HOST_PATH,
                        help="fake nvidia-smi on the node, mounted at /usr/bin/nvidia-smi")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="seconds between inventory reads")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KlogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    log = logging.getLogger("mlops_drill.cluster.gpu.deviceplugin")
    if not args.node:
        print("error: --node is required (or set NODE_NAME)", file=sys.stderr)
        return 2
    plugin = NvidiaDevicePlugin(JsonFileSource(args.state, args.node), args.plugin_dir,
                                nvidia_smi_host_path=args.nvidia_smi_host_path,
                                inventory_host_path=args.state, poll_interval=args.poll_interval)

    # The handler only records the request: a signal can land while start() is half done (the
    # kubelet often sends SIGTERM right after registration), and stopping from inside the
    # handler would tear down what start() is still building.
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info('Received signal "%s", shutting down.', signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        plugin.start()
        while not stop_requested.is_set():
            if plugin.wait(timeout=0.2):  # short waits keep the main thread signal-responsive
                break
    except (PluginCrashed, DrillError) as err:
        log.critical("%s", err)
        return 1
    finally:
        plugin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
