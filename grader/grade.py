"""grade(events, scenario) -> GradedTranscript: a pure function, explainable line by line.

Why it only composes: the facts come from one pass over the transcript
(:mod:`.walk`), each rubric dimension is its own small pure function
(:mod:`.rubric`), and this module weighs them into a process score, takes the
deductions off, places it in the outcome's band and assembles the report. docs/grader.md states the rubric in
words. Determinism: no wall clock, no set or dict order leaks into results
(everything iterates in transcript or scenario order), so the same transcript
always gets the same grade.
"""
from __future__ import annotations

from typing import Iterable

from mlops_drill.grader import rubric
from mlops_drill.grader.plan import Plan, build_plan
from mlops_drill.grader.report import (Deduction, DimensionScore, GradedTranscript, NextStep, RedHerringResult,
                                       StepResult, Times)
from mlops_drill.grader.transcript import Event, Transcript
from mlops_drill.grader.walk import Facts, walk
from mlops_drill.grader.weak_signals import BLIND_RETRAIN
from mlops_drill.scenarios.schema import Scenario

WEIGHTS = rubric.WEIGHTS
_DIMENSIONS = {"coverage": rubric.coverage, "order": rubric.order,
               "efficiency": rubric.efficiency, "end_state": rubric.end_state,
               "diagnosis": rubric.diagnosis, "time": rubric.timing}


def grade(events: Iterable[Event] | Transcript, scenario: Scenario, *,
          plan: Plan | None = None) -> GradedTranscript:
    """Score one transcript against one scenario; see :mod:`.rubric` for the rules."""
    tamper = None
    if isinstance(events, Transcript):
        tamper, events = events.tamper, events.events
    plan = plan or build_plan(scenario)
    f = walk(list(events), scenario, plan)

    scored = {name: fn(f) for name, fn in _DIMENSIONS.items()}
    weights = dict(WEIGHTS)
    if scenario.red_herrings:  # a row only where the scenario has some: other reports stay as they were
        scored["red_herrings"] = rubric.red_herrings(f)
        weights["red_herrings"] = rubric.RED_HERRING_WEIGHT
    if f.synthetic_times:
        weights["time"] = 0.0
    if f.offline:
        weights["end_state"] = 0.0
    total_w = sum(weights.values())
    dims = [DimensionScore(name=n, score=round(d.score, 1), weight=weights[n],
                           contribution=round(d.score * weights[n] / total_w, 2), detail=d.detail)
            for n, d in scored.items()]
    deductions = _deductions(f)
    ap_points = sum(d.points for d in deductions if d.kind == "anti-pattern")
    dims.append(DimensionScore(name="anti_patterns", score=round(max(0.0, 100.0 - ap_points), 1),
                               weight=0.0, contribution=-round(ap_points, 2),
                               detail=f"{sum(d.kind == 'anti-pattern' for d in deductions)} weak "
                                      f"signal(s), -{ap_points:g} points off the total"))
    out = rubric.outcome(f)
    process = sum(d.score * weights[n] for n, d in scored.items()) / total_w
    # Deductions take their share of the process score (10 points = 10 %), so a harmful change
    # costs a careful answer as much as ever but cannot push a small effort below doing nothing.
    process = max(0.0, min(100.0, process * (1.0 - sum(d.points for d in deductions) / 100.0)))
    total = out.place(process)
    dims.append(DimensionScore(name="outcome", score=round(total, 1), weight=0.0,
                               contribution=0.0,
                               detail=f"{out.detail}: process {process:.1f}/100 -> {total:.1f}"))
    return GradedTranscript(
        scenario=scenario.id, title=scenario.title, score=round(total, 1), dimensions=dims,
        deductions=deductions, commands=f.annotated, steps=_steps(f), missed=_missed(f),
        strong_next=_strong_next(f, out), diagnosis=f.diagnosis, hypotheses=f.hypotheses,
        hints=f.hints, times=_times(f), verification=f.verification, tamper=tamper,
        timing_synthetic=f.synthetic_times, outcome=out.status, offline=f.offline,
        seed=scenario.variant.seed if scenario.variant else None,
        values=dict(scenario.variant.values) if scenario.variant else None,
        red_herrings=_red_herrings(f))


# --------------------------------------------------------------------------- composition

def _deductions(f: Facts) -> list[Deduction]:
    """Points straight off the total, each tied to the line that cost them, in line order."""
    by_index = {c.index: c for c in f.annotated}
    out: list[Deduction] = list(f.anti_patterns) + list(f.red_herring_deductions)
    for idx, points, why in rubric.blind_change_points(f):
        out.append(Deduction(kind="blind-change", id=f"blind-change-{idx}", points=points,
                             seq=by_index[idx].seq, why=why))
    retrain = next((i for i, s in f.statement_signals if s.id == BLIND_RETRAIN), None)
    if retrain is not None:
        out.append(Deduction(kind="weak-signal", id=BLIND_RETRAIN,
                             points=rubric.RETRAIN_SIGNAL_POINTS, seq=by_index[retrain].seq,
                             why="Recommending retraining without defining a trigger or "
                                 "validation gate"))
    for h in f.hints:
        out.append(Deduction(kind="hint", id=f"hint-{h.index + 1}", points=h.cost, seq=h.seq,
                             why=f"hint {h.index + 1} used at {_mmss(h.t)}"))
    return sorted(out, key=lambda d: d.seq)


def _red_herrings(f: Facts) -> list[RedHerringResult]:
    return [RedHerringResult(id=h.id, signal=h.signal, reason=h.reason,
                             treatment="touched" if h.id in f.herrings_touched
                             else "ruled-out" if h.id in f.herrings_examined else "ignored",
                             ruled_out_at=f.herrings_examined.get(h.id), touched_at=f.herrings_touched.get(h.id))
            for h in f.scenario.red_herrings]


def _steps(f: Facts) -> list[StepResult]:
    plan = f.plan
    late = {sid for _, sid, _ in f.out_of_order}
    return [StepResult(id=s.id, title=s.title, phase=plan.phase_titles[plan.phase_of[s.id]],
                       required=s.required, done=s.id in f.done, first_index=f.done.get(s.id),
                       in_order=(s.id not in late) if s.id in f.done else None,
                       times=f.counts.get(s.id, 0), reason=s.reason,
                       reference=plan.reference.get(s.id)) for s in plan.steps]


def _missed(f: Facts) -> list[NextStep]:
    return [NextStep(step=s.id, title=s.title, reason=s.reason, command=f.plan.reference.get(s.id))
            for s in f.plan.steps if s.required and s.id not in f.done]


def _times(f: Facts) -> Times:
    actions = f.actions
    rows = list(zip(actions, f.annotated))  # one annotated row per action, in order
    first_step = next((a for a, c in rows if c.status == "step"), None)
    first_evidence = next((a for a, c in rows if c.status == "step" and c.step in f.plan.evidence),
                          None)
    correct_h = next((h for h in f.hypotheses if h.correct), None)
    first_accepted = next((a for a in actions if a.kind == "diagnosis"
                           and f.scenario.accepts_as_diagnosis(a.text)), None)
    root_t = [x for x in (correct_h.t if correct_h else None,
                          f.rel(first_accepted) if first_accepted else None) if x is not None]
    fixed = bool(f.verification) and all(f.verification.values())
    last_fix = f.applied[-1] if f.applied else None
    return Times(
        to_first_evidence=f.rel(first_step) if first_step else None,
        to_localisation=f.rel(first_evidence) if first_evidence else None,
        to_root_cause=min(root_t) if root_t else None,
        to_mitigation=f.rel(actions[last_fix - 1]) if fixed and last_fix else None,
        to_first_correct_hypothesis=correct_h.t if correct_h else None,
        fixes_before_correct_hypothesis=correct_h.fixes_before if correct_h else len(f.mutations),
        elapsed=round(max(0.0, f.last_activity - f.start), 3))


def _mmss(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def _ref(plan: Plan, sid: str) -> str:
    line = plan.reference.get(sid)
    return f": `{line}`" if line else ""


def _strong_next(f: Facts, out: rubric.Outcome) -> list[str]:
    """Concrete advice, earliest mistake first, each tied to a reference command."""
    plan, scenario = f.plan, f.scenario
    advice: list[str] = []
    by_index = {c.index: c for c in f.annotated}
    first_symptom = next((s for s in plan.steps if s.id in plan.symptom), None)
    if not rubric.symptom_reproduced(f) and first_symptom:
        advice.append("Reproduce the symptom before changing anything - "
                      f"{first_symptom.title.lower()}{_ref(plan, first_symptom.id)}")
    premature = rubric.blind_changes(f)
    if premature:
        ev = next((s for s in plan.steps if s.id in plan.evidence), None)
        if ev:
            advice.append(f"Before `{by_index[premature[0]].line}` (#{premature[0]}), find evidence "
                          f"of the cause - {ev.title.lower()}{_ref(plan, ev.id)}")
    for idx, sid, missing in f.out_of_order[:2]:
        pred = plan.by_id[missing[0]]
        advice.append(f"Before '{plan.by_id[sid].title}' (#{idx}), a strong answer would "
                      f"{pred.title[:1].lower() + pred.title[1:]}{_ref(plan, pred.id)}")
    for step in _missed(f)[:3]:
        advice.append(f"Next: {step.title}" + (f": `{step.command}`" if step.command else "")
                      + f" - {step.reason}")
    last_fix = f.applied[-1] if f.applied else None
    if not rubric.symptom_rechecked(f) and last_fix is not None:
        verify = next((s for s in plan.steps if s.id in plan.symptom
                       and plan.roles[plan.phase_of[s.id]] == "verification"), first_symptom)
        if verify:
            advice.append(f"After `{by_index[last_fix].line}` (#{last_fix}), re-check the symptom - "
                          f"{verify.title.lower()}{_ref(plan, verify.id)}")
    if out.status == "claimed-healthy":
        advice.append("A service that answers 200 can still be wrong: the briefing reports a "
                      "real incident, so keep looking until you find what the symptom comes from")
    if not f.diagnosis.accepted:
        words = ", ".join(kw.split("|")[0] for kw in scenario.accepted_diagnoses[0])
        advice.append('State the root cause with `mlops-drill diagnose "..."` '
                      f"(an accepted diagnosis names: {words})")
    return advice
