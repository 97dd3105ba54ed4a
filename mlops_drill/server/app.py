"""The agent API: the same drill a person gets, over HTTP, graded by the same rubric.

The drill itself (sessions, policy, recording, grading) is :mod:`mlops_drill.server.drills`,
shared with the MCP server; this module is its HTTP face. One session runs per
cluster: a second start while one runs is a 409; finish (optionally with
``reset``) frees the cluster.

Every route is under ``/api/v1`` and needs ``Authorization: Bearer <token>``
(:mod:`mlops_drill.server.auth`; 401 without it). The schema (``/openapi.json``)
and its pages (``/docs``, ``/redoc``) stay open: they describe the routes, as
docs/agent-api.md does, and hold no scenario, session or answer.
Errors are ``{"detail": "<one line>"}``: 400 refused or invalid, 401 no or a
wrong token, 404 unknown session or scenario, 409 the session or cluster is busy
or finished, 503 the scenario could not start.
"""
from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from typing import Any, Callable, Iterator, Literal

from fastapi import APIRouter, Body, FastAPI, HTTPException, Security
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.grader.report import GradedTranscript
from mlops_drill.grader.transcript import Event
from mlops_drill.server.auth import BearerAuth, new_token
from mlops_drill.server.drills import Drills, DrillRefusal

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
    variants: int = Field(1, description="distinct incidents its parameters can draw (1: none); a seed picks one")


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str = Field(min_length=1, max_length=200, description="a catalogue id (GET /api/v1/scenarios)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1,
                             description="the variant of a parameterised scenario to draw (default: a fresh one, "
                                         "named in the graded report)")


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


# --------------------------------------------------------------------------- app

_ERRORS = {400: {"model": ErrorOut}, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}}


@contextmanager
def _http_errors() -> Iterator[None]:
    """The core's refusals as the API's answers: the same one line, under its status code."""
    try:
        yield
    except DrillRefusal as exc:
        raise HTTPException(exc.status, exc.detail) from None


def create_app(ctx_factory: Callable[[], Any], token: str | None = None) -> FastAPI:
    """The API over the cluster that ``ctx_factory()`` (a DrillContext) reaches; called once, lazily.

    ``token`` is the bearer token every ``/api/v1`` request must carry; without
    one a random token is made (``app.state.api_token``), so no app is ever open.
    """
    drills = Drills(ctx_factory)
    token = token or new_token()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        drills.close()

    app = FastAPI(title="mlops-drill agent API", version="1", lifespan=lifespan,
                  description="Start a drill, run kubectl/curl as the on-call seat, state hypotheses and a "
                              "diagnosis, finish and get the graded transcript (same rubric as for people).")
    # The scheme is declared for the schema and /docs' "Authorize" button; BearerAuth below enforces it.
    bearer = HTTPBearer(auto_error=False, description="the token serve-api wrote to its token file")
    api = APIRouter(prefix=API_PREFIX, dependencies=[Security(bearer)],
                    responses={401: {"model": ErrorOut, "description": "no or a wrong bearer token"}})

    @api.get("/scenarios", response_model=list[ScenarioOut])
    def scenarios() -> list[ScenarioOut]:
        """The catalogue as a person sees it (`mlops-drill scenarios`): ids, titles, limits."""
        return [ScenarioOut(**row) for row in drills.scenarios()]

    @api.post("/sessions", response_model=StartOut, status_code=201,
              responses={**_ERRORS, 503: {"model": ErrorOut}})
    def start_session(body: StartIn) -> StartOut:
        """Inject the scenario's fault, wait until its symptom shows, return the briefing."""
        with _http_errors():
            started = drills.start(body.scenario, body.seed)
        return StartOut(**started.__dict__)

    @api.get("/sessions/{session_id}", response_model=SessionOut, responses=_ERRORS)
    def session_info(session_id: str) -> SessionOut:
        with _http_errors():
            return SessionOut(**drills.get(session_id).info())

    @api.post("/sessions/{session_id}/commands", response_model=CommandOut, responses=_ERRORS)
    def run_command(session_id: str, body: CommandIn) -> CommandOut:
        """Run one kubectl/curl command as the seat; refusals are 400 and recorded in the transcript."""
        with _http_errors():
            result = drills.run(session_id, body.command, body.stdin, body.timeout_s)
        return CommandOut(**result.__dict__)

    def _statement(session_id: str, body: StatementIn, kind: Literal["hypothesis", "diagnosis"]) -> StatementOut:
        with _http_errors():
            event = drills.statement(session_id, kind, body.text)
        return StatementOut(kind=kind, seq=event.seq)

    @api.post("/sessions/{session_id}/hypotheses", response_model=StatementOut, status_code=201,
              responses=_ERRORS)
    def hypothesize(session_id: str, body: StatementIn) -> StatementOut:
        """A cause you suspect; graded at the end (time to the first correct one), never answered now."""
        return _statement(session_id, body, "hypothesis")

    @api.post("/sessions/{session_id}/diagnosis", response_model=StatementOut, status_code=201,
              responses=_ERRORS)
    def diagnose(session_id: str, body: StatementIn) -> StatementOut:
        """Your root cause; the last one counts."""
        return _statement(session_id, body, "diagnosis")

    @api.post("/sessions/{session_id}/finish", response_model=GradedOut, responses=_ERRORS)
    def finish(session_id: str, body: FinishIn | None = Body(None)) -> dict[str, Any]:
        """Run the fix checks, grade the transcript, stop the port-forwards (and reset if asked)."""
        with _http_errors():
            return drills.finish(session_id, reset=body is not None and body.reset)

    @api.get("/sessions/{session_id}/transcript", response_model=TranscriptOut, responses=_ERRORS)
    def transcript(session_id: str) -> TranscriptOut:
        """Every recorded event so far (commands, refusals, statements, verification)."""
        with _http_errors():
            read = drills.transcript(session_id)
        return TranscriptOut(events=read.events, tamper=read.tamper)

    app.include_router(api)
    app.add_middleware(BearerAuth, token=token,
                       open_paths=(app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url))
    app.state.drill = drills
    app.state.api_token = token
    return app
