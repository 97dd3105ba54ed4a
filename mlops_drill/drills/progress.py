"""What the instructor sees: each seat's transcript graded so far, the debrief, the export.

Why grade the whole transcript on every poll instead of tracking steps
incrementally: ``grade`` is a pure function and the single authority on what
a command counts as (a later command can change an earlier one's status), so
the dashboard can never disagree with the final grade. Results are cached per
seat on (transcript size, verification count), so an idle room costs nothing.
"""
from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from typing import Any

from mlops_drill.drills.model import Drill, DrillStore, Seat
from mlops_drill.errors import DrillError
from mlops_drill.grader.report import GradedTranscript
from mlops_drill.grader.transcript import Event, Transcript, chain, read_transcript

_cache: dict[tuple[str, int], tuple[tuple[int, int], GradedTranscript | None]] = {}
_cache_lock = threading.Lock()


def drill_scenario(drill: Drill, seat: Seat | None = None):
    """The catalogue scenario with the instructor's time limit (the time dimension uses it): the seat's variant
    of a parameterised one, or the drill's when no seat is named (the dashboard's phases and steps, whose ids
    every variant shares).

    A seat that has started is graded against the values the engine recorded for it, not a fresh draw from
    its seed: the file may have changed since, and the grade must match the incident the seat really had.
    """
    from mlops_drill.injector import engine
    from mlops_drill.scenarios.variants import render, variant

    sc = engine.scenario(drill.scenario)
    seed = drill.seed if seat is None else drill.seat_seed(seat)
    if sc.parameters and seed is None:
        raise DrillError(f"drill {drill.id}: scenario {sc.id} has variants but the drill recorded no seed")
    drawn = None
    if sc.parameters and seat is not None and seat.values is not None:
        try:
            drawn = render(sc, seat.values, seed)
        except (DrillError, ValueError):  # the file changed since the seat started (ValueError: pydantic says the
            # filled-in file is invalid now): its seed is what is left
            drawn = None
    if drawn is None:
        drawn = variant(sc, seed)
    return drawn.model_copy(update={"time_limit_minutes": drill.time_limit_minutes})


def seat_transcript(store: DrillStore, drill: Drill, seat: Seat) -> Transcript | None:
    """The seat's streamed events plus the server's fix-check results, in time order.

    The streamed part keeps its own chain verdict (``tamper``); the merged list is
    re-chained because server events were never part of the seat's chain.
    """
    path = store.transcript_path(drill, seat)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    streamed = read_transcript(path)
    checks = [Event(ts=v.ts, kind="verification", data={"results": v.results, "by": v.why})
              for v in store.verifications(drill, seat)]
    merged = sorted([*streamed.events, *checks], key=lambda e: e.ts)
    return Transcript(path=str(path), events=chain(merged), tamper=streamed.tamper,
                      first_broken_seq=streamed.first_broken_seq)


def graded(store: DrillStore, drill: Drill, seat: Seat) -> GradedTranscript | None:
    from mlops_drill.grader.grade import grade

    path = store.transcript_path(drill, seat)
    key = (drill.id, seat.n)
    stamp = (path.stat().st_size if path.is_file() else 0, len(store.verifications(drill, seat)))
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] == stamp:
            return hit[1]
    transcript = seat_transcript(store, drill, seat)
    result = grade(transcript, drill_scenario(drill, seat)) if transcript is not None else None
    with _cache_lock:
        _cache[key] = (stamp, result)
    return result


def _phase_reached(result: GradedTranscript, phases: list) -> dict[str, Any] | None:
    done = {s.id for s in result.steps if s.done}  # StepResult.phase is a title: go by step ids
    reached = [p for p in phases if any(step.id in done for step in p.steps)]
    if not reached:
        return None
    last = reached[-1]
    return {"id": last.id, "title": last.title, "index": phases.index(last) + 1, "of": len(phases)}


def seat_row(store: DrillStore, drill: Drill, seat: Seat, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    scenario = drill_scenario(drill, seat)
    result = graded(store, drill, seat)
    checks = store.verifications(drill, seat)
    end = seat.finished_at or now
    row: dict[str, Any] = {
        "seat": seat.n, "state": seat.state, "error": seat.error, "code": seat.code,
        "joined": seat.joined_at is not None, "finished": seat.finished_at is not None,
        "elapsed_s": round(end - seat.started_at) if seat.started_at and seat.joined_at else None,
        "setup_s": seat.setup_s, "phase": None, "steps_done": [], "steps_required": 0,
        "required_done": 0, "hints_used": 0, "score": None, "commands": 0,
        "fixed": all(checks[-1].results.values()) if checks else None,
        "checks": checks[-1].results if checks else None, "tamper": None,
        # Instructor-only (this row never reaches a seat endpoint): what replays the seat's grade.
        "seed": drill.seat_seed(seat), "values": seat.values,
    }
    if result is not None:
        row.update({
            "phase": _phase_reached(result, scenario.expected.phases),
            "steps_done": [s.id for s in result.steps if s.done],
            "steps_required": sum(s.required for s in result.steps),
            "required_done": sum(s.required and s.done for s in result.steps),
            "hints_used": len(result.hints), "score": result.score,
            "commands": sum(c.status not in ("verification",) for c in result.commands),
            "tamper": result.tamper,
        })
    return row


def dashboard(store: DrillStore, drill: Drill) -> dict[str, Any]:
    scenario = drill_scenario(drill)
    return {"id": drill.id, "scenario": drill.scenario, "title": scenario.title, "state": drill.state,
            "time_limit_minutes": drill.time_limit_minutes, "created_at": drill.created_at,
            "seed": drill.seed, "seed_per_seat": drill.seed_per_seat,
            "phases": [{"id": p.id, "title": p.title} for p in scenario.expected.phases],
            "seats": [seat_row(store, drill, seat) for seat in drill.seats]}


def debrief(store: DrillStore, drill: Drill) -> dict[str, Any]:
    """Per playbook step: how many seats did it, and how many did it in order."""
    scenario = drill_scenario(drill)
    results = [r for r in (graded(store, drill, s) for s in drill.seats) if r is not None]
    steps = []
    for phase in scenario.expected.phases:
        for step in phase.steps:
            mine = [s for r in results for s in r.steps if s.id == step.id]
            steps.append({"id": step.id, "title": step.title, "phase": phase.id, "phase_title": phase.title,
                          "required": step.required, "reason": step.reason,
                          "done": sum(s.done for s in mine), "in_order": sum(bool(s.in_order) for s in mine)})
    return {"id": drill.id, "scenario": drill.scenario, "seats_graded": len(results),
            "seats": len(drill.seats), "steps": steps}


def export_zip(store: DrillStore, drill: Drill) -> bytes:
    """Every graded seat as HTML + JSON, plus its raw streamed transcript and the dashboard."""
    from mlops_drill.grader.render import render

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("dashboard.json", json.dumps(dashboard(store, drill), indent=1))
        archive.writestr("debrief.json", json.dumps(debrief(store, drill), indent=1))
        for seat in drill.seats:
            result = graded(store, drill, seat)
            if result is None:
                continue
            archive.writestr(f"seat-{seat.n}.html", render(result, "html"))
            archive.writestr(f"seat-{seat.n}.json", render(result, "json"))
            archive.write(store.transcript_path(drill, seat), f"seat-{seat.n}.transcript.jsonl")
    return buffer.getvalue()
