"""The grade agrees with experts: a ranked corpus, and properties no transcript may break.

The corpus (tests/data/calibration/<scenario>/) was written as people type: the
`k` alias, short names, pipes, typos, port-forwards on other ports. Each set has
an expert ranking with a reason per place that cites the playbook. The rules in
grader/rubric.py were tuned against the rankings, never the other way round:
the transcripts and rankings are data, not expectations written for the grader.

The properties are metamorphic: they change a transcript the way a candidate's
answer could be worse (a step left out, a change made earlier) or better (a fix
and its re-check added) and check the score moves the right way.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_drill.grader.agreement import (grade_set, kendall_tau_b, load_ranked_sets,
                                          outcome_only_score)
from mlops_drill.grader.grade import grade
from mlops_drill.grader.importers import load_recording
from mlops_drill.grader.parse import parse_commands
from mlops_drill.grader.plan import build_plan
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.variants import first_variant

CORPUS = Path(__file__).parent / "data" / "calibration"
RANKED = load_ranked_sets(CORPUS)
# Written by another author after the rules were tuned, for scenarios the tuning never saw:
# it measures how the rules carry over, so it is held to the bar of the grader's claim
# (better than an outcome-only grader, every passive answer < 25), not tuned to 0.9.
HELD_OUT = load_ranked_sets(Path(__file__).parent / "data" / "calibration-heldout")
CATALOGUE = sorted(p.stem for p in catalogue_dir().glob("*.yaml"))
PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=None)
def _scenario(sid: str):
    # The corpus was written for each scenario's original incident: a parameterised one lists it first.
    return first_variant(load_scenario(catalogue_dir() / f"{sid}.yaml"))


@lru_cache(maxsize=None)
def _corpus_lines(path: Path) -> tuple[str, ...]:
    return tuple(e.line for e in load_recording(path).events if e.kind == "shell")


def _score(sid: str, lines: list[str], *, live: bool = False) -> float:
    sc = _scenario(sid)
    checks = passing_checks(len(sc.fix.checks)) if live else None
    return grade(transcript_from_lines(lines, checks=checks), sc).score


def _changes(line: str) -> bool:
    return any(c.is_mutation or c.http_mutation for c in parse_commands(line))


# --------------------------------------------------------------------------- the corpus

def test_the_corpus_covers_eight_scenarios_with_every_kind_of_answer() -> None:
    kinds = {"expert", "late-evidence", "act-first", "restart-first", "wrong-fix", "passive",
             "flailing"}
    assert len(RANKED) >= 8 and len(HELD_OUT) >= 4
    for ranked in RANKED + HELD_OUT:
        assert {Path(f).stem for f in ranked.files} >= kinds, ranked.scenario
        assert all("playbook" in r.lower() or "weak signal" in r.lower() for r in ranked.reasons)


@pytest.mark.parametrize("ranked", RANKED, ids=lambda r: r.scenario)
def test_grader_ranks_each_set_as_the_expert_does(ranked) -> None:
    graded = grade_set(ranked, _scenario(ranked.scenario))
    scores = [g.score for g in graded]
    tau = kendall_tau_b(scores)
    assert tau >= 0.9, list(zip(ranked.files, scores))


@pytest.mark.parametrize("corpus", [RANKED, HELD_OUT], ids=["tuned", "held-out"])
def test_grader_agrees_with_experts_better_than_an_outcome_only_grader(corpus) -> None:
    ours, outcome_only = [], []
    for ranked in corpus:
        graded = grade_set(ranked, _scenario(ranked.scenario))
        ours.append(kendall_tau_b([g.score for g in graded]))
        outcome_only.append(kendall_tau_b([outcome_only_score(g) for g in graded]))
    assert sum(ours) / len(ours) > sum(outcome_only) / len(outcome_only)


@pytest.mark.parametrize("ranked", RANKED + HELD_OUT, ids=lambda r: r.scenario)
def test_passive_answers_score_below_25_and_below_every_fix(ranked) -> None:
    graded = dict(zip(ranked.files, grade_set(ranked, _scenario(ranked.scenario))))
    passive = graded["passive.txt"]
    assert passive.score < 25
    assert passive.outcome in ("open", "claimed-healthy")
    fixed = [g.score for g in graded.values() if g.outcome == "resolved"]
    assert fixed and passive.score < min(fixed)


@pytest.mark.parametrize("sid", CATALOGUE)
def test_reference_solution_scores_at_least_90_live_and_offline(sid: str) -> None:
    ref = list(_scenario(sid).reference_solution)
    assert _score(sid, ref, live=True) >= 90
    offline = grade(transcript_from_lines(ref), _scenario(sid))
    assert offline.offline and offline.outcome == "resolved" and offline.score >= 90


# --------------------------------------------------------------------------- properties

def _sources() -> list[tuple[str, tuple[str, ...]]]:
    """Every reference solution and every corpus transcript, as (scenario, lines)."""
    out = [(sid, tuple(_scenario(sid).reference_solution)) for sid in CATALOGUE]
    for ranked in RANKED + HELD_OUT:
        out += [(ranked.scenario, _corpus_lines(p)) for p in ranked.paths()]
    return out


SOURCES = _sources()


@PROPERTY
@given(source=st.sampled_from(SOURCES), pick=st.integers(min_value=0, max_value=10_000))
def test_removing_a_required_diagnostic_step_never_raises_the_score(source, pick: int) -> None:
    sid, lines = source
    plan = build_plan(_scenario(sid))
    diagnostic = [s for s in plan.steps if s.required
                  and plan.roles[plan.phase_of[s.id]] == "diagnosis"]
    step = diagnostic[pick % len(diagnostic)]
    kept = [ln for ln in lines if not any(step.matches(c) for c in parse_commands(ln))]
    assert _score(sid, kept) <= _score(sid, list(lines)) + 1e-9


@PROPERTY
@given(source=st.sampled_from(SOURCES), pick=st.integers(min_value=0, max_value=10_000))
def test_moving_a_change_before_the_first_evidence_never_raises_the_score(source,
                                                                         pick: int) -> None:
    sid, lines = source
    plan = build_plan(_scenario(sid))
    evidence = [plan.by_id[s] for s in sorted(plan.evidence)]
    first = next((i for i, ln in enumerate(lines)
                  if any(s.matches(c) for s in evidence for c in parse_commands(ln))), None)
    later_changes = [i for i, ln in enumerate(lines) if first is not None and i > first
                     and _changes(ln)]
    if not later_changes:
        return
    moved = later_changes[pick % len(later_changes)]
    reordered = list(lines[:first]) + [lines[moved]] + [ln for i, ln in enumerate(lines)
                                                       if i >= first and i != moved]
    assert _score(sid, reordered) <= _score(sid, list(lines)) + 1e-9


@PROPERTY
@given(source=st.sampled_from(SOURCES), cut=st.integers(min_value=0, max_value=10_000))
def test_appending_the_fix_and_its_recheck_never_lowers_the_score(source, cut: int) -> None:
    sid, lines = source
    ref = list(_scenario(sid).reference_solution)
    changes = [i for i, ln in enumerate(ref) if _changes(ln)]
    fix_and_recheck = [ln for ln in ref[changes[0]:] if not ln.startswith("mlops-drill")]
    # A transcript that lacks the fix: everything before its first change, cut anywhere.
    first_change = next((i for i, ln in enumerate(lines) if _changes(ln)), len(lines))
    before = list(lines[:min(first_change, cut % (first_change + 1))])
    assert _score(sid, before + fix_and_recheck) >= _score(sid, before) - 1e-9


HEALTHY_CLAIMS = st.sampled_from([
    "everything is healthy, 200 OK, nothing wrong",
    "service is up and latency normal, no issue",
    "the endpoint returns 200 so the model is fine",
    "all good, false alarm",
    "pods are Running and healthz is OK; no action needed",
])


@PROPERTY
@given(sid=st.sampled_from(CATALOGUE), k=st.integers(min_value=0, max_value=40),
       claim=HEALTHY_CLAIMS)
def test_a_read_only_look_called_healthy_scores_below_half_an_answer_and_its_fix(
        sid: str, k: int, claim: str) -> None:
    ref = [ln for ln in _scenario(sid).reference_solution if not ln.startswith("mlops-drill")]
    read_only = [ln for ln in ref if not _changes(ln)]
    passive = read_only[:k % (len(read_only) + 1)] + [f'mlops-drill diagnose "{claim}"']
    fixes = [ln for ln in ref if _changes(ln)]
    half = [ln for ln in ref[: len(ref) // 2] if not _changes(ln)] + fixes
    assert _score(sid, passive) < _score(sid, half)
    assert _score(sid, passive) < 25
