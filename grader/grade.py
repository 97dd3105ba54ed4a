"""grade(events, scenario) -> GradedTranscript: a pure function, explainable line by line.

Why the rubric looks like this: the product's promise is "did you reason like a
senior MLOps engineer", so how the candidate got there (order 35 %, coverage
25 %) outweighs whether the end state is fixed (10 %, every lab checks that).
The figures live in :data:`WEIGHTS` and the constants below; docs/grader.md
states the rubric in words. Determinism: no wall clock, no set or dict order
leaks into results (everything iterates in transcript or scenario order), so
the same transcript always gets the same grade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from mlops_drill.grader.actions import Action, _ParseCache, extract_actions
from mlops_drill.grader.plan import Plan, assign_step, build_plan
from mlops_drill.grader.report import (AnnotatedCommand, Deduction, DiagnosisResult,
                                       DimensionScore, GradedTranscript, HintUse,
                                       HypothesisResult, NextStep, StepResult, Times)
from mlops_drill.grader.transcript import Event, Transcript
from mlops_drill.scenarios.schema import Scenario

WEIGHTS: dict[str, float] = {"coverage": 25, "order": 40, "efficiency": 5, "end_state": 10,
                             "diagnosis": 15, "time": 5}
# Order sub-scores (sum 100): precedence of steps, no mutation before evidence of the cause,
# symptom reproduced before the first fix, symptom re-checked after the last one.
ORDER_PARTS = {"precedence": 55, "evidence_first": 30, "reproduced": 7.5, "rechecked": 7.5}
# Tools whose invocations are graded for efficiency; anything else (ls, jq, cat) is neutral.
PROBE_TOOLS = frozenset({"kubectl", "curl", "nvidia-smi", "helm", "wget", "http", "mlflow", "dvc"})
# kubectl verbs that are means, not evidence (port-forward serves the curl that follows).
NEUTRAL_KUBECTL_VERBS = frozenset({"port-forward", "proxy", "config", "version", "api-resources",
                                   "api-versions", "explain", "completion", "help", "options"})
HINT_BASE, HINT_EARLY = 2.0, 6.0
DIAGNOSIS_EARLIER_ONLY = 40.0   # the final diagnosis is wrong, an earlier one was right
DIAGNOSIS_UNSUPPORTED = 50.0    # right, but stated before any evidence of the cause: a guess


@dataclass
class _State:
    done: dict[str, int] = field(default_factory=dict)         # step -> action index first done
    counts: dict[str, int] = field(default_factory=dict)
    seen_since_change: set = field(default_factory=set)        # command keys since last mutation
    flagged: set[str] = field(default_factory=set)             # anti-patterns already deducted


def grade(events: Iterable[Event] | Transcript, scenario: Scenario, *,
          plan: Plan | None = None) -> GradedTranscript:
    """Score one transcript against one scenario; see the module doc for the rubric."""
    tamper = None
    if isinstance(events, Transcript):
        tamper, events = events.tamper, events.events
    events = list(events)
    plan = plan or build_plan(scenario)
    start = _session_start(events)
    limit = scenario.time_limit_minutes * 60.0
    parse_cache = _ParseCache()  # keeps every parsed command alive, so id() keys stay valid
    actions = extract_actions(events, parse_cache)
    synthetic = any(a.synthetic_ts for a in actions)
    rel = lambda a: round(a.ts - start, 3)  # noqa: E731

    st = _State()
    annotated: list[AnnotatedCommand] = []
    deductions: list[Deduction] = []
    match_cache: dict = {}
    key_cache: dict[int, tuple] = {}
    mutations: list[int] = []          # indices of attempted mutations
    applied: list[int] = []            # indices of mutations that succeeded
    probe_n = waste = useful = 0
    symptom_idx: list[int] = []
    first_evidence = first_step = None
    hypotheses: list[HypothesisResult] = []
    hints: list[HintUse] = []
    diag: DiagnosisResult = DiagnosisResult(text=None, accepted=False)
    any_diag_accepted = False
    verification: dict[str, bool] | None = None
    last_activity = start
    out_of_order: list[tuple[int, str, tuple[str, ...]]] = []

    for idx, act in enumerate(actions, start=1):
        t = rel(act)
        if act.kind != "verification":
            last_activity = max(last_activity, act.ts)
        if act.kind == "verification":
            verification = dict(act.results)
            passed = sum(verification.values())
            annotated.append(AnnotatedCommand(
                index=idx, seq=act.seq, t=t, line=act.line or "verification", tool=None,
                exit_code=None, status="verification",
                notes=[f"fix checks: {passed}/{len(verification)} passed"]))
            continue
        if act.kind in ("diagnosis", "hypothesis"):
            ok = scenario.accepts_diagnosis(act.text)
            note = "matches an accepted diagnosis" if ok else "not an accepted diagnosis"
            if ok and not any(s in st.done for s in sorted(plan.evidence)):
                note += ", but stated before any evidence of the cause"
            if act.kind == "diagnosis":
                diag = DiagnosisResult(text=act.text, accepted=ok, seq=act.seq)
                any_diag_accepted |= ok
            else:
                hypotheses.append(HypothesisResult(seq=act.seq, t=t, text=act.text, correct=ok,
                                                   fixes_before=len(mutations)))
            annotated.append(AnnotatedCommand(
                index=idx, seq=act.seq, t=t, line=act.line or f'{act.kind}: "{act.text}"',
                tool="mlops-drill", exit_code=act.exit_code, status=act.kind, notes=[note]))
            continue
        if act.kind == "hint":
            number = act.hint_index if act.hint_index is not None else len(hints)
            hint = scenario.hints[number] if 0 <= number < len(scenario.hints) else None
            cost = round(HINT_BASE + HINT_EARLY * max(0.0, 1.0 - max(0.0, t) / limit), 2)
            hints.append(HintUse(seq=act.seq, t=t, index=number,
                                 text=hint.text if hint else f"(unknown hint {number})",
                                 reveals_step=hint.reveals_step if hint else None, cost=cost))
            deductions.append(Deduction(kind="hint", id=f"hint-{number + 1}", points=cost,
                                        seq=act.seq, why=f"hint {number + 1} used at {_mmss(t)}"))
            annotated.append(AnnotatedCommand(
                index=idx, seq=act.seq, t=t, line=act.line or f"hint {number + 1}",
                tool="mlops-drill", exit_code=act.exit_code, status="hint",
                notes=[f"hint {number + 1} (-{cost:g} points; earlier hints cost more)"]))
            continue

        cmd = act.cmd
        assert cmd is not None
        key = key_cache.get(id(cmd))  # parsed commands are shared per distinct line
        if key is None:
            key = key_cache[id(cmd)] = _command_key(cmd)
        hit = match_cache.get(key)
        if hit is None:
            hit = match_cache[key] = (
                plan.matching(cmd),
                tuple(ap for ap in scenario.anti_patterns if ap.matches(cmd)),
                plan.is_symptom_probe(cmd))
        candidates, aps, is_symptom = hit
        notes: list[str] = []
        mutation = act.mutation
        failed = act.exit_code not in (None, 0)
        probe = cmd.tool in PROBE_TOOLS and not (cmd.tool == "kubectl"
                                                 and cmd.verb in NEUTRAL_KUBECTL_VERBS)
        probe_n += probe

        for ap in aps:
            if ap.unless_after and all(s in st.done for s in ap.unless_after):
                continue
            if ap.id in st.flagged:
                notes.append(f"anti-pattern again: {ap.signal} ({ap.id}, already deducted)")
                continue
            st.flagged.add(ap.id)
            why = ap.signal
            if ap.unless_after:
                why += " - before " + ", ".join(plan.by_id[s].title.lower()
                                                for s in ap.unless_after if s not in st.done)
            deductions.append(Deduction(kind="anti-pattern", id=ap.id, points=float(ap.penalty),
                                        seq=act.seq, why=why))
            notes.append(f"anti-pattern: {why} (-{ap.penalty})")

        sid, new = assign_step(plan, candidates, st.done)
        if mutation:
            mutations.append(idx)
            if not failed and not plan.is_bookkeeping(sid):
                applied.append(idx)
            if not any(s in st.done for s in sorted(plan.evidence)):
                notes.append("mutation before any evidence of the cause")
            if not symptom_idx:
                notes.append("changed the system before reproducing the symptom")

        status: str
        if sid is None:
            status = "unmatched" if probe else "other"
            if probe:
                waste += 1
                notes.append("matches no step of a senior answer")
        elif mutation and failed:
            status = "failed"
            notes.append(f"failed (exit {act.exit_code}): the fix did not apply, not counted")
        elif new:
            status = "step"
            missing = tuple(p for p in plan.order_preds[sid] if p not in st.done)
            if missing:
                out_of_order.append((idx, sid, missing))
                notes.append("out of order: " + "; ".join(_why_before(plan, sid, p)
                                                          for p in missing))
            st.done[sid] = idx
            useful += 1
        else:
            status = "repeat"
        if sid is not None:
            st.counts[sid] = st.counts.get(sid, 0) + (0 if status == "failed" else 1)
            if first_step is None and status == "step":
                first_step = act
            if first_evidence is None and status == "step" and sid in plan.evidence:
                first_evidence = act
        if status in ("repeat", "unmatched") and probe and key in st.seen_since_change:
            status = "redundant"
            if sid is None:
                notes[-1] = "redundant: same command already run, nothing changed since"
            else:
                waste += 1
                notes.append("redundant: same command already run, nothing changed since")
        if mutation and not failed:
            st.seen_since_change.clear()
        elif probe:
            st.seen_since_change.add(key)
        if is_symptom:
            symptom_idx.append(idx)
        step = plan.by_id.get(sid) if sid else None
        annotated.append(AnnotatedCommand(
            index=idx, seq=act.seq, t=t, line=act.line, tool=cmd.tool, exit_code=act.exit_code,
            status=status, step=sid, step_title=step.title if step else None,
            phase=plan.phase_titles[plan.phase_of[sid]] if sid else None,
            reason=step.reason if step else None, mutation=mutation, notes=notes))

    # ---------------------------------------------------------------- dimensions
    required = [s for s in plan.steps if s.required]
    req_done = [s for s in required if s.id in st.done]
    coverage = 100.0 * len(req_done) / len(required) if required else 100.0

    in_order = {sid: True for sid in st.done}
    for _, sid, _missing in out_of_order:
        in_order[sid] = False
    pairs, violated = _precedence_pairs(plan, st.done)
    # Kendall's tau over the precedence pairs, floored at 0: a random order scores 0.
    precedence = 100.0 * max(0.0, 1.0 - 2.0 * violated / pairs) if pairs else (
        100.0 if st.done else 0.0)
    premature = [i for i in mutations if not _evidence_before(plan, st.done, i)]
    evidence_first = 0.0 if premature else 100.0
    first_mut = mutations[0] if mutations else None
    reproduced = bool(symptom_idx) and (first_mut is None or symptom_idx[0] < first_mut)
    last_fix = applied[-1] if applied else None
    rechecked = bool(symptom_idx) and (last_fix is None or symptom_idx[-1] > last_fix)
    order = (ORDER_PARTS["precedence"] * precedence / 100 + ORDER_PARTS["evidence_first"]
             * evidence_first / 100 + ORDER_PARTS["reproduced"] * reproduced
             + ORDER_PARTS["rechecked"] * rechecked)
    if not st.done:
        order = 0.0

    free = 3 + math.ceil(0.25 * len(required))
    excess = max(0, waste - free)
    efficiency = 100.0 * useful / (useful + excess) if useful else 0.0

    if verification:
        passed = sum(verification.values())
        fix_fraction = passed / len(verification)
        end_state = 100.0 * fix_fraction if rechecked else 0.0
    else:
        fix_fraction, end_state = 0.0, 0.0

    diag_index = next((c.index for c in annotated if c.seq == diag.seq
                       and c.status == "diagnosis"), None)
    supported = diag_index is not None and _evidence_before(plan, st.done, diag_index)
    if diag.accepted:
        diagnosis = 100.0 if supported else DIAGNOSIS_UNSUPPORTED
    else:
        diagnosis = DIAGNOSIS_EARLIER_ONLY if any_diag_accepted else 0.0

    elapsed = max(0.0, last_activity - start)
    time_score = _time_score(elapsed, limit) if st.done else 0.0  # speed at nothing earns nothing

    weights = dict(WEIGHTS)
    if synthetic:
        weights["time"] = 0.0
    total_w = sum(weights.values())
    scores = {"coverage": coverage, "order": order, "efficiency": efficiency,
              "end_state": end_state, "diagnosis": diagnosis, "time": time_score}
    details = {
        "coverage": f"{len(req_done)}/{len(required)} required steps done",
        "order": (f"{sum(in_order.values())}/{len(in_order)} steps in order, "
                  f"{violated}/{pairs} precedence pairs reversed; "
                  f"{len(premature)} mutation(s) before evidence of the cause; symptom "
                  f"{'reproduced' if reproduced else 'not reproduced'} before the fix, "
                  f"{'re-checked' if rechecked else 'not re-checked'} after it"),
        "efficiency": f"{useful} useful, {waste} unmatched or redundant ({free} free)",
        "end_state": (("no verification recorded" if verification is None else
                       f"{sum(verification.values())}/{len(verification)} fix checks pass")
                      + ("" if rechecked or verification is None
                         else "; no credit: symptom not re-checked after the last change")),
        "diagnosis": ("no diagnosis stated" if diag.text is None else
                      "accepted" if diag.accepted and supported else
                      "accepted, but stated before any evidence of the cause" if diag.accepted else
                      "final diagnosis not accepted (an earlier one was)" if any_diag_accepted
                      else "not accepted"),
        "time": ("n/a: imported without real timestamps" if synthetic else
                 f"{_mmss(elapsed)} of {scenario.time_limit_minutes}:00"
                 + ("" if st.done else "; no step done")),
    }
    dims = [DimensionScore(name=n, score=round(scores[n], 1), weight=weights[n],
                           contribution=round(scores[n] * weights[n] / total_w, 2),
                           detail=details[n]) for n in WEIGHTS]
    ap_points = sum(d.points for d in deductions if d.kind == "anti-pattern")
    dims.append(DimensionScore(name="anti_patterns", score=round(max(0.0, 100.0 - ap_points), 1),
                               weight=0.0, contribution=-round(ap_points, 2),
                               detail=f"{sum(d.kind == 'anti-pattern' for d in deductions)} weak "
                                      f"signal(s), -{ap_points:g} points off the total"))
    weighted = sum(scores[n] * weights[n] for n in WEIGHTS) / total_w
    total = max(0.0, min(100.0, weighted - sum(d.points for d in deductions)))

    # ---------------------------------------------------------------- extras
    correct_h = next((h for h in hypotheses if h.correct), None)
    first_accepted = next((a for a in actions if a.kind == "diagnosis"
                           and scenario.accepts_diagnosis(a.text)), None)
    root_t = [x for x in (correct_h.t if correct_h else None,
                          rel(first_accepted) if first_accepted else None) if x is not None]
    fixed = bool(verification) and all(verification.values())
    times = Times(
        to_first_evidence=rel(first_step) if first_step else None,
        to_localisation=rel(first_evidence) if first_evidence else None,
        to_root_cause=min(root_t) if root_t else None,
        to_mitigation=rel(actions[last_fix - 1]) if fixed and last_fix else None,
        to_first_correct_hypothesis=correct_h.t if correct_h else None,
        fixes_before_correct_hypothesis=correct_h.fixes_before if correct_h else len(mutations),
        elapsed=round(elapsed, 3))

    steps_out = [StepResult(id=s.id, title=s.title, phase=plan.phase_titles[plan.phase_of[s.id]],
                            required=s.required, done=s.id in st.done,
                            first_index=st.done.get(s.id),
                            in_order=in_order.get(s.id) if s.id in st.done else None,
                            times=st.counts.get(s.id, 0), reason=s.reason,
                            reference=plan.reference.get(s.id)) for s in plan.steps]
    missed = [NextStep(step=s.id, title=s.title, reason=s.reason,
                       command=plan.reference.get(s.id)) for s in required if s.id not in st.done]
    advice = _strong_next(plan, scenario, annotated, missed, out_of_order, premature, reproduced,
                          rechecked, last_fix, diag)
    return GradedTranscript(
        scenario=scenario.id, title=scenario.title, score=round(total, 1), dimensions=dims,
        deductions=deductions, commands=annotated, steps=steps_out, missed=missed,
        strong_next=advice, diagnosis=diag, hypotheses=hypotheses, hints=hints, times=times,
        verification=verification, tamper=tamper, timing_synthetic=synthetic)


# --------------------------------------------------------------------------- helpers

def _session_start(events: list[Event]) -> float:
    """The session clock: the shell's recorded start, else the first event."""
    for ev in events:
        if ev.kind == "session" and "started_at" in ev.data:
            try:
                return float(ev.data["started_at"])
            except (TypeError, ValueError):
                break
    return events[0].ts if events else 0.0


def _command_key(cmd) -> tuple:
    """Two spellings of one command share a key (parsed fields, not text)."""
    if cmd.error:
        return ("raw", cmd.raw)
    return (cmd.tool, cmd.verb, cmd.subverb, cmd.resource, cmd.name, cmd.names, cmd.namespace,
            cmd.all_namespaces, cmd.output, cmd.selector, cmd.field_selector, cmd.container,
            cmd.exec_command, tuple(sorted((str(k), str(v)) for k, v in cmd.flags.items())),
            cmd.url, cmd.http_method, cmd.payload, cmd.args)


def _precedence_pairs(plan: Plan, done: dict[str, int]) -> tuple[int, int]:
    """(pairs, violated) over "P must come before S" for every done S.

    A pair is violated when P came later or never: acting on a step whose
    required groundwork was skipped is an ordering failure, not only a gap.
    """
    pairs = violated = 0
    for sid, at in done.items():
        for pred in plan.order_preds[sid]:
            pairs += 1
            violated += done.get(pred, at + 1) > at
    return pairs, violated


def _evidence_before(plan: Plan, done: dict[str, int], index: int) -> bool:
    return any(done.get(s, index + 1) < index for s in sorted(plan.evidence))


def _why_before(plan: Plan, sid: str, pred: str) -> str:
    p = plan.by_id[pred]
    if pred in plan.by_id[sid].after:
        return f"'{p.title}' should come first"
    return f"'{p.title}' ({plan.phase_titles[plan.phase_of[pred]]}) belongs to an earlier phase"


def _time_score(elapsed: float, limit: float) -> float:
    """Full marks within half the limit, 60 at the limit, 0 at twice the limit."""
    if elapsed <= limit / 2:
        return 100.0
    if elapsed <= limit:
        return 100.0 - 40.0 * (elapsed - limit / 2) / (limit / 2)
    return max(0.0, 60.0 - 60.0 * (elapsed - limit) / limit)


def _mmss(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def _ref(plan: Plan, sid: str) -> str:
    line = plan.reference.get(sid)
    return f": `{line}`" if line else ""


def _strong_next(plan: Plan, scenario: Scenario, annotated: list[AnnotatedCommand],
                 missed: list[NextStep], out_of_order: list[tuple[int, str, tuple[str, ...]]],
                 premature: list[int], reproduced: bool, rechecked: bool, last_fix: int | None,
                 diag: DiagnosisResult) -> list[str]:
    """Concrete advice, earliest mistake first, each tied to a reference command."""
    advice: list[str] = []
    by_index = {c.index: c for c in annotated}
    first_symptom = next((s for s in plan.steps if s.id in plan.symptom), None)
    if not reproduced and first_symptom:
        advice.append("Reproduce the symptom before changing anything - "
                      f"{first_symptom.title.lower()}{_ref(plan, first_symptom.id)}")
    if premature:
        ev = next((s for s in plan.steps if s.id in plan.evidence), None)
        if ev:
            advice.append(f"Before `{by_index[premature[0]].line}` (#{premature[0]}), find evidence "
                          f"of the cause - {ev.title.lower()}{_ref(plan, ev.id)}")
    for idx, sid, missing in out_of_order[:2]:
        pred = plan.by_id[missing[0]]
        advice.append(f"Before '{plan.by_id[sid].title}' (#{idx}), a strong answer would "
                      f"{pred.title[:1].lower() + pred.title[1:]}{_ref(plan, pred.id)}")
    for step in missed[:3]:
        advice.append(f"Next: {step.title}" + (f": `{step.command}`" if step.command else "")
                      + f" - {step.reason}")
    if not rechecked and last_fix is not None:
        verify = next((s for s in plan.steps if s.id in plan.symptom
                       and plan.roles[plan.phase_of[s.id]] == "verification"), first_symptom)
        if verify:
            advice.append(f"After `{by_index[last_fix].line}` (#{last_fix}), re-check the symptom - "
                          f"{verify.title.lower()}{_ref(plan, verify.id)}")
    if not diag.accepted:
        words = ", ".join(kw.split("|")[0] for kw in scenario.accepted_diagnoses[0])
        advice.append('State the root cause with `mlops-drill diagnose "..."` '
                      f"(an accepted diagnosis names: {words})")
    return advice
