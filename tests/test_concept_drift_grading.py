"""concept-drift-delayed-labels graded without a cluster: the expert path against the tempting wrong ones.

Transcripts are typed from command lines as a candidate would type them (``grader.synthetic``); the fix checks
pass only where the transcript really fixed it (a blind retrain that promotes nothing leaves them failing).
tests/test_scenarios.py runs the scenario itself on the embedded cluster.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.scenarios.loader import load_catalogue
from mlops_drill.scenarios.variants import variant

SID = "concept-drift-delayed-labels"
SC = variant(load_catalogue()[SID], 1_000_003)
REF = SC.reference_solution


def run(lines, fixed: bool):
    checks = {k: fixed for k in passing_checks(len(SC.fix.checks))}
    return grade(list(transcript_from_lines(lines, checks=checks)), SC)


def lines_with(*needles: str) -> list[str]:
    """The reference solution's lines that contain any of ``needles`` (in its order)."""
    return [line for line in REF if any(n in line for n in needles)]


PROMOTE = lines_with("transition-stage", "rollout restart", "rollout status", "18090")
RETRAIN = lines_with("create job", "kubectl wait", "kubectl logs -n training")
BLIND_RETRAIN = [  # "just retrain it": the pipeline run first, then whatever it produced promoted
    "kubectl get pods -n serving",
    *RETRAIN,
    "kubectl port-forward -n registry svc/model-registry 18081:80 &",
    *PROMOTE,
    'mlops-drill diagnose "model got stale, retrained it on fresh data and rolled it out"',
]
DATA_DRIFT = [  # the data-drift playbook applied to a concept change: promote the 2024-09 challenger
    "kubectl get pods -n serving",
    "kubectl port-forward -n serving svc/fraud-model 18080:80 &",
    "curl -s localhost:18080/metrics | grep prediction_score",
    "kubectl port-forward -n registry svc/model-registry 18081:80 &",
    "curl -s \"localhost:18081/api/2.0/mlflow/model-versions/search?filter=name='fraud-model'\"",
    "curl -s 'localhost:18081/api/2.0/mlflow/model-versions/get?name=fraud-model&version=4'",
    "curl -s -X POST localhost:18081/api/2.0/mlflow/model-versions/transition-stage -H 'Content-Type: application/json'"
    " -d '{\"name\":\"fraud-model\",\"version\":\"4\",\"stage\":\"Production\",\"archive_existing_versions\":true}'",
    "kubectl rollout restart deploy/fraud-model -n serving",
    "kubectl rollout status deploy/fraud-model -n serving --timeout=120s",
    "curl -s localhost:18080/metadata",
    'mlops-drill diagnose "input data drift in live traffic; promoted the challenger trained on recent data"',
]
LOOKS_HEALTHY = [
    "kubectl get pods -n serving",
    "kubectl port-forward -n serving svc/fraud-model 18080:80 &",
    "curl -s localhost:18080/readyz",
    "curl -s localhost:18080/metrics | grep -E '^(feature_drift_psi|prediction_score_(sum|count))'",
    'mlops-drill diagnose "model is healthy: no errors, no input drift, score distribution normal, nothing wrong"',
]


def test_the_reference_solution_resolves_it_with_90_or_more() -> None:
    graded = run(REF, fixed=True)
    assert graded.outcome == "resolved" and graded.score >= 90, (graded.outcome, graded.score)


def test_a_blind_retrain_ranks_clearly_below_the_gated_one() -> None:
    expert, blind = run(REF, fixed=True), run(BLIND_RETRAIN, fixed=True)
    assert expert.score - blind.score >= 25, (expert.score, blind.score)
    assert "blind-retrain" in {d.id for d in blind.deductions if d.kind == "anti-pattern"}, blind.deductions


def test_calling_it_data_drift_and_promoting_the_old_challenger_ranks_low() -> None:
    graded = run(DATA_DRIFT, fixed=False)  # version 4 does not bring recall back: the checks fail
    assert graded.outcome == "open" and graded.score < 40, (graded.outcome, graded.score)
    assert graded.score < run(BLIND_RETRAIN, fixed=True).score


def test_looks_healthy_scores_10_or_less() -> None:
    graded = run(LOOKS_HEALTHY, fixed=False)
    assert graded.outcome in ("claimed-healthy", "open") and graded.score <= 10, (graded.outcome, graded.score)


@pytest.mark.parametrize("text", [
    "input data drift: live traffic moved away from the training data",
    "the model is stale, retrain it nightly",
])
def test_wrong_diagnoses_are_not_accepted(text: str) -> None:
    graded = run([*REF[:-1], f'mlops-drill diagnose "{text}"'], fixed=True)
    diagnosis = next(d for d in graded.dimensions if d.name == "diagnosis")
    assert diagnosis.score < 50, diagnosis
    assert graded.score < run(REF, fixed=True).score
