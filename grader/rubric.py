"""The rubric: one small pure function per dimension, each reading the same Facts.

Why these rules (docs/grader.md says them in words, with a worked example each):

* credit is earned only on what was done: order quality multiplies coverage and
  there is no order credit without evidence of the cause, so a single "step in
  order" or a careful look at nothing earns nothing;
* efficiency is relative to progress: doing nothing is not efficient;
* the outcome dominates: it decides the band the score lies in (resolved
  40-100, open 0-38, called healthy while broken 0-10; :func:`outcome`), and the
  process decides the place inside the band;
* offline, where no verification can be recorded, the end state is "not
  verifiable" (weight 0, spread over the rest) and the fix is inferred from the
  matched remediation and the re-check after it.

Every function returns a :class:`Dim` (score 0-100 and a one-line detail), so
``grade()`` only weighs and composes them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from mlops_drill.grader.walk import Facts
from mlops_drill.grader.weak_signals import HEALTHY

WEIGHTS: dict[str, float] = {"coverage": 15, "order": 40, "efficiency": 15, "end_state": 10,
                             "diagnosis": 15, "time": 5}
# Only where the scenario has red herrings (weight 0 and no row otherwise): ruled out with evidence
# 100, left alone HERRING_IGNORED (not wrong: an expert may see it is beside the point), "fixed" 0.
RED_HERRING_WEIGHT = 10.0
HERRING_IGNORED = 50.0
# Order quality (sum 100): precedence of steps, no change before evidence of the cause,
# symptom reproduced before the first change, symptom re-checked after the last one.
ORDER_PARTS = {"precedence": 40, "evidence_first": 40, "reproduced": 10, "rechecked": 10}
DIAGNOSIS_EARLIER_ONLY = 40.0   # the final diagnosis is wrong, an earlier one was right
DIAGNOSIS_UNSUPPORTED = 50.0    # right, but stated before any evidence of the cause: a guess
# Score bands by outcome: the outcome decides the band, the process the place in it. So an
# open incident never outscores a fixed one, and "it's healthy" never outscores an honest
# search that found something.
BANDS: dict[str, tuple[float, float]] = {"resolved": (40.0, 100.0),
                                         "fixed-unchecked": (30.0, 90.0),
                                         "open": (0.0, 38.0), "claimed-healthy": (0.0, 10.0)}
RESOLVED_KNEE = 50.0
EFFICIENCY_FULL_AT = 0.5   # share of required steps done from which efficiency counts in full
# A change before any evidence of the cause: a lucky guess when it was the right change,
# a disruptive reflex (restart, scale, retrain) when it matches no step.
BLIND_FIX_POINTS, BLIND_STRAY_POINTS, BLIND_MAX = 15.0, 20.0, 60.0
RETRAIN_SIGNAL_POINTS = 5.0

OutcomeStatus = Literal["resolved", "fixed-unchecked", "open", "claimed-healthy"]


@dataclass(frozen=True)
class Dim:
    score: float
    detail: str


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    detail: str

    @property
    def band(self) -> tuple[float, float]:
        return BANDS[self.status]

    def place(self, process: float) -> float:
        """The final score: the process score (0-100) placed inside the outcome's band.

        Open bands scale the process linearly. The resolved band keeps a good
        process's score as it is and squeezes only the weakest (a fix reached
        through blind changes) into the band's bottom, so differences between
        good answers are not compressed.
        """
        lo, hi = self.band
        p = max(0.0, min(100.0, process))
        if self.status in ("resolved", "fixed-unchecked"):
            lo_fixed = BANDS["resolved"][0]
            fixed = p if p >= RESOLVED_KNEE else lo_fixed + (RESOLVED_KNEE - lo_fixed) * p / RESOLVED_KNEE
            # Not re-checked: the same place, one step lower, so it never outscores a re-check.
            return fixed - (lo_fixed - lo) if self.status == "fixed-unchecked" else fixed
        return lo + (hi - lo) * p / 100.0


def progress(f: Facts) -> float:
    """Share of the required steps done, 0-1: what every "quality" score is scaled by."""
    required = [s for s in f.plan.steps if s.required]
    if not required:
        return 1.0
    return sum(s.id in f.done for s in required) / len(required)


def coverage(f: Facts) -> Dim:
    required = [s for s in f.plan.steps if s.required]
    done = sum(s.id in f.done for s in required)
    return Dim(100.0 * progress(f), f"{done}/{len(required)} required steps done")


def order(f: Facts) -> Dim:
    """Order quality times coverage; nothing without evidence of the cause.

    Precedence is Kendall's tau over the plan's "P must come before S" pairs of
    required steps, with a pair kept only when both steps were done and P came
    first; every other pair (reversed, or a step never done) counts against, so
    tau = 2 * kept / pairs - 1, floored at 0: a random order earns nothing, and
    leaving a step out can only lose pairs, never gain them.
    """
    plan = f.plan
    found_cause = any(s in f.done for s in plan.evidence)
    pairs = kept = 0
    for step in plan.steps:
        if not step.required:
            continue
        at = f.done.get(step.id)
        for pred in plan.order_preds[step.id]:
            if not plan.by_id[pred].required:
                continue
            pairs += 1
            kept += at is not None and f.done.get(pred, at + 1) < at
    if pairs:
        precedence = 100.0 * max(0.0, 2.0 * kept / pairs - 1.0)
    else:
        precedence = 100.0 * progress(f)
    premature = blind_changes(f)
    reproduced = symptom_reproduced(f)
    rechecked = symptom_rechecked(f)
    quality = (ORDER_PARTS["precedence"] * precedence / 100
               + ORDER_PARTS["evidence_first"] * (0.0 if premature else 1.0)
               + ORDER_PARTS["reproduced"] * reproduced + ORDER_PARTS["rechecked"] * rechecked)
    in_order = len(f.done) - len({sid for _, sid, _ in f.out_of_order})
    detail = (f"{in_order}/{len(f.done)} steps in order; {len(premature)} change(s) before "
              f"evidence of the cause; symptom {'reproduced' if reproduced else 'not reproduced'}"
              f" before the first change, {'re-checked' if rechecked else 'not re-checked'} "
              "after the last one")
    if not found_cause:
        return Dim(0.0, "no evidence of the cause gathered, so no order credit; " + detail)
    # Precedence already counts skipped steps against; the other parts scale with progress.
    scaled = (ORDER_PARTS["precedence"] * precedence / 100
              + (quality - ORDER_PARTS["precedence"] * precedence / 100) * progress(f))
    return Dim(scaled, detail)


def efficiency(f: Facts) -> Dim:
    """Useful steps against excess waste, scaled by progress: doing nothing is not efficient."""
    required = sum(s.required for s in f.plan.steps)
    free = 1 + math.ceil(0.25 * required)
    excess = max(0, f.waste - free)
    ratio = f.useful / (f.useful + excess) if f.useful else 0.0
    # Full credit once half the required steps are done; less the less was achieved.
    scale = min(1.0, progress(f) / EFFICIENCY_FULL_AT)
    return Dim(100.0 * ratio * scale,
               f"{f.useful} useful, {f.waste} unmatched or redundant ({free} free), "
               f"x{scale:.2f} for progress {progress(f):.0%}")


def red_herrings(f: Facts) -> Dim:
    """Harmless facts ruled out with evidence, not "fixed"; scaled by progress like efficiency.

    Why scaled: a look at the noise while the cause stays unfound is not careful
    work, so it must not lift an empty search above one that made progress.
    """
    herrings = f.scenario.red_herrings
    if not herrings:
        return Dim(0.0, "no red herrings in this scenario")
    marks = [0.0 if h.id in f.herrings_touched else 100.0 if h.id in f.herrings_examined else HERRING_IGNORED
             for h in herrings]
    scale = min(1.0, progress(f) / EFFICIENCY_FULL_AT)
    ruled = sum(h.id in f.herrings_examined and h.id not in f.herrings_touched for h in herrings)
    touched = sum(h.id in f.herrings_touched for h in herrings)
    return Dim(sum(marks) / len(marks) * scale,
               f"{ruled}/{len(herrings)} red herring(s) ruled out with evidence, {touched} 'fixed'; "
               f"x{scale:.2f} for progress {progress(f):.0%}")


def end_state(f: Facts) -> Dim:
    """Share of the fix checks passing, once the symptom was re-checked after the last change."""
    if f.offline:
        return Dim(0.0, "not verifiable offline: no fix verification recorded (weight spread "
                        "over the other dimensions)")
    passed = sum(f.verification.values())
    total = len(f.verification)
    if not symptom_rechecked(f):
        return Dim(0.0, f"{passed}/{total} fix checks pass; no credit: symptom not re-checked "
                        "after the last change")
    return Dim(100.0 * passed / total if total else 0.0, f"{passed}/{total} fix checks pass")


def diagnosis(f: Facts) -> Dim:
    d = f.diagnosis
    if d.text is None:
        return Dim(0.0, "no diagnosis stated")
    if d.accepted:
        supported = f.diagnosis_index is not None and f.evidence_before(f.diagnosis_index)
        if supported:
            return Dim(100.0, "accepted")
        return Dim(DIAGNOSIS_UNSUPPORTED, "accepted, but stated before any evidence of the cause")
    if any(i == f.diagnosis_index and s.id == HEALTHY for i, s in f.statement_signals):
        return Dim(0.0, "calls the system healthy while the incident is open")
    if f.any_diagnosis_accepted:
        return Dim(DIAGNOSIS_EARLIER_ONLY, "final diagnosis not accepted (an earlier one was)")
    return Dim(0.0, "not accepted")


def timing(f: Facts) -> Dim:
    """Full marks within half the limit, 60 at the limit, 0 at twice; speed at nothing earns 0."""
    if f.synthetic_times:
        return Dim(0.0, "n/a: imported without real timestamps")
    elapsed = max(0.0, f.last_activity - f.start)
    limit = f.limit_s
    used = f"{_mmss(elapsed)} of {_mmss(limit)}"
    if not f.done:
        return Dim(0.0, used + "; no step done")
    if elapsed <= limit / 2:
        score = 100.0
    elif elapsed <= limit:
        score = 100.0 - 40.0 * (elapsed - limit / 2) / (limit / 2)
    else:
        score = max(0.0, 60.0 - 60.0 * (elapsed - limit) / limit)
    return Dim(score, used)


def outcome(f: Facts) -> Outcome:
    """Was the incident closed? Recorded checks decide; offline, the commands do.

    Offline a fix is inferred when every required remediation step was done by a
    change that took effect, the symptom was looked at again after the last
    change, and the final diagnosis (if any) names the scenario's cause: what an
    instructor reading the history would conclude.
    """
    healthy = any(i == f.diagnosis_index and s.id == HEALTHY for i, s in f.statement_signals)
    if f.verification:
        fixed = all(f.verification.values())
        how = f"{sum(f.verification.values())}/{len(f.verification)} fix checks pass"
    else:
        remediation = [s for s in f.plan.steps if s.required and s.id in f.plan.remediation]
        fixed = bool(remediation) and all(s.id in f.done for s in remediation)
        how = ("remediation done: " + ", ".join(s.title.lower() for s in remediation)
               if fixed else "no remediation step of the scenario was done")
        if fixed and f.diagnosis.text is not None and not f.diagnosis.accepted:
            # The command line cannot show what an edited file or a patch changed; the
            # candidate's own diagnosis can: a change aimed at another cause is not the fix.
            fixed = False
            how += ", but aimed at another cause (the final diagnosis is not the scenario's)"
    if fixed and symptom_rechecked(f):
        status, what = "resolved", f"resolved ({how}; symptom re-checked after it)"
    elif fixed:
        status, what = "fixed-unchecked", f"fixed but not re-checked ({how})"
    elif healthy:
        status, what = "claimed-healthy", f"incident open and called healthy ({how})"
    else:
        status, what = "open", f"incident left open ({how})"
    lo, hi = BANDS[status]
    return Outcome(status, f"{what}: score placed in {lo:g}-{hi:g}")


def blind_changes(f: Facts) -> list[int]:
    """Indices of changes made before any evidence of the cause."""
    return [i for i in f.mutations if f.change_is_blind(i)]


def blind_change_points(f: Facts) -> list[tuple[int, float, str]]:
    """(index, points, why) per applied change made before any evidence of the cause."""
    out: list[tuple[int, float, str]] = []
    spent = 0.0
    stray = set(f.stray_changes)
    for i in f.applied:
        if not f.change_is_blind(i):
            continue
        points = BLIND_STRAY_POINTS if i in stray else BLIND_FIX_POINTS
        points = min(points, BLIND_MAX - spent)
        if points <= 0:
            break
        spent += points
        why = ("a change no senior answer makes, before any evidence of the cause" if i in stray
               else "the right kind of change, made before any evidence of the cause (a guess)")
        out.append((i, points, why))
    return out


def symptom_reproduced(f: Facts) -> bool:
    first = f.mutations[0] if f.mutations else None
    return bool(f.symptom_idx) and (first is None or f.symptom_idx[0] < first)


def symptom_rechecked(f: Facts) -> bool:
    last = f.applied[-1] if f.applied else None
    return bool(f.symptom_idx) and (last is None or f.symptom_idx[-1] > last)


def _mmss(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"
