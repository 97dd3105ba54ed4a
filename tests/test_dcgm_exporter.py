"""dcgm-exporter's /metrics page: the documented format, values that follow the inventory and
the processes on each GPU, and the live-use sampler that measures those processes.

The documented format (dcgm-exporter README and ``etc/dcp-metrics-included.csv``, the list
the GPU Operator deploys): ``# HELP <field> <help>`` and ``# TYPE <field> <gauge|counter>``
per counter in the list's order, then one series per GPU with the labels ``gpu``, ``UUID``,
``pci_bus_id``, ``device``, ``modelName``, ``Hostname``, ``DCGM_FI_DRIVER_VERSION`` and, for a
GPU a pod holds, ``container``, ``namespace``, ``pod``.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_drill.cluster.gpu import activity
from mlops_drill.cluster.gpu.dcgm_exporter import Clock, render
from mlops_drill.cluster.gpu.model import XidEvent, new_node

# (field, type, help) as dcp-metrics-included.csv lists its enabled counters, in order.
DOCUMENTED = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz)."),
    ("DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C)."),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries."),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %)."),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %)."),
    ("DCGM_FI_DEV_DEC_UTIL", "gauge", "Decoder utilization (in %)."),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."),
    ("DCGM_FI_DEV_FB_RESERVED", "gauge", "Framebuffer memory reserved (in MiB)."),
    ("DCGM_FI_DEV_RETIRED_SBE", "counter", "Total number of retired pages due to single-bit errors."),
    ("DCGM_FI_DEV_RETIRED_DBE", "counter", "Total number of retired pages due to double-bit errors."),
    ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "counter", "Total number of NVLink bandwidth counters for all lanes."),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for uncorrectable errors"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "counter", "Number of remapped rows for correctable errors"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "gauge", "Whether remapping of rows has failed"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge", "Ratio of cycles the tensor (HMMA) pipe is active."),
    ("DCGM_FI_PROF_DRAM_ACTIVE", "gauge",
     "Ratio of cycles the device memory interface is active sending or receiving data."),
    ("DCGM_FI_PROF_PCIE_TX_BYTES", "gauge", "The rate of data transmitted over the PCIe bus - including both "
     "protocol headers and data payloads - in bytes per second."),
    ("DCGM_FI_PROF_PCIE_RX_BYTES", "gauge", "The rate of data received over the PCIe bus - including both "
     "protocol headers and data payloads - in bytes per second."),
]
LABELS = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]
SERIES = re.compile(r'^(DCGM_FI_[A-Z_0-9]+)\{((?:[A-Za-z_]+="[^"]*",?)+)\} (-?\d+(?:\.\d{6})?)$')


def page(node, holders=None, clock=None, now=100.0) -> str:
    return render(node, node.node_name, holders or {}, clock or Clock({}), now=now)


def series(text: str) -> list[tuple[str, dict[str, str], str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"not a dcgm-exporter series line: {line!r}"
        labels = dict(re.findall(r'([A-Za-z_]+)="([^"]*)"', m.group(2)))
        out.append((m.group(1), labels, m.group(3)))
    return out


def value(text: str, field: str, gpu: int) -> float:
    return next(float(v) for f, lab, v in series(text) if f == field and lab["gpu"] == str(gpu))


def test_page_has_help_and_type_of_every_documented_counter_in_order() -> None:
    text = page(new_node("gpu-node-0", count=4))
    heads = [line for line in text.splitlines() if line.startswith("#")]
    expected = [x for f, kind, help_ in DOCUMENTED for x in (f"# HELP {f} {help_}", f"# TYPE {f} {kind}")]
    assert heads == expected
    # Valid Prometheus text exposition: the official parser reads every family back.
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["DCGM_FI_DEV_GPU_UTIL"].type == "gauge"
    assert len(families["DCGM_FI_DEV_GPU_UTIL"].samples) == 4


def test_every_gpu_has_one_series_per_counter_with_the_documented_labels() -> None:
    node = new_node("gpu-node-1", count=4, product_name="NVIDIA H200")
    rows = series(page(node))
    assert len(rows) == 4 * len(DOCUMENTED)
    first = rows[0]
    assert list(first[1]) == LABELS
    assert first[1] == {"gpu": "0", "UUID": node.devices[0].uuid, "pci_bus_id": "00000000:1B:00.0",
                        "device": "nvidia0", "modelName": "NVIDIA H200", "Hostname": "gpu-node-1",
                        "DCGM_FI_DRIVER_VERSION": "580.159.04"}
    text = page(node)
    assert value(text, "DCGM_FI_DEV_FB_USED", 0) == 0
    assert value(text, "DCGM_FI_DEV_FB_FREE", 0) == 143771 - 616 + 1  # as nvidia-smi's Free
    assert value(text, "DCGM_FI_DEV_FB_RESERVED", 0) == 616
    assert value(text, "DCGM_FI_DEV_SM_CLOCK", 0) == 345
    assert value(text, "DCGM_FI_DEV_MEM_CLOCK", 0) == 3201
    assert "DCGM_FI_DEV_POWER_USAGE{" in text and re.search(r"POWER_USAGE\{[^}]*\} 81\.000000\n", text)


def test_pod_labels_utilisation_memory_and_power_follow_the_process_on_the_gpu() -> None:
    node = new_node("gpu-node-0", count=2)
    uuid = node.devices[1].uuid
    use = activity.DeviceUse(holder=activity.PodRef(namespace="serving", pod="fraud-model-7d9f-abcde",
                                                    container="fraud-model"),
                             utilization_pct=37,
                             process=activity.GpuProcess(pid=4242, name="python", used_memory_mib=1210))
    busy = activity.overlay(node, {uuid: use})
    holders = {uuid: ("serving", "fraud-model-7d9f-abcde", "fraud-model")}
    text = page(busy, holders)
    rows = {(f, lab["gpu"]): (lab, v) for f, lab, v in series(text)}
    lab, util = rows[("DCGM_FI_DEV_GPU_UTIL", "1")]
    assert list(lab)[-3:] == ["container", "namespace", "pod"]
    assert (lab["namespace"], lab["pod"], lab["container"]) == ("serving", "fraud-model-7d9f-abcde", "fraud-model")
    assert util == "37"
    assert "pod" not in rows[("DCGM_FI_DEV_GPU_UTIL", "0")][0]  # an unallocated GPU has no pod labels
    assert rows[("DCGM_FI_DEV_GPU_UTIL", "0")][1] == "0"
    assert rows[("DCGM_FI_DEV_FB_USED", "1")][1] == "1210"
    assert float(rows[("DCGM_FI_DEV_POWER_USAGE", "1")][1]) > float(rows[("DCGM_FI_DEV_POWER_USAGE", "0")][1])
    assert rows[("DCGM_FI_DEV_SM_CLOCK", "1")][1] == "1980"
    assert rows[("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "1")][1] == "0.370000"


def test_energy_counter_grows_with_power_over_time() -> None:
    node, clock = new_node("gpu-node-0", count=1), Clock({})
    first = value(page(node, clock=clock, now=100.0), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0)
    second = value(page(node, clock=clock, now=110.0), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 0)
    assert second - first == pytest.approx(71.0 * 10 * 1000, abs=1)  # 71 W for 10 s, in mJ


def test_xid_errors_show_the_last_xid_and_a_lost_gpu_answers_only_that() -> None:
    node = new_node("gpu-node-0", count=3)
    node.xid_events = [XidEvent(xid=48, device_index=1, at=10.0), XidEvent(xid=79, device_index=2, at=11.0)]
    text = page(node)
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", 0) == 0
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", 1) == 48
    assert value(text, "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1) == 1
    assert [f for f, lab, _ in series(text) if lab["gpu"] == "2"] == ["DCGM_FI_DEV_XID_ERRORS"]
    assert value(text, "DCGM_FI_DEV_XID_ERRORS", 2) == 79


def test_broken_driver_leaves_no_gpu_series() -> None:
    node = new_node("gpu-node-0", count=2)
    node.driver_state = "library-mismatch"
    text = page(node)
    assert series(text) == [] and text.startswith("# HELP DCGM_FI_DEV_SM_CLOCK")


def test_a100_series_carry_its_model_and_clocks() -> None:
    text = page(new_node("gpu-node-0", count=1, product_name="NVIDIA A100-SXM4-80GB"))
    assert series(text)[0][1]["modelName"] == "NVIDIA A100-SXM4-80GB"
    assert value(text, "DCGM_FI_DEV_MEM_CLOCK", 0) == 1593


def test_sampler_reads_a_busy_process_as_a_busier_gpu_than_an_idle_one(tmp_path: Path) -> None:
    """Real processes, real /proc: one spins on the CPU, one sleeps."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)  # past the interpreters' start-up
        sampler = activity.Sampler(tmp_path / "state.json")
        holders = [activity.Holder("gpu-node-0", "GPU-a", "training", "fraud-train-x", "train", spin.pid),
                   activity.Holder("gpu-node-0", "GPU-b", "training", "backfill-0", "backfill", idle.pid)]
        sampler.sample(holders)
        time.sleep(1.5)
        uses = sampler.sample(holders)["gpu-node-0"]
        sampler.write({"gpu-node-0": uses})
    finally:
        spin.kill()
        idle.kill()
    assert uses["GPU-a"].utilization_pct >= 50, uses
    assert uses["GPU-b"].utilization_pct <= 5, uses
    assert uses["GPU-a"].process and uses["GPU-a"].process.pid == spin.pid
    assert uses["GPU-a"].process.used_memory_mib > activity.CONTEXT_MIB
    back = activity.read_activity(tmp_path / "state.json")
    assert back["gpu-node-0"]["GPU-b"].holder.pod == "backfill-0"


def test_nvidia_smi_shows_the_sampled_process_and_utilisation(tmp_path: Path, monkeypatch) -> None:
    """The same live use reaches nvidia-smi, so the two faces agree."""
    import json

    from mlops_drill.cluster.gpu.nvidia_smi import load_node, run

    node = new_node("gpu-node-0", count=2)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"gpu-node-0": node.model_dump(mode="json")}))
    use = activity.DeviceUse(holder=activity.PodRef(namespace="serving", pod="p", container="c"),
                             utilization_pct=64,
                             process=activity.GpuProcess(pid=777, name="python", used_memory_mib=900))
    (tmp_path / activity.ACTIVITY_FILE).write_text(json.dumps(
        {"gpu-node-0": {node.devices[0].uuid: use.model_dump(mode="json")}}))
    seen = load_node({"MLOPS_DRILL_GPU_STATE": str(state), "NODE_NAME": "gpu-node-0"})
    out, _, _ = run(seen, ["--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader"])
    assert out.splitlines() == ["0, 64 %, 900 MiB", "1, 0 %, 0 MiB"]
    table, _, _ = run(seen, [])
    assert "777      C   python" in table


def test_device_busy_seconds_a_workload_counts_read_as_utilisation() -> None:
    """A process that waits on its 'GPU' burns no CPU; the seconds it counts with DeviceClock are its utilisation."""
    import uuid

    pod = f"train-{uuid.uuid4().hex[:6]}"
    env = {"POD_NAME": pod, "POD_NAMESPACE": "training", "NVIDIA_VISIBLE_DEVICES": "GPU-a"}
    clock = activity.DeviceClock(env)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        sampler = activity.Sampler(Path("/nonexistent/state.json"))
        holder = activity.Holder("gpu-node-0", "GPU-a", "training", pod, "train", idle.pid)
        sampler.sample([holder], now=100.0)
        clock.add(1.6)  # an epoch of device time within the next two seconds
        busy = sampler.sample([holder], now=102.0)["gpu-node-0"]["GPU-a"].utilization_pct
        quiet = sampler.sample([holder], now=104.0)["gpu-node-0"]["GPU-a"].utilization_pct
    finally:
        idle.kill()
        Path(activity.busy_file("training", pod)).unlink(missing_ok=True)
    assert 75 <= busy <= 85, busy
    assert quiet <= 5, quiet  # no device time since: back to idle once the epoch leaves the window
    assert activity.DeviceClock({"POD_NAME": "p", "NVIDIA_VISIBLE_DEVICES": "void"}).path is None
