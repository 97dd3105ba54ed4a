"""One pass over a transcript's actions: what was done, when, and what each command meant.

Why a separate pass: every rubric dimension is a small pure function of the same
facts (which steps were done at which position, which changes came before any
evidence, where the symptom was looked at). Computing those facts once, in
transcript order, keeps the dimensions independent of each other and keeps
grading O(n) for long sessions; the per-command notes written here are what the
graded transcript shows next to each line.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from mlops_drill.grader.actions import Action, _ParseCache, extract_actions
from mlops_drill.grader.plan import Plan, assign_step
from mlops_drill.grader.report import (AnnotatedCommand, Deduction, DiagnosisResult, HintUse,
                                       HypothesisResult)
from mlops_drill.grader.transcript import Event
from mlops_drill.grader.weak_signals import WeakSignal, weak_signals
from mlops_drill.scenarios.schema import Scenario, matches_any

# Tools whose invocations are graded for efficiency; anything else (ls, jq, cat) is neutral.
PROBE_TOOLS = frozenset({"kubectl", "curl", "nvidia-smi", "helm", "wget", "http", "mlflow", "dvc"})
# kubectl verbs that are means, not evidence (port-forward serves the curl that follows).
NEUTRAL_KUBECTL_VERBS = frozenset({"port-forward", "proxy", "config", "version", "api-resources",
                                   "api-versions", "explain", "completion", "help", "options"})
HINT_BASE, HINT_EARLY = 2.0, 6.0
_REDIRECT = re.compile(r">\s*([^\s|;&<>]+)\s*$")


@dataclass
class Facts:
    """Everything the rubric needs, in transcript order; indices are 1-based action positions."""

    plan: Plan
    scenario: Scenario
    actions: list[Action]
    start: float
    limit_s: float
    annotated: list[AnnotatedCommand] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)            # step -> index first done
    counts: dict[str, int] = field(default_factory=dict)
    out_of_order: list[tuple[int, str, tuple[str, ...]]] = field(default_factory=list)
    mutations: list[int] = field(default_factory=list)            # attempted changes
    applied: list[int] = field(default_factory=list)              # changes that took effect
    stray_changes: list[int] = field(default_factory=list)        # applied, matching no step
    symptom_idx: list[int] = field(default_factory=list)
    useful: int = 0
    waste: int = 0
    anti_patterns: list[Deduction] = field(default_factory=list)
    hints: list[HintUse] = field(default_factory=list)
    hypotheses: list[HypothesisResult] = field(default_factory=list)
    diagnosis: DiagnosisResult = field(default_factory=lambda: DiagnosisResult(text=None,
                                                                              accepted=False))
    diagnosis_index: int | None = None
    any_diagnosis_accepted: bool = False
    statement_signals: list[tuple[int, WeakSignal]] = field(default_factory=list)
    verification: dict[str, bool] | None = None
    last_activity: float = 0.0
    herrings_examined: dict[str, int] = field(default_factory=dict)  # red herring -> first look at it
    herrings_touched: dict[str, int] = field(default_factory=dict)   # red herring -> first change to it
    red_herring_deductions: list[Deduction] = field(default_factory=list)
    change_incident: dict[int, str] = field(default_factory=dict)  # change -> the incident its step belongs to

    @property
    def synthetic_times(self) -> bool:
        return any(a.synthetic_ts for a in self.actions)

    @property
    def offline(self) -> bool:
        """No fix verification was recorded: an imported history, graded from commands alone."""
        return self.verification is None

    def rel(self, action: Action) -> float:
        return round(action.ts - self.start, 3)

    def evidence_before(self, index: int, incident: str | None = None) -> bool:
        """Whether some evidence of the cause (of ``incident``'s cause, in a compound of several) was gathered
        before action ``index``."""
        return any(self.done.get(s, index + 1) < index for s in sorted(self.plan.evidence)
                   if incident is None or self.plan.by_id[s].incident in (None, incident))

    def change_is_blind(self, index: int) -> bool:
        """A change made before evidence of the cause it addresses (any cause, for a change no step makes)."""
        return not self.evidence_before(index, self.change_incident.get(index))


def walk(events: list[Event], scenario: Scenario, plan: Plan) -> Facts:
    """Map every action to a step (or to nothing) and record what the rubric reads."""
    cache = _ParseCache()  # keeps every parsed command alive, so id() keys stay valid
    actions = extract_actions(events, cache)
    start = _session_start(events)
    f = Facts(plan=plan, scenario=scenario, actions=actions, start=start,
              limit_s=scenario.time_limit_minutes * 60.0, last_activity=start)
    walker = _Walker(f)
    for idx, act in enumerate(actions, start=1):
        if act.kind != "verification":
            f.last_activity = max(f.last_activity, act.ts)
        handler = {"verification": walker.verification, "diagnosis": walker.statement,
                   "hypothesis": walker.statement, "hint": walker.hint}.get(act.kind,
                                                                            walker.command)
        handler(idx, act)
    return f


class _Walker:
    """The per-kind handlers of :func:`walk`; state lives in the Facts it fills."""

    def __init__(self, facts: Facts) -> None:
        self.f = facts
        self.seen_since_change: set = set()   # command keys since the last applied change
        self.flagged: set[str] = set()        # anti-patterns already deducted
        self.match_cache: dict = {}
        self.key_cache: dict[int, tuple] = {}
        self.saved: dict[str, object] = {}     # file -> the `kubectl get -o yaml` saved in it
        self.derived: dict[tuple[int, int], object] = {}  # kept alive: id() keys stay valid

    def verification(self, idx: int, act: Action) -> None:
        f = self.f
        f.verification = dict(act.results)
        passed = sum(f.verification.values())
        f.annotated.append(AnnotatedCommand(
            index=idx, seq=act.seq, t=f.rel(act), line=act.line or "verification", tool=None,
            exit_code=None, status="verification",
            notes=[f"fix checks: {passed}/{len(f.verification)} passed"]))

    def statement(self, idx: int, act: Action) -> None:
        f = self.f
        ok = f.scenario.accepts_diagnosis(act.text)
        note = "matches an accepted diagnosis" if ok else "not an accepted diagnosis"
        rivals = f.scenario.rival_causes_named(act.text) if ok and act.kind == "diagnosis" else []
        if rivals:  # a hypothesis may weigh every candidate; a diagnosis has to choose
            ok = False
            note = (f"not accepted: it also names {', '.join(rivals)} as the cause; a list of every "
                    "possibility is not a diagnosis")
        if ok and not f.evidence_before(idx):
            note += ", but stated before any evidence of the cause"
        notes = [note]
        if not ok:
            for signal in weak_signals(act.text):
                f.statement_signals.append((idx, signal))
                notes.append(f"weak signal: {signal.why}")
        if act.kind == "diagnosis":
            f.diagnosis = DiagnosisResult(text=act.text, accepted=ok, seq=act.seq)
            f.diagnosis_index = idx
            f.any_diagnosis_accepted |= ok
        else:
            f.hypotheses.append(HypothesisResult(seq=act.seq, t=f.rel(act), text=act.text,
                                                 correct=ok, fixes_before=len(f.mutations)))
        f.annotated.append(AnnotatedCommand(
            index=idx, seq=act.seq, t=f.rel(act), line=act.line or f'{act.kind}: "{act.text}"',
            tool="mlops-drill", exit_code=act.exit_code, status=act.kind, notes=notes))

    def hint(self, idx: int, act: Action) -> None:
        f = self.f
        t = f.rel(act)
        number = act.hint_index if act.hint_index is not None else len(f.hints)
        hints = f.scenario.hints
        hint = hints[number] if 0 <= number < len(hints) else None
        cost = round(HINT_BASE + HINT_EARLY * max(0.0, 1.0 - max(0.0, t) / f.limit_s), 2)
        f.hints.append(HintUse(seq=act.seq, t=t, index=number,
                               text=hint.text if hint else f"(unknown hint {number})",
                               reveals_step=hint.reveals_step if hint else None, cost=cost))
        f.annotated.append(AnnotatedCommand(
            index=idx, seq=act.seq, t=t, line=act.line or f"hint {number + 1}",
            tool="mlops-drill", exit_code=act.exit_code, status="hint",
            notes=[f"hint {number + 1} (-{cost:g} points; earlier hints cost more)"]))

    def command(self, idx: int, act: Action) -> None:
        f, plan = self.f, self.f.plan
        cmd = self._with_file_origin(act.cmd)
        assert cmd is not None
        key = self.key_cache.get(id(cmd))  # parsed commands are shared per distinct line
        if key is None:
            key = self.key_cache[id(cmd)] = _command_key(cmd)
        hit = self.match_cache.get(key)
        if hit is None:
            hit = self.match_cache[key] = (
                plan.matching(cmd),
                tuple(ap for ap in f.scenario.anti_patterns if ap.matches(cmd)),
                plan.is_symptom_probe(cmd),
                # A look across every namespace is what any answer types; ruling a herring out takes a look at it.
                tuple(h for h in f.scenario.red_herrings
                      if not getattr(cmd, "all_namespaces", False) and matches_any(h.rule_out, cmd)),
                tuple(h for h in f.scenario.red_herrings if matches_any(h.touch, cmd)))
        candidates, aps, is_symptom, examines, touches = hit
        notes: list[str] = []
        mutation = act.mutation
        failed = act.exit_code not in (None, 0)
        probe = cmd.tool in PROBE_TOOLS and not (cmd.tool == "kubectl"
                                                 and cmd.verb in NEUTRAL_KUBECTL_VERBS)
        self._anti_patterns(act, aps, notes)

        sid, new = assign_step(plan, candidates, f.done)
        if mutation:
            f.mutations.append(idx)
            step_incident = plan.by_id[sid].incident if sid else None
            if step_incident:
                f.change_incident[idx] = step_incident
            if not failed and not plan.is_bookkeeping(sid):
                f.applied.append(idx)
                if sid is None:
                    f.stray_changes.append(idx)
                    notes.append("a change no step of a senior answer makes")
            if f.change_is_blind(idx):
                notes.append("mutation before any evidence of the cause")
            if not f.symptom_idx:
                notes.append("changed the system before reproducing the symptom")

        if mutation and not failed:
            self._touched(idx, act, touches, notes)
        # Only a look that answered rules anything out, and only the first look at a herring is not waste.
        examines = self._examined(idx, examines, notes) if not mutation and not failed else ()

        status: str
        if sid is None and examines and not mutation:
            status = "ruled-out"  # a look at a harmless fact that a senior answer also takes: not waste
        elif sid is None:
            status = "unmatched" if probe else "other"
            if probe:
                f.waste += 1
                if not mutation:
                    notes.append("matches no step of a senior answer")
        elif mutation and failed:
            status = "failed"
            notes.append(f"failed (exit {act.exit_code}): the fix did not apply, not counted")
        elif new:
            status = "step"
            missing = tuple(p for p in plan.order_preds[sid] if p not in f.done)
            if missing:
                f.out_of_order.append((idx, sid, missing))
                notes.append("out of order: " + "; ".join(_why_before(plan, sid, p)
                                                          for p in missing))
            f.done[sid] = idx
            f.useful += 1
            if mutation and sid in plan.remediation:
                notes += self._also_remediates(idx, sid, candidates)
        else:
            status = "repeat"
        if sid is not None:
            f.counts[sid] = f.counts.get(sid, 0) + (0 if status == "failed" else 1)
        if status in ("repeat", "unmatched") and probe and not mutation \
                and key in self.seen_since_change:
            status = "redundant"
            if sid is None:
                notes[-1] = "redundant: same command already run, nothing changed since"
            else:
                f.waste += 1
                notes.append("redundant: same command already run, nothing changed since")
        if mutation and not failed:
            self.seen_since_change.clear()
        elif probe:
            self.seen_since_change.add(key)
        if is_symptom and not mutation:
            f.symptom_idx.append(idx)
        step = plan.by_id.get(sid) if sid else None
        f.annotated.append(AnnotatedCommand(
            index=idx, seq=act.seq, t=f.rel(act), line=act.line, tool=cmd.tool,
            exit_code=act.exit_code, status=status, step=sid,
            step_title=step.title if step else None,
            phase=plan.phase_titles[plan.phase_of[sid]] if sid else None,
            reason=step.reason if step else None, mutation=mutation, notes=notes))

    def _examined(self, idx: int, herrings: tuple, notes: list[str]) -> tuple:
        """Record the first look at each red herring; the herrings this command is the first look at.

        Why only the first: a second look at the same harmless fact is as redundant as any repeat, and
        counting it as a look would make every probing command that matches a herring free.
        """
        first = tuple(h for h in herrings if h.id not in self.f.herrings_examined)
        for h in first:
            self.f.herrings_examined[h.id] = idx
            notes.append(f"rules out a red herring: {h.signal} - {h.reason}")
        return first

    def _touched(self, idx: int, act: Action, herrings: tuple, notes: list[str]) -> None:
        """A change that took effect on a harmless fact: penalised once per herring."""
        f = self.f
        for h in herrings:
            if h.id in f.herrings_touched:
                notes.append(f"changed a red herring again: {h.signal} (already deducted)")
                continue
            f.herrings_touched[h.id] = idx
            why = f"'fixed' a red herring: {h.signal}, which is harmless ({h.reason})"
            f.red_herring_deductions.append(Deduction(kind="red-herring", id=f"red-herring-{h.id}",
                                                      points=float(h.penalty), seq=act.seq, why=why))
            notes.append(f"{why} (-{h.penalty})")

    def _also_remediates(self, idx: int, sid: str, candidates: tuple[str, ...]) -> list[str]:
        """One patch can make several of the scenario's fixes (drop a flag and restore a ref)."""
        f, plan = self.f, self.f.plan
        more = [c for c in candidates if c != sid and c in plan.remediation and c not in f.done
                and all(p in f.done for p in plan.ready_preds[c])]
        for other in more:
            f.done[other] = idx
            f.counts[other] = f.counts.get(other, 0) + 1
        return [f"also: {plan.by_id[o].title.lower()}" for o in more]

    def _with_file_origin(self, cmd):
        """``kubectl replace -f j.json`` acts on what ``kubectl get job x -o json > j.json`` saved.

        A change made from a file names no object on its command line; the
        history often does, a few lines earlier. Reading that saved object's kind,
        name and namespace is what an instructor does when reading the history.
        """
        if cmd is None or cmd.tool != "kubectl":
            return cmd
        target = _REDIRECT.search(cmd.raw)
        if cmd.verb == "get" and cmd.resource and cmd.output in ("yaml", "json") and target:
            self.saved[target.group(1)] = cmd
            return cmd
        filename = cmd.flags.get("filename")
        origin = self.saved.get(filename) if isinstance(filename, str) else None
        if not (cmd.is_mutation and cmd.resource is None and origin):
            return cmd
        derived = self.derived.get((id(cmd), id(origin)))
        if derived is None:
            derived = self.derived[(id(cmd), id(origin))] = dataclasses.replace(
                cmd, resource=origin.resource, resources=origin.resources, name=origin.name,
                names=origin.names, namespace=cmd.namespace or origin.namespace)
        return derived

    def _anti_patterns(self, act: Action, aps: tuple, notes: list[str]) -> None:
        f = self.f
        for ap in aps:
            if ap.unless_after and all(s in f.done for s in ap.unless_after):
                continue
            if ap.id in self.flagged:
                notes.append(f"anti-pattern again: {ap.signal} ({ap.id}, already deducted)")
                continue
            self.flagged.add(ap.id)
            why = ap.signal
            if ap.unless_after:
                why += " - before " + ", ".join(f.plan.by_id[s].title.lower()
                                                for s in ap.unless_after if s not in f.done)
            f.anti_patterns.append(Deduction(kind="anti-pattern", id=ap.id,
                                             points=float(ap.penalty), seq=act.seq, why=why))
            notes.append(f"anti-pattern: {why} (-{ap.penalty})")


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


def _why_before(plan: Plan, sid: str, pred: str) -> str:
    p = plan.by_id[pred]
    if pred in plan.by_id[sid].after:
        return f"'{p.title}' should come first"
    return f"'{p.title}' ({plan.phase_titles[plan.phase_of[pred]]}) belongs to an earlier phase"
