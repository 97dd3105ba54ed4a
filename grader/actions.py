"""From transcript events to the actions the grader scores.

Why this step exists: the recorded shell writes two views of one typed line, a
``command`` event per recorded tool run (exact argv, exit code) and a ``shell``
event for the line as typed. Grading both would count everything twice, so a
``shell`` line is graded only when no ``command``/``diagnosis``/``hypothesis``/
``hint`` event was written while it ran, which is the case for imported
histories, for tools we do not shim (``jq``, ``cat``), and for a shim bypassed
with an absolute path. ``mlops-drill diagnose|hypothesize|hint`` typed in an
imported history become the events they would have written.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from mlops_drill.grader.parse import ParsedCommand, parse_argv, parse_command, parse_commands
from mlops_drill.grader.parse.kubectl_resources import canonical_resource
from mlops_drill.grader.transcript import Event

ActionKind = Literal["command", "diagnosis", "hypothesis", "hint", "verification"]
_WROTE_WHILE_RUNNING = frozenset({"command", "diagnosis", "hypothesis", "hint"})
# What kubectl prints for each object a change touched: `deployment.apps/fraud-model configured` (an
# `unchanged` one was not changed), and for delete `configmap "x" deleted`, with `from features namespace`
# since kubectl 1.32.
_PRINTED_CHANGE = re.compile(r'^(?P<kind>[a-z][a-z0-9.-]*)/(?P<name>[a-z0-9][a-z0-9.-]*) (?!unchanged)[a-z]+'
                             r'|^(?P<dkind>[a-z][a-z0-9.-]*) "(?P<dname>[^"]+)" deleted(?: from (?P<ns>\S+) namespace)?',
                             re.MULTILINE)
_META = {"diagnose": "diagnosis", "hypothesize": "hypothesis", "hypothesise": "hypothesis",
         "hint": "hint"}


@dataclass(frozen=True)
class Action:
    """One thing the candidate did, in transcript order."""

    seq: int
    ts: float
    kind: ActionKind
    line: str
    cmd: ParsedCommand | None = None
    exit_code: int | None = None
    text: str = ""
    hint_index: int | None = None
    results: dict[str, bool] = field(default_factory=dict)
    synthetic_ts: bool = False

    @property
    def mutation(self) -> bool:
        return bool(self.cmd is not None and (self.cmd.is_mutation or self.cmd.http_mutation))


class _ParseCache:
    """Long transcripts repeat themselves; parsing each distinct line once keeps grading O(n)."""

    def __init__(self) -> None:
        self.one: dict[tuple, ParsedCommand] = {}
        self.many: dict[str, list[ParsedCommand]] = {}

    def command(self, line: str, argv: list[str] | None = None) -> ParsedCommand:
        """A shim's exact argv beats re-splitting its quoted line."""
        key = (line, tuple(argv or ()))
        hit = self.one.get(key)
        if hit is None:
            hit = self.one[key] = parse_argv(argv, raw=line) if argv else parse_command(line)
        return hit

    def commands(self, line: str) -> list[ParsedCommand]:
        hit = self.many.get(line)
        if hit is None:
            hit = self.many[line] = list(parse_commands(line))
        return hit


def extract_actions(events: Iterable[Event], cache: _ParseCache | None = None) -> list[Action]:
    """Actions in transcript order (by position, so ties in ``ts`` never reorder anything)."""
    cache = cache or _ParseCache()
    events = list(events)
    covered = _covered_shell_lines(events)
    typed = _typed_line_of(events, cache)
    out: list[Action] = []
    for ev in events:
        synthetic = bool(ev.data.get("synthetic_ts"))
        if ev.kind == "command":
            line = ev.line or shlex.join(ev.argv)
            cmd = _with_printed_targets(cache.command(line, ev.argv), ev.stdout)
            cmd = _with_piped_origin(cmd, typed.get(ev.seq), cache)
            out.append(Action(ev.seq, ev.ts, "command", line, cmd, ev.exit_code, synthetic_ts=synthetic))
        elif ev.kind == "shell":
            if ev.seq in covered or not ev.line.strip():
                continue
            for cmd in cache.commands(ev.line):
                meta = _meta(cmd)
                if meta is not None:
                    kind, text = meta
                    out.append(Action(ev.seq, ev.ts, kind, cmd.raw, cmd, ev.exit_code, text=text,
                                      hint_index=_int(text) if kind == "hint" else None,
                                      synthetic_ts=synthetic))
                else:
                    out.append(Action(ev.seq, ev.ts, "command", cmd.raw, cmd, ev.exit_code,
                                      synthetic_ts=synthetic))
        elif ev.kind in ("diagnosis", "hypothesis"):
            out.append(Action(ev.seq, ev.ts, ev.kind, ev.line, text=str(ev.data.get("text", "")),
                              synthetic_ts=synthetic))
        elif ev.kind == "hint":
            out.append(Action(ev.seq, ev.ts, "hint", ev.line, hint_index=_int(ev.data.get("index")),
                              synthetic_ts=synthetic))
        elif ev.kind == "verification":
            results = ev.data.get("results") or {}
            out.append(Action(ev.seq, ev.ts, "verification", ev.line,
                              results={str(k): bool(v) for k, v in sorted(results.items())},
                              synthetic_ts=synthetic))
    return out


def _with_printed_targets(cmd: ParsedCommand, stdout: str) -> ParsedCommand:
    """``kubectl delete -f -`` names no object; what it printed does.

    A change fed from stdin (``kubectl get cm x -o yaml | kubectl delete -f -``) reaches the recorder as its
    own argv, without the pipe. kubectl prints one line per object it changed, so the grader reads the
    targets there, as an instructor reading the terminal would.
    """
    if cmd.tool != "kubectl" or not cmd.is_mutation or cmd.resource is not None or not stdout:
        return cmd
    found = [(m.group("kind") or m.group("dkind"), m.group("name") or m.group("dname"), m.group("ns"))
             for m in _PRINTED_CHANGE.finditer(stdout)]
    if not found:
        return cmd
    kinds = tuple(dict.fromkeys(canonical_resource(kind) for kind, _, _ in found))
    names = tuple(dict.fromkeys(name for _, name, _ in found))
    namespace = cmd.namespace or next((ns for _, _, ns in found if ns), None)
    return dataclasses.replace(cmd, resource=kinds[0], resources=kinds, name=names[0], names=names,
                               namespace=namespace)


def _with_piped_origin(cmd: ParsedCommand, typed: tuple[str, int] | None, cache: _ParseCache) -> ParsedCommand:
    """What the typed pipeline says a stdin-fed change acts on, where kubectl's output did not say it all.

    ``kubectl apply -f -`` prints ``secret/x created`` without a namespace; the line the candidate typed
    (``kubectl create secret ... -n serving --dry-run=client -o yaml | kubectl apply -f -``) has it. The
    k-th such change recorded under a line is the k-th one typed on it.
    """
    if typed is None or not _reads_stdin(cmd) or (cmd.resource is not None and cmd.namespace is not None):
        return cmd
    line, k = typed
    changes = [c for c in cache.commands(line) if _reads_stdin(c)]
    whole = changes[k] if k < len(changes) else None
    if whole is None or whole.verb != cmd.verb or \
            (cmd.resource is not None and whole.name is not None and whole.name not in (cmd.names or (cmd.name,))):
        return cmd
    if cmd.resource is not None:
        return dataclasses.replace(cmd, namespace=whole.namespace)
    return dataclasses.replace(cmd, resource=whole.resource, resources=whole.resources, name=whole.name,
                               names=whole.names, namespace=whole.namespace)


def _reads_stdin(cmd: ParsedCommand) -> bool:
    return cmd.tool == "kubectl" and cmd.is_mutation and cmd.flags.get("filename") == "-"


def _typed_line_of(events: list[Event], cache: _ParseCache) -> dict[int, tuple[str, int]]:
    """For each recorded change fed from stdin: the shell line it ran under (the next ``shell`` event, written
    after it) and how many such changes that line ran before it."""
    found: dict[int, tuple[str, int]] = {}
    pending: list[int] = []
    for ev in events:
        if ev.kind == "command" and _reads_stdin(cache.command(ev.line or shlex.join(ev.argv), ev.argv)):
            pending.append(ev.seq)
        elif ev.kind == "shell":
            found.update((seq, (ev.line, k)) for k, seq in enumerate(pending))
            pending = []
    return found


def _covered_shell_lines(events: list[Event]) -> set[int]:
    """Seqs of shell lines whose effect was already recorded by a more precise event."""
    covered: set[int] = set()
    wrote = False
    for ev in events:
        if ev.kind in _WROTE_WHILE_RUNNING:
            wrote = True
        elif ev.kind == "shell":
            if wrote:
                covered.add(ev.seq)
            wrote = False
    return covered


def _meta(cmd: ParsedCommand) -> tuple[ActionKind, str] | None:
    """``mlops-drill diagnose "..."`` and friends typed in a recorded or imported history."""
    try:
        words = shlex.split(cmd.raw)
    except ValueError:
        return None
    while words and "=" in words[0] and not words[0].startswith("="):
        words = words[1:]  # VAR=value prefixes
    if len(words) < 2 or words[0].rsplit("/", 1)[-1] not in ("mlops-drill", "mlops_drill"):
        return None
    kind = _META.get(words[1])
    if kind is None:
        return None
    return kind, " ".join(words[2:])  # type: ignore[return-value]


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None
