"""training-sweep-unpruned: re-enabling the pruner grades high; killing the sweep, cutting every trial's epochs,
lowering its parallelism, touching GPU capacity or 'it is fine' grade low.

Graded as the live grader grades (transcripts with a verification event): a remedy that leaves the pruner off
fails the fix checks (no trial is pruned, the promising trial never resumes under the median rule), which is
what the cluster self-test sees when those checks run.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.variants import draw, render

SCENARIO = "training-sweep-unpruned"


@pytest.fixture(scope="module", params=[None, 11, 4242])
def sc(request):
    """The first variant and two drawn ones: the rubric holds whichever trial is the promising one."""
    template = load_scenario(catalogue_dir() / f"{SCENARIO}.yaml")
    if request.param is None:
        from mlops_drill.scenarios.variants import first_variant

        return first_variant(template)
    return render(template, draw(template, request.param), request.param)


def _grade(sc, lines: list[str], fixed: bool | dict[str, bool]):
    checks = fixed if isinstance(fixed, dict) else {f"check-{i}": fixed for i in range(len(sc.fix.checks))}
    return grade(transcript_from_lines(lines, checks=checks), sc)


def _only(sc, *passing: int) -> dict[str, bool]:
    """Fix checks as a partial remedy leaves them: fraud-train (the last check) runs, the sweep checks fail."""
    return {f"check-{i}": i in passing for i in range(len(sc.fix.checks))}


def _look(sc) -> list[str]:
    return sc.reference_solution[:11]  # triage, capacity, dcgm, the trials' curves, the sweep config


def test_the_reference_solution_grades_at_least_90(sc) -> None:
    result = _grade(sc, sc.reference_solution, fixed=True)
    assert result.outcome == "resolved" and result.score >= 90, result.score


def test_killing_the_sweep_ranks_clearly_lower(sc) -> None:
    """fraud-train gets its GPUs, but the study and its promising trial are gone and nothing was pruned."""
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    killed = _grade(sc, [
        "kubectl get pods -n training",
        "kubectl describe pod -n training -l job-name=fraud-train",
        "kubectl delete job fraud-sweep -n training",
        "kubectl get pods -n training",
        "mlops-drill diagnose \"a sweep job held the GPUs; deleted it so fraud-train can run\"",
    ], fixed=_only(sc, 3))
    assert killed.outcome == "open" and killed.score < reference - 50, killed.score
    assert "kill-the-sweep" in {d.id for d in killed.deductions if d.kind == "anti-pattern"}


def test_cutting_every_trials_epochs_ranks_clearly_lower_even_after_the_evidence(sc) -> None:
    """The promising trial would stop early with a lower AUC: the GPUs free up for the wrong reason."""
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    cut = _grade(sc, _look(sc) + [
        "kubectl patch configmap fraud-sweep -n training --type merge -p '{\"data\":{\"EPOCHS\":\"12\"}}'",
        "kubectl delete pods -n training -l job-name=fraud-sweep",
        "kubectl get pods -n training",
        "mlops-drill diagnose \"the sweep trains too long; cut every trial to 12 epochs so the GPUs free up\"",
    ], fixed=_only(sc, 3))
    assert cut.outcome == "open" and cut.score < reference - 40, cut.score
    assert "cut-every-trial" in {d.id for d in cut.deductions if d.kind == "anti-pattern"}


def test_lowering_parallelism_only_ranks_clearly_lower(sc) -> None:
    """Fewer workers at once: fraud-train fits, the losing trials still run all their epochs (same GPU-hours)."""
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    lowered = _grade(sc, _look(sc) + [
        "kubectl patch job fraud-sweep -n training --type merge -p '{\"spec\":{\"parallelism\":5}}'",
        "kubectl get pods -n training",
        "mlops-drill diagnose \"the sweep takes every GPU; lowered its parallelism to 5 so fraud-train fits\"",
    ], fixed=_only(sc, 3))
    assert lowered.outcome == "open" and lowered.score < reference - 40, lowered.score
    assert "lower-parallelism-only" in {d.id for d in lowered.deductions if d.kind == "anti-pattern"}


def test_dropping_the_gpu_request_of_the_training_run_ranks_clearly_lower(sc) -> None:
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    cpu = _grade(sc, sc.reference_solution[:2] + [
        "kubectl get job fraud-train -n training -o yaml > /tmp/t.yaml",
        "sed -i '/nvidia.com\\/gpu/d' /tmp/t.yaml",
        "kubectl replace --force -n training -f /tmp/t.yaml",
        "kubectl label node cpu-node-0 pool=gpu --overwrite",
        "mlops-drill diagnose \"no GPU free, so fraud-train runs without a GPU request\"",
    ], fixed=_only(sc, 3))
    assert cpu.outcome == "open" and cpu.score < reference - 50, cpu.score
    assert "change-gpu-capacity-or-request" in {d.id for d in cpu.deductions if d.kind == "anti-pattern"}


def test_looks_healthy_ranks_lowest(sc) -> None:
    healthy = _grade(sc, [
        "kubectl get pods -n training",
        "kubectl get pods -n gpu-operator",
        "mlops-drill diagnose \"the GPUs are all busy doing real work and the device plugin is healthy, nothing is "
        "wrong; fraud-train will start when the sweep ends\"",
    ], fixed=False)
    assert healthy.outcome == "claimed-healthy" and healthy.score < 10, healthy.score


def test_the_pruner_without_reading_the_trials_is_a_guess(sc) -> None:
    """Flipping PRUNER right after the Pending pod, never reading a trial's curve, still fixes it but ranks lower."""
    reference = _grade(sc, sc.reference_solution, fixed=True).score
    guess = _grade(sc, sc.reference_solution[:2] + sc.reference_solution[12:], fixed=True)
    assert guess.outcome == "resolved" and guess.score < reference - 15, (guess.score, reference)


@pytest.mark.parametrize("restart", [
    ["kubectl delete pods -n training -l job-name=fraud-sweep"],
    ["kubectl get job fraud-sweep -n training -o yaml > /tmp/s.yaml", "kubectl delete job fraud-sweep -n training",
     "kubectl create -f /tmp/s.yaml"],
])
def test_other_ways_an_owner_sets_the_pruner_and_restarts_the_sweep_grade_as_the_reference(sc, restart) -> None:
    """`kubectl edit` for the ConfigMap, and deleting the workers or re-creating the Job once the pruner is back."""
    ref = list(sc.reference_solution)
    patch = next(i for i, line in enumerate(ref) if "patch configmap fraud-sweep" in line)
    suspend = next(i for i, line in enumerate(ref) if '"suspend":true' in line)
    lines = ref[:patch] + ["kubectl edit configmap fraud-sweep -n training"] + ref[patch + 1:suspend] + restart + \
        ref[suspend + 3:]
    result = _grade(sc, lines, fixed=True)
    assert result.outcome == "resolved" and result.score >= 90 and not result.deductions, \
        (result.score, result.deductions)


@pytest.mark.parametrize("restart", [
    ["kubectl patch job fraud-sweep -n training -p '{\"spec\":{\"parallelism\":0}}'",
     "kubectl patch job fraud-sweep -n training -p '{\"spec\":{\"parallelism\":6}}'"],
])
def test_parallelism_down_and_up_after_the_pruner_is_a_restart_not_a_cut(sc, restart) -> None:
    ref = list(sc.reference_solution)
    suspend = next(i for i, line in enumerate(ref) if '"suspend":true' in line)
    result = _grade(sc, ref[:suspend] + restart + ref[suspend + 3:], fixed=True)
    assert result.outcome == "resolved" and result.score >= 90 and not result.deductions, \
        (result.score, result.deductions)


def test_a_gpu_quota_for_sweeps_is_a_guardrail_not_a_capacity_hack(sc) -> None:
    """The guardrail the scenario suggests (a ResourceQuota on requests.nvidia.com/gpu) costs nothing."""
    lines = list(sc.reference_solution)
    lines.insert(len(lines) - 1, "kubectl create quota research-gpus -n training --hard=requests.nvidia.com/gpu=5")
    result = _grade(sc, lines, fixed=True)
    assert not result.deductions and result.score >= 90, (result.score, result.deductions)


def test_deleting_the_training_pod_is_not_restarting_the_sweep_offline(sc) -> None:
    """Offline the fix is inferred from the remediation steps: a delete of fraud-train's pod is none of them."""
    ref = list(sc.reference_solution)
    suspend = next(i for i, line in enumerate(ref) if '"suspend":true' in line)
    wrong = ref[:suspend] + ["kubectl delete pod -n training -l job-name=fraud-train"] + ref[suspend + 3:]
    offline = grade(transcript_from_lines(wrong), sc)
    assert offline.outcome != "resolved" and offline.score < 60, (offline.outcome, offline.score)
