"""nvidia-smi's grammar: its own option style, subcommands, and which calls change the GPU.

nvidia-smi does not follow getopt: short options may be several letters
(``-pm 1``, ``-pl 250``, ``-mig 1``, ``-lgc``), so clusters are never split
and each option is looked up whole. Long options take ``--name=value`` or
``--name value``. Subcommands (``topo -m``, ``mig -lgi``, ``dmon -s pucvmet``)
have tables of their own. The tables follow ``nvidia-smi -h`` and
``nvidia-smi <sub> -h`` of driver 550.
"""
from __future__ import annotations

from typing import Any

# option -> (canonical long name, takes a value, changes GPU state)
_TOP: dict[str, tuple[str, bool, bool]] = {}
for _short, _long, _value, _mut in (
    ("-h", "help", False, False), ("-L", "list-gpus", False, False),
    ("-B", "list-excluded-gpus", False, False), ("-q", "query", False, False),
    ("-u", "unit", False, False), ("-i", "id", True, False), ("-f", "filename", True, False),
    ("-x", "xml-format", False, False), ("", "dtd", False, False), ("", "debug", True, False),
    ("-d", "display", True, False), ("-l", "loop", True, False), ("-lms", "loop-ms", True, False),
    ("", "query-gpu", True, False), ("", "query-supported-clocks", True, False),
    ("", "query-compute-apps", True, False), ("", "query-accounted-apps", True, False),
    ("", "query-retired-pages", True, False), ("", "query-remapped-rows", True, False),
    ("", "format", True, False), ("-pm", "persistence-mode", True, True),
    ("-e", "ecc-config", True, True), ("-p", "reset-ecc-errors", True, True),
    ("-c", "compute-mode", True, True), ("-dm", "driver-model", True, True),
    ("-fdm", "force-driver-model", True, True), ("", "gom", True, True),
    ("-r", "gpu-reset", False, True), ("-vm", "virt-mode", True, True),
    ("-lgc", "lock-gpu-clocks", True, True), ("-lmc", "lock-memory-clocks", True, True),
    ("-rgc", "reset-gpu-clocks", False, True), ("-rmc", "reset-memory-clocks", False, True),
    ("-ac", "applications-clocks", True, True), ("-rac", "reset-applications-clocks", False, True),
    ("-pl", "power-limit", True, True), ("-cc", "cuda-clocks", True, True),
    ("-am", "accounting-mode", True, True), ("-caa", "clear-accounted-apps", False, True),
    ("", "auto-boost-default", True, True), ("", "auto-boost-permission", True, True),
    ("-mig", "multi-instance-gpu", True, True), ("-gtt", "gpu-target-temp", True, True),
):
    _TOP[f"--{_long}"] = (_long, _value, _mut)
    if _short:
        _TOP[_short] = (_long, _value, _mut)

# Subcommands: options that take a value, and options that change state.
_SUB: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "topo": (frozenset({"-i", "-p2p", "-c", "-n", "--id"}), frozenset()),
    "mig": (frozenset({"-i", "-gi", "-ci", "-cgi", "-cci", "--id", "--gpu-instance-id",
                       "--compute-instance-id", "--create-gpu-instance",
                       "--create-compute-instance"}),
            frozenset({"-cgi", "-cci", "-dgi", "-dci", "--create-gpu-instance",
                       "--create-compute-instance", "--destroy-gpu-instance",
                       "--destroy-compute-instance"})),
    "dmon": (frozenset({"-i", "-d", "-c", "-s", "-o", "-f", "--gpm-metrics", "--id"}), frozenset()),
    "pmon": (frozenset({"-i", "-d", "-c", "-s", "-o", "-f", "--id"}), frozenset()),
    "nvlink": (frozenset({"-i", "-l", "-g", "-sc", "--id"}), frozenset({"-r", "-sc"})),
    "clocks": (frozenset({"-i", "--id"}), frozenset()),
    "drain": (frozenset({"-p", "-m", "-r", "--pciid"}), frozenset({"-m"})),
    "encodersessions": (frozenset({"-i", "--id"}), frozenset()),
    "fbcsessions": (frozenset({"-i", "--id"}), frozenset()),
    "conf-compute": (frozenset({"-i", "--id"}), frozenset()),
    "gpm": (frozenset({"-i", "--id"}), frozenset()),
    "vgpu": (frozenset({"-i", "--id"}), frozenset()),
    "c2c": (frozenset({"-i", "--id"}), frozenset()),
    "daemon": (frozenset(), frozenset()),
    "replay": (frozenset({"-f"}), frozenset()),
    "boost-slider": (frozenset({"-i", "--vboost"}), frozenset({"--vboost"})),
    "power-hint": (frozenset({"-i", "-gc", "-mc", "-t", "-p"}), frozenset()),
    "power-smoothing": (frozenset({"-i"}), frozenset()),
    "power-profiles": (frozenset({"-i"}), frozenset()),
}


def parse_nvidia_smi(argv: list[str]) -> dict[str, Any]:
    """Fields of a ParsedCommand for an nvidia-smi argv (``argv[0]`` is the program)."""
    tokens = argv[1:]
    verb = tokens[0] if tokens and tokens[0] in _SUB else None
    flags: dict[str, str | bool] = {}
    args: list[str] = []
    mutation = False
    i = 1 if verb else 0
    while i < len(tokens):
        tok = tokens[i]
        name, eq, value = tok.partition("=")
        if verb:
            takes, changing = _SUB[verb]
            key = name.lstrip("-")
            mutation = mutation or name in changing
            if eq:
                flags[key] = value
            elif name in takes and i + 1 < len(tokens) and name.startswith("-"):
                flags[key] = tokens[i + 1]
                i += 1
            elif name.startswith("-") and len(name) > 1:
                flags[key] = True
            else:
                args.append(tok)
        elif name in _TOP:
            long, takes_value, changes = _TOP[name]
            mutation = mutation or changes
            if eq:
                flags[long] = value
            elif takes_value and i + 1 < len(tokens) and (
                    not tokens[i + 1].startswith("-") or tokens[i + 1].lstrip("-").isdigit()):
                flags[long] = tokens[i + 1]
                i += 1
            else:
                flags[long] = True
        elif tok.startswith("-") and len(tok) > 1:
            flags[name.lstrip("-")] = value if eq else True
        else:
            args.append(tok)
        i += 1
    output = flags.get("format")
    return {"verb": verb, "flags": flags, "args": tuple(args), "is_mutation": mutation,
            "output": output if isinstance(output, str) else None}
