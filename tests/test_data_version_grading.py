"""training-data-version-moved: the expert path grades high, a blind rerun, a new seed or 'it is fine' low.

Graded as the live grader grades (transcripts with a verification event): a path that left the Job
reading the alias, or changed the run's settings, fails the fix checks (the rerun's log shows another
snapshot or other settings), which is what the cluster self-test sees when those checks run.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.variants import draw, render

SCENARIO = "training-data-version-moved"


@pytest.fixture(scope="module", params=[None, 11, 4242])
def sc(request):
    """The first variant and two drawn ones: the rubric holds whichever snapshot and alias the draw made."""
    template = load_scenario(catalogue_dir() / f"{SCENARIO}.yaml")
    if request.param is None:
        from mlops_drill.scenarios.variants import first_variant

        return first_variant(template)
    return render(template, draw(template, request.param), request.param)


def _grade(sc, lines: list[str], fixed: bool):
    checks = {f"check-{i}": fixed for i in range(len(sc.fix.checks))}
    return grade(transcript_from_lines(lines, checks=checks), sc)


def _look(sc) -> list[str]:
    return sc.reference_solution[:8]  # triage, logs, registry lineage, the Job's env, the catalogue


def _recreate(sc, env_edit: str) -> list[str]:
    return [
        "kubectl get job fraud-train -n training -o json | jq 'del(.metadata.uid, .status, .spec.selector) "
        f"| .spec.template.spec.containers[0].env |= map({env_edit})' > /tmp/fraud-train.json",
        "kubectl replace --force -n training -f /tmp/fraud-train.json",
        "kubectl logs -n training -l job-name=fraud-train --tail=-1 | grep 'training finished'",
    ]


def test_the_reference_solution_grades_at_least_90(sc) -> None:
    result = _grade(sc, sc.reference_solution, fixed=True)
    assert result.outcome == "resolved" and result.score >= 90, result.score


def test_a_blind_rerun_of_the_same_job_ranks_clearly_lower(sc) -> None:
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    blind = _grade(sc, [
        "kubectl get jobs -n training",
        "kubectl delete job fraud-train -n training",
        "kubectl get job fraud-train -n training -o yaml > /tmp/j.yaml",
        "kubectl create -f /tmp/j.yaml",
        "kubectl logs -n training -l job-name=fraud-train --tail=20",
        "mlops-drill diagnose \"training is non-deterministic, retrained and registered the new model\"",
    ], fixed=False)
    assert blind.outcome == "open" and blind.score <= 38 and blind.score < reference - 50, blind.score


def test_a_new_seed_or_other_hyperparameters_rank_clearly_lower_even_after_the_evidence(sc) -> None:
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    reseeded = _grade(sc, _look(sc) + _recreate(
        sc, 'if .name == "RANDOM_STATE" then .value = "7" else . end') + [
        "kubectl set env job/fraud-train -n training LEARNING_RATE=0.01 RANDOM_STATE=7",
        "mlops-drill diagnose \"the run is not deterministic, changed the random state and learning rate\"",
    ], fixed=False)
    assert reseeded.outcome == "open" and reseeded.score < reference - 50, reseeded.score
    assert "change-hyperparameters" in {d.id for d in reseeded.deductions if d.kind == "anti-pattern"}


def test_moving_the_shared_alias_back_is_not_the_fix(sc) -> None:
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    moved_back = _grade(sc, _look(sc) + [
        "kubectl edit configmap fraud-datasets -n training",
        "kubectl replace --force -n training -f /tmp/fraud-train.json",
        "kubectl logs -n training -l job-name=fraud-train --tail=-1 | grep 'training finished'",
        "mlops-drill diagnose \"the alias moved to a newer snapshot; moved it back and reran\"",
    ], fixed=False)
    assert moved_back.outcome == "open" and moved_back.score < reference - 50, moved_back.score
    assert "move-shared-alias" in {d.id for d in moved_back.deductions if d.kind == "anti-pattern"}


def test_looks_healthy_ranks_lowest(sc) -> None:
    healthy = _grade(sc, [
        "kubectl get jobs,pods -n training",
        "kubectl logs -n training -l job-name=fraud-train --tail=5",
        "mlops-drill diagnose \"the job completed fine and returned no errors, training is healthy, nothing wrong\"",
    ], fixed=False)
    assert healthy.outcome == "claimed-healthy" and healthy.score < 10, healthy.score


def test_the_pin_without_the_registry_evidence_is_a_guess(sc) -> None:
    """Pinning the snapshot right after the logs, never reading the registry, still fixes it but ranks lower."""
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    guess = _grade(sc, [sc.reference_solution[0], sc.reference_solution[9], "kubectl replace --force -n training "
                        "-f /tmp/fraud-train.json", sc.reference_solution[12], sc.reference_solution[13]], fixed=True)
    assert guess.outcome == "resolved" and guess.score < reference - 15, (guess.score, reference)
