"""async-scoring-backlog: the expert path grades high; "the endpoint is fine" and restarting fraud-model low.

Graded as the live grader grades (transcripts with a verification event). The fix checks read the
queue (depth, oldest message age), so a path that never touched the worker fails them, which is what the
cluster self-test sees when those checks run.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.variants import render

SCENARIO = "async-scoring-backlog"


@pytest.fixture(scope="module", params=["BATCH_SIZE", "MODEL_URL", "QUEUE_NAME"])
def sc(request):
    """One variant per cause: the rubric must hold whichever setting the release changed."""
    template = load_scenario(catalogue_dir() / f"{SCENARIO}.yaml")
    return render(template, {"cause": request.param, "release": "2.5.0", "backlog_minutes": 12}, 7)


def _grade(sc, lines: list[str], fixed: bool):
    checks = {f"check-{i}": fixed for i in range(len(sc.fix.checks))}
    return grade(transcript_from_lines(lines, checks=checks), sc)


ONLINE_LOOK = [
    "kubectl get pods -n serving",
    "kubectl port-forward -n serving svc/fraud-model 8080:80 &",
    "curl -s localhost:8080/healthz",
    "curl -s localhost:8080/metrics | grep inference_request_duration",
    "kubectl logs -n serving deploy/traffic-replay --tail=3",
]


def test_the_reference_solution_grades_at_least_90(sc) -> None:
    result = _grade(sc, sc.reference_solution, fixed=True)
    assert result.outcome == "resolved" and result.score >= 90, result.score


def test_the_endpoint_is_fine_answer_ranks_at_the_bottom(sc) -> None:
    healthy = _grade(sc, ONLINE_LOOK + [
        'mlops-drill diagnose "fraud-model is healthy: all pods Ready, 200 OK and p99 normal, nothing wrong '
        'with the model"'], fixed=False)
    assert healthy.outcome == "claimed-healthy" and healthy.score <= 10, healthy.score


def test_restarting_the_online_model_matches_no_step_and_ranks_lower(sc) -> None:
    """The CI/CD reflex on the wrong component: a change that performs no step, below even the plain claim."""
    healthy = _grade(sc, ONLINE_LOOK + ['mlops-drill diagnose "fraud-model is fine, 200 OK"'], fixed=False)
    restart = ["kubectl rollout restart deploy/fraud-model -n serving",
               "kubectl rollout status deploy/fraud-model -n serving"]
    restarted = _grade(sc, ONLINE_LOOK[:1] + restart + ONLINE_LOOK[1:] + [
        'mlops-drill diagnose "restarted fraud-model, the scores should come back now"'], fixed=False)
    restarted_healthy = _grade(sc, ONLINE_LOOK[:1] + restart + ONLINE_LOOK[1:] + [
        'mlops-drill diagnose "fraud-model is fine, 200 OK"'], fixed=False)
    assert restarted.outcome == "open" and restarted.score <= 10, restarted.score
    assert restarted_healthy.score < healthy.score, (restarted_healthy.score, healthy.score)
    for result in (restarted, restarted_healthy):
        kinds = {(d.kind, d.id) for d in result.deductions}
        assert ("anti-pattern", "restart-online-model") in kinds
        assert any(kind == "blind-change" for kind, _ in kinds), "a change that matches no step"
        line = next(c for c in result.commands if "rollout restart" in c.line)
        assert line.step is None and line.mutation, "the restart performs no step of the plan"


def test_rolling_back_before_reading_the_worker_costs_points_but_beats_doing_nothing(sc) -> None:
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    blind = _grade(sc, [
        "kubectl get pods -n serving",
        "kubectl rollout undo deploy/scoring-worker -n serving",
        "kubectl rollout status deploy/scoring-worker -n serving",
        "kubectl port-forward -n serving svc/scoring-queue 18085:80 &",
        "curl -s localhost:18085/queues/transactions",
    ], fixed=True)
    assert 40 <= blind.score < reference - 15, (blind.score, reference)


def test_restarting_the_queue_is_penalised_even_after_the_evidence(sc) -> None:
    look = sc.reference_solution[:9]
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    purged = _grade(sc, look + [
        "kubectl delete pod -n serving -l app=scoring-queue",
        "kubectl port-forward -n serving svc/scoring-queue 18086:80 &",
        "curl -s localhost:18086/queues",
        f'mlops-drill diagnose "the scoring worker could not keep up, {sc.variant.values["cause"]}; restarted '
        'the queue so it is empty again"',
    ], fixed=False)
    assert purged.score < reference - 50, purged.score
    assert "restart-the-queue" in {d.id for d in purged.deductions if d.kind == "anti-pattern"}


def _with_diagnosis(sc, text: str) -> list[str]:
    """The reference path with its diagnosis replaced by ``text``."""
    lines = [line for line in sc.reference_solution if not line.startswith("mlops-drill diagnose")]
    return lines + [f'mlops-drill diagnose "{text}"']


def test_naming_every_possible_cause_is_not_a_diagnosis(sc) -> None:
    """Listing all three settings contains the drawn one whichever it is: it earns no diagnosis credit."""
    drawn = sc.variant.values["cause"]
    precise = _grade(sc, _with_diagnosis(sc, f"the scoring worker release changed {drawn}"), fixed=True)
    shotgun = _grade(sc, _with_diagnosis(
        sc, "the scoring worker release changed BATCH_SIZE, MODEL_URL or QUEUE_NAME"), fixed=True)
    ruled_out = _grade(sc, _with_diagnosis(
        sc, f"the scoring worker release changed {drawn}; the other two settings "
            f"({', '.join(c for c in ('BATCH_SIZE', 'MODEL_URL', 'QUEUE_NAME') if c != drawn)}) are unchanged"),
        fixed=True)
    hedged = _grade(sc, _with_diagnosis(
        sc, "the scoring worker release changed one of BATCH_SIZE, MODEL_URL, QUEUE_NAME, not sure which"),
        fixed=True)
    others = [c for c in ("BATCH_SIZE", "MODEL_URL", "QUEUE_NAME") if c != drawn]
    compared = _grade(sc, _with_diagnosis(
        sc, f"the scoring worker release changed {drawn}; {others[0]} and {others[1]} are the same as in 2.4.0"),
        fixed=True)
    assert precise.dimension("diagnosis").score == 100
    assert ruled_out.dimension("diagnosis").score == 100 and compared.dimension("diagnosis").score == 100
    assert shotgun.dimension("diagnosis").score == 0 and shotgun.score < precise.score
    assert hedged.dimension("diagnosis").score == 0
    note = next(n for c in shotgun.commands for n in c.notes if n.startswith("not accepted: it also names"))
    assert all(c in note for c in ("BATCH_SIZE", "MODEL_URL", "QUEUE_NAME") if c != drawn)


def test_a_hypothesis_may_weigh_every_cause(sc) -> None:
    """Before the evidence an engineer lists candidates; that is a hypothesis, not a hedge."""
    lines = ['mlops-drill hypothesize "the worker release changed BATCH_SIZE, MODEL_URL or QUEUE_NAME"',
             *sc.reference_solution]
    assert _grade(sc, lines, fixed=True).hypotheses[0].correct
