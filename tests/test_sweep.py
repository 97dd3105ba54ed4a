"""The fraud-sweep workers (mlplatform/sweep.py): the median stopping rule, and real worker processes resuming the
study that training-sweep-unpruned's fault writes, with the pruner off and on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_drill.injector.faults import unpruned_sweep as us
from mlops_drill.mlplatform import sweep


def _study(trials: dict[int, tuple[str, list[float]]]) -> sweep.Study:
    study = sweep.Study()
    for n, (state, values) in trials.items():
        study.apply({"op": "trial", "trial": n, "params": {}})
        for epoch, value in enumerate(values, start=1):
            study.apply({"op": "report", "trial": n, "epoch": epoch, "val_auc": value})
        study.apply({"op": "state", "trial": n, "state": state})
    return study


def test_the_median_rule_compares_the_best_so_far_with_the_completed_trials_median() -> None:
    """Optuna's MedianPruner: completed trials only, none before the startup trials or within the warm-up, and a
    trial that was above the median once is kept (its best intermediate value counts, not its latest)."""
    done = {n: (sweep.COMPLETE, [0.6, 0.7, 0.8, 0.8]) for n in range(3)}
    rule = sweep.MedianPruner(startup_trials=3, warmup_epochs=1)
    study = _study({**done, 3: (sweep.PRUNED, [0.99, 0.99]), 4: (sweep.RUNNING, [0.5, 0.6, 0.65]),
                    5: (sweep.RUNNING, [0.5, 0.75, 0.6]), 6: (sweep.RUNNING, [0.1])})
    assert rule.should_prune(study, study.trials[4], 3) == (True, 0.8)   # 0.65 < median 0.8
    assert rule.should_prune(study, study.trials[5], 3) == (True, 0.8)   # best 0.75 < 0.8
    assert rule.should_prune(study, study.trials[5], 2) == (False, 0.7)  # best 0.75 >= 0.7 (the pruned 0.99 ignored)
    assert rule.should_prune(study, study.trials[6], 1) == (False, None)  # within the warm-up
    fewer = sweep.MedianPruner(startup_trials=4, warmup_epochs=1)
    assert fewer.should_prune(study, study.trials[4], 3) == (False, None)  # 3 completed < 4 startup trials


@pytest.mark.parametrize("warmup", [3, 4, 5])
def test_every_variant_has_one_promising_trial_and_five_clearly_losing(warmup: int) -> None:
    """Whichever trial the draw makes promising and however far today's wave is: with the pruner on, the five
    losing trials are below the completed trials' median (pruned at once) and the promising one is above it."""
    p = us.Params(warmup=warmup, running_epochs=12)
    records, running = us._trained(p.model_dump_json())
    study = sweep.Study()
    for rec in records:
        study.apply(rec)
    assert [t.state for t in study.trials.values()].count(sweep.PRUNED) >= 3, "the second wave was pruned"
    assert study.trials[us.DEBUGGED_TRIAL].state == sweep.PRUNED, "the trial the owner switched the pruner off for"
    assert sorted(running) == list(p.today())
    rule = sweep.MedianPruner(p.startup_trials, warmup)
    for epochs in (8, 10, 12):
        decisions = {n: rule.should_prune(study, study.trials[n], epochs)[0] for n in running}
        assert decisions.pop(p.winner) is False
        assert all(decisions.values()), (epochs, decisions)


def _run_worker(folder: Path, index: int, pruner: str, epoch_seconds: float = 0.02) -> list[dict]:
    p = us.Params()
    env = {**os.environ, **us.config_map(p, pruner)["data"], "STUDY_DIR": str(folder),
           "EPOCH_SECONDS": str(epoch_seconds), "JOB_COMPLETION_INDEX": str(index)}
    done = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.sweep"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fraud-sweep")
    us.write_study(folder, us.Params())
    return folder


def test_with_the_pruner_off_a_losing_trial_resumes_and_trains_every_epoch(study_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder)
    p = us.Params()
    loser = next(n for n in p.today() if n != p.winner)
    logs = _run_worker(folder, loser % p.workers, "none")
    started = next(x for x in logs if x["msg"] == "sweep worker started")
    assert started["pruner"] == "none" and started["projected_gpu_hours"] > started["budget_gpu_hours"]
    assert any(x["msg"] == "projected GPU-hours exceed the sweep's budget" for x in logs)
    assert any(x["msg"] == f"trial {loser} resumed from its checkpoint" and x["completed_epochs"] == p.running_epochs
               for x in logs)
    epochs = [x for x in logs if x["msg"].startswith(f"trial {loser} epoch ")]
    assert [x["epoch"] for x in epochs] == list(range(p.running_epochs + 1, p.epochs + 1))
    assert all(x["val_auc"] < x["median_completed_val_auc"] for x in epochs), "clearly losing all the way"
    assert logs[-2]["msg"] == f"trial {loser} complete"


def test_with_the_median_rule_losing_trials_stop_at_once_and_the_promising_one_trains_on(
        study_dir: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder)
    p = us.Params()
    for n in p.today():
        if n == p.winner:
            continue
        logs = _run_worker(folder, n % p.workers, "median", epoch_seconds=30)  # pruned before any epoch runs
        assert [x["msg"] for x in logs][-2:] == [f"trial {n} pruned at epoch {p.running_epochs}",
                                                 "sweep worker finished: no trial left"]
    logs = _run_worker(folder, p.winner % p.workers, "median")
    aucs = [x["val_auc"] for x in logs if x["msg"].startswith(f"trial {p.winner} epoch ")]
    assert len(aucs) == p.epochs - p.running_epochs and not any("pruned" in x["msg"] for x in logs)
    finished = next(x for x in logs if x["msg"] == f"trial {p.winner} complete")
    assert finished["val_auc"] >= 0.79, "the promising trial keeps its full schedule and its AUC"
    table = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.sweep", "trials"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, **us.config_map(p, "median")["data"],
                                                       "STUDY_DIR": str(folder)}).stdout
    states = {int(line.split()[0]): line.split()[1] for line in table.splitlines()[2:]}
    assert [n for n, s in states.items() if s == sweep.PRUNED and n in p.today()] == \
        [n for n in p.today() if n != p.winner]
    assert states[p.winner] == sweep.COMPLETE
