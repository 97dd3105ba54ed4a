"""Grade sessions recorded elsewhere: bash history, ``script`` logs, asciinema casts, lists.

Why import at all: instructors already have recordings from interviews and
other labs; making them re-run a session in our shell would lose the very
evidence they want graded. Every format becomes ``shell`` events (the line as
typed, a time); the grader treats those exactly like lines typed in
``mlops-drill shell``. Formats without real per-command times (typescripts,
plain lists) get synthetic one-second spacing and ``data.synthetic_ts``, so the
grader can leave timing out instead of inventing it.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Callable

from mlops_drill.errors import DrillError
from mlops_drill.grader.termreplay import LineReplay, replay
from mlops_drill.grader.transcript import Event, Transcript, chain, read_transcript

Format = str  # "jsonl" | "asciinema" | "typescript" | "bash-history" | "plain"

_HIST_TS = re.compile(r"^#(\d{9,11})\s*$")
_KNOWN_PROMPTS = (
    re.compile(r"^drill:\S+ \S+ \S+ [$#] "),                                   # ours
    re.compile(r"^(?:\([^)]*\) )?[\w.-]+@[\w.-]+(?::[^\s]*)?\s?[$#%] "),       # user@host:~$
    re.compile(r"^(?:\([^)]*\) )?\[[\w.-]+@[\w.-]+ [^\]]*\][$#] "),           # [user@host d]$
    re.compile(r"^(?:\([^)]*\) )?[$%❯] "),                                     # bare $ / ❯ (not #: comments)
)
_PROMPT_END = re.compile(r"[$#%❯>] ")
_SCRIPT_HEADER = re.compile(r"^Script started on (.*?)(?: \[.*\])?$")


def import_transcript(path: str | Path) -> list[Event]:
    """Events from any supported recording (format detected from the content)."""
    return load_recording(path).events


def load_recording(path: str | Path) -> Transcript:
    """Like :func:`import_transcript`, keeping the tamper verdict of native transcripts."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DrillError(f"{p}: cannot read: {exc.strerror}") from None
    if b"\x00" in raw[:4096]:
        raise DrillError(f"{p}:1: binary data, not a transcript (expected text)")
    text = raw.decode("utf-8", errors="replace")
    fmt = detect_format(text)
    if fmt == "jsonl":
        return read_transcript(p)
    events = _IMPORTERS[fmt](p, text)
    if not events:
        raise DrillError(f"{p}: no commands found (read as {fmt})")
    return Transcript(path=str(p), events=chain(events))


def detect_format(text: str) -> Format:
    """Which recording this is, from its first meaningful line."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.startswith("{"):
        try:
            head = json.loads(first)
        except ValueError:
            head = None
        if isinstance(head, dict) and "version" in head and "seq" not in head:
            return "asciinema"
        if isinstance(head, dict) and "seq" in head and "kind" in head:
            return "jsonl"
    if _SCRIPT_HEADER.match(first.strip()) or "\x1b[" in text[:20000]:
        return "typescript"
    if any(_HIST_TS.match(ln) for ln in text.splitlines()[:50]):
        return "bash-history"
    return "plain"


# --------------------------------------------------------------------------- formats

def _shell(ts: float, line: str, source: str, lineno: int, synthetic: bool) -> dict:
    data: dict = {"source": source, "source_line": lineno}
    if synthetic:
        data["synthetic_ts"] = True
    return {"ts": float(ts), "kind": "shell", "line": line, "data": data}


def _bash_history(p: Path, text: str) -> list[dict]:
    """``#<epoch>`` lines then the entry; lines up to the next stamp are one entry (bash's rule)."""
    events: list[dict] = []
    ts: float | None = None
    body: list[str] = []
    start = 0

    def flush() -> None:
        entry = "\n".join(body).strip()
        if entry and ts is not None:
            events.append(_shell(ts, entry, "bash-history", start, False))

    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _HIST_TS.match(line)
        if m:
            flush()
            ts, body, start = float(m.group(1)), [], lineno + 1
        elif line.startswith("#") and line[1:2].isdigit():
            raise DrillError(f"{p}:{lineno}: bad history timestamp {line.strip()!r} "
                             "(expected #<unix seconds>)")
        elif ts is None:
            if line.strip():
                raise DrillError(f"{p}:{lineno}: command before the first #<timestamp> line")
        else:
            body.append(line)
    flush()
    return events


def _typescript(p: Path, text: str) -> list[dict]:
    lines = replay(text)
    start = 0.0
    if lines:
        m = _SCRIPT_HEADER.match(lines[0].strip())
        if m:
            start = _parse_script_time(m.group(1))
            lines = lines[1:]
    lines = [ln for ln in lines if not ln.startswith("Script done on ")]
    commands = _commands_after_prompts([(0.0, ln) for ln in lines])
    return [_shell(start + i, cmd, "typescript", n, True)
            for i, (_, cmd, n) in enumerate(commands)]


def _parse_script_time(stamp: str) -> float:
    """util-linux writes ISO 8601 (new) or ctime-like (old) dates; unknown -> 0 (synthetic)."""
    stamp = stamp.strip().strip('"')
    for fmt in ("%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%a %d %b %Y %I:%M:%S %p %Z",
                "%a %b %d %H:%M:%S %Y"):
        try:
            return datetime.strptime(stamp, fmt).timestamp()
        except ValueError:
            continue
    return 0.0


def _asciinema(p: Path, text: str) -> list[dict]:
    rows = text.splitlines()
    try:
        header = json.loads(rows[0])
    except (ValueError, IndexError):
        raise DrillError(f"{p}:1: asciinema header is not JSON") from None
    if header.get("version") != 2:
        raise DrillError(f"{p}:1: asciinema version {header.get('version')!r} not supported "
                         "(convert to v2: asciinema convert)")
    base = float(header.get("timestamp") or 0)
    out = LineReplay()
    typed: list[tuple[float, str]] = []
    keys = _KeyReplay()
    for lineno, row in enumerate(rows[1:], start=2):
        if not row.strip():
            continue
        try:
            t, code, data = json.loads(row)
            t = float(t)
        except (ValueError, TypeError):
            raise DrillError(f"{p}:{lineno}: expected [time, code, data], got {row[:60]!r}") \
                from None
        if code == "o":
            out.feed(str(data), base + t)
        elif code == "i":
            typed.extend((base + t, ln) for ln in keys.feed(str(data)))
    commands = _commands_after_prompts(out.finish(base))
    if commands:
        return [_shell(ts, cmd, "asciinema", n, not base) for ts, cmd, n in commands]
    # No prompt we recognise: fall back to keystrokes (recorded with --stdin).
    return [_shell(ts, ln, "asciinema-input", 0, not base) for ts, ln in typed if ln.strip()]


class _KeyReplay:
    """Lines from raw keystrokes: Enter ends a line, DEL/^H, ^U, ^W and ^C edit it."""

    def __init__(self) -> None:
        self.buf: list[str] = []

    def feed(self, data: str) -> list[str]:
        done = []
        data = re.sub(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|.)", "", data)
        for ch in data:
            if ch in "\r\n":
                done.append("".join(self.buf).strip())
                self.buf = []
            elif ch in "\x7f\b":
                if self.buf:
                    self.buf.pop()
            elif ch in "\x15\x03":
                self.buf = []
            elif ch == "\x17":
                text = "".join(self.buf).rstrip()
                self.buf = list(text[:text.rfind(" ") + 1] if " " in text else "")
            elif ch >= " ":
                self.buf.append(ch)
        return done


def _plain(p: Path, text: str) -> list[dict]:
    """One command per line; ``$ `` prefixes, blank lines and ``#`` comments are skipped."""
    events: list[dict] = []
    pending = ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            for pat in _KNOWN_PROMPTS:
                m = pat.match(stripped)
                if m:
                    stripped = stripped[m.end():].strip()
                    break
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        cmd = (pending + stripped).strip()
        pending = ""
        if cmd:
            events.append(_shell(len(events), cmd, "plain", lineno, True))
    if pending.strip():
        events.append(_shell(len(events), pending.strip(), "plain", lineno, True))
    return events


def _commands_after_prompts(lines: list[tuple[float, str]]) -> list[tuple[float, str, int]]:
    """Lines that start with a shell prompt, minus the prompt, with their index.

    Prompts are recognised by common shapes (ours, ``user@host:dir$``, bare ``$``)
    and by learning: a prefix ending in ``$ ``/``# ``/``% ``/``> `` that starts at
    least two lines is a prompt in this recording. ``> `` right after a line
    ending in ``\\`` is bash's continuation prompt and joins the command.
    """
    learned = Counter()
    for _, line in lines:
        for m in _PROMPT_END.finditer(line[:120]):
            learned[line[:m.end()]] += 1
    prompts = {prefix for prefix, count in learned.items() if count >= 2 and prefix.strip()
               not in {"$", "#", "%", ">"} and not prefix.startswith((">", "#"))}
    out: list[tuple[float, str, int]] = []
    for idx, (ts, line) in enumerate(lines):
        if out and out[-1][1].endswith("\\") and line.startswith("> "):
            prev = out[-1]
            out[-1] = (prev[0], prev[1][:-1].rstrip() + " " + line[2:].strip(), prev[2])
            continue
        cmd = _strip_prompt(line, prompts)
        if cmd:
            out.append((ts, cmd, idx + 1))
    return out


def _strip_prompt(line: str, learned: set[str]) -> str | None:
    for pat in _KNOWN_PROMPTS:
        m = pat.match(line)
        if m:
            return line[m.end():].strip() or None
    best = max((pre for pre in learned if line.startswith(pre)), key=len, default=None)
    if best is not None:
        return line[len(best):].strip() or None
    return None


_IMPORTERS: dict[Format, Callable[[Path, str], list[dict]]] = {
    "asciinema": _asciinema,
    "typescript": _typescript,
    "bash-history": _bash_history,
    "plain": _plain,
}
