"""The ``fraud-sweep`` Job: a hyperparameter sweep of the fraud model, one GPU per worker, with a median pruner.

How a team runs Optuna-style sweeps on Kubernetes: an Indexed Job whose workers
share one study storage (here a journal file of JSON lines on a shared volume,
as Optuna's journal file storage keeps one), each worker running its share of
the study's trials (worker ``k`` of ``WORKERS`` runs trials ``k``, ``k+WORKERS``,
...). A trial really trains the fraud MLP with its hyperparameters (numpy),
reports its validation AUC after every epoch to the journal and checkpoints its
state, so a restarted worker resumes its trial where it stopped.

The pruner is the median stopping rule as Optuna's ``MedianPruner`` defines it:
once ``PRUNER_STARTUP_TRIALS`` trials have completed, a trial past
``PRUNER_WARMUP_EPOCHS`` whose best AUC so far is below the median of the
completed trials' AUC at the same epoch stops ("pruned at epoch k") and its
worker moves on, releasing its GPU when it has no trial left. ``PRUNER=none``
runs every trial for all ``EPOCHS``: each losing trial holds its GPU to the end.

Each epoch really waits ``EPOCH_SECONDS`` (the GPU kept busy, as dcgm-exporter
shows) and stands for ``GPU_HOURS_PER_EPOCH`` of GPU time, priced as
``training`` prices epochs; the worker logs the study's GPU-hours spent and
projected against ``GPU_HOURS_BUDGET``.

``python -m mlops_drill.mlplatform.sweep trials`` prints the study's trials (state,
hyperparameters, epochs run, AUC) from the journal.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mlops_drill.cluster.gpu.activity import DeviceClock
from mlops_drill.mlplatform import appkit, data, transforms
from mlops_drill.mlplatform.model import Adam, Model, auc, init_model, train_epoch

APP = "fraud-sweep"
PRUNERS = ("median", "none")
COMPLETE, PRUNED, RUNNING = "COMPLETE", "PRUNED", "RUNNING"
TRAIN_ROWS, VAL_ROWS = 6000, 3000
#: The search space the sampler draws from (log-uniform learning rate, a choice of widths and batch sizes).
SEARCH_SPACE = {"learning_rate": (1e-4, 0.3), "hidden_units": (2, 4, 8, 16, 32), "batch_size": (256, 1024, 4096)}


@dataclass
class Trial:
    number: int
    params: dict[str, Any]
    state: str = RUNNING
    values: dict[int, float] = field(default_factory=dict)  # epoch -> validation AUC

    @property
    def epochs_run(self) -> int:
        return max(self.values, default=0)

    def best_until(self, epoch: int) -> float | None:
        seen = [v for e, v in self.values.items() if e <= epoch]
        return max(seen) if seen else None


@dataclass
class Study:
    """The study as its journal tells it: replaying the records gives every worker the same view."""

    trials: dict[int, Trial] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "Study":
        study = cls()
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    study.apply(json.loads(line))
        return study

    def apply(self, record: dict[str, Any]) -> None:
        op, n = record.get("op"), record.get("trial")
        if op == "trial":
            self.trials[n] = Trial(n, dict(record["params"]))
        elif op == "report" and n in self.trials:
            self.trials[n].values[int(record["epoch"])] = float(record["val_auc"])
        elif op == "state" and n in self.trials:
            self.trials[n].state = record["state"]

    def completed(self) -> list[Trial]:
        return [t for t in self.trials.values() if t.state == COMPLETE]

    def median_at(self, epoch: int) -> float | None:
        """Median AUC of the completed trials at ``epoch`` (None when none reported it)."""
        values = [t.values[epoch] for t in self.completed() if epoch in t.values]
        return float(np.median(values)) if values else None


@dataclass(frozen=True)
class MedianPruner:
    """Optuna's median stopping rule: compare the trial's best so far with the completed trials' median."""

    startup_trials: int = 5
    warmup_epochs: int = 3

    def should_prune(self, study: Study, trial: Trial, epoch: int) -> tuple[bool, float | None]:
        """(prune?, the median it was compared with)."""
        if epoch <= self.warmup_epochs or len(study.completed()) < self.startup_trials:
            return False, None
        median = study.median_at(epoch)
        best = trial.best_until(epoch)
        if median is None or best is None:
            return False, median
        return best < median, median


class Journal:
    """Append-only JSON lines shared by every worker; an exclusive lock per write keeps records whole."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json_line({"ts": iso(time.time()), **record})
        with self.path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                fh.write(line)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def study(self) -> Study:
        return Study.load(self.path)


# -- the trial's training: the same model code as fraud-train, on the sweep's sample ----------------------
@lru_cache(maxsize=2)
def sweep_data(period: str = data.RECENT_PERIOD) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X train, y train, X val, y val), transformed as training transforms them; the same for every trial."""
    train = data.labelled_sample(period, TRAIN_ROWS, salt=910)
    val = data.labelled_sample(period, VAL_ROWS, salt=911)
    config = transforms.fit(train.features, train.X)
    return (transforms.apply(config, train.features, train.X), train.y,
            transforms.apply(config, val.features, val.X), val.y)


def new_model(params: dict[str, Any], n_inputs: int, random_state: int) -> tuple[Model, Adam]:
    return (init_model("mlp", n_inputs, int(params["hidden_units"]), random_state),
            Adam(lr=float(params["learning_rate"])))


def train_one_epoch(model: Model, opt: Adam, params: dict[str, Any], epoch: int, random_state: int,
                    period: str = data.RECENT_PERIOD) -> float:
    """One real epoch of the trial; its validation AUC."""
    Xs, y, Xv, yv = sweep_data(period)
    train_epoch(model, opt, Xs, y, batch=int(params["batch_size"]), seed=random_state + epoch)
    return auc(yv, model.predict_proba(Xv))


def curve(params: dict[str, Any], epochs: int, random_state: int = data.SEED) -> list[float]:
    """The trial's validation AUC after each of ``epochs`` epochs, trained for real (what a worker reports)."""
    Xs = sweep_data()[0]
    model, opt = new_model(params, Xs.shape[1], random_state)
    return [round(train_one_epoch(model, opt, params, e, random_state), 4) for e in range(1, epochs + 1)]


def sample_params(number: int, random_state: int) -> dict[str, Any]:
    """The sampler: a random draw from SEARCH_SPACE for trial ``number`` (the same draw on every worker)."""
    rng = np.random.default_rng([random_state, number])
    low, high = SEARCH_SPACE["learning_rate"]
    return {"learning_rate": float(f"{float(np.exp(rng.uniform(np.log(low), np.log(high)))):.4g}"),
            "hidden_units": int(rng.choice(SEARCH_SPACE["hidden_units"])),
            "batch_size": int(rng.choice(SEARCH_SPACE["batch_size"]))}


@dataclass
class Wave:
    """Trials that ran side by side under one pruner setting (a row of workers)."""

    params: list[dict[str, Any]]
    pruner: str
    note: str = ""


def history(waves: list[Wave], epochs: int, warmup_epochs: int, startup_trials: int, running_epochs: int,
            epoch_seconds: float, now: float, random_state: int = data.SEED
            ) -> tuple[list[dict[str, Any]], dict[int, tuple[int, Model, Adam]]]:
    """What a sweep's workers did, trained for real: the journal records and the running trials' states.

    Trials of a wave run side by side, epoch by epoch, checked by the pruner of their wave against the
    trials completed before them (a wave's own trials complete together, as a first wave does in Optuna);
    the last wave is still running after ``running_epochs`` epochs. Timestamps (epoch seconds) count back
    from ``now``, one ``epoch_seconds`` an epoch.
    """
    spans = [epochs] * (len(waves) - 1) + [running_epochs]
    clock = now - sum(spans) * epoch_seconds
    study, records, running = Study(), [], {}
    number = 0

    def record(rec: dict[str, Any]) -> None:
        rec = {"ts": clock, **rec}  # epoch seconds: the caller formats them (``iso``) when it writes the journal
        records.append(rec)
        study.apply(rec)

    Xs = sweep_data()[0]
    for w, (wave, span) in enumerate(zip(waves, spans)):
        record({"op": "config", "pruner": wave.pruner, "epochs": epochs, **({"note": wave.note} if wave.note else {})})
        rule = MedianPruner(startup_trials, warmup_epochs) if wave.pruner == "median" else None
        models: dict[int, tuple[Model, Adam]] = {}
        for params in wave.params:
            record({"op": "trial", "trial": number, "params": params})
            models[number] = new_model(params, Xs.shape[1], random_state)
            number += 1
        alive = set(models)
        for epoch in range(1, span + 1):
            clock += epoch_seconds
            for n in sorted(alive):
                model, opt = models[n]
                value = train_one_epoch(model, opt, study.trials[n].params, epoch, random_state)
                record({"op": "report", "trial": n, "epoch": epoch, "val_auc": round(value, 4)})
            for n in sorted(alive):
                if rule is not None and epoch < epochs:
                    prune, _ = rule.should_prune(study, study.trials[n], epoch)
                    if prune:
                        record({"op": "state", "trial": n, "state": PRUNED, "epoch": epoch,
                                "value": study.trials[n].best_until(epoch)})
                        alive.discard(n)
        if w < len(waves) - 1:
            for n in sorted(alive):
                record({"op": "state", "trial": n, "state": COMPLETE, "epoch": epochs,
                        "value": study.trials[n].values[epochs]})
        else:
            running = {n: (span, *models[n]) for n in alive}
    return records, running


# -- the worker ----------------------------------------------------------------------------------------------
@dataclass
class Config:
    study: str
    storage: Path
    checkpoints: Path
    trials: int
    epochs: int
    workers: int
    pruner: str
    startup_trials: int
    warmup_epochs: int
    epoch_seconds: float
    gpu_hours_per_epoch: float
    budget_gpu_hours: float
    random_state: int

    @classmethod
    def from_env(cls) -> "Config":
        pruner = os.environ.get("PRUNER", "median").strip().lower()
        if pruner not in PRUNERS:
            raise SystemExit(f"invalid value for env PRUNER: {pruner!r} (use {' or '.join(PRUNERS)})")
        study = os.environ.get("STUDY_NAME", "fraud-cnp-hpo").strip()
        root = Path(os.environ.get("STUDY_DIR", "/var/lib/fraud-sweep"))
        return cls(study=study, storage=root / f"{study}.journal", checkpoints=root / "checkpoints" / study,
                   trials=int(appkit.env_float("N_TRIALS", 18)), epochs=int(appkit.env_float("EPOCHS", 40)),
                   workers=max(1, int(appkit.env_float("WORKERS", 1))), pruner=pruner,
                   startup_trials=int(appkit.env_float("PRUNER_STARTUP_TRIALS", 5)),
                   warmup_epochs=int(appkit.env_float("PRUNER_WARMUP_EPOCHS", 3)),
                   epoch_seconds=appkit.env_float("EPOCH_SECONDS", 60.0),
                   gpu_hours_per_epoch=appkit.env_float("GPU_HOURS_PER_EPOCH", 0.5),
                   budget_gpu_hours=appkit.env_float("GPU_HOURS_BUDGET", 0.0),
                   random_state=int(appkit.env_float("RANDOM_STATE", data.SEED)))

    def pruner_rule(self) -> MedianPruner | None:
        return MedianPruner(self.startup_trials, self.warmup_epochs) if self.pruner == "median" else None


def gpu_hours(study: Study, cfg: Config) -> tuple[float, float]:
    """(spent, projected): epochs run so far, and those still to run if nothing changes.

    Projected: every unfinished trial runs to ``EPOCHS``, except that with the pruner on a
    trial already below the median stops at its next check.
    """
    spent = sum(t.epochs_run for t in study.trials.values()) * cfg.gpu_hours_per_epoch
    rule, more = cfg.pruner_rule(), 0
    for number in range(cfg.trials):
        t = study.trials.get(number)
        if t is not None and t.state != RUNNING:
            continue
        run = 0 if t is None else t.epochs_run
        if rule is not None and t is not None and rule.should_prune(study, t, max(run, rule.warmup_epochs + 1))[0]:
            continue
        more += cfg.epochs - run
    return spent, spent + more * cfg.gpu_hours_per_epoch


def checkpoint_dir(cfg: Config, number: int) -> Path:
    return cfg.checkpoints / f"trial-{number}"


def run_trial(cfg: Config, journal: Journal, number: int, stop: threading.Event, clock: DeviceClock) -> str | None:
    """Run (or resume) one trial to its end; its final state, or None when the worker was stopped."""
    from mlops_drill.mlplatform.training import load_checkpoint, save_checkpoint

    study = journal.study()
    trial = study.trials.get(number)
    if trial is None:
        trial = Trial(number, sample_params(number, cfg.random_state))
        journal.append({"op": "trial", "trial": number, "params": trial.params})
        study.trials[number] = trial
    n_inputs = sweep_data()[0].shape[1]
    restored = load_checkpoint(checkpoint_dir(cfg, number), "mlp")
    if restored is not None:
        done, model, opt = restored
        opt.lr = float(trial.params["learning_rate"])  # the checkpoint keeps the optimiser's moments, not its rate
        # Where the trial stands, as its curve in the journal says: what the pruner would judge it by.
        appkit.log("info", f"trial {number} resumed from its checkpoint", trial=number, completed_epochs=done,
                   epochs=cfg.epochs, pruner=cfg.pruner, **trial.params, val_auc=trial.values.get(done),
                   best_val_auc=_round(trial.best_until(done)), median_completed_val_auc=_round(study.median_at(done)))
    else:
        (model, opt), done = new_model(trial.params, n_inputs, cfg.random_state), 0
        appkit.log("info", f"trial {number} started", trial=number, epochs=cfg.epochs, pruner=cfg.pruner,
                   **trial.params)
    rule = cfg.pruner_rule()
    if done and rule is not None:
        ended = _maybe_prune(cfg, journal, rule, journal.study(), number, done)
        if ended:
            return ended
    for epoch in range(done + 1, cfg.epochs + 1):
        started = time.monotonic()
        val_auc = train_one_epoch(model, opt, trial.params, epoch, cfg.random_state)
        # The epoch stands for EPOCH_SECONDS of GPU work: the device stays busy while it lasts.
        while (left := cfg.epoch_seconds - (time.monotonic() - started)) > 0:
            tick = time.monotonic()
            if stop.wait(min(1.0, left)):
                clock.add(time.monotonic() - tick)
                appkit.log("warning", "SIGTERM received, stopping", trial=number, completed_epochs=epoch - 1,
                           resume="the trial continues from its checkpoint when the sweep runs again")
                return None
            clock.add(time.monotonic() - tick)
        save_checkpoint(checkpoint_dir(cfg, number), epoch, model, opt)
        journal.append({"op": "report", "trial": number, "epoch": epoch, "val_auc": round(val_auc, 4)})
        study = journal.study()
        spent, projected = gpu_hours(study, cfg)
        appkit.log("info", f"trial {number} epoch {epoch}/{cfg.epochs}", trial=number, epoch=epoch,
                   val_auc=round(val_auc, 4), best_val_auc=round(study.trials[number].best_until(epoch), 4),
                   median_completed_val_auc=_round(study.median_at(epoch)), pruner=cfg.pruner,
                   study_gpu_hours=round(spent, 1), projected_gpu_hours=round(projected, 1),
                   budget_gpu_hours=cfg.budget_gpu_hours or None)
        if rule is not None and epoch < cfg.epochs:
            ended = _maybe_prune(cfg, journal, rule, study, number, epoch)
            if ended:
                return ended
    final = study.trials[number].values.get(cfg.epochs)
    journal.append({"op": "state", "trial": number, "state": COMPLETE, "epoch": cfg.epochs, "value": final})
    appkit.log("info", f"trial {number} complete", trial=number, epochs=cfg.epochs, val_auc=final)
    return COMPLETE


def _maybe_prune(cfg: Config, journal: Journal, rule: MedianPruner, study: Study, number: int,
                 epoch: int) -> str | None:
    prune, median = rule.should_prune(study, study.trials[number], epoch)
    if not prune:
        return None
    best = study.trials[number].best_until(epoch)
    journal.append({"op": "state", "trial": number, "state": PRUNED, "epoch": epoch, "value": best})
    appkit.log("info", f"trial {number} pruned at epoch {epoch}", trial=number, epoch=epoch,
               best_val_auc=_round(best), median_completed_val_auc=_round(median),
               gpu_hours_saved=round((cfg.epochs - epoch) * cfg.gpu_hours_per_epoch, 1))
    return PRUNED


def main() -> int:
    appkit.set_app_name(APP)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cfg = Config.from_env()
    index = int(appkit.env_float("JOB_COMPLETION_INDEX", 0))
    journal = Journal(cfg.storage)
    clock = DeviceClock()
    mine = list(range(index, cfg.trials, cfg.workers))
    study = journal.study()
    spent, projected = gpu_hours(study, cfg)
    states = [t.state for t in study.trials.values()]
    best = max(study.completed(), key=lambda t: t.values.get(cfg.epochs, 0.0), default=None)
    appkit.log("info", "sweep worker started", study=cfg.study, worker=index, workers=cfg.workers,
               trials=cfg.trials, epochs=cfg.epochs, pruner=cfg.pruner,
               pruner_startup_trials=cfg.startup_trials if cfg.pruner != "none" else None,
               pruner_warmup_epochs=cfg.warmup_epochs if cfg.pruner != "none" else None,
               trials_complete=states.count(COMPLETE), trials_pruned=states.count(PRUNED),
               trials_running=states.count(RUNNING),
               best_trial=None if best is None else best.number,
               best_val_auc=None if best is None else best.values.get(cfg.epochs), study_gpu_hours=round(spent, 1),
               projected_gpu_hours=round(projected, 1), budget_gpu_hours=cfg.budget_gpu_hours or None,
               devices=[g for g in os.environ.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if g] or ["cpu"])
    if cfg.budget_gpu_hours and projected > cfg.budget_gpu_hours:
        appkit.log("warning", "projected GPU-hours exceed the sweep's budget", study=cfg.study,
                   projected_gpu_hours=round(projected, 1), budget_gpu_hours=cfg.budget_gpu_hours, pruner=cfg.pruner)
    for number in mine:
        trial = journal.study().trials.get(number)
        if trial is not None and trial.state != RUNNING:
            continue
        if run_trial(cfg, journal, number, stop, clock) is None:
            return 143
    appkit.log("info", "sweep worker finished: no trial left", worker=index)
    return 0


def print_trials(cfg: Config, out=sys.stdout) -> None:
    """The study's trials as a table (what ``optuna trials`` shows for a study)."""
    study = Study.load(cfg.storage)
    out.write(f"study {cfg.study}: {len(study.trials)}/{cfg.trials} trials, pruner {cfg.pruner}\n")
    out.write(f"{'trial':>5} {'state':<9} {'epochs':>6} {'lr':>8} {'hidden':>6} {'batch':>5} "
              f"{'val_auc':>7} {'best':>6}\n")
    for n in sorted(study.trials):
        t = study.trials[n]
        last = t.values.get(t.epochs_run)
        best = t.best_until(t.epochs_run)
        out.write(f"{n:>5} {t.state:<9} {t.epochs_run:>6} {t.params['learning_rate']:>8g} "
                  f"{t.params['hidden_units']:>6} {t.params['batch_size']:>5} "
                  f"{'' if last is None else f'{last:.4f}':>7} {'' if best is None else f'{best:.4f}':>6}\n")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["trials"]:
        print_trials(Config.from_env())
        sys.exit(0)
    sys.exit(main())
