"""Golden test: every nvidia-smi mode against the real H100 captures, line for line.

Each capture in ``../shared/reference/nvidia-smi-h100`` starts with ``### nvidia-smi
<args>``; the fake renders the same args from a model set up like the captured machine
(one H100, idle or holding one python3 process) and the two outputs must be equal after
a normaliser that masks only values that differ by nature: timestamps, UUIDs, serials,
PDI, bus ids, slot (module id), temperatures, power draw, current clocks and PCIe
throughput. Masks keep the width of right-aligned cells, so a column that moves by one
character still fails (``test_*_layout_change_is_caught`` prove it).
"""
from __future__ import annotations

import difflib
import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from mlops_drill.cluster.gpu.model import GpuDevice, GpuNode, GpuProcess
from mlops_drill.cluster.gpu.nvidia_smi import run

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "nvidia-smi-h100"
pytestmark = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"H100 captures not present at {REFERENCE} (../shared not mounted)")

NOW = datetime(2026, 11, 24, 22, 5, 4)
NOT_CAPTURES = {"gpu_load.json"}  # CUDA timings from the same machine, not nvidia-smi output

UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BUS_ID = re.compile(r"\b[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]\b")
CTIME = re.compile(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b")
NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
# -q keys whose values differ by nature; (block, key) for keys that recur in several blocks.
Q_KEYS = {"Timestamp", "Serial Number", "GPU PDI", "Module Id", "Bus", "Device", "Tx Throughput",
          "Rx Throughput", "GPU Current Temp", "GPU T.Limit Temp", "Memory Current Temp",
          "Average Power Draw", "Instantaneous Power Draw"}
Q_BLOCK_KEYS = {("Clocks", k) for k in ("Graphics", "SM", "Memory", "Video")}
XML_TAGS = {"timestamp", "serial", "pdi", "module_id", "pci_bus", "pci_device", "tx_util", "rx_util",
            "gpu_temp", "gpu_temp_tlimit", "memory_temp", "average_power_draw",
            "instant_power_draw"}
XML_BLOCK_TAGS = {("clocks", t) for t in ("graphics_clock", "sm_clock", "mem_clock", "video_clock")}
CSV_FIELDS = {"temperature.gpu", "power.draw [W]", "clocks.current.sm [MHz]"}
DMON_COLUMNS = {1, 2, 3, 11}  # pwr, gtemp, mtemp, pclk


def _blank_run(match: re.Match[str]) -> str:
    return "#" * len(match.group(0))


def _mask_q_line(line: str, block: str) -> str:
    if " : " not in line and not line.rstrip().endswith(":"):
        return line
    key, _, value = line.partition(": ")
    name = key.strip()
    if name in Q_KEYS or (block, name) in Q_BLOCK_KEYS:
        return key + ": " + NUMBER.sub("<n>", value)
    return line


def _mask_xml_line(line: str, parent: str) -> str:
    m = re.match(r"^(\t*)<([a-z_0-9]+)>(.*)</\2>$", line)
    if m and (m.group(2) in XML_TAGS or (parent, m.group(2)) in XML_BLOCK_TAGS):
        return f"{m.group(1)}<{m.group(2)}>{NUMBER.sub('<n>', m.group(3))}</{m.group(2)}>"
    return line


def _mask_csv(lines: list[str]) -> list[str]:
    if not lines or " [" not in lines[0] and "," not in lines[0]:
        return lines
    header = lines[0].split(", ")
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split(", ")
        if len(cells) == len(header):
            cells = [NUMBER.sub("<n>", c) if h in CSV_FIELDS else c for h, c in zip(header, cells)]
        out.append(", ".join(cells))
    return out


def normalise(text: str, argv: list[str]) -> list[str]:
    """Mask by-nature values, keeping every separator, unit, key and column position."""
    text = CTIME.sub("<time>", UUID.sub("GPU-<uuid>", BUS_ID.sub("<bus>", text)))
    lines = text.split("\n")
    if any(a.startswith("--query-gpu") for a in argv):
        return _mask_csv(lines)
    if argv[:1] == ["dmon"]:
        return [line if line.startswith("#") else "".join(
            "#" * len(cell) if i in DMON_COLUMNS else cell
            for i, cell in enumerate(re.findall(r"\s*\S+|\s+$", line))) for line in lines]
    if "-x" in argv:
        out, parents = [], []
        for line in lines:
            opening = re.match(r"^\t*<([a-z_0-9]+)( [^>]*)?>$", line)
            out.append(_mask_xml_line(line, parents[-1] if parents else ""))
            if opening:
                parents.append(opening.group(1))
            elif re.match(r"^\t*</[a-z_0-9]+>$", line) and parents:
                parents.pop()
        return out
    if "-q" in argv:
        out, block = [], ""
        for line in lines:
            if line.startswith("    ") and not line.startswith("     "):
                block = line.split(":")[0].strip()
            out.append(_mask_q_line(line, block))
        return out
    # The device table: temperature and power are right-aligned cells; blank the whole
    # run (padding included) so its width, hence the column layout, is still compared.
    return [re.sub(r"(?<=N/A)\s+\d+(?=C )", _blank_run,
                   re.sub(r"\s+\d+(?=W /)", _blank_run, line)) for line in lines]


def assert_same(expected: str, actual: str, argv: list[str]) -> None:
    want, got = normalise(expected, argv), normalise(actual, argv)
    if want != got:
        diff = "\n".join(difflib.unified_diff(want, got, "reference", "fake", lineterm=""))
        raise AssertionError(f"nvidia-smi {shlex.join(argv)} differs from the capture:\n{diff}")


def captured_node(busy: bool = False, util: int = 0, temp: int = 43, power: float = 126.25) -> GpuNode:
    """The captured machine: one H100 passed through to a VM at 00:06.0."""
    processes = [GpuProcess(pid=523, name="python3", used_memory_mib=62404)] if busy else []
    device = GpuDevice(index=0, uuid="GPU-df6f129c-e7e0-5f0a-1466-f3cf92bcdd72",
                       pci_bus_id="00000000:00:06.0", utilization_pct=util, temperature_c=temp,
                       power_draw_w=power, memory_used_mib=62465 if busy else 0,
                       processes=processes)
    return GpuNode(node_name="h100-capture", devices=[device])


# The two busy captures were taken a minute apart, at different load.
NODES = {
    "busy_nvidia-smi.txt": captured_node(busy=True, power=137),
    "busy_nvidia-smi_query-compute-apps_format.txt": captured_node(busy=True),
    "busy_nvidia-smi_query-gpu_format.txt": captured_node(busy=True, util=53, temp=54, power=181.22),
}


def load(name: str) -> tuple[list[str], str]:
    """(argv, expected stdout) of one capture."""
    first, _, body = (REFERENCE / name).read_text(encoding="utf-8").partition("\n")
    assert first.startswith("### nvidia-smi"), f"{name}: not a capture header: {first!r}"
    return shlex.split(first[4:])[1:], body


def captures() -> list[str]:
    if not REFERENCE.is_dir():
        return []
    return sorted(p.name for p in REFERENCE.iterdir() if p.name not in NOT_CAPTURES)


@pytest.mark.parametrize("name", captures())
def test_mode_matches_capture(name: str) -> None:
    argv, expected = load(name)
    out, err, code = run(NODES.get(name, captured_node()), argv, now=NOW)
    assert_same(expected, out, argv)
    assert err == ""
    assert code == (6 if argv[:2] == ["mig", "-lgi"] else 0)


def test_every_reference_file_is_covered() -> None:
    known = set(captures()) | NOT_CAPTURES
    assert {p.name for p in REFERENCE.iterdir()} == known
    assert len(captures()) >= 15


def _perturb_fails(name: str, change) -> None:
    argv, expected = load(name)
    out, _, _ = run(NODES.get(name, captured_node()), argv, now=NOW)
    assert_same(expected, out, argv)  # unperturbed it passes...
    with pytest.raises(AssertionError):  # ...and any layout change is caught
        assert_same(expected, change(out), argv)


def test_table_column_shift_is_caught() -> None:
    _perturb_fails("nvidia_smi.txt", lambda out: out.replace("|   00000000:", "|  00000000: ", 1))


def test_table_power_cell_width_change_is_caught() -> None:
    # The power value is masked, but a cell one character narrower must still fail.
    _perturb_fails("nvidia_smi.txt", lambda out: out.replace("W /  700W", "W / 700W ", 1))


def test_process_row_layout_change_is_caught() -> None:
    _perturb_fails("busy_nvidia-smi.txt", lambda out: out.replace("   python3 ", "  python3  ", 1))


def test_query_missing_line_is_caught() -> None:
    _perturb_fails("nvidia_smi__q.txt",
                   lambda out: out.replace("    Sparse Operation Mode", "    Sparse Operation", 1))


def test_query_key_column_change_is_caught() -> None:
    # Temperatures are masked values, but the colon column is not.
    _perturb_fails("nvidia_smi__q.txt", lambda out: out.replace("Temp      ", "Temp     ", 1))


def test_csv_unit_change_is_caught() -> None:
    _perturb_fails("busy_nvidia-smi_query-gpu_format.txt", lambda out: out.replace(" W\n", "W\n"))


def test_dmon_column_width_change_is_caught() -> None:
    _perturb_fails("nvidia_smi_dmon__c_3.txt", lambda out: out.replace("   2619", "  2619 ", 1))


def test_xml_tag_change_is_caught() -> None:
    _perturb_fails("nvidia_smi__q__x.txt", lambda out: out.replace("<gpu_temp>", "<gpu_tmp>", 1)
                   .replace("</gpu_temp>", "</gpu_tmp>", 1))
