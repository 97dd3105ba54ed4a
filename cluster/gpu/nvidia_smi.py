"""A fake ``nvidia-smi`` that renders the GPU model, byte for byte like the real H100 tool.

``run`` is the pure core (model + argv -> stdout, stderr, exit code) so tests and the
cluster's exec mapping can call it in-process; ``main`` is the console script
``mlops-drill-nvidia-smi`` that the cluster links as ``nvidia-smi`` inside a private bin
dir (never installed globally, where it would shadow a real one). Faults are rendered
from the model: a driver/library mismatch, a missing driver, a GPU that fell off the
bus (Xid 79), DRAM ECC errors (Xid 48) and stray processes holding memory.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from pathlib import Path

from pydantic import ValidationError

from mlops_drill.cluster.gpu import smi_csv, smi_query, smi_table, smi_tools
from mlops_drill.cluster.gpu.activity import overlay, read_activity
from mlops_drill.cluster.gpu.model import GpuNode, visible_devices
from mlops_drill.cluster.gpu.smi_readings import Readings, node_readings, nvml_version

Result = tuple[str, str, int]

STATE_ENV = "MLOPS_DRILL_GPU_STATE"
NODE_ENV = "NODE_NAME"
# Set by the gRPC device plugin's Allocate on kind, where NODE_NAME is the pod's own business.
PLUGIN_NODE_ENV = "MLOPS_DRILL_GPU_NODE"
VISIBLE_ENV = "NVIDIA_VISIBLE_DEVICES"

# Exit codes: nvidia-smi returns the NVML error number (see the man page's RETURN VALUE).
EXIT_INVALID = 2
EXIT_NOT_FOUND = 6
EXIT_DRIVER_NOT_LOADED = 9
EXIT_LIB_RM_VERSION_MISMATCH = 18
EXIT_OTHER = 255

INVALID = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
NO_DEVICES = "No devices were found\n"
DRIVER_MISSING = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
                  "Make sure that the latest NVIDIA driver is installed and running.\n")
HELP_TEMPLATES = {"help": "help.txt", "help-query-gpu": "help_query_gpu.txt",
                  "help-query-apps": "help_query_compute_apps.txt"}
# The version the help texts were captured with; -h prints the node's driver in its place.
HELP_VERSION = "580.159.04"


def help_text(mode: str, driver_version: str) -> str:
    """``-h`` and the ``--help-query-*`` lists, as the 580 driver prints them (H200 capture)."""
    text = files("mlops_drill.cluster.gpu.templates").joinpath(HELP_TEMPLATES[mode]).read_text(
        encoding="utf-8")
    return text.replace(f"-- v{HELP_VERSION}", f"-- v{driver_version}", 1) if mode == "help" else text


SUBCOMMANDS = ("dmon", "pmon", "topo", "mig", "nvlink")


class UsageError(Exception):
    """argv the real tool would refuse with its 'Invalid combination' message (or ``output``)."""

    def __init__(self, what: str, output: str = "", code: int = 0) -> None:
        super().__init__(what)
        self.output, self.code = output, code


# How the 580 driver refuses a misplaced -d (H200 captures, tests/data/nvidia-smi-h200-d-edge).
HINT = "Please run 'nvidia-smi -h' for help."
D_MISSING_VALUE = f"ERROR: Option -d is missing its value. {HINT}\n\n"
D_WITHOUT_Q = ("Invalid combination of input arguments. Specify -q/--query and -d/--display to run a "
               f"filtered query.  {HINT}\n\n")
D_WITH_X = ("Invalid combination of input arguments: --display/-d flags can not be combined with "
            "-x/--xml-format flags.\n")
EXIT_MISSING_VALUE = 255


@dataclass
class Args:
    # table | help | help-query-gpu | help-query-apps | version | list | query | query-gpu
    # | query-apps | sub
    mode: str = "table"
    sub: str = ""
    sub_flags: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    xml: bool = False
    sections: list[str] = field(default_factory=list)
    query: str = ""
    fmt: str | None = None
    count: int | None = None
    loop: float | None = None


def _take(argv: list[str], i: int, flag: str) -> tuple[str, int]:
    """Value of ``--flag=v`` or ``--flag v`` / ``-f v`` at argv[i]; returns (value, next index)."""
    arg = argv[i]
    if "=" in arg and arg.split("=", 1)[0] == flag:
        return arg.split("=", 1)[1], i + 1
    if i + 1 >= len(argv):
        raise UsageError(flag)
    return argv[i + 1], i + 2


def _loop_width(argv: list[str], i: int) -> int:
    """How many argv items ``-l [N]`` / ``--loop=N`` spans (N is optional, default 5 s)."""
    if "=" in argv[i]:
        return 1
    return 2 if i + 1 < len(argv) and argv[i + 1].isdigit() else 1


def _loop_seconds(argv: list[str], i: int) -> int:
    if "=" in argv[i]:
        return _int(argv[i].split("=", 1)[1])
    return int(argv[i + 1]) if _loop_width(argv, i) == 2 else 5


def _without_loop(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i].split("=", 1)[0] in ("-l", "--loop"):
            i += _loop_width(argv, i)
        else:
            out.append(argv[i])
            i += 1
    return out


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(text) from None


def parse(argv: list[str]) -> Args:
    a = Args()
    i = 0
    if argv and argv[0] in SUBCOMMANDS:
        a.mode, a.sub, i = "sub", argv[0], 1
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if name in ("-h", "--help"):
            a.mode, i = "help", i + 1
        elif name == "--help-query-gpu" and a.mode != "sub":
            a.mode, i = "help-query-gpu", i + 1
        elif name == "--help-query-compute-apps" and a.mode != "sub":
            a.mode, i = "help-query-apps", i + 1
        elif name == "--version" and a.mode != "sub":
            a.mode, i = "version", i + 1
        elif name in ("-L", "--list-gpus") and a.mode != "sub":
            a.mode, i = "list", i + 1
        elif name in ("-q", "--query") and a.mode != "sub":
            a.mode, i = "query", i + 1
        elif name in ("-x", "--xml-format") and a.mode != "sub":
            a.xml, i = True, i + 1
        elif name in ("-d", "--display"):
            if "=" not in arg and i + 1 >= len(argv):
                raise UsageError(name, D_MISSING_VALUE, EXIT_MISSING_VALUE)
            value, i = _take(argv, i, name)
            a.sections += [s for s in value.split(",") if s]
        elif name in ("-i", "--id"):
            value, i = _take(argv, i, name)
            a.ids += [s for s in value.split(",") if s]
        elif name == "--query-gpu":
            a.query, i = _take(argv, i, name)
            a.mode = "query-gpu"
        elif name == "--query-compute-apps":
            a.query, i = _take(argv, i, name)
            a.mode = "query-apps"
        elif name == "--format":
            a.fmt, i = _take(argv, i, name)
        elif name in ("-c", "--count") and a.mode == "sub":
            value, i = _take(argv, i, name)
            a.count = _int(value)
        elif name in ("-l", "--loop") and a.mode != "sub":
            a.loop, i = float(_loop_seconds(argv, i)), i + _loop_width(argv, i)
        elif a.mode == "sub":
            a.sub_flags.append(arg)
            i += 1
        else:
            raise UsageError(arg)
    if a.mode in ("query-gpu", "query-apps") and a.fmt is None:
        raise UsageError("--format")
    if a.sections and a.mode != "query" and not smi_query.unknown_sections(a.sections):
        raise UsageError("-d", "" if a.xml else D_WITHOUT_Q, EXIT_INVALID)
    return a


def _select(node: GpuNode, ids: list[str]) -> list[Readings] | None:
    """Devices named by ``-i`` (index, UUID or PCI bus id); None when one does not exist."""
    everything = node_readings(node)
    if not ids:
        return everything
    chosen = []
    for ident in ids:
        match = [r for r in everything
                 if ident in (str(r.index), r.uuid)
                 or (":" in ident and r.bus_id.upper().endswith(ident.upper()))]
        if not match:
            return None
        chosen += [r for r in match if r not in chosen]
    return chosen


def driver_failure(node: GpuNode) -> Result | None:
    """What every NVML-backed mode prints when the driver itself is broken."""
    if node.driver_state == "library-mismatch":
        return ("Failed to initialize NVML: Driver/library version mismatch\n"
                f"NVML library version: {nvml_version(node.driver_version)}\n",
                "", EXIT_LIB_RM_VERSION_MISMATCH)
    if node.driver_state == "missing":
        return DRIVER_MISSING, "", EXIT_DRIVER_NOT_LOADED
    return None


def _lost_exit(devices: list[Readings]) -> int:
    return EXIT_OTHER if any(r.lost for r in devices) else 0


def _subcommand(node: GpuNode, a: Args, devices: list[Readings]) -> Result:
    samples = a.count if a.count is not None else 1
    if a.sub in ("dmon", "pmon"):
        lost = next((r for r in devices if r.lost), None)
        if lost:
            return lost.handle_error() + "\n", "", EXIT_OTHER
        render = smi_tools.dmon if a.sub == "dmon" else smi_tools.pmon
        return render(devices, samples), "", 0
    if a.sub == "topo" and "-m" in a.sub_flags:
        return smi_tools.topo(devices), "", 0
    if a.sub == "mig" and ("-lgi" in a.sub_flags or "--list-gpu-instances" in a.sub_flags):
        out, code = smi_tools.mig_list_instances(node)
        return out, "", code
    if a.sub == "nvlink" and ("-s" in a.sub_flags or "--status" in a.sub_flags):
        return smi_tools.nvlink_status(node, devices), "", 0
    return INVALID, "", EXIT_INVALID


def run(node: GpuNode, argv: list[str], now: datetime | None = None) -> Result:
    """Render ``nvidia-smi <argv>`` for ``node``: (stdout, stderr, exit code) as the real tool."""
    now = now or datetime.now()
    try:
        a = parse(argv)
    except UsageError as err:
        return (err.output, "", err.code) if err.output else (INVALID, "", EXIT_INVALID)
    if smi_query.unknown_sections(a.sections):  # refused while parsing, before NVML is asked
        return smi_query.BAD_SECTION, "", EXIT_INVALID
    if a.sections and a.xml:
        return D_WITH_X, "", EXIT_INVALID
    if a.mode in HELP_TEMPLATES:
        return help_text(a.mode, node.driver_version), "", 0
    failure = driver_failure(node)
    if failure:
        return failure
    devices = _select(node, a.ids)
    if devices is None or (not node.devices and a.mode != "version"):  # none granted to this container
        return NO_DEVICES, "", EXIT_NOT_FOUND
    if a.mode == "sub":
        return _subcommand(node, a, devices)
    if a.mode == "version":
        return smi_tools.version(node), "", 0
    if a.mode == "list":
        return smi_tools.list_gpus(devices), "", _lost_exit(devices)
    if a.mode == "query":
        out = (smi_query.render_xml(node, devices, now) if a.xml
               else smi_query.render_text(node, devices, now, a.sections))
        return out, "", _lost_exit(devices)
    if a.mode in ("query-gpu", "query-apps"):
        try:
            header, units = smi_csv.parse_format(a.fmt or "")
            if a.mode == "query-gpu":
                out = smi_csv.query_gpu(node, devices, a.query, header, units, now)
            else:
                out = smi_csv.query_apps(devices, a.query, header, units, now)
        except smi_csv.CsvError as err:
            return f"{err}\n\n", "", EXIT_INVALID
        return out, "", _lost_exit(devices)
    lost = next((r for r in devices if r.lost), None)
    if lost:
        return lost.handle_error() + "\n", "", EXIT_OTHER
    return smi_table.render(node, devices, now), "", 0


class StateError(Exception):
    """No usable GPU state for this process; ``str()`` is the one line printed."""


def load_node(environ: dict[str, str] | os._Environ[str] = os.environ) -> GpuNode:
    """The node named by ``MLOPS_DRILL_GPU_NODE`` or ``NODE_NAME`` from the JSON file named by
    ``MLOPS_DRILL_GPU_STATE`` with the live use of its GPUs (``activity.json`` beside it), as far
    as ``NVIDIA_VISIBLE_DEVICES`` lets this container see it.

    The file holds either one GpuNode or an object of node name -> GpuNode; a single
    node is used whatever the node name says, as is the only entry of a one-node map.
    """
    path = environ.get(STATE_ENV)
    if not path:
        raise StateError(f"no GPU state: {STATE_ENV} is not set")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise StateError(f"no GPU state: cannot read {STATE_ENV}={path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise StateError(f"no GPU state: {path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise StateError(f"no GPU state: {path}: expected a JSON object")
    wanted = environ.get(PLUGIN_NODE_ENV) or environ.get(NODE_ENV, "")
    if "node_name" not in data:
        if wanted in data:
            data = data[wanted]
        elif not wanted and len(data) == 1:
            data = next(iter(data.values()))
        else:
            shown = wanted or f"(unset; {NODE_ENV} must name one of {', '.join(sorted(data))})"
            raise StateError(f"no GPU state for node {shown} in {path}")
    try:
        node = GpuNode.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StateError(f"no GPU state: {path}: field {where}: {first['msg']}") from None
    # What the GPUs' processes are doing now (utilisation, memory, power), from the node agent.
    node = overlay(node, read_activity(path).get(node.node_name, {}))
    return visible_devices(node, environ.get(VISIBLE_ENV))


def _emit(result: Result) -> int:
    out, err, code = result
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.stdout.flush()
    return code


def _stream(argv: list[str], a: Args) -> int:
    """``dmon``/``pmon`` without ``-c`` and ``-l N`` keep printing until interrupted,
    re-reading the state each round so a fault applied meanwhile shows up live."""
    once = [*argv, "-c", "1"] if a.mode == "sub" else _without_loop(argv)
    first = True
    try:
        while True:
            out, err, code = run(load_node(), once)
            if a.mode == "sub" and not first and code == 0:
                out = "".join(out.splitlines(keepends=True)[len(smi_tools.DMON_HEAD):])
            _emit((out, err, code))
            if code != 0:
                return code
            first = False
            time.sleep(a.loop if a.loop is not None else 1.0)
    except (KeyboardInterrupt, StateError):
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        node = load_node()
    except StateError as err:
        sys.stderr.write(f"nvidia-smi: {err}\n")
        return EXIT_DRIVER_NOT_LOADED
    try:
        a = parse(argv)
    except UsageError:
        a = None
    if a is not None and driver_failure(node) is None and (
            a.loop is not None or (a.mode == "sub" and a.sub in ("dmon", "pmon") and a.count is None)):
        return _stream(argv, a)
    return _emit(run(node, argv))


if __name__ == "__main__":
    sys.exit(main())
