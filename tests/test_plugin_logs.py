"""The device-plugin pod log a candidate reads with ``kubectl logs``, healthy and faulty."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from mlops_drill.cluster.gpu.model import XidEvent, new_node
from mlops_drill.cluster.gpu.plugin_logs import device_plugin_log

START = datetime(2026, 11, 25, 2, 1, 27, tzinfo=timezone.utc)
KLOG = re.compile(r"^([IWE])(\d{4} \d\d:\d\d:\d\d\.\d{6}) {7}1 ([a-z_-]+\.go:\d+)\] (.*)$")
REGISTERED = "Registered device plugin for 'nvidia.com/gpu' with Kubelet"


def entries(log: str) -> list[tuple[str, datetime, str, str]]:
    """(level, time, file:line, message) of each klog line; continuation lines are skipped."""
    out = []
    for line in log.splitlines():
        m = KLOG.match(line)
        if m:
            when = datetime.strptime(f"2026{m.group(2)}", "%Y%m%d %H:%M:%S.%f")
            out.append((m.group(1), when, m.group(3), m.group(4)))
    return out


def messages(log: str) -> list[str]:
    return [e[3] for e in entries(log)]


def test_healthy_start_up_registers_with_the_kubelet() -> None:
    log = device_plugin_log(new_node("gpu-node-0"), START)
    found = entries(log)
    assert [e[2] for e in found] == ["main.go:235", "main.go:238", "main.go:245", "main.go:260",
                                     "main.go:317", "main.go:342", "main.go:353", "main.go:356",
                                     "server.go:195", "server.go:139", "server.go:146"]
    assert messages(log)[-4:] == [
        "Retrieving plugins.",
        "Starting GRPC server for 'nvidia.com/gpu'",
        "Starting to serve 'nvidia.com/gpu' on /var/lib/kubelet/device-plugins/nvidia-gpu.sock",
        REGISTERED,
    ]
    times = [e[1] for e in found]
    assert times == sorted(times) and times[0] >= START.replace(tzinfo=None)
    assert all(e[0] == "I" for e in found)


def test_config_dump_is_the_json_the_plugin_runs_with() -> None:
    log = device_plugin_log(new_node("gpu-node-0"), START)
    dump = log.split("Running with config:\n", 1)[1].split("\nI1125", 1)[0]
    config = json.loads(dump)
    assert config["resources"]["gpus"] == [{"pattern": "*", "name": "nvidia.com/gpu"}]
    assert config["flags"]["failOnInitError"] is False


def test_library_mismatch_logs_nvml_failure_and_serves_nothing() -> None:
    node = new_node("gpu-node-0")
    node.driver_state = "library-mismatch"
    log = device_plugin_log(node, START)
    assert "E1125 02:01:27" in log
    assert messages(log)[8:] == [
        "Failed to initialize NVML: ERROR_LIB_RM_VERSION_MISMATCH.",
        "If this is a GPU node, did you set the docker default runtime to `nvidia`?",
        "You can check the prerequisites at: https://github.com/NVIDIA/k8s-device-plugin#prerequisites",
        "You can learn how to set the runtime at: https://github.com/NVIDIA/k8s-device-plugin#quick-start",
        "If this is not a GPU node, you should set up a toleration or nodeSelector to only deploy "
        "this plugin on GPU nodes",
        "nvml init failed: ERROR_LIB_RM_VERSION_MISMATCH",
        "No devices found. Waiting indefinitely.",
    ]


def test_missing_driver_asks_about_the_container_toolkit() -> None:
    node = new_node("gpu-node-0")
    node.driver_state = "missing"
    msgs = messages(device_plugin_log(node, START))
    assert msgs[8:10] == ["Incompatible strategy detected auto",
                          "If this is a GPU node, did you configure the NVIDIA Container Toolkit?"]
    assert REGISTERED not in msgs and msgs[-1] == "No devices found. Waiting indefinitely."


def test_xid_79_marks_its_device_unhealthy_after_registration() -> None:
    node = new_node("gpu-node-0")
    node.xid_events.append(XidEvent(xid=79, device_index=1))
    uuid = node.devices[1].uuid
    found = entries(device_plugin_log(node, START))
    msgs = [e[3] for e in found]
    assert msgs.index(REGISTERED) < msgs.index(
        f"XidCriticalError: Xid=79 on Device={uuid}; marking device as unhealthy.")
    assert msgs[-1] == f"'nvidia.com/gpu' device marked unhealthy: {uuid}"
    assert "EventData:79" in msgs[-3]


def test_xid_48_is_logged_at_its_own_time_and_old_events_are_forgotten() -> None:
    node = new_node("gpu-node-0")
    at = START + timedelta(minutes=7)
    node.xid_events += [XidEvent(xid=48, device_index=3, at=at.timestamp()),
                        XidEvent(xid=79, device_index=0, at=(START - timedelta(hours=1)).timestamp())]
    found = entries(device_plugin_log(node, START))
    xid = [e for e in found if e[3].startswith("XidCriticalError")]
    assert [e[3].split(" on ")[0] for e in xid] == ["XidCriticalError: Xid=48"]
    assert xid[0][1].replace(microsecond=0) == at.replace(tzinfo=None, microsecond=0)
