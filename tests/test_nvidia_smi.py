"""What a user sees from the fake nvidia-smi on a 4-GPU node, healthy and under each fault."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from mlops_drill.cluster.gpu.model import GpuProcess, XidEvent, new_node
from mlops_drill.cluster.gpu.nvidia_smi import run

NOW = datetime(2026, 11, 25, 3, 4, 5)
REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "nvidia-smi-h100"
MISMATCH = "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 580.159\n"
MISSING = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
           "Make sure that the latest NVIDIA driver is installed and running.\n")
MODES = [[], ["-L"], ["-q"], ["-q", "-d", "PERFORMANCE"], ["--query-gpu=index,name", "--format=csv"],
         ["--query-compute-apps=pid", "--format=csv"], ["dmon", "-c", "1"], ["topo", "-m"]]


def smi(node, *argv: str):
    return run(node, list(argv), now=NOW)


def test_four_gpu_table_repeats_the_captured_block_per_gpu() -> None:
    if not REFERENCE.is_dir():
        pytest.skip(f"H100 captures not present at {REFERENCE}")
    node = new_node("gpu-node-0")
    for d in node.devices:
        d.temperature_c, d.power_draw_w = 43, 126
    ref = (REFERENCE / "nvidia_smi.txt").read_text().split("\n")[1:]
    head, block, tail = ref[:8], ref[8:12], ref[12:]
    expected = [NOW.strftime("%a %b %d %H:%M:%S %Y") + " " * 7, *head[1:]]
    for d in node.devices:
        expected += [block[0].replace("  0  NVIDIA", f"  {d.index}  NVIDIA")
                     .replace("00000000:00:06.0", d.pci_bus_id), *block[1:]]
    expected += tail
    out, err, code = smi(node)
    assert (out.split("\n"), err, code) == (expected, "", 0)


def test_stray_process_shows_in_processes_table_and_memory_of_its_gpu() -> None:
    node = new_node("gpu-node-0")
    node.devices[2].processes.append(GpuProcess(pid=48121, name="python3", used_memory_mib=40960))
    out, _, code = smi(node)
    lines = out.split("\n")
    assert code == 0
    row = "|    2   N/A  N/A           48121      C   python3                               40960MiB |"
    assert row in lines
    gpu2 = lines[lines.index(next(x for x in lines if x.startswith("|   2  NVIDIA"))) + 1]
    assert "  40960MiB /  81559MiB |" in gpu2
    assert "No running processes found" not in out
    apps, _, _ = smi(node, "--query-compute-apps=pid,process_name,used_memory,gpu_uuid", "--format=csv")
    assert apps == ("pid, process_name, used_gpu_memory [MiB], gpu_uuid\n"
                    f"48121, python3, 40960 MiB, {node.devices[2].uuid}\n")


def test_every_line_of_a_four_gpu_table_is_91_wide() -> None:
    out, _, _ = smi(new_node("gpu-node-1"))
    lines = out.rstrip("\n").split("\n")
    assert all(len(x) == 91 for x in lines[1:] if x)
    assert [x[:9] for x in lines if x.startswith("|   ") and "NVIDIA" in x] == \
        ["|   0  NV", "|   1  NV", "|   2  NV", "|   3  NV"]


@pytest.mark.parametrize("argv", MODES)
def test_library_mismatch_fails_every_mode_like_nvml(argv: list[str]) -> None:
    node = new_node("gpu-node-0")
    node.driver_state, node.kernel_module_version = "library-mismatch", "570.172.08"
    assert smi(node, *argv) == (MISMATCH, "", 18)


@pytest.mark.parametrize("argv", MODES)
def test_missing_driver_fails_every_mode(argv: list[str]) -> None:
    node = new_node("gpu-node-0")
    node.driver_state = "missing"
    assert smi(node, *argv) == (MISSING, "", 9)


def _fallen_off(index: int = 1):
    node = new_node("gpu-node-0")
    node.devices[index].healthy = False
    node.xid_events.append(XidEvent(xid=79, device_index=index))
    return node


def test_gpu_off_the_bus_stops_the_table_at_its_handle() -> None:
    assert smi(_fallen_off()) == (
        "Unable to determine the device handle for GPU0000:2A:00.0: Unknown Error\n", "", 255)


def test_gpu_off_the_bus_leaves_the_others_readable() -> None:
    node = _fallen_off()
    out, _, code = smi(node, "-i", "0")
    assert code == 0 and "|   0  NVIDIA H100 80GB HBM3" in out and "|   1  NVIDIA" not in out
    listing, _, code = smi(node, "-L")
    assert code == 255
    assert listing.split("\n")[1] == \
        "Unable to determine the device handle for GPU0000:2A:00.0: Unknown Error"
    assert listing.split("\n")[2].startswith("GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-")
    csv, _, code = smi(node, "--query-gpu=index,memory.used", "--format=csv,noheader")
    assert (csv, code) == ("0, 0 MiB\nUnable to determine the device handle for GPU0000:2A:00.0: "
                           "Unknown Error\n[Unknown Error], [Unknown Error]\n2, 0 MiB\n3, 0 MiB\n", 255)


def test_double_bit_ecc_errors_show_in_table_query_and_csv() -> None:
    node = new_node("gpu-node-0")
    node.xid_events += [XidEvent(xid=48, device_index=3), XidEvent(xid=48, device_index=3)]
    table, _, _ = smi(node)
    gpu3 = next(x for x in table.split("\n") if x.startswith("|   3  NVIDIA"))
    assert gpu3.endswith("Off |                    2 |")
    ecc, _, _ = smi(node, "-q", "-i", "3", "-d", "ECC")
    assert ecc.count("DRAM Uncorrectable                         : 2") == 2
    csv, _, _ = smi(node, "--query-gpu=index,ecc.errors.uncorrected.volatile.total",
                    "--format=csv,noheader")
    assert csv == "0, 0\n1, 0\n2, 0\n3, 2\n"


def test_mig_is_off_everywhere() -> None:
    node = new_node("gpu-node-0")
    assert smi(node, "mig", "-lgi") == ("No MIG-enabled devices found.\n", "", 6)
    csv, _, _ = smi(node, "--query-gpu=mig.mode.current", "--format=csv,noheader")
    assert csv == "Disabled\n" * 4
    assert smi(node)[0].count("             Disabled |") == 4


def test_unknown_query_field_is_the_real_error() -> None:
    node = new_node("gpu-node-0")
    assert smi(node, "--query-gpu=index,cuda_version", "--format=csv") == (
        'Field "cuda_version" is not a valid field to query.\n\n', "", 2)
    assert smi(node, "--query-compute-apps=pid,bogus", "--format=csv")[2] == 2


def test_csv_noheader_nounits_and_canonical_headers() -> None:
    node = new_node("gpu-node-0")
    node.devices[0].memory_used_mib, node.devices[0].utilization_pct = 1234, 87
    out, _, _ = smi(node, "--query-gpu=index,memory.used,utilization.gpu", "--format=csv,noheader,nounits",
                    "-i", "0")
    assert out == "0, 1234, 87\n"
    head, _, _ = smi(node, "--query-gpu=gpu_name,clocks.sm,clocks.mem", "--format=csv", "-i", "0")
    assert head.split("\n")[0] == "name, clocks.current.sm [MHz], clocks.current.memory [MHz]"
    assert head.split("\n")[1] == "NVIDIA H100 80GB HBM3, 1980 MHz, 2619 MHz"


def test_query_sections_and_selection() -> None:
    node = new_node("gpu-node-0")
    out, _, code = smi(node, "-q", "-d", "MEMORY,UTILIZATION", "-i", "GPU-" + node.devices[1].uuid[4:])
    blocks = [x.strip() for x in out.split("\n") if x.startswith("    ") and not x.startswith("     ")]
    assert code == 0
    assert blocks == ["FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage",
                      "Utilization", "GPU Utilization Samples", "Memory Utilization Samples",
                      "ENC Utilization Samples", "DEC Utilization Samples", "JPG Utilization Samples",
                      "OFA Utilization Samples"]
    assert "Attached GPUs                                          : 4" in out
    assert out.count("\nGPU 00000000:2A:00.0\n") == 1
    assert smi(node, "-q", "-d", "NOPE") == ("Failed to parse --display/-d flags\n", "", 2)
    assert smi(node, "-q", "-d", "MEMORY,RESET_STATUS") == ("Failed to parse --display/-d flags\n", "", 2)


def test_query_lists_processes_with_their_memory() -> None:
    node = new_node("gpu-node-0")
    node.devices[0].processes.append(GpuProcess(pid=523, name="python3", used_memory_mib=62404))
    out, _, _ = smi(node, "-q", "-d", "PIDS", "-i", "0")
    assert out.split("\n")[-9:-2] == [
        "    Processes",
        "        GPU instance ID                                : N/A",
        "        Compute instance ID                            : N/A",
        "        Process ID                                     : 523",
        "            Type                                       : C",
        "            Name                                       : python3",
        "            Used GPU Memory                            : 62404 MiB",
    ]


def test_bad_ids_and_arguments() -> None:
    node = new_node("gpu-node-0")
    assert smi(node, "-i", "4") == ("No devices were found\n", "", 6)
    assert smi(node, "--frobnicate")[2] == 2
    assert smi(node, "--query-gpu=index")[2] == 2  # no --format


def test_dmon_and_pmon_sample_counts() -> None:
    node = new_node("gpu-node-0")
    node.devices[1].processes.append(GpuProcess(pid=777, name="train.py", used_memory_mib=100))
    dmon, _, _ = smi(node, "dmon", "-c", "3")
    assert len(dmon.splitlines()) == 2 + 3 * 4
    pmon, _, _ = smi(node, "pmon", "-c", "1", "-i", "1")
    assert pmon.splitlines()[2] == \
        "    1        777     C      0      0      -      -      -      -    train.py       "


def _cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MLOPS_DRILL_GPU_STATE", "NODE_NAME", "MLOPS_DRILL_GPU_NODE", "NVIDIA_VISIBLE_DEVICES")}
    return subprocess.run([sys.executable, "-m", "mlops_drill.cluster.gpu.nvidia_smi", *argv],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_cli_reads_the_node_named_by_node_name(tmp_path: Path) -> None:
    nodes = {n: new_node(n).model_dump() for n in ("gpu-node-0", "gpu-node-1")}
    nodes["gpu-node-1"]["driver_state"] = "library-mismatch"
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps(nodes))
    ok = _cli({"MLOPS_DRILL_GPU_STATE": str(state), "NODE_NAME": "gpu-node-0"}, "-L")
    assert (ok.returncode, ok.stderr, len(ok.stdout.splitlines())) == (0, "", 4)
    bad = _cli({"MLOPS_DRILL_GPU_STATE": str(state), "NODE_NAME": "gpu-node-1"})
    assert (bad.returncode, bad.stdout) == (18, MISMATCH)


def test_a_container_sees_only_its_granted_gpus_renumbered_from_zero(tmp_path: Path) -> None:
    node = new_node("gpu-node-0")
    node.devices[3].processes.append(GpuProcess(pid=4242, name="python", used_memory_mib=1024))
    node.xid_events.append(XidEvent(xid=79, device_index=0))  # off the bus, but not granted: unseen
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps({"gpu-node-0": node.model_dump()}))
    env = {"MLOPS_DRILL_GPU_STATE": str(state), "NODE_NAME": "gpu-node-0"}
    granted = [node.devices[1].uuid, node.devices[3].uuid]
    listed = _cli({**env, "NVIDIA_VISIBLE_DEVICES": ",".join(granted)}, "-L")
    assert listed.stdout.splitlines() == [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {u})" for i, u in enumerate(granted)]
    query = _cli({**env, "NVIDIA_VISIBLE_DEVICES": "3"}, "--query-gpu=index,uuid,pci.bus_id,memory.used",
                 "--format=csv,noheader")
    assert query.stdout == f"0, {node.devices[3].uuid}, {node.devices[3].pci_bus_id}, 1024 MiB\n"
    assert len(_cli({**env, "NVIDIA_VISIBLE_DEVICES": "all"}, "-L").stdout.splitlines()) == 4
    assert _cli({**env, "NVIDIA_VISIBLE_DEVICES": "none"}, "-L").stdout == "No devices were found\n"


def test_cli_without_state_says_so_on_one_stderr_line(tmp_path: Path) -> None:
    unset = _cli({})
    assert (unset.returncode, unset.stdout) == (9, "")
    assert unset.stderr.count("\n") == 1 and "MLOPS_DRILL_GPU_STATE" in unset.stderr
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps({"gpu-node-0": new_node("gpu-node-0").model_dump()}))
    wrong = _cli({"MLOPS_DRILL_GPU_STATE": str(state), "NODE_NAME": "cpu-node-0"})
    assert wrong.returncode == 9 and wrong.stderr.count("\n") == 1 and "cpu-node-0" in wrong.stderr
    state.write_text("{not json")
    broken = _cli({"MLOPS_DRILL_GPU_STATE": str(state)})
    assert broken.returncode == 9 and f"{state}:1" in broken.stderr


@pytest.mark.parametrize("product_name, memory, cap, bus0, label", [
    ("NVIDIA H100 80GB HBM3", 81559, 700, "00000000:18:00.0", "NVIDIA-H100-80GB-HBM3"),
    ("NVIDIA H200", 143771, 700, "00000000:1B:00.0", "NVIDIA-H200"),
    ("NVIDIA A100-SXM4-80GB", 81920, 400, "00000000:07:00.0", "NVIDIA-A100-SXM4-80GB"),
])
def test_product_sets_name_memory_power_cap_and_pci_layout(product_name: str, memory: int, cap: int,
                                                           bus0: str, label: str) -> None:
    from mlops_drill.cluster.gpu.products import product

    node = new_node("gpu-node-0", count=2, product_name=product_name)
    listed, _, _ = smi(node, "-L")
    assert listed.splitlines()[0] == f"GPU 0: {product_name} (UUID: {node.devices[0].uuid})"
    csv, _, code = smi(node, "--query-gpu=name,memory.total,power.limit,pci.bus_id", "--format=csv,noheader")
    assert code == 0
    assert csv.splitlines()[0] == f"{product_name}, {memory} MiB, {cap:.2f} W, {bus0}"
    table, _, _ = smi(node)
    assert f"W / {cap:>4}W |       0MiB / {memory:>6}MiB |" in table
    assert product(product_name).label == label


def test_state_file_product_follows_through_json_and_rejects_unknown(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from mlops_drill.cluster.gpu.model import GpuNode

    node = GpuNode.model_validate({"node_name": "n", "product": "NVIDIA H200"})
    assert node.memory_total_mib == 143771  # memory follows the product when not given
    with pytest.raises(ValidationError, match="unknown GPU product 'NVIDIA B300'; known: NVIDIA H100"):
        GpuNode.model_validate({"node_name": "n", "product": "NVIDIA B300"})
