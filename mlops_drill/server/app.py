"""The agent API: the same drill a person gets, over HTTP, graded by the same rubric.

Why one active session per app: the engine keeps one scenario per cluster (its
faults live in the cluster's objects), so a second session on the same cluster
would reset the first under its feet. A second start while one runs is a 409;
finish (optionally with ``reset``) frees the cluster.

Every route is under ``/api/v1``; the OpenAPI schema is at ``/openapi.json``.
Errors are ``{"detail": "<one line>"}``: 400 refused or invalid, 404 unknown
session or scenario, 409 the session or cluster is busy or finished, 503 the
scenario could not start.
"""
from __future__ import annotations

import json
import shlex
import shutil
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fastapi import APIRouter, Body, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.errors import DrillError
from mlops_drill.grader.report import GradedTranscript
from mlops_drill.grader.transcript import Event, append, read_transcript
from mlops_drill.server.policy import Refused, check
from mlops_drill.server.runner import CommandRunner

API_PREFIX = "/api/v1"
MAX_COMMAND = 16_000
MAX_STDIN = 1_000_000
MAX_TEXT = 4_000


# --------------------------------------------------------------------------- wire models

class ErrorOut(BaseModel):
    detail: str = Field(description="one line: what was wrong and what to do")


class ScenarioOut(BaseModel):
    id: str
    title: str
    difficulty: str
    time_limit_minutes: int
    available: bool = Field(description="every fault the scenario needs is implemented")


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str = Field(min_length=1, max_length=200, description="a catalogue id (GET /api/v1/scenarios)")


class StartOut(BaseModel):
    session_id: str
    scenario: str
    briefing: str = Field(description="what the on-call engineer is told; symptoms only")
    time_limit_s: int


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=MAX_COMMAND,
                         description="one kubectl or curl command line, split like a shell would (no pipes)")
    stdin: str | None = Field(None, max_length=MAX_STDIN, description="input for `kubectl ... -f -`")
    timeout_s: float = Field(120.0, gt=0, le=600, description="the command is stopped (exit 124) after this")


class CommandOut(BaseModel):
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class StatementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="in your words")


class StatementOut(BaseModel):
    kind: str
    seq: int = Field(description="the event's position in the transcript")


class FinishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reset: bool = Field(False, description="restore the healthy baseline after grading")


class GradedOut(GradedTranscript):
    dimension_scores: dict[str, float] = Field(description="dimension name -> 0-100")


class TranscriptOut(BaseModel):
    events: list[Event]
    tamper: str | None = None


class SessionOut(BaseModel):
    session_id: str
    scenario: str
    finished: bool
    elapsed_s: float
    commands: int
    refused: int
    forwarded_ports: list[int]
    score: float | None = None


# --------------------------------------------------------------------------- state

@dataclass
class _Session:
    id: str
    scenario: str
    started_at: float
    transcript: Path
    runner: CommandRunner
    lock: threading.Lock = field(default_factory=threading.Lock)
    graded: dict[str, Any] | None = None
    commands: int = 0
    refused: int = 0


class _State:
    """The app's sessions and the one cluster context, created on first use."""

    def __init__(self, ctx_factory: Callable[[], Any]) -> None:
        self._factory = ctx_factory
        self._ctx: Any = None
        self.sessions: dict[str, _Session] = {}
        self.starting: str | None = None  # scenario being started (engine.start takes seconds)
        self.lock = threading.Lock()

    @property
    def ctx(self) -> Any:
        with self.lock:
            if self._ctx is None:
                self._ctx = self._factory()
            return self._ctx

    def active(self) -> _Session | None:
        return next((s for s in self.sessions.values() if s.graded is None), None)

    def get(self, session_id: str) -> _Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise HTTPException(404, f"no session {session_id!r} on this server")
        return session


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPException(400, f"{what} is not valid UTF-8 text") from None
    if "\x00" in text:
        raise HTTPException(400, f"{what} contains a NUL character")
    return text


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\\0")


_ERRORS = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


# --------------------------------------------------------------------------- app

def create_app(ctx_factory: Callable[[], Any]) -> FastAPI:
    """The API over the cluster that ``ctx_factory()`` (a DrillContext) reaches; called once, lazily."""
    state = _State(ctx_factory)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        for session in list(state.sessions.values()):
            session.runner.stop_forwards()

    app = FastAPI(title="mlops-drill agent API", version="1", lifespan=lifespan,
                  description="Start a drill, run kubectl/curl as the on-call seat, state hypotheses and a "
                              "diagnosis, finish and get the graded transcript (same rubric as for people).")
    api = APIRouter(prefix=API_PREFIX)

    @api.get("/scenarios", response_model=list[ScenarioOut])
    def scenarios() -> list[ScenarioOut]:
        """The catalogue as a person sees it (`mlops-drill scenarios`): ids, titles, limits."""
        import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
        from mlops_drill.injector.fault import REGISTRY
        from mlops_drill.scenarios.loader import load_catalogue

        return [ScenarioOut(id=sid, title=sc.title, difficulty=sc.difficulty,
                            time_limit_minutes=sc.time_limit_minutes,
                            available=all(f.name in REGISTRY for f in sc.faults))
                for sid, sc in sorted(load_catalogue().items())]

    @api.post("/sessions", response_model=StartOut, status_code=201,
              responses={**_ERRORS, 503: {"model": ErrorOut}})
    def start_session(body: StartIn) -> StartOut:
        """Inject the scenario's fault, wait until its symptom shows, return the briefing."""
        from mlops_drill.injector import engine

        _utf8(body.scenario, "scenario")
        try:
            sc = engine.scenario(body.scenario)
        except DrillError as exc:
            raise HTTPException(404, _one_line(str(exc))) from None
        import mlops_drill.injector.faults  # noqa: F401
        from mlops_drill.injector.fault import REGISTRY

        missing = [f.name for f in sc.faults if f.name not in REGISTRY]
        if missing:
            raise HTTPException(400, f"scenario {sc.id}: fault {missing[0]} is not implemented yet")
        with state.lock:
            busy = state.active()
            if busy is not None:
                raise HTTPException(409, f"session {busy.id} ({busy.scenario}) is running on this cluster: "
                                         "finish it first")
            if state.starting is not None:
                raise HTTPException(409, f"scenario {state.starting} is being started on this cluster")
            state.starting = sc.id
        try:
            ctx = state.ctx
            report = engine.start(ctx, sc.id)
        except DrillError as exc:
            raise HTTPException(503, f"could not start {sc.id}: {_one_line(str(exc))}") from None
        except BaseException:
            with state.lock:
                state.starting = None
            raise
        session_id = uuid.uuid4().hex[:12]
        runner = CommandRunner(Path(report.session.transcript), Path(report.session.candidate_kubeconfig),
                               Path(ctx.kubectl_path), shutil.which("curl"))
        with state.lock:
            state.sessions[session_id] = _Session(session_id, sc.id, report.session.started_at,
                                                  Path(report.session.transcript), runner)
            state.starting = None
        return StartOut(session_id=session_id, scenario=sc.id, briefing=report.briefing,
                        time_limit_s=sc.time_limit_minutes * 60)

    def _live(session_id: str) -> _Session:
        session = state.get(session_id)
        if session.graded is not None:
            raise HTTPException(409, f"session {session_id} is finished")
        return session

    @api.get("/sessions/{session_id}", response_model=SessionOut, responses=_ERRORS)
    def session_info(session_id: str) -> SessionOut:
        s = state.get(session_id)
        return SessionOut(session_id=s.id, scenario=s.scenario, finished=s.graded is not None,
                          elapsed_s=round(time.time() - s.started_at, 1), commands=s.commands,
                          refused=s.refused, forwarded_ports=sorted(s.runner.forwarded_ports()),
                          score=s.graded["score"] if s.graded else None)

    @api.post("/sessions/{session_id}/commands", response_model=CommandOut, responses=_ERRORS)
    def run_command(session_id: str, body: CommandIn) -> CommandOut:
        """Run one kubectl/curl command as the seat; refusals are 400 and recorded in the transcript."""
        session = _live(session_id)
        with session.lock:
            if session.graded is not None:
                raise HTTPException(409, f"session {session_id} is finished")
            try:
                _utf8(body.command, "command")
                if body.stdin is not None:
                    _utf8(body.stdin, "stdin")
                checked = check(body.command, session.runner.forwarded_ports(), body.stdin)
            except (Refused, HTTPException) as exc:
                reason = _one_line(exc.detail if isinstance(exc, HTTPException) else str(exc))
                session.runner.refuse(_printable(body.command), reason)
                session.refused += 1
                raise HTTPException(400, f"refused: {reason}") from None
            result = session.runner.run(checked, body.stdin, body.timeout_s)
            session.commands += 1
        return CommandOut(**result.__dict__)

    def _statement(session_id: str, body: StatementIn, kind: str, verb: str) -> StatementOut:
        session = _live(session_id)
        text = _utf8(body.text, "text").strip()
        if not text:
            raise HTTPException(400, f"{kind} is empty: say what you think")
        with session.lock:
            event = append(session.transcript, kind, line=shlex.join(["mlops-drill", verb, text]),
                           data={"text": text}, argv=["mlops-drill", verb, text], exit_code=0)
        return StatementOut(kind=kind, seq=event.seq)

    @api.post("/sessions/{session_id}/hypotheses", response_model=StatementOut, status_code=201,
              responses=_ERRORS)
    def hypothesize(session_id: str, body: StatementIn) -> StatementOut:
        """A cause you suspect; graded at the end (time to the first correct one), never answered now."""
        return _statement(session_id, body, "hypothesis", "hypothesize")

    @api.post("/sessions/{session_id}/diagnosis", response_model=StatementOut, status_code=201,
              responses=_ERRORS)
    def diagnose(session_id: str, body: StatementIn) -> StatementOut:
        """Your root cause; the last one counts."""
        return _statement(session_id, body, "diagnosis", "diagnose")

    @api.post("/sessions/{session_id}/finish", response_model=GradedOut, responses=_ERRORS)
    def finish(session_id: str, body: FinishIn | None = Body(None)) -> dict[str, Any]:
        """Run the fix checks, grade the transcript, stop the port-forwards (and reset if asked)."""
        from mlops_drill.grader.render import render
        from mlops_drill.injector import engine

        session = state.get(session_id)
        with session.lock:
            if session.graded is not None:
                return session.graded
            ctx = state.ctx
            running = engine.load_session(ctx)
            if running is None or Path(running.transcript) != session.transcript:
                raise HTTPException(409, f"the cluster no longer runs session {session_id}'s scenario "
                                         "(it was reset or replaced)")
            session.runner.stop_forwards()
            try:
                graded = engine.finish(ctx)
            except DrillError as exc:
                raise HTTPException(409, f"cannot grade session {session_id}: {_one_line(str(exc))}") from None
            session.graded = json.loads(render(graded, "json"))
            if body is not None and body.reset:
                engine.reset(ctx)
        return session.graded

    @api.get("/sessions/{session_id}/transcript", response_model=TranscriptOut, responses=_ERRORS)
    def transcript(session_id: str) -> TranscriptOut:
        """Every recorded event so far (commands, refusals, statements, verification)."""
        session = state.get(session_id)
        read = read_transcript(session.transcript)
        return TranscriptOut(events=read.events, tamper=read.tamper)

    app.include_router(api)
    app.state.drill = state
    return app
