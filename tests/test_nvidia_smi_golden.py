"""Golden test: every nvidia-smi mode against real H100 and H200 captures, line for line.

Three capture folders, one normaliser:
- ``../shared/reference/nvidia-smi-h100``: each file starts with ``### nvidia-smi <args>``;
- ``../shared/reference/nvidia-smi-h200``: the same header, then a blank separator line
  (the ``-q -x`` capture has no header);
- ``tests/data/nvidia-smi-h200-sections``: every ``-q -d SECTION`` alone, three
  comma-combined ones (``+`` for ``,`` in the file name), ``-q``, ``-h``, the
  ``--help-query-*`` lists and a bad ``-d``; ``rc.txt`` holds the exit codes.
The fake renders the same args from a model set up like the captured machine (one GPU
of that product, idle or holding one python3 process) and the two outputs must be equal
after a normaliser that masks only values that differ by nature: timestamps, UUIDs,
serials, PDI, bus ids, slot (module id), temperatures, power draw, current clocks, PCIe
throughput and replay count, the board's lifetime SRAM correctable count, and the
sampling windows. Masks keep the width of right-aligned cells, so a column that moves
by one character still fails (``test_*_layout_change_is_caught`` prove it).
"""
from __future__ import annotations

import difflib
import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest

from mlops_drill.cluster.gpu.model import GpuDevice, GpuNode, GpuProcess, new_node
from mlops_drill.cluster.gpu.nvidia_smi import run
from mlops_drill.cluster.gpu.smi_query import SECTIONS

REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "nvidia-smi-h100"
H200_REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "nvidia-smi-h200"
H200_SECTIONS = Path(__file__).parent / "data" / "nvidia-smi-h200-sections"
needs_h100 = pytest.mark.skipif(
    not REFERENCE.is_dir(), reason=f"H100 captures not present at {REFERENCE} (../shared not mounted)")
needs_h200 = pytest.mark.skipif(
    not H200_REFERENCE.is_dir(),
    reason=f"H200 captures not present at {H200_REFERENCE} (../shared not mounted)")

NOW = datetime(2026, 11, 24, 22, 5, 4)
NOT_CAPTURES = {"gpu_load.json"}  # CUDA timings from the same machine, not nvidia-smi output
H200_NOT_CAPTURES = {"torch_cuda_errors.txt"}  # torch's traceback, checked by the CUDA tests

UUID = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BUS_ID = re.compile(r"\b[0-9A-Fa-f]{8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]\b")
CTIME = re.compile(r"\b[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\b")
NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+(?:\.\d+)?")
# -q keys whose values differ by nature; (block, key) for keys that recur in several blocks.
Q_KEYS = {"Timestamp", "Serial Number", "GPU PDI", "Module Id", "Bus", "Device", "Tx Throughput",
          "Rx Throughput", "GPU Current Temp", "GPU T.Limit Temp", "Memory Current Temp",
          "Average Power Draw", "Instantaneous Power Draw", "Replays Since Reset"}
Q_BLOCK_KEYS = {("Clocks", k) for k in ("Graphics", "SM", "Memory", "Video")} | {
    ("ECC Errors", "SRAM Correctable")}
# Every value of a sampling window (-d UTILIZATION/POWER/CLOCK) is a live reading.
SAMPLE_BLOCK = re.compile(r".* Samples$")
XML_TAGS = {"timestamp", "serial", "pdi", "module_id", "pci_bus", "pci_device", "tx_util", "rx_util",
            "gpu_temp", "gpu_temp_tlimit", "memory_temp", "average_power_draw",
            "instant_power_draw", "replay_counter", "sram_correctable"}
XML_HEX_TAGS = {"pci_bus", "pci_device"}
HEX = re.compile(r"\b[0-9A-Fa-f]+\b")
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
    if name in Q_KEYS or (block, name) in Q_BLOCK_KEYS or SAMPLE_BLOCK.match(block):
        return key + ": " + NUMBER.sub("<n>", value)
    return line


def _mask_xml_line(line: str, parent: str) -> str:
    m = re.match(r"^(\t*)<([a-z_0-9]+)>(.*)</\2>$", line)
    if m and (m.group(2) in XML_TAGS or (parent, m.group(2)) in XML_BLOCK_TAGS):
        # bus and device are bare hex ("1B"), which NUMBER would only half mask
        pattern = HEX if m.group(2) in XML_HEX_TAGS else NUMBER
        return f"{m.group(1)}<{m.group(2)}>{pattern.sub('<n>', m.group(3))}</{m.group(2)}>"
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
    if any(a.startswith("--query-gpu=") for a in argv):
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


def h200_node(temp: int = 38, power: float = 81.05) -> GpuNode:
    """The H200 machine: a stock one-GPU H200 node, only its bus moved to the VM's 00:06.0.

    Built by ``new_node`` from the product name alone, so memory, power cap, clocks and
    board numbers come from the product, which is what these captures check.
    """
    node = new_node("h200-capture", count=1, product_name="NVIDIA H200")
    node.devices[0].pci_bus_id = "00000000:00:06.0"
    node.devices[0].temperature_c, node.devices[0].power_draw_w = temp, power
    return node


# The two busy captures were taken a minute apart, at different load.
NODES = {
    "busy_nvidia-smi.txt": captured_node(busy=True, power=137),
    "busy_nvidia-smi_query-compute-apps_format.txt": captured_node(busy=True),
    "busy_nvidia-smi_query-gpu_format.txt": captured_node(busy=True, util=53, temp=54, power=181.22),
}
# argv of the section-folder files whose name does not say it.
SECTION_ARGV = {
    "help.txt": ["-h"],
    "help_query_gpu.txt": ["--help-query-gpu"],
    "help_query_compute_apps.txt": ["--help-query-compute-apps"],
    "q.txt": ["-q"],
    "version.txt": ["--version"],
    "query_gpu_csv.txt": ["--query-gpu=index,name,uuid,pci.bus_id,memory.total,memory.used,"
                          "power.draw,power.limit,temperature.gpu,utilization.gpu,"
                          "utilization.memory,clocks.current.sm,clocks.max.sm", "--format=csv"],
    "query_gpu_misc.txt": ["--query-gpu=name,pci.bus_id,vbios_version,pstate,compute_mode",
                           "--format=csv,noheader"],
}


def load(name: str) -> tuple[list[str], str]:
    """(argv, expected stdout) of one H100 capture."""
    first, _, body = (REFERENCE / name).read_text(encoding="utf-8").partition("\n")
    assert first.startswith("### nvidia-smi"), f"{name}: not a capture header: {first!r}"
    return shlex.split(first[4:])[1:], body


def load_h200(name: str) -> tuple[list[str], str]:
    """(argv, expected stdout) of one H200 capture: header, blank line, output."""
    text = (H200_REFERENCE / name).read_text(encoding="utf-8")
    if text.startswith("<?xml"):
        return ["-q", "-x"], text
    first, _, body = text.partition("\n")
    assert first.startswith("### nvidia-smi") and body.startswith("\n"), f"{name}: not a capture"
    return shlex.split(first[4:])[1:], body[1:]


def section_exit_codes() -> dict[str, int]:
    """rc.txt: each ``rc=N`` line is the code of the section named on the next line;
    ``bogus rc=N`` is the bad section's."""
    codes, pending = {}, None
    for line in (H200_SECTIONS / "rc.txt").read_text(encoding="utf-8").split("\n"):
        if line.startswith("rc="):
            pending = int(line[3:])
        elif line.startswith("bogus rc="):
            codes["BOGUS"] = int(line.split("=")[1])
        elif line.strip():
            codes[line.strip()], pending = pending, None
    return codes


def load_section(name: str) -> tuple[list[str], str, int]:
    """(argv, expected stdout, exit code) of one file of the section folder."""
    body = (H200_SECTIONS / name).read_text(encoding="utf-8")
    if name in SECTION_ARGV:
        return SECTION_ARGV[name], body, 0
    sections = name.removeprefix("q_d_").removesuffix(".txt").replace("+", ",")
    code = section_exit_codes().get(sections, 0)  # the combined ones are not in rc.txt
    return ["-q", "-d", sections], body, code


def captures() -> list[str]:
    if not REFERENCE.is_dir():
        return []
    return sorted(p.name for p in REFERENCE.iterdir() if p.name not in NOT_CAPTURES)


def h200_captures() -> list[str]:
    if not H200_REFERENCE.is_dir():
        return []
    return sorted(p.name for p in H200_REFERENCE.iterdir() if p.name not in H200_NOT_CAPTURES)


def section_captures() -> list[str]:
    return sorted(p.name for p in H200_SECTIONS.iterdir() if p.name != "rc.txt")


@needs_h100
@pytest.mark.parametrize("name", captures())
def test_mode_matches_capture(name: str) -> None:
    argv, expected = load(name)
    out, err, code = run(NODES.get(name, captured_node()), argv, now=NOW)
    assert_same(expected, out, argv)
    assert err == ""
    assert code == (6 if argv[:2] == ["mig", "-lgi"] else 0)


@needs_h200
@pytest.mark.parametrize("name", h200_captures())
def test_h200_node_matches_capture(name: str) -> None:
    argv, expected = load_h200(name)
    out, err, code = run(h200_node(temp=35, power=78.86), argv, now=NOW)
    assert_same(expected, out, argv)
    assert err == ""
    assert code == (6 if argv[:2] == ["mig", "-lgi"] else 0)


@pytest.mark.parametrize("name", section_captures())
def test_h200_section_matches_capture(name: str) -> None:
    argv, expected, expected_code = load_section(name)
    out, err, code = run(h200_node(), argv, now=NOW)
    assert_same(expected, out, argv)
    assert (err, code) == ("", expected_code)


def test_every_section_the_tool_accepts_is_captured_alone() -> None:
    """The fake knows exactly the sections the real tool accepts, and each has a capture."""
    codes = section_exit_codes()
    accepted = {s for s, c in codes.items() if c == 0}
    assert accepted == set(SECTIONS)
    assert {s for s, c in codes.items() if c != 0} == {"RESET_STATUS", "BOGUS"}
    assert {f"q_d_{s}.txt" for s in codes} <= set(section_captures())
    assert len([n for n in section_captures() if "+" in n]) == 3


@needs_h100
def test_every_reference_file_is_covered() -> None:
    known = set(captures()) | NOT_CAPTURES
    assert {p.name for p in REFERENCE.iterdir()} == known
    assert len(captures()) >= 15


@needs_h200
def test_every_h200_reference_file_is_covered() -> None:
    assert {p.name for p in H200_REFERENCE.iterdir()} == set(h200_captures()) | H200_NOT_CAPTURES
    assert len(h200_captures()) >= 15


def _perturb_fails(name: str, change) -> None:
    if not REFERENCE.is_dir():
        pytest.skip(f"H100 captures not present at {REFERENCE}")
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


def test_section_sample_block_line_is_caught() -> None:
    """Sampling values are masked, but a missing window or a moved colon is not."""
    argv, expected, _ = load_section("q_d_UTILIZATION.txt")
    out, _, _ = run(h200_node(), argv, now=NOW)
    assert_same(expected, out, argv)
    for change in (lambda o: o.replace("    OFA Utilization Samples\n", "", 1),
                   lambda o: o.replace("Number of Samples    ", "Number of Samples   ", 1)):
        with pytest.raises(AssertionError):
            assert_same(expected, change(out), argv)


def test_section_order_follows_the_record_not_the_argument() -> None:
    """``-d POWER,TEMPERATURE,CLOCK`` and ``-d CLOCK,TEMPERATURE,POWER`` print alike."""
    node = h200_node()
    assert run(node, ["-q", "-d", "CLOCK,TEMPERATURE,POWER"], now=NOW) == run(
        node, ["-q", "-d", "POWER,TEMPERATURE,CLOCK"], now=NOW)


H200_D_EDGE = Path(__file__).parent / "data" / "nvidia-smi-h200-d-edge"


def d_edge_cases() -> list[tuple[int, str, str]]:
    rows = (H200_D_EDGE / "cases.txt").read_text(encoding="utf-8").splitlines()
    return [(int(code), args, name) for code, args, name in (r.split("\t") for r in rows if r)]


@pytest.mark.parametrize("code, args, name", d_edge_cases())
def test_d_edge_cases_match_the_real_tool(code: int, args: str, name: str) -> None:
    """A misplaced -d (with -x, without -q, no value, a bad item, lower case) as the 580 driver answers it."""
    argv = args.split()
    expected = (H200_D_EDGE / name).read_text(encoding="utf-8")
    out, err, got = run(h200_node(), argv, now=NOW)
    assert_same(expected, out, argv)
    assert (err, got) == ("", code)
