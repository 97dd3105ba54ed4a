"""Text or argv in, ParsedCommand out: the three entry points and the dispatch to tool models.

Nothing here raises on user input: a transcript is graded whatever the
candidate typed, and a line the shell itself could not have run carries an
``error`` instead.
"""
from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Sequence
from typing import Any

from .curl import parse_curl
from .generic import parse_generic, parse_mlops_drill
from .kubectl import parse_kubectl
from .model import FrozenMap, ParsedCommand
from .nvidia_smi import parse_nvidia_smi
from .shell import Pipeline, split_pipelines, split_words
from .wrappers import unwrap

MAIN_TOOLS = frozenset({"kubectl", "curl", "nvidia-smi", "mlops-drill"})
TOOL_ALIASES = {"k": "kubectl", "kubecolor": "kubectl", "kubectl": "kubectl"}
_MODELS: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "kubectl": parse_kubectl, "curl": parse_curl, "nvidia-smi": parse_nvidia_smi,
    "mlops-drill": parse_mlops_drill}
# Shell words that open or close compound commands; the command follows them.
_LEADING_KEYWORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{"})
_CLOSING_KEYWORDS = frozenset({"fi", "done", "esac", "}"})
# Compound-command headers that run nothing themselves (their $(...) still runs).
_HEADERS = frozenset({"for", "select", "case", "function", "in"})
_MAX_DEPTH = 6


def _tool_of(argv: list[str]) -> tuple[str, list[str]]:
    prog = argv[0].rsplit("/", 1)[-1]
    if prog.startswith("python") and argv[1:2] == ["-m"] and len(argv) > 2 and \
            argv[2].split(".")[0] == "mlops_drill":
        return "mlops-drill", ["mlops-drill", *argv[3:]]
    return TOOL_ALIASES.get(prog, prog), argv


def _from_argv(argv: list[str], raw: str, depth: int) -> ParsedCommand | None:
    """One pipeline stage's words -> ParsedCommand (None for pure shell syntax)."""
    while argv and argv[0] in _LEADING_KEYWORDS:
        argv = argv[1:]
    if argv and argv[0] in _CLOSING_KEYWORDS:
        argv = argv[1:]
    if not argv or argv[0] in _HEADERS:
        return None
    inner = unwrap(argv)
    env = FrozenMap(inner.env)
    if inner.text is not None:
        if depth >= _MAX_DEPTH:
            return ParsedCommand(raw=raw, tool=argv[0].rsplit("/", 1)[-1], env_prefix=env,
                                 error="commands nested too deeply")
        found = _main_of(_parse_text(inner.text, depth + 1, with_subshells=False))
        if found is None:
            return ParsedCommand(raw=raw, tool=argv[0].rsplit("/", 1)[-1], env_prefix=env)
        merged = FrozenMap({**inner.env, **found.env_prefix})
        return dataclasses.replace(found, raw=raw, env_prefix=merged)
    if not inner.argv:
        return ParsedCommand(raw=raw, tool="", env_prefix=env)
    tool, words = _tool_of(inner.argv)
    fields = _MODELS.get(tool, parse_generic)(words)
    flags = fields.pop("flags", {})
    return ParsedCommand(raw=raw, tool=tool, env_prefix=env, flags=FrozenMap(flags), **fields)


def _main_of(commands: Sequence[ParsedCommand]) -> ParsedCommand | None:
    for cmd in commands:
        if cmd.tool in MAIN_TOOLS:
            return cmd
    return commands[0] if commands else None


_XARGS_SLOT = frozenset({"{}", "%", "@"})


def _stdin_change(stages: Sequence[ParsedCommand], fed: Sequence[bool],
                  main: ParsedCommand | None) -> tuple[ParsedCommand, ParsedCommand] | None:
    """``kubectl get cm x -o yaml | sed ... | kubectl replace -f -``: the pipeline is the change, on ``x``.

    The first stage only reads (kubectl, or curl fetching a manifest); the kubectl change that takes its
    input from stdin (``-f -``, or its arguments through ``xargs``) is what the line does to the cluster.
    It names no object itself, so it acts on the objects the reading stage named.
    """
    if main is None or main.tool not in ("kubectl", "curl") or main.is_mutation or main.http_mutation:
        return None
    later = range(stages.index(main) + 1, len(stages))
    at = next((i for i in later if stages[i].tool == "kubectl" and stages[i].is_mutation
               and (stages[i].flags.get("filename") == "-" or fed[i])), None)
    if at is None:
        return None
    change = stages[at]
    source = main if main.tool == "kubectl" else None
    kind = None if change.resource in _XARGS_SLOT else change.resource  # `xargs -I{} kubectl delete {}`
    if source is None or source.resource is None or (kind is not None and change.name is not None
                                                      and change.name not in _XARGS_SLOT):
        return change, change
    same_kind = kind in (None, source.resource)
    return change, dataclasses.replace(
        change, resource=kind or source.resource,
        resources=(change.resources if kind else ()) or source.resources,
        name=source.name if same_kind else None, names=source.names if same_kind else (),
        namespace=change.namespace or source.namespace,
        all_namespaces=change.all_namespaces or source.all_namespaces,
        selector=change.selector or source.selector)


def _from_pipeline(p: Pipeline, depth: int) -> ParsedCommand | None:
    stages: list[ParsedCommand] = []
    fed: list[bool] = []  # run by xargs: its arguments come from stdin too
    error = p.error
    for text in p.stages:
        words, why = split_words(text, p.placeholders)
        error = error or why
        cmd = _from_argv(words, p.text, depth)
        if cmd is not None:
            stages.append(cmd)
            fed.append(bool(words) and words[0].rsplit("/", 1)[-1] == "xargs")
    main = _main_of(stages)
    if main is None:
        return ParsedCommand(raw=p.text, tool="", error=error) if error else None
    change = _stdin_change(stages, fed, main)
    stage = change[0] if change else main
    others = tuple(c.tool for c in stages if c is not stage and c.tool)
    if change is not None:
        main = change[1]
    changes: dict[str, Any] = {}
    if others:
        changes["pipeline"] = others + main.pipeline
    if p.heredoc is not None and main.payload is None:
        changes["payload"] = p.heredoc
    if error and not main.error:
        changes["error"] = error
    return dataclasses.replace(main, **changes) if changes else main


def _parse_text(text: str, depth: int, with_subshells: bool) -> list[ParsedCommand]:
    out: list[ParsedCommand] = []
    for p in split_pipelines(text):
        if with_subshells and depth < _MAX_DEPTH:
            for sub in p.substitutions:
                out.extend(_parse_text(sub, depth + 1, with_subshells=True))
        cmd = _from_pipeline(p, depth)
        if cmd is not None:
            out.append(cmd)
    return out


def parse_commands(text: str) -> list[ParsedCommand]:
    """Every command in shell text, in the order the shell would run them.

    Splits on newlines, ``;``, ``&&``, ``||`` and ``&``; a pipeline is one command
    whose main program is its first kubectl/curl/nvidia-smi/mlops-drill stage.
    Commands inside ``$(...)`` come before the command that uses them. Copied
    prompts (``$ ``, ``user@host:~$ ``, a root ``# `` before a known tool) are
    stripped; comments and bare shell keywords yield nothing.
    """
    try:
        return _parse_text(text, 0, with_subshells=True)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"; keep the line
        return [ParsedCommand(raw=text, tool="", error=f"internal parser error: {exc!r}")]


def parse_command(line: str) -> ParsedCommand:
    """The one command a line stands for; ``raw`` is the line as given.

    If the line holds several commands (``cd x && kubectl get po``), the first
    whose program is kubectl/curl/nvidia-smi/mlops-drill wins, else the first.
    If any part of the line cannot be tokenised, ``error`` says so: the shell
    would not have run any of it.
    """
    try:
        commands = _parse_text(line, 0, with_subshells=False)
        main = _main_of(commands)
        if main is None:
            return ParsedCommand(raw=line, tool="")
        error = main.error or next((c.error for c in commands if c.error), None)
        if main.raw == line and main.error == error:
            return main
        return dataclasses.replace(main, raw=line, error=error)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return ParsedCommand(raw=line, tool="", error=f"internal parser error: {exc!r}")


def parse_argv(argv: Sequence[str], raw: str | None = None) -> ParsedCommand:
    """A command already split into words (what a recording shim receives).

    Avoids re-quoting round trips: the words are exactly what the program got.
    """
    words = [str(a) for a in argv]
    line = raw if raw is not None else shlex.join(words)
    try:
        cmd = _from_argv(words, line, 0)
    except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
        return ParsedCommand(raw=line, tool="", error=f"internal parser error: {exc!r}")
    return cmd if cmd is not None else ParsedCommand(raw=line, tool="")
