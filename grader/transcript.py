"""The transcript: one JSON event per line, hash-chained so edits are evident.

Why a chain and not a signature: the candidate owns the machine, so nothing can
stop them editing the file; what we can do is make any edit visible to the
instructor. Each event's ``hash`` is sha256 over its canonical JSON (without
``hash``), and that JSON contains the previous event's hash. A tampered file is
still graded (the instructor decides), but the grade carries the first broken
``seq``. Malformed JSON is different: we cannot know what the line said, so it
is a one-line :class:`DrillError` naming ``file:line``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_drill.errors import DrillError
from mlops_drill.grader.shims.recorder import (CAP_BYTES, GENESIS, append_event, canonical_json,
                                               cap, complete_event, event_hash)

EventKind = Literal["command", "shell", "hypothesis", "diagnosis", "hint", "verification",
                    "session"]
TRANSCRIPT_ENV = "MLOPS_DRILL_TRANSCRIPT"

__all__ = ["CAP_BYTES", "Event", "EventKind", "Transcript", "append", "chain", "read_transcript",
           "write_transcript", "TRANSCRIPT_ENV"]


class Event(BaseModel):
    """One thing that happened in a session.

    ``data`` is kind-specific: ``hypothesis``/``diagnosis`` -> ``{"text": ...}``,
    ``hint`` -> ``{"index": n}``, ``verification`` -> ``{"results": {check_id: passed}}``,
    ``session`` -> ``{"action": ..., "scenario": ..., "started_at": ...}``,
    ``command`` -> ``{"capture": "pty"|"pipe", "real": path}``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    seq: int = 0
    ts: float = 0.0
    kind: EventKind = "command"
    line: str = ""
    argv: list[str] = Field(default_factory=list)
    cwd: str = ""
    exit_code: int | None = None
    duration_s: float | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    data: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""


class Transcript(BaseModel):
    """Events as read, plus the verdict on the chain (``tamper`` is None when intact)."""

    path: str
    events: list[Event]
    tamper: str | None = None
    first_broken_seq: int | None = None


def append(path: str | Path, kind: EventKind, *, line: str = "", data: dict | None = None,
           ts: float | None = None, **fields: Any) -> Event:
    """Append one event (locked, chained) and return it as written."""
    payload: dict[str, Any] = {"kind": kind, "line": line, "data": data or {}, **fields}
    if ts is not None:
        payload["ts"] = ts
    for stream in ("stdout", "stderr"):
        if isinstance(payload.get(stream), str):
            text, cut = cap(payload[stream].encode("utf-8"))
            payload[stream] = text
            payload[f"{stream}_truncated"] = cut or payload.get(f"{stream}_truncated", False)
    return Event.model_validate(append_event(str(path), payload))


def chain(events: Iterable[Event | dict]) -> list[Event]:
    """Renumber and re-hash events into a fresh, intact chain (imports, tests, fixtures)."""
    out: list[Event] = []
    prev = GENESIS
    for seq, ev in enumerate(events):
        raw = ev.model_dump() if isinstance(ev, Event) else dict(ev)
        body = complete_event(raw)
        body["seq"], body["prev_hash"] = seq, prev
        body["hash"] = event_hash(body)
        prev = body["hash"]
        out.append(Event.model_validate(body))
    return out


def write_transcript(path: str | Path, events: Iterable[Event | dict]) -> list[Event]:
    """Write events as a new chained transcript file (overwrites)."""
    chained = chain(events)
    text = "".join(canonical_json(_wire(e)) + "\n" for e in chained)
    Path(path).write_text(text, encoding="utf-8")
    return chained


def _wire(event: Event) -> dict:
    return event.model_dump()


def read_transcript(path: str | Path, *, strict: bool = False) -> Transcript:
    """Read and verify a transcript; ``strict`` turns a broken chain into a DrillError."""
    p = Path(path)
    try:
        lines = p.read_bytes().split(b"\n")
    except OSError as exc:
        raise DrillError(f"{p}: cannot read transcript: {exc.strerror}") from None
    events: list[Event] = []
    tamper: str | None = None
    broken: int | None = None
    prev_hash, prev_seq = GENESIS, -1
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DrillError(f"{p}:{lineno}: malformed JSON: {_first_line(exc)}") from None
        if not isinstance(obj, dict):
            raise DrillError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        try:
            event = Event.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise DrillError(f"{p}:{lineno}: field {where}: {err['msg']}") from None
        if tamper is None:
            problem = _chain_problem(obj, prev_hash, prev_seq)
            if problem:
                broken = event.seq
                tamper = f"{p}:{lineno}: hash chain broken at seq {event.seq}: {problem}"
        prev_hash, prev_seq = str(obj.get("hash", "")), event.seq
        events.append(event)
    if tamper and strict:
        raise DrillError(tamper)
    return Transcript(path=str(p), events=events, tamper=tamper, first_broken_seq=broken)


def _chain_problem(obj: dict, prev_hash: str, prev_seq: int) -> str | None:
    """Why this event does not continue the chain, or None if it does."""
    if obj.get("seq") != prev_seq + 1:
        return f"seq {obj.get('seq')} follows {prev_seq} (events removed or reordered)"
    if obj.get("prev_hash") != prev_hash:
        return "prev_hash does not match the previous event (events removed or reordered)"
    if obj.get("hash") != event_hash(obj):
        return "hash does not match the event's content (event edited)"
    return None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
