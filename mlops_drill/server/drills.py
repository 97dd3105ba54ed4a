"""The drill as a service: sessions, commands, statements and grading, whatever the wire.

Why a core apart from the HTTP app: the agent API (FastAPI, ``app.py``) and
the MCP server (``mcp_server.py``) must offer the same drill under the same
policy and recording, so an agent's transcript grades the same whichever way
it came. Both call :class:`Drills`; each turns a :class:`DrillRefusal` into
its own error (an HTTP status and ``{"detail"}``, or an MCP tool error).

Why one active session per cluster: the engine keeps one scenario per cluster
(its faults live in the cluster's objects), so a second session on the same
cluster would reset the first under its feet. A second start while one runs
is refused as busy; finish (optionally with ``reset``) frees the cluster.
"""
from __future__ import annotations

import json
import shlex
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from mlops_drill.errors import DrillError
from mlops_drill.grader.transcript import Event, Transcript, append, read_transcript
from mlops_drill.server.policy import Refused, check
from mlops_drill.server.runner import CommandRunner, Result

# What went wrong, as the HTTP API's status codes name it: the MCP server reports the same line.
Kind = Literal["invalid", "refused", "unknown", "busy", "unavailable"]
STATUS: dict[str, int] = {"invalid": 400, "refused": 400, "unknown": 404, "busy": 409, "unavailable": 503}


class DrillRefusal(DrillError):
    """A request the drill will not do; ``detail`` is one line saying what and why."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def status(self) -> int:
        return STATUS[self.kind]


@dataclass
class Started:
    session_id: str
    scenario: str
    briefing: str
    time_limit_s: int


@dataclass
class DrillSession:
    id: str
    scenario: str
    started_at: float
    transcript: Path
    runner: CommandRunner
    briefing: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    graded: dict[str, Any] | None = None
    commands: int = 0
    refused: int = 0

    def info(self) -> dict[str, Any]:
        return {"session_id": self.id, "scenario": self.scenario, "finished": self.graded is not None,
                "elapsed_s": round(time.time() - self.started_at, 1), "commands": self.commands,
                "refused": self.refused, "forwarded_ports": sorted(self.runner.forwarded_ports()),
                "score": self.graded["score"] if self.graded else None}


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def utf8(text: str, what: str) -> str:
    """Text a tool may be given: valid UTF-8 without NUL (a NUL would cut an argv short)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DrillRefusal("invalid", f"{what} is not valid UTF-8 text") from None
    if "\x00" in text:
        raise DrillRefusal("invalid", f"{what} contains a NUL character")
    return text


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\\0")


class Drills:
    """The sessions on one cluster and its drill context (created on first use by ``ctx_factory``)."""

    def __init__(self, ctx_factory: Callable[[], Any]) -> None:
        self._factory = ctx_factory
        self._ctx: Any = None
        self.sessions: dict[str, DrillSession] = {}
        self.starting: str | None = None  # scenario being started (engine.start takes seconds)
        self.lock = threading.Lock()

    @property
    def ctx(self) -> Any:
        with self.lock:
            if self._ctx is None:
                self._ctx = self._factory()
            return self._ctx

    def active(self) -> DrillSession | None:
        return next((s for s in self.sessions.values() if s.graded is None), None)

    def get(self, session_id: str) -> DrillSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise DrillRefusal("unknown", f"no session {session_id!r} on this server")
        return session

    def live(self, session_id: str) -> DrillSession:
        session = self.get(session_id)
        if session.graded is not None:
            raise DrillRefusal("busy", f"session {session_id} is finished")
        return session

    # -- catalogue ---------------------------------------------------------------------------
    @staticmethod
    def scenarios() -> list[dict[str, Any]]:
        """The catalogue as a person sees it (`mlops-drill scenarios`): ids, titles, limits."""
        import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
        from mlops_drill.injector.fault import REGISTRY
        from mlops_drill.scenarios.loader import load_catalogue
        from mlops_drill.scenarios.variants import variant_count

        return [{"id": sid, "title": sc.title, "difficulty": sc.difficulty,
                 "time_limit_minutes": sc.time_limit_minutes,
                 "available": all(f.name in REGISTRY for f in sc.faults), "variants": variant_count(sc)}
                for sid, sc in sorted(load_catalogue().items())]

    # -- a session's life --------------------------------------------------------------------
    def start(self, scenario_id: str, seed: int | None = None) -> Started:
        """Inject the scenario's fault, wait until its symptom shows, return the briefing; ``seed`` draws the
        variant of a parameterised scenario (a fresh one when None, named only in the graded report)."""
        from mlops_drill.injector import engine

        utf8(scenario_id, "scenario")
        try:
            sc = engine.scenario(scenario_id)
        except DrillError as exc:
            raise DrillRefusal("unknown", one_line(str(exc))) from None
        import mlops_drill.injector.faults  # noqa: F401
        from mlops_drill.injector.fault import REGISTRY

        missing = [f.name for f in sc.faults if f.name not in REGISTRY]
        if missing:
            raise DrillRefusal("invalid", f"scenario {sc.id}: fault {missing[0]} is not implemented yet")
        with self.lock:
            busy = self.active()
            if busy is not None:
                raise DrillRefusal("busy", f"session {busy.id} ({busy.scenario}) is running on this cluster: "
                                           "finish it first")
            if self.starting is not None:
                raise DrillRefusal("busy", f"scenario {self.starting} is being started on this cluster")
            self.starting = sc.id
        try:
            ctx = self.ctx
            report = engine.start(ctx, sc.id, seed=seed)
        except DrillError as exc:
            with self.lock:
                self.starting = None
            raise DrillRefusal("unavailable", f"could not start {sc.id}: {one_line(str(exc))}") from None
        except BaseException:
            with self.lock:
                self.starting = None
            raise
        session_id = uuid.uuid4().hex[:12]
        runner = CommandRunner(Path(report.session.transcript), Path(report.session.candidate_kubeconfig),
                               Path(ctx.kubectl_path), shutil.which("curl"))
        with self.lock:
            self.sessions[session_id] = DrillSession(session_id, sc.id, report.session.started_at,
                                                     Path(report.session.transcript), runner, report.briefing)
            self.starting = None
        return Started(session_id, sc.id, report.briefing, sc.time_limit_minutes * 60)

    def run(self, session_id: str, command: str, stdin: str | None = None, timeout_s: float = 120.0) -> Result:
        """Run one kubectl/curl command as the seat; a refusal is recorded in the transcript and raised."""
        session = self.live(session_id)
        with session.lock:
            if session.graded is not None:
                raise DrillRefusal("busy", f"session {session_id} is finished")
            try:
                utf8(command, "command")
                if stdin is not None:
                    utf8(stdin, "stdin")
                checked = check(command, session.runner.forwarded_ports(), stdin)
            except (Refused, DrillRefusal) as exc:
                reason = one_line(exc.detail if isinstance(exc, DrillRefusal) else str(exc))
                session.runner.refuse(_printable(command), reason)
                session.refused += 1
                raise DrillRefusal("refused", f"refused: {reason}") from None
            result = session.runner.run(checked, stdin, timeout_s)
            session.commands += 1
        return result

    def statement(self, session_id: str, kind: Literal["hypothesis", "diagnosis"], text: str) -> Event:
        """A hypothesis or the diagnosis, recorded as the recorded shell's `mlops-drill` verb would be."""
        verb = {"hypothesis": "hypothesize", "diagnosis": "diagnose"}[kind]
        session = self.live(session_id)
        text = utf8(text, "text").strip()
        if not text:
            raise DrillRefusal("invalid", f"{kind} is empty: say what you think")
        with session.lock:
            return append(session.transcript, kind, line=shlex.join(["mlops-drill", verb, text]),
                          data={"text": text}, argv=["mlops-drill", verb, text], exit_code=0)

    def finish(self, session_id: str, reset: bool = False) -> dict[str, Any]:
        """Run the fix checks, grade the transcript, stop the port-forwards (and reset if asked)."""
        from mlops_drill.grader.render import render
        from mlops_drill.injector import engine

        session = self.get(session_id)
        with session.lock:
            if session.graded is not None:
                return session.graded
            ctx = self.ctx
            running = engine.load_session(ctx)
            if running is None or Path(running.transcript) != session.transcript:
                raise DrillRefusal("busy", f"the cluster no longer runs session {session_id}'s scenario "
                                           "(it was reset or replaced)")
            session.runner.stop_forwards()
            try:
                graded = engine.finish(ctx)
            except DrillError as exc:
                raise DrillRefusal("busy", f"cannot grade session {session_id}: {one_line(str(exc))}") from None
            session.graded = json.loads(render(graded, "json"))
            if reset:
                engine.reset(ctx)
        return session.graded

    def transcript(self, session_id: str) -> Transcript:
        """Every recorded event so far (commands, refusals, statements, verification)."""
        return read_transcript(self.get(session_id).transcript)

    def close(self) -> None:
        """Stop every session's port-forwards (the server is going away; the scenario stays)."""
        for session in list(self.sessions.values()):
            session.runner.stop_forwards()
