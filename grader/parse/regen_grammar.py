"""Regenerates ``kubectl_grammar.py`` and ``curl_grammar.py`` from the tools' own help.

Why generated: kubectl has ~100 (sub)commands and several hundred flags, curl
~250 options, and whether a flag swallows the next word depends on its type
(``--watch`` does not, ``--output`` does; ``-f`` does for ``apply`` but not for
``logs``). Transcribing that by hand drifts; asking the binaries does not. Run
from the repo root (needs kubectl and curl on PATH, no cluster, no network):

    .venv/bin/python -m mlops_drill.grader.parse.regen_grammar
"""
from __future__ import annotations

import pprint
import re
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Flags whose help shows a string default but that pflag gives a NoOptDefVal:
# ``--dry-run client`` makes ``client`` a positional (checked against kubectl
# v1.32: "exactly one NAME is required, got 2"), so they only take ``=value``.
OPTIONAL_VALUE_FLAGS = frozenset({"dry-run", "validate", "cascade"})

# curl options newer than the curl this was generated with (7.88) that take a value.
CURL_NEWER_VALUE_OPTIONS = {"variable": "v", "expand-url": "v", "expand-data": "v",
                            "expand-header": "v", "ech": "v", "ip-tos": "v",
                            "vlan-priority": "v", "skip-existing": "b", "show-headers": "b",
                            "ipfs-gateway": "v", "mptcp": "b", "trace-config": "v",
                            "proto-default": "v", "etag-save": "v", "etag-compare": "v"}

_KUBECTL_OPTION = re.compile(r"^\s+(?:-(?P<short>\w), )?--(?P<long>[\w-]+)=(?P<default>.*):\s*$")
_KUBECTL_SUBCOMMAND = re.compile(r"^  (?P<name>[a-z][\w-]*)\s{2,}\S")
# An argument is `<name>` or, for --proxy/--preproxy, `[protocol://]host[:port]`.
_CURL_OPTION = re.compile(r"^\s+(?:-(?P<short>\S), )?--(?P<long>[\w.-]+)(?P<arg> (?:<[^>]*>|\[\S+))?")
_ENV = {"PATH": "/usr/bin:/bin:/usr/local/bin", "KUBECONFIG": "/dev/null", "HOME": "/tmp"}


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, env=_ENV,
                          check=False).stdout


def _kubectl_kind(long: str, default: str) -> str:
    if long in OPTIONAL_VALUE_FLAGS:
        return "o"
    return "b" if default in ("true", "false") else "v"


def _kubectl_flags(text: str) -> dict[str, dict[str, str]]:
    flags: dict[str, str] = {}
    short: dict[str, str] = {}
    for line in text.splitlines():
        m = _KUBECTL_OPTION.match(line)
        if m:
            flags[m["long"]] = _kubectl_kind(m["long"], m["default"])
            if m["short"]:
                short[m["short"]] = m["long"]
    return {"flags": flags, "short": short}


def _kubectl_subcommands(text: str, top: bool) -> list[str]:
    """Top-level help groups commands under several headings; subcommands under one."""
    names: list[str] = []
    inside = False
    for line in text.splitlines():
        if top:
            if line.startswith("Usage:"):
                break
            if line.endswith(":") and not line.startswith(" "):
                inside = True
                continue
        else:
            if line.startswith("Available Commands:"):
                inside = True
                continue
            if inside and not line.strip():
                break
        m = _KUBECTL_SUBCOMMAND.match(line) if inside else None
        if m:
            names.append(m["name"])
    return names


def _kubectl_aliases(text: str) -> tuple[str, ...]:
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("Aliases:"):
            return tuple(a.strip() for a in lines[i + 1].split(",") if a.strip())
    return ()


def kubectl_source() -> str:
    version = _run("kubectl", "version", "--client").split("\n")[0]
    version = version.removeprefix("Client Version: ").split("-")[0]
    global_spec = _kubectl_flags(_run("kubectl", "options"))
    commands: dict[str, dict] = {}
    todo: list[tuple[str, ...]] = [(c,) for c in _kubectl_subcommands(_run("kubectl", "--help"), True)]
    while todo:
        path = todo.pop(0)
        text = _run("kubectl", *path, "--help")
        subs = [s for s in _kubectl_subcommands(text, False) if s != "help"]
        commands[" ".join(path)] = {
            "aliases": tuple(a for a in _kubectl_aliases(text) if a != path[-1]),
            "subcommands": tuple(subs), **_kubectl_flags(text)}
        todo.extend(path + (s,) for s in subs)
    return ('"""kubectl\'s command tree and flag types, generated from its own --help.\n\n'
            "Do not edit by hand: run `python -m mlops_drill.grader.parse.regen_grammar`.\n"
            'Flag kinds: "b" boolean (never takes the next word), "v" takes a value\n'
            '(`--f=x` or `--f x`), "o" optional value (only `--f=x`; bare `--f` is allowed).\n'
            'COMMANDS keys are command paths ("rollout undo"); GLOBAL holds `kubectl options`.\n"""\n'
            f"KUBECTL_VERSION = {version!r}\n\n"
            f"GLOBAL = {pprint.pformat(global_spec, width=100)}\n\n"
            f"COMMANDS = {pprint.pformat(commands, width=100)}\n")


def curl_source() -> str:
    version = _run("curl", "--version").split(" ")[1]
    flags: dict[str, str] = {}
    short: dict[str, str] = {}
    for line in _run("curl", "--help", "all").splitlines():
        m = _CURL_OPTION.match(line)
        if m:
            flags[m["long"]] = "v" if m["arg"] else "b"
            if m["short"]:
                short[m["short"]] = m["long"]
    for name, kind in CURL_NEWER_VALUE_OPTIONS.items():
        flags.setdefault(name, kind)
    return ('"""curl\'s options and whether each takes an argument, generated from `curl --help all`.\n\n'
            "Do not edit by hand: run `python -m mlops_drill.grader.parse.regen_grammar`.\n"
            'Kinds: "b" takes no argument, "v" takes the next word (or the rest of a short cluster).\n"""\n'
            f"CURL_VERSION = {version!r}\n\n"
            f"OPTIONS = {pprint.pformat(flags, width=100)}\n\n"
            f"SHORT = {pprint.pformat(short, width=100)}\n")


def main() -> None:
    (HERE / "kubectl_grammar.py").write_text(kubectl_source())
    (HERE / "curl_grammar.py").write_text(curl_source())


if __name__ == "__main__":
    main()
