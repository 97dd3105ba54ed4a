"""Each rubric dimension on its own: the rules docs/grader.md states, one at a time.

Facts come from the real walk over a real catalogue scenario (gpu-missing-toleration),
so each test reads like a candidate's session: the lines they typed, and what one
dimension makes of them.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader import rubric
from mlops_drill.grader.grade import grade
from mlops_drill.grader.importers import load_recording
from mlops_drill.grader.plan import build_plan
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.grader.walk import Facts, walk
from mlops_drill.grader.weak_signals import BLIND_RETRAIN, HEALTHY, claims_healthy, weak_signals
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario

SC = load_scenario(catalogue_dir() / "gpu-missing-toleration.yaml")
PLAN = build_plan(SC)
LOOK = "kubectl get pods -n serving"
EVENTS = "kubectl describe pod -n serving -l app=fraud-model"
NODE = "kubectl describe node gpu-node-0"
TEMPLATE = "kubectl get deploy fraud-model -n serving -o yaml"
FIX = ("kubectl patch deploy fraud-model -n serving --type=json -p "
       "'[{\"op\":\"add\",\"path\":\"/spec/template/spec/tolerations\",\"value\":[]}]'")
RECHECK = "kubectl rollout status deploy/fraud-model -n serving"
RESTART = "kubectl rollout restart deploy/fraud-model -n serving"
RIGHT = 'mlops-drill diagnose "the new revision lost its toleration for the GPU taint"'
HEALTHY_CLAIM = 'mlops-drill diagnose "pods are fine, the endpoint returns 200, nothing wrong"'


def facts(*lines: str, live: bool = False) -> Facts:
    checks = passing_checks(len(SC.fix.checks)) if live else None
    return walk(list(transcript_from_lines(lines, checks=checks)), SC, PLAN)


# --------------------------------------------------------------------------- coverage

def test_coverage_is_the_share_of_required_steps_done() -> None:
    assert rubric.coverage(facts()).score == 0
    required = sum(s.required for s in PLAN.steps)
    assert rubric.coverage(facts(LOOK, EVENTS)).score == pytest.approx(200 / required)


# --------------------------------------------------------------------------- order

def test_no_order_credit_without_evidence_of_the_cause() -> None:
    """One triage look is trivially 'in order'; it earns nothing."""
    dim = rubric.order(facts(LOOK))
    assert dim.score == 0 and "no evidence of the cause" in dim.detail


def test_order_quality_is_scaled_by_how_much_was_done() -> None:
    partial = rubric.order(facts(LOOK, EVENTS)).score
    full = rubric.order(facts(LOOK, EVENTS, NODE, TEMPLATE, FIX, RECHECK)).score
    assert 0 < partial < full == 100


def test_a_change_before_evidence_costs_order() -> None:
    careful = rubric.order(facts(LOOK, EVENTS, NODE, TEMPLATE, FIX, RECHECK)).score
    blind = rubric.order(facts(LOOK, FIX, EVENTS, NODE, TEMPLATE, RECHECK)).score
    assert blind <= careful - rubric.ORDER_PARTS["evidence_first"]


# --------------------------------------------------------------------------- efficiency

def test_doing_nothing_is_not_efficient() -> None:
    assert rubric.efficiency(facts()).score == 0
    assert rubric.efficiency(facts("ls", "kubectl get ns")).score == 0


def test_waste_beyond_the_allowance_lowers_efficiency() -> None:
    lean = rubric.efficiency(facts(LOOK, EVENTS, NODE, TEMPLATE)).score
    noise = [f"kubectl get configmaps -n registry cm-{i}" for i in range(12)]
    noisy = rubric.efficiency(facts(LOOK, EVENTS, *noise, NODE, TEMPLATE)).score
    assert noisy < lean / 2


# --------------------------------------------------------------------------- end state

def test_end_state_is_not_verifiable_offline() -> None:
    dim = rubric.end_state(facts(LOOK, EVENTS, FIX, RECHECK))
    assert dim.score == 0 and "not verifiable offline" in dim.detail


def test_end_state_needs_the_recheck_after_the_last_change() -> None:
    assert rubric.end_state(facts(LOOK, EVENTS, FIX, RECHECK, live=True)).score == 100
    assert rubric.end_state(facts(LOOK, EVENTS, FIX, live=True)).score == 0


# --------------------------------------------------------------------------- diagnosis

def test_diagnosis_rewards_an_accepted_cause_after_evidence() -> None:
    assert rubric.diagnosis(facts(LOOK, EVENTS, NODE, RIGHT)).score == 100
    assert rubric.diagnosis(facts(RIGHT, LOOK)).score == rubric.DIAGNOSIS_UNSUPPORTED
    assert rubric.diagnosis(facts(LOOK)).score == 0


def test_calling_it_healthy_is_named_as_such() -> None:
    dim = rubric.diagnosis(facts(LOOK, HEALTHY_CLAIM))
    assert dim.score == 0 and "healthy" in dim.detail


# --------------------------------------------------------------------------- time

def test_time_is_left_out_for_imports_and_earns_nothing_without_a_step(tmp_path) -> None:
    plain = tmp_path / "history.txt"
    plain.write_text(f"{LOOK}\n{EVENTS}\n")
    imported = walk(load_recording(plain).events, SC, PLAN)  # plain lists have no real times
    assert "n/a" in rubric.timing(imported).detail
    assert grade(load_recording(plain), SC).dimension("time").weight == 0
    assert rubric.timing(facts("ls", "kubectl get ns")).score == 0
    assert rubric.timing(facts(LOOK)).score == 100


# --------------------------------------------------------------------------- outcome

def test_outcome_offline_is_inferred_from_the_remediation_and_the_recheck() -> None:
    assert rubric.outcome(facts(LOOK, EVENTS, FIX, RECHECK)).status == "resolved"
    assert rubric.outcome(facts(LOOK, EVENTS, FIX)).status == "fixed-unchecked"
    assert rubric.outcome(facts(LOOK, EVENTS, RESTART, RECHECK)).status == "open"
    assert rubric.outcome(facts(LOOK, HEALTHY_CLAIM)).status == "claimed-healthy"


def test_outcome_bands_keep_every_fix_above_every_open_incident() -> None:
    resolved = rubric.outcome(facts(LOOK, EVENTS, FIX, RECHECK))
    open_ = rubric.outcome(facts(LOOK, EVENTS))
    healthy = rubric.outcome(facts(LOOK, HEALTHY_CLAIM))
    assert resolved.place(0) > open_.place(100) >= open_.place(0)
    assert healthy.place(100) <= open_.place(100) and healthy.place(100) < 25
    assert resolved.place(95) == 95  # a good process keeps its score


def test_blind_changes_cost_more_when_they_are_not_the_fix() -> None:
    right = rubric.blind_change_points(facts(LOOK, FIX, EVENTS, RECHECK))
    stray = rubric.blind_change_points(facts(LOOK, RESTART, EVENTS, FIX, RECHECK))
    assert [p for _, p, _ in right] == [rubric.BLIND_FIX_POINTS]
    assert [p for _, p, _ in stray] == [rubric.BLIND_STRAY_POINTS]
    assert rubric.blind_change_points(facts(LOOK, EVENTS, RESTART, FIX, RECHECK)) == []


def test_a_change_made_from_a_saved_file_is_read_as_the_saved_object() -> None:
    lines = (LOOK, EVENTS, NODE, "kubectl get deploy fraud-model -n serving -o yaml > d.yaml",
             "vi d.yaml", "kubectl replace -f d.yaml", RECHECK)
    f = facts(*lines)
    assert "restore-toleration" in f.done and rubric.outcome(f).status == "resolved"


# --------------------------------------------------------------------------- weak signals

@pytest.mark.parametrize("text", [
    "service is healthy, latency normal, nothing wrong",
    "The endpoint returns 200 so the model is fine",
    "everything looks good, false alarm",
    "No issue found with the deployment",
    "the system is stable, nothing to fix",
])
def test_healthy_claims_are_weak_signals(text: str) -> None:
    assert claims_healthy(text) and [s.id for s in weak_signals(text)] == [HEALTHY]


@pytest.mark.parametrize("text", [
    "no errors in the logs, but the feature cache is stale",
    "the pods are not healthy",
    "GPU node taint, the toleration is missing",
    "scaled up replicas, needed more capacity",
    "scaled the canary to 0, stable 1.4.0 serves alone",  # a release named "stable" is not a health claim
    "the new release answers 500 for accounts without recent transactions",
])
def test_honest_claims_are_not_healthy_claims(text: str) -> None:
    assert not claims_healthy(text)


def test_retraining_without_a_trigger_is_a_weak_signal_and_costs_points() -> None:
    assert [s.id for s in weak_signals("just retrain the model")] == [BLIND_RETRAIN]
    assert weak_signals("retrain when PSI exceeds the 0.2 threshold, behind a validation gate") == []
    graded = grade(transcript_from_lines([LOOK, 'mlops-drill diagnose "retrain it"']), SC)
    assert [d.id for d in graded.deductions] == [BLIND_RETRAIN]
