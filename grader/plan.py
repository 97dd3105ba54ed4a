"""What the grader derives once per scenario: step order, phase roles, symptom probes.

Why derive roles instead of asking authors to label phases: the reference
solution already says which phases act (its mutating commands land there),
which phases come before acting (diagnosis) and which after (verification).
Deriving them keeps the scenario format small and cannot drift from the
reference. Definitions, used throughout the grader:

* remediation phases: phases of required steps the reference reaches with a
  mutation (an optional bookkeeping step such as annotating a node for the
  hardware team does not make its phase a remediation phase);
* diagnosis phases: every phase before the first remediation phase;
* verification phases: every phase after the last remediation phase;
* symptom probes: verification steps, plus diagnosis steps whose reference
  command would also satisfy a verification step (looking at the symptom
  before and after the fix is the same command); without verification phases,
  the first phase's steps;
* evidence steps: required diagnosis steps outside the first phase (triage)
  that are not symptom probes, i.e. evidence of the cause rather than of the
  symptom or of the platform's health; a step's ``evidence`` field overrides.
"""
from __future__ import annotations

from dataclasses import dataclass

from mlops_drill.grader.parse import ParsedCommand, parse_commands
from mlops_drill.scenarios.schema import Matcher, Scenario, Step


@dataclass(frozen=True)
class Plan:
    scenario: Scenario
    steps: tuple[Step, ...]
    by_id: dict[str, Step]
    phase_of: dict[str, int]
    phase_titles: tuple[str, ...]
    preds: dict[str, frozenset[str]]
    ready_preds: dict[str, tuple[str, ...]]
    order_preds: dict[str, tuple[str, ...]]
    roles: tuple[str, ...]
    symptom: frozenset[str]
    evidence: frozenset[str]
    remediation: frozenset[str]
    reference: dict[str, str]

    def matching(self, cmd: ParsedCommand) -> tuple[str, ...]:
        """Ids of steps whose matchers accept ``cmd``, in scenario order."""
        return tuple(s.id for s in self.steps if s.matches(cmd))

    def is_bookkeeping(self, sid: str | None) -> bool:
        """An optional step outside the remediation phases: changes nothing that needs re-checking."""
        return sid is not None and not self.by_id[sid].required and sid not in self.remediation

    def is_symptom_probe(self, cmd: ParsedCommand) -> bool:
        return any(self.by_id[s].matches(cmd) for s in sorted(self.symptom))


def assign_step(plan: Plan, candidates: tuple[str, ...], done: dict[str, int]) -> tuple[str | None, bool]:
    """Which step a command performs: (step id, is_new).

    First matching step that is not done yet and whose required predecessors are
    done; else a diagnosis step not done yet (evidence gathered early is still
    evidence, graded as out of order); else a step it repeats; else the first
    matching step, out of order, except a verification step before any fix was
    made, which a command only looks at (not new, not done). So a symptom check after
    the fix lands on the verification step, but the same command repeated during
    diagnosis stays a repeat of the first look.
    """
    if not candidates:
        return None, False
    for sid in candidates:
        if sid not in done and all(p in done for p in plan.ready_preds[sid]):
            return sid, True
    for sid in candidates:  # early evidence is still evidence (noted as out of order)
        if sid not in done and plan.roles[plan.phase_of[sid]] == "diagnosis":
            return sid, True
    for sid in candidates:
        if sid in done:
            return sid, False
    for sid in candidates:
        if sid not in done:
            # Looking at the outcome before any fix (`kubectl get pods` matching only "watch
            # the rollout") is a look, not the verification step done out of order.
            looks_early = (plan.roles[plan.phase_of[sid]] == "verification"
                           and not any(r in done for r in plan.remediation))
            return sid, not looks_early
    return candidates[0], False  # pragma: no cover - every candidate is either done or not


def build_plan(scenario: Scenario) -> Plan:
    steps = tuple(s for p in scenario.expected.phases for s in p.steps)
    by_id = {s.id: s for s in steps}
    phase_of = {s.id: i for i, p in enumerate(scenario.expected.phases) for s in p.steps}
    preds = {s.id: scenario.predecessors(s.id) for s in steps}
    # A step is "ready" once its required predecessors are done; order is judged against
    # required predecessors and explicit `after`s (optional earlier steps never block).
    ready = {s.id: tuple(sorted(p for p in preds[s.id] if by_id[p].required)) for s in steps}
    order = {s.id: tuple(sorted(p for p in preds[s.id] if by_id[p].required or p in s.after))
             for s in steps}
    n_phases = len(scenario.expected.phases)
    partial = Plan(scenario, steps, by_id, phase_of,
                   tuple(p.title for p in scenario.expected.phases), preds, ready, order,
                   ("diagnosis",) * n_phases, frozenset(), frozenset(), frozenset(), {})
    ref_cmds, reference, rem_phases = _walk_reference(partial)
    roles = _roles(n_phases, rem_phases)
    verify = {s.id for s in steps if roles[phase_of[s.id]] == "verification"}
    diag = [s for s in steps if roles[phase_of[s.id]] == "diagnosis"]
    if verify:
        symptom = set(verify)
        for sid, cmds in ref_cmds.items():
            if roles[phase_of[sid]] == "diagnosis" and any(
                    by_id[v].matches(c) for c in cmds for v in sorted(verify)):
                symptom.add(sid)
    else:
        symptom = {s.id for s in scenario.expected.phases[0].steps}
    evidence = _evidence(scenario, diag, symptom)
    remediation = {s.id for s in steps if roles[phase_of[s.id]] == "remediation"}
    for s in steps:  # steps the reference never reaches still get a concrete suggestion
        reference.setdefault(s.id, describe_matcher(s.match[0]))
    return Plan(scenario, steps, by_id, phase_of, partial.phase_titles, preds, ready, order,
                roles, frozenset(symptom), frozenset(evidence), frozenset(remediation), reference)


def _evidence(scenario: Scenario, diag: list[Step], symptom: set[str]) -> set[str]:
    """Steps that show the cause, not the symptom or the platform's health.

    The first phase is triage (is it data, model, serving or platform?): looking
    at the symptom or confirming that pods run says nothing about the cause, so a
    change made after it alone is still blind. A step says otherwise with
    ``evidence: true`` (reading the FailedScheduling event in triage is evidence)
    or ``evidence: false``.
    """
    first = {s.id for s in scenario.expected.phases[0].steps}
    derived = {s.id for s in diag if s.required and s.id not in symptom and s.id not in first}
    if not derived:
        derived = {s.id for s in diag if s.required and s.id not in symptom} or {
            s.id for s in diag if s.required}
    marked_in = {s.id for s in diag if s.evidence}
    marked_out = {s.id for s in diag if s.evidence is False}
    return (derived | marked_in) - marked_out


def _walk_reference(plan: Plan) -> tuple[dict[str, list[ParsedCommand]], dict[str, str], set[int]]:
    """Map the reference solution with the same rule as a candidate's commands."""
    done: dict[str, int] = {}
    cmds_of: dict[str, list[ParsedCommand]] = {}
    first_line: dict[str, str] = {}
    rem_phases: set[int] = set()
    for i, line in enumerate(plan.scenario.reference_solution):
        for cmd in parse_commands(line):
            sid, new = assign_step(plan, plan.matching(cmd), done)
            if sid is None:
                continue
            cmds_of.setdefault(sid, []).append(cmd)
            if new:
                done[sid] = i
                first_line.setdefault(sid, " ".join(line.split()))
            if (cmd.is_mutation or cmd.http_mutation) and plan.by_id[sid].required:
                rem_phases.add(plan.phase_of[sid])
    return cmds_of, first_line, rem_phases


def _roles(n_phases: int, rem_phases: set[int]) -> tuple[str, ...]:
    if not rem_phases:
        return ("diagnosis",) * n_phases
    first, last = min(rem_phases), max(rem_phases)
    return tuple("diagnosis" if i < first else "remediation" if i <= last else "verification"
                 for i in range(n_phases))


def describe_matcher(m: Matcher) -> str:
    """A command line that a matcher accepts, for advice when no reference line exists."""
    def first(value: object) -> str | None:
        if isinstance(value, list):
            value = value[0] if value else None
        return None if value is None else str(value).replace("*", "")

    if m.tool == "curl" or m.url_path:
        method = f"-X {m.http_method} " if m.http_method and m.http_method != "GET" else ""
        return f"curl -s {method}http://<service>{first(m.url_path) or '/'}"
    if m.tool and m.tool != "kubectl":
        return m.tool
    verb = first(m.verb) or ("exec" if m.exec else "get")
    words = ["kubectl", verb]
    words += [w for w in (first(m.subverb), first(m.resource)) if w]
    if m.name:
        words.append(first(m.name) or "<name>")
    elif verb in ("exec", "logs", "describe") and not m.resource:
        words.append("<pod>")
    if m.namespace:
        words += ["-n", str(m.namespace)]
    if m.selector:
        words += ["-l", first(m.selector) or ""]
    if m.output:
        words += ["-o", first(m.output) or "yaml"]
    if m.flag:
        words.append(f"--{first(m.flag)}")
    if m.exec:
        words += ["--", str(m.exec)]
    return " ".join(words)
