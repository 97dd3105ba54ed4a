"""The container log of the NVIDIA k8s-device-plugin (v0.17.x) for one node, from the model.

On the embedded backend the plugin pods are KWOK pods, so their ``kubectl logs`` is
rendered here. Lines are klog's (``I1125 02:01:27.000123       1 main.go:235] ...``);
messages and ``file:line`` tags are those of real v0.17 logs posted publicly (start-up,
the two NVML failure paths of ``factory.go``); the health-check lines for Xid events use
tags seen in a later release (marked APPROX below).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib.resources import files

from mlops_drill.cluster.gpu.model import GpuNode, XidEvent

VERSION_COMMIT = "e0a461e1e7ad1d239d4708c954f08c3038e2654a"  # v0.17.3
RESOURCE = "nvidia.com/gpu"
SOCKET = "/var/lib/kubelet/device-plugins/nvidia-gpu.sock"
HELP_LINES = [
    "You can check the prerequisites at: https://github.com/NVIDIA/k8s-device-plugin#prerequisites",
    "You can learn how to set the runtime at: https://github.com/NVIDIA/k8s-device-plugin#quick-start",
    "If this is not a GPU node, you should set up a toleration or nodeSelector to only deploy "
    "this plugin on GPU nodes",
]
NVML_ERRORS = {"library-mismatch": "ERROR_LIB_RM_VERSION_MISMATCH"}
EVENT_TYPE_XID_CRITICAL = 8
NO_INSTANCE = 4294967295


@cache
def _config_dump() -> str:
    text = files("mlops_drill.cluster.gpu.templates").joinpath("plugin_config.json").read_text(
        encoding="utf-8")
    json.loads(text)  # the template must stay the JSON the plugin prints
    return text.rstrip("\n")


class _Klog:
    """Formats klog lines at strictly increasing, deterministic timestamps."""

    def __init__(self, start: datetime) -> None:
        self.at = start
        self.lines: list[str] = []

    def __call__(self, level: str, where: str, msg: str, step_us: int = 40,
                 at: datetime | None = None) -> None:
        self.at = at if at is not None else self.at + timedelta(microseconds=step_us)
        stamp = self.at.strftime("%m%d %H:%M:%S.%f")
        self.lines.append(f"{level}{stamp}       1 {where}] {msg}")


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment


def _event_time(event: XidEvent, started_at: datetime) -> datetime:
    if event.at == 0:  # "when the fault was applied": shortly after the plugin came up
        return started_at + timedelta(seconds=2, microseconds=417303)
    when = datetime.fromtimestamp(event.at, tz=timezone.utc)
    return when if started_at.tzinfo else when.replace(tzinfo=None)


def device_plugin_log(node: GpuNode, started_at: datetime) -> str:
    """Everything the plugin container has printed since ``started_at`` (its start)."""
    started_at = _utc(started_at)
    log = _Klog(started_at)
    log("I", "main.go:235", '"Starting NVIDIA Device Plugin" version=<\n'
        f"        {VERSION_COMMIT[:8]}\n        commit: {VERSION_COMMIT}\n >", step_us=120)
    log("I", "main.go:238", "Starting FS watcher for /var/lib/kubelet/device-plugins")
    log("I", "main.go:245", "Starting OS watcher.")
    log("I", "main.go:260", "Starting Plugins.", step_us=260)
    log("I", "main.go:317", "Loading configuration.")
    log("I", "main.go:342", "Updating config with default resource matching patterns.", step_us=900)
    log("I", "main.go:353", "\nRunning with config:\n" + _config_dump(), step_us=300)
    log("I", "main.go:356", "Retrieving plugins.")

    if node.driver_state == "missing":
        # No usable libnvidia-ml: platform detection fails before NVML is even tried.
        log("E", "factory.go:112", "Incompatible strategy detected auto", step_us=150)
        log("E", "factory.go:113", "If this is a GPU node, did you configure the NVIDIA Container Toolkit?")
        for n, text in enumerate(HELP_LINES, start=114):
            log("E", f"factory.go:{n}", text)
        log("I", "main.go:381", "No devices found. Waiting indefinitely.")
        return "\n".join(log.lines) + "\n"
    if node.driver_state in NVML_ERRORS:
        err = NVML_ERRORS[node.driver_state]
        log("E", "factory.go:93", f"Failed to initialize NVML: {err}.", step_us=3600)
        log("E", "factory.go:94",
            "If this is a GPU node, did you set the docker default runtime to `nvidia`?")
        for n, text in enumerate(HELP_LINES, start=95):
            log("E", f"factory.go:{n}", text)
        log("W", "factory.go:101", f"nvml init failed: {err}")
        log("I", "main.go:381", "No devices found. Waiting indefinitely.")
        return "\n".join(log.lines) + "\n"

    log("I", "server.go:195", f"Starting GRPC server for '{RESOURCE}'", step_us=24000)
    log("I", "server.go:139", f"Starting to serve '{RESOURCE}' on {SOCKET}", step_us=600)
    log("I", "server.go:146", f"Registered device plugin for '{RESOURCE}' with Kubelet", step_us=1900)

    uuids = {d.index: d.uuid for d in node.devices}
    events = sorted((e for e in node.xid_events if e.device_index in uuids),
                    key=lambda e: _event_time(e, started_at))
    for event in events:
        when = _event_time(event, started_at)
        if when < log.at:
            continue  # before this container started: a restarted plugin never sees it
        uuid = uuids[event.device_index]
        # APPROX: health.go/server.go line tags are from a later release than v0.17.
        log("I", "health.go:162", "Processing event {Device:{Handle:0x7f3c1c0008e8} "
            f"EventType:{EVENT_TYPE_XID_CRITICAL} EventData:{event.xid} "
            f"GpuInstanceId:{NO_INSTANCE} ComputeInstanceId:{NO_INSTANCE}}}", at=when)
        log("I", "health.go:169",
            f"XidCriticalError: Xid={event.xid} on Device={uuid}; marking device as unhealthy.",
            step_us=310)
        log("I", "server.go:278", f"'{RESOURCE}' device marked unhealthy: {uuid}", step_us=700)
    return "\n".join(log.lines) + "\n"
