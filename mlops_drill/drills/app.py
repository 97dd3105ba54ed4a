"""The drill server's HTTP API: instructor endpoints, seat endpoints, the dashboard.

Two kinds of bearer token, checked on every request:

* the instructor token (one per server) opens ``/api/drills*`` and the dashboard;
  the browser gets it once through ``/login?token=...`` as an HttpOnly cookie;
* a seat token (one per seat, handed out for its join code) opens ``/api/seat/*``
  only. Seat endpoints return the seat's kubeconfig, the symptom-only briefing
  and acknowledgements: never steps, hints, fault parameters, fix checks or
  scores, which stay with the instructor until the debrief.

A valid token of the wrong kind gets 403; no or an unknown token gets 401.
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from mlops_drill.drills import progress, seats
from mlops_drill.drills.dashboard import drill_page, index_page
from mlops_drill.drills.model import Drill, DrillStore, Isolation, Seat
from mlops_drill.errors import DrillError

log = logging.getLogger("mlops_drill.drills")

COOKIE = "mlops_drill_instructor"
MAX_EVENTS_PER_POST = 200
# Seats may stream what their shell and tools record; results of fix checks come from the server only.
SEAT_EVENT_KINDS = ("command", "shell", "hypothesis", "diagnosis", "hint", "session")


class DrillIn(BaseModel):
    scenario: str
    seats: int = Field(ge=1, le=50)
    time_limit_minutes: int | None = Field(None, ge=1, le=240)
    isolation: Isolation = Field("namespaces", description="namespaces: seats share one cluster (light); "
                                                           "clusters: one embedded cluster per seat")
    seed: int | None = Field(None, ge=0, le=2**63 - 1,
                             description="the variant of a parameterised scenario every seat gets "
                                         "(default: a fresh one)")
    seed_per_seat: bool = Field(False, description="each seat its own variant, derived from the drill's seed and "
                                                   "the seat number (seats get distinct variants while the "
                                                   "scenario has enough); default: every seat the drill's variant")


class JoinIn(BaseModel):
    code: str = Field(min_length=4, max_length=20)


class EventsIn(BaseModel):
    events: list[dict[str, Any]] = Field(max_length=MAX_EVENTS_PER_POST)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def create_app(state_dir: Path, instructor_token: str | None = None, parallel: int = 1,
               shared_parallel: int = 4, shared_kubeconfig: Path | None = None) -> FastAPI:
    """The app over drills kept in ``state_dir``.

    ``parallel`` seat clusters start at once; ``shared_parallel`` seats of the
    shared cluster (a seat there is mostly waiting for its platform to start).
    ``shared_kubeconfig``: the shared cluster is that existing one, not an embedded one.
    """
    store = DrillStore(Path(state_dir))
    if shared_kubeconfig is not None:
        seats.SHARED.kubeconfig = str(shared_kubeconfig)
    if any(d.isolation == "namespaces" and d.state != "stopped" for d in store.drills.values()):
        threading.Thread(target=seats.restore_routes, args=(store,), name="restore-seats", daemon=True).start()
    token = instructor_token or secrets.token_urlsafe(24)
    app = FastAPI(title="mlops-drill group drills", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.instructor_token = token
    app.state.store = store
    workers: dict[str, threading.Thread] = {}
    cancelled: set[str] = set()
    seat_locks: dict[tuple[str, int], threading.Lock] = {}
    checkers: dict[str, list[threading.Thread]] = {}

    def instructor(request: Request) -> None:
        given = _bearer(request) or request.cookies.get(COOKIE)
        if not given:
            raise HTTPException(401, "instructor token required (Authorization: Bearer ...)")
        if secrets.compare_digest(given, token):
            return
        if store.by_seat_token(given) is not None:
            raise HTTPException(403, "a seat token cannot use instructor endpoints")
        raise HTTPException(401, "unknown token")

    def seat_auth(request: Request) -> tuple[Drill, Seat]:
        given = _bearer(request)
        if not given:
            raise HTTPException(401, "seat token required (Authorization: Bearer ...)")
        found = store.by_seat_token(given)
        if found is None:
            if secrets.compare_digest(given, token):
                raise HTTPException(403, "seat endpoints take a seat token, not the instructor's")
            raise HTTPException(401, "unknown token")
        drill, seat = found
        if seat.state == "stopped" or drill.state == "stopped":
            raise HTTPException(410, f"drill {drill.id} has been stopped")
        return found

    def get_drill(drill_id: str) -> Drill:
        drill = store.drills.get(drill_id)
        if drill is None:
            raise HTTPException(404, f"no drill {drill_id!r}")
        return drill

    # -- instructor ------------------------------------------------------------------------
    @app.post("/api/drills", dependencies=[Depends(instructor)])
    def create_drill(body: DrillIn) -> dict[str, Any]:
        from mlops_drill.injector import engine

        try:
            scenario = engine.scenario(body.scenario)
        except DrillError as exc:
            raise HTTPException(422, str(exc)) from None
        if body.isolation == "namespaces":
            from mlops_drill.injector.fault import seat_blockers

            own = seat_blockers(scenario.faults, shared_nodes=seats.SHARED.shares_nodes)
            if own and seats.SHARED.shares_nodes:
                raise HTTPException(422, f"scenario {scenario.id}: fault {own[0]} acts on a node or on what "
                                         "every seat shares; the seats of this server share an existing "
                                         "cluster's nodes, so only faults inside a seat's namespaces can run")
            if not own and seats.SHARED.shares_nodes:
                from mlops_drill.drills.shared_gpu import gpus_free, gpus_per_seat

                try:
                    need, free = body.seats * gpus_per_seat(), gpus_free(seats.SHARED.ensure()[0])
                except DrillError as exc:
                    raise HTTPException(503, f"the shared cluster: {exc}") from None
                if need > free:
                    raise HTTPException(422, f"{body.seats} seats need {need} GPUs on the shared cluster and "
                                             f"{free} are free: fewer seats, or a cluster with more GPU nodes")
            if own:
                raise HTTPException(422, f"scenario {scenario.id}: fault {own[0]} acts on what seats of a shared "
                                         "cluster have no copy of their own of (GPU node state, objects outside "
                                         "their namespaces); use isolation 'clusters'")
        seed = None
        if scenario.parameters:
            from mlops_drill.scenarios.variants import fresh_seed

            seed = body.seed if body.seed is not None else fresh_seed()
        elif body.seed_per_seat:
            raise HTTPException(422, f"seed_per_seat: scenario {scenario.id} declares no parameters, so every "
                                     "seat gets the same incident")
        per_seat = None
        if body.seed_per_seat:
            from mlops_drill.drills.seat_variants import seat_seeds

            per_seat = seat_seeds(scenario, seed, body.seats)
        drill = store.create(scenario.id, body.seats, body.time_limit_minutes or scenario.time_limit_minutes,
                             body.isolation, seed, per_seat)
        if drill.isolation == "namespaces" and seats.SHARED.kubeconfig is not None:
            with store.lock:
                drill.shared_kubeconfig = seats.SHARED.kubeconfig
                store.save(drill)
        at_once = shared_parallel if drill.isolation == "namespaces" else parallel
        worker = threading.Thread(target=seats.provision_all, args=(store, drill, at_once),
                                  kwargs={"cancelled": lambda: drill.id in cancelled},
                                  name=f"drill-{drill.id}", daemon=True)
        workers[drill.id] = worker
        worker.start()
        return {"id": drill.id, "scenario": drill.scenario, "time_limit_minutes": drill.time_limit_minutes,
                "seed": drill.seed, "seed_per_seat": drill.seed_per_seat,
                "seats": [{"seat": s.n, "code": s.code, "seed": s.seed} for s in drill.seats]}

    @app.get("/api/drills", dependencies=[Depends(instructor)])
    def list_drills() -> list[dict[str, Any]]:
        return [{"id": d.id, "scenario": d.scenario, "state": d.state, "seats": len(d.seats),
                 "created_at": d.created_at} for d in store.drills.values()]

    @app.get("/api/drills/{drill_id}", dependencies=[Depends(instructor)])
    def drill_dashboard(drill_id: str) -> dict[str, Any]:
        return progress.dashboard(store, get_drill(drill_id))

    @app.get("/api/drills/{drill_id}/debrief", dependencies=[Depends(instructor)])
    def drill_debrief(drill_id: str) -> dict[str, Any]:
        return progress.debrief(store, get_drill(drill_id))

    @app.get("/api/drills/{drill_id}/export", dependencies=[Depends(instructor)])
    def drill_export(drill_id: str) -> Response:
        drill = get_drill(drill_id)
        return Response(progress.export_zip(store, drill), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="drill-{drill.id}.zip"'})

    @app.post("/api/drills/{drill_id}/verify", dependencies=[Depends(instructor)])
    def drill_verify(drill_id: str) -> dict[str, Any]:
        drill = get_drill(drill_id)
        done = {}
        for seat in drill.seats:
            if seat.state == "ready":
                done[seat.n] = all(seats.verify(store, drill, seat, "instructor").results.values())
        return {"fixed": done}

    @app.delete("/api/drills/{drill_id}", dependencies=[Depends(instructor)])
    def drill_stop(drill_id: str) -> dict[str, Any]:
        drill = get_drill(drill_id)
        cancelled.add(drill.id)
        worker = workers.get(drill.id)
        if worker is not None:
            worker.join()  # a seat half-way through `up` is stopped only once it is up
        for checker in checkers.pop(drill.id, []):
            checker.join()
        def check_end_state(seat: Seat) -> None:
            # Seats that joined but never finished get their end state checked before it is gone.
            if seat.state == "ready" and seat.joined_at and not store.verifications(drill, seat):
                try:
                    seats.verify(store, drill, seat, "stop", wait=False)
                except DrillError as err:
                    log.warning("drill %s seat %d: end state not checked before stopping: %s",
                                drill.id, seat.n, err)

        seats.stop_all(store, drill, before=check_end_state)
        with store.lock:
            drill.state = "stopped"
            store.save(drill)
        seats.stop_shared_if_idle(store)
        return {"id": drill.id, "state": drill.state}

    # -- seats -----------------------------------------------------------------------------
    @app.post("/api/join")
    def join(body: JoinIn) -> dict[str, Any]:
        found = store.by_code(body.code)
        if found is None:
            raise HTTPException(404, f"no seat has join code {body.code.strip().upper()!r}")
        drill, seat = found
        if drill.state == "stopped":
            raise HTTPException(410, f"drill {drill.id} has been stopped")
        return {"token": seat.token, "drill": drill.id, "seat": seat.n}

    @app.get("/api/seat/briefing")
    def seat_briefing(found: tuple[Drill, Seat] = Depends(seat_auth)) -> dict[str, Any]:
        drill, seat = found
        scenario = progress.drill_scenario(drill, seat)  # the seat's own variant: its briefing may name it
        path = store.transcript_path(drill, seat)
        return {"drill": drill.id, "seat": seat.n, "state": seat.state, "scenario": scenario.id,
                "title": scenario.title, "briefing": scenario.briefing,
                "time_limit_minutes": drill.time_limit_minutes, "started_at": seat.started_at,
                "next_seq": _next_seq(path)}

    @app.get("/api/seat/kubeconfig")
    def seat_kubeconfig(found: tuple[Drill, Seat] = Depends(seat_auth)) -> Response:
        drill, seat = found
        if seat.state != "ready":
            raise HTTPException(409, f"seat {seat.n} is {seat.state}" + (f": {seat.error}" if seat.error else
                                                                          "; try again in a few seconds"))
        return Response(seats.candidate_kubeconfig(store, drill, seat).read_text(), media_type="application/yaml")

    @app.post("/api/seat/events")
    def seat_events(body: EventsIn, found: tuple[Drill, Seat] = Depends(seat_auth)) -> dict[str, Any]:
        drill, seat = found
        path = store.transcript_path(drill, seat)
        with seat_locks.setdefault((drill.id, seat.n), threading.Lock()):
            seq, prev = _chain_end(path)
            lines = []
            for raw in body.events:
                problem = _event_problem(raw, seq, prev)
                if problem == "seq":
                    raise HTTPException(409, {"error": f"expected seq {seq}, got {raw.get('seq')}",
                                              "next_seq": seq})
                if problem:
                    raise HTTPException(422, f"event seq {raw.get('seq')}: {problem}")
                from mlops_drill.grader.shims.recorder import canonical_json

                lines.append(canonical_json(raw) + "\n")
                seq, prev = seq + 1, raw["hash"]
            with open(path, "a", encoding="utf-8") as handle:
                handle.writelines(lines)
        if lines and seat.joined_at is None:  # joined = the seat's shell is open and streaming
            with store.lock:
                seat.joined_at = time.time()
                store.save(drill)
        return {"accepted": len(lines), "next_seq": seq}

    @app.post("/api/seat/finish")
    def seat_finish(found: tuple[Drill, Seat] = Depends(seat_auth)) -> dict[str, Any]:
        """Hand in: the clock stops now; the fix checks (up to ~30 s each while a rollout settles)
        run in the background and reach the dashboard when done."""
        drill, seat = found
        if seat.state != "ready":
            raise HTTPException(409, f"seat {seat.n} is {seat.state}: nothing to hand in")
        with store.lock:
            if seat.finished_at is None:
                seat.finished_at = time.time()
                store.save(drill)
        checker = threading.Thread(target=_verify_quietly, args=(store, drill, seat, "finish"),
                                   name=f"verify-{drill.id}-{seat.n}", daemon=True)
        checkers.setdefault(drill.id, []).append(checker)
        checker.start()
        return {"finished": True, "message": "handed in; your instructor has the results"}

    # -- pages -----------------------------------------------------------------------------
    @app.get("/login")
    def login(token: str, next: str = "/") -> Response:
        if not secrets.compare_digest(token, app.state.instructor_token):
            raise HTTPException(401, "wrong instructor token")
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/", response_class=HTMLResponse, dependencies=[Depends(instructor)])
    def index() -> str:
        return index_page(list(store.drills.values()))

    @app.get("/drills/{drill_id}", response_class=HTMLResponse, dependencies=[Depends(instructor)])
    def page(drill_id: str) -> str:
        drill = get_drill(drill_id)
        return drill_page(progress.dashboard(store, drill), progress.debrief(store, drill))

    return app


def _verify_quietly(store: DrillStore, drill: Drill, seat: Seat, why: str) -> None:
    try:
        seats.verify(store, drill, seat, why)
    except Exception as exc:  # the seat's cluster may be gone; the dashboard shows no result
        print(f"drill {drill.id} seat {seat.n}: fix checks failed to run: {exc}", flush=True)


def _chain_end(path: Path) -> tuple[int, str]:
    """Next seq and last hash of the mirrored transcript (genesis when empty)."""
    from mlops_drill.grader.shims.recorder import GENESIS

    if not path.is_file():
        return 0, GENESIS
    last = None
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                last = line
    if last is None:
        return 0, GENESIS
    obj = json.loads(last)
    return int(obj["seq"]) + 1, str(obj["hash"])


def _next_seq(path: Path) -> int:
    return _chain_end(path)[0]


def _event_problem(raw: dict, seq: int, prev: str) -> str | None:
    """Why this event cannot continue the seat's chain ("seq" when only its position is off)."""
    from mlops_drill.grader.shims.recorder import event_hash
    from mlops_drill.grader.transcript import Event

    if raw.get("kind") not in SEAT_EVENT_KINDS:
        return f"kind {raw.get('kind')!r} is not accepted from a seat (allowed: {', '.join(SEAT_EVENT_KINDS)})"
    try:
        Event.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"field {'.'.join(str(x) for x in err['loc'])}: {err['msg']}"
    if raw.get("seq") != seq:
        return "seq"
    if raw.get("prev_hash") != prev:
        return "prev_hash does not continue the seat's transcript"
    if raw.get("hash") != event_hash(raw):
        return "hash does not match the event's content"
    return None
