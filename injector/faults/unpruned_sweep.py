"""unpruned-sweep: a hyperparameter sweep runs with its pruner switched off and holds the GPUs the daily run needs.

The fraud team's sweep (Indexed Job ``fraud-sweep``, one GPU per worker, a median
pruner: ``mlplatform.sweep``) has run for a while. The fault plays its history
for real: a first wave of trials that all ran to the end (no trial had completed
when they started), a second wave in which the pruner stopped the losing trials
after the warm-up epochs, then the owner switched the pruner off to look into one
of the pruned trials and never switched it back on. Today's third wave therefore
runs every trial for all epochs: the five losing trials hold their GPUs for the
rest of their schedule, the study's projected GPU-hours pass its budget, and the
daily ``fraud-train`` run stays Pending on ``Insufficient nvidia.com/gpu``.
dcgm-exporter shows the workers' GPUs busy: the GPUs work, on trials that lost.

The journal (the study storage the workers share) and each running trial's
checkpoint are written into the sweep's node folder, trained exactly as the
workers train; the workers resume those trials from their checkpoints.
Re-enabling the pruner (``PRUNER: median`` in ConfigMap ``fraud-sweep``) and
restarting the sweep as its owner would (suspend and resume the Job, or re-create
it) resumes every trial: the losing ones are pruned at once and their workers
end, the promising one keeps training to its full schedule, and fraud-train
gets a GPU.
"""
from __future__ import annotations

import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.cluster.gpu.devicemanager import RESOURCE
from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.injector.faults.occupy_gpus import _stamp, free_gpus
from mlops_drill.mlplatform import releases
from mlops_drill.mlplatform.manifests import PROCESS_LABEL

STUDY_MOUNT = "/var/lib/fraud-sweep"
STUDY_HOST_PATH = "/var/lib/mlops-drill/fraud-sweep"
IMAGE = releases.image("fraud-sweep", "0.3.0")


def _p(lr: float, hidden: int, batch: int) -> dict[str, Any]:
    return {"learning_rate": lr, "hidden_units": hidden, "batch_size": batch}


#: What the sampler suggested, wave by wave (learning rate, hidden units, batch size). The first wave and
#: the second are the study's past; of the third, the promising configuration runs as trial ``winner`` and
#: the losing ones fill the other workers in this order.
FIRST_WAVE = (_p(0.03, 8, 256), _p(0.0003, 16, 1024), _p(0.01, 32, 1024), _p(0.0001, 32, 1024),
              _p(0.005, 8, 1024), _p(0.002, 16, 4096))
SECOND_WAVE = (_p(0.3, 16, 1024), _p(0.001, 4, 1024), _p(0.0005, 8, 4096), _p(0.0008, 16, 256),
               _p(0.0002, 2, 256), _p(0.02, 16, 1024))
PROMISING = _p(0.15, 4, 256)
LOSING = (_p(0.001, 32, 4096), _p(0.0004, 16, 4096), _p(0.0015, 4, 1024), _p(0.0002, 32, 1024),
          _p(0.0006, 8, 1024))
#: The pruned second-wave trial the owner wanted to look at: it learnt late (a "late bloomer").
DEBUGGED_TRIAL = 9


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "training"
    job: str = Field("fraud-sweep", description="the sweep's Indexed Job (one worker, one GPU per index)")
    config: str = Field("fraud-sweep", description="the sweep's ConfigMap (the workers' env)")
    victim: str = Field("fraud-train", description="the Job whose run waits for a GPU")
    study: str = "fraud-cnp-hpo-2024-10"
    workers: int = Field(6, ge=2, le=6, description="workers (GPUs) of the sweep, one trial each at a time")
    epochs: int = Field(40, ge=20, le=80)
    running_epochs: int = Field(8, ge=2, description="epochs today's trials have run (past the warm-up)")
    epoch_seconds: float = Field(60.0, gt=0, description="wall seconds of an epoch (unfixed: longer than a drill)")
    warmup: int = Field(3, ge=1, le=6, description="the pruner's warm-up epochs")
    startup_trials: int = Field(5, ge=1, le=6)
    winner: int = Field(14, description="the trial number of today's promising trial")
    budget_gpu_hours: float = 240.0
    gpu_hours_per_epoch: float = 0.5

    def today(self) -> range:
        return range(2 * self.workers, 3 * self.workers)


def _waves(p: Params):
    from mlops_drill.mlplatform import sweep

    slot = p.winner - 2 * p.workers
    losing = list(LOSING[:p.workers - 1])
    today = losing[:slot] + [PROMISING] + losing[slot:]
    return [sweep.Wave(list(FIRST_WAVE[:p.workers]), "median"),
            sweep.Wave(list(SECOND_WAVE[:p.workers]), "median"),
            sweep.Wave(today, "none", note=f"pruner off while we look into trial {DEBUGGED_TRIAL} "
                                          "(pruned at its first check, was still learning)")]


@lru_cache(maxsize=8)
def _trained(p_json: str) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """The study's past, trained once per parameter set in this process (1-2 s), timestamps left to the caller."""
    from mlops_drill.mlplatform import sweep

    p = Params.model_validate_json(p_json)
    return sweep.history(_waves(p), p.epochs, p.warmup, p.startup_trials, p.running_epochs, p.epoch_seconds, 0.0)


def write_study(folder: Path, p: Params, now: float | None = None) -> None:
    """The study's journal and today's trials' checkpoints in ``folder`` (the sweep's ``STUDY_DIR``)."""
    from mlops_drill.mlplatform import sweep
    from mlops_drill.mlplatform.training import save_checkpoint

    records, running = _trained(p.model_dump_json())
    shift = (time.time() if now is None else now) - 60  # the last epoch ended a minute ago
    journal = folder / f"{p.study}.journal"
    journal.parent.mkdir(parents=True, exist_ok=True)
    # history() counted its timestamps back from 0.0: move them to end a minute ago
    journal.write_text("".join(sweep.json_line({**rec, "ts": sweep.iso(rec["ts"] + shift)}) for rec in records))
    for number, (epoch, model, opt) in running.items():
        save_checkpoint(folder / "checkpoints" / p.study / f"trial-{number}", epoch, model, opt)


def config_map(p: Params, pruner: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": p.config, "namespace": p.namespace,
                         "labels": {"app": p.job, "team": "fraud-ml"}},
            "data": {"STUDY_NAME": p.study, "STUDY_DIR": STUDY_MOUNT, "N_TRIALS": str(3 * p.workers),
                     "WORKERS": str(p.workers), "EPOCHS": str(p.epochs), "PRUNER": pruner,
                     "PRUNER_STARTUP_TRIALS": str(p.startup_trials), "PRUNER_WARMUP_EPOCHS": str(p.warmup),
                     "EPOCH_SECONDS": format(p.epoch_seconds, "g"),
                     "GPU_HOURS_PER_EPOCH": format(p.gpu_hours_per_epoch, "g"),
                     "GPU_HOURS_BUDGET": format(p.budget_gpu_hours, "g")}}


def sweep_job(p: Params) -> dict[str, Any]:
    """The sweep as its owners wrote it: nothing in it names what is wrong."""
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": p.job, "namespace": p.namespace, "labels": {"app": p.job, "team": "fraud-ml"},
                     "annotations": {"description": "hyperparameter sweep of the fraud-cnp model (median pruner)"}},
        "spec": {
            "completionMode": "Indexed", "completions": p.workers, "parallelism": p.workers, "backoffLimit": 12,
            "template": {
                "metadata": {"labels": {"app": p.job, PROCESS_LABEL: "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [{"key": RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "sweep-worker",
                        "image": IMAGE,
                        "command": ["python", "-m", "mlops_drill.mlplatform.sweep"],
                        "envFrom": [{"configMapRef": {"name": p.config}}],
                        "volumeMounts": [{"name": "study", "mountPath": STUDY_MOUNT}],
                        # Small CPU: the GPUs must run out before the nodes' CPUs do (kind nodes have 2 cores).
                        "resources": {"requests": {"cpu": "200m", "memory": "1Gi", RESOURCE: 1},
                                      "limits": {"memory": "2Gi", RESOURCE: 1}},
                    }],
                    "volumes": [{"name": "study", "hostPath": {"path": STUDY_HOST_PATH, "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }


class UnprunedSweep(Fault):
    name = "unpruned-sweep"
    Params = Params
    description = "a hyperparameter sweep runs with its pruner off and holds the GPUs the daily training run needs"
    # The study is written into the sweep's node folder (the engine's own, process-backed nodes), and the
    # fault counts free GPUs over every node: one drill per cluster.
    seat_ready = False
    shared_nodes_ready = False

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        p = self.params
        if p.winner not in p.today():
            raise DrillError(f"fault {self.name}: params.winner: trial {p.winner} is not one of today's trials "
                             f"({p.today().start}-{p.today().stop - 1})")
        if p.running_epochs <= p.warmup or p.running_epochs >= p.epochs:
            raise DrillError(f"fault {self.name}: params.running_epochs: {p.running_epochs} must be past the "
                             f"warm-up ({p.warmup}) and before the last epoch ({p.epochs})")

    # -- the node folder ---------------------------------------------------------------------------------
    def study_folder(self, ctx: DrillContext) -> Path:
        from mlops_drill.cluster.processpods.podspec import folder_within
        from mlops_drill.cluster.seats.names import namespace_prefix

        state = ctx.backend.process_state
        if state is None:
            raise DrillError(f"fault {self.name}: needs process-backed nodes (embedded backend)")
        seat = namespace_prefix(ctx.backend.cluster_namespace(self.params.namespace))
        return folder_within(state / "volumes", f"_host/{seat}/{STUDY_HOST_PATH}", f'hostPath "{STUDY_HOST_PATH}"')

    def write_study(self, ctx: DrillContext) -> None:
        """The journal and today's checkpoints, as the workers would have left them, owned by the pods' user."""
        from mlops_drill.cluster.processpods.sandbox import DEFAULT_UID

        folder = self.study_folder(ctx)
        self.clear_study(ctx)
        write_study(folder, self.params)
        for root, dirs, files in os.walk(folder):
            for name in [*dirs, *files, ""]:
                os.chown(os.path.join(root, name) if name else root, DEFAULT_UID, DEFAULT_UID, follow_symlinks=False)

    def clear_study(self, ctx: DrillContext) -> None:
        import shutil

        folder = self.study_folder(ctx)
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    # -- pods -----------------------------------------------------------------------------------------------
    def _pods(self, ctx: DrillContext) -> list:
        return ctx.core.list_namespaced_pod(self.params.namespace, label_selector=f"job-name={self.params.job}").items

    def _delete_sweep(self, ctx: DrillContext, timeout: float = 60) -> None:
        wl.delete_job_now(ctx, self.params.job, self.params.namespace, timeout)

    # -- the three verbs ------------------------------------------------------------------------------------
    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self._delete_sweep(ctx)
        wl.fresh_run(ctx, p.victim, p.namespace)  # today's run had not started yet
        free = free_gpus(ctx)
        if free < p.workers:
            raise DrillError(f"fault {self.name}: {free} free GPU(s), the sweep needs {p.workers}")
        self.write_study(ctx)
        ctx.apply([config_map(p, "none")], manager=wl.PIPELINE_MANAGER)
        ctx.apply([sweep_job(p)], manager=wl.PIPELINE_MANAGER)
        deadline = time.monotonic() + 60
        while len([x for x in self._pods(ctx) if x.status.phase == "Running" and x.spec.node_name]) < p.workers:
            if time.monotonic() > deadline:
                raise DrillError(f"fault {self.name}: {p.job} workers not all Running after 60s")
            time.sleep(0.2)
        self.applied_at = time.time()
        ctx.apply([baseline.find(ctx, "Job", p.victim, p.namespace)])

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The daily run's pod failed to schedule for want of GPUs, after the sweep took them."""
        since = getattr(self, "applied_at", 0.0) - 1.0
        events = ctx.core.list_namespaced_event(self.params.namespace).items
        return any(e.reason == "FailedScheduling" and f"Insufficient {RESOURCE}" in (e.message or "")
                   and (e.involved_object.name or "").startswith(f"{self.params.victim}-") and _stamp(e) >= since
                   for e in events)

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        self._delete_sweep(ctx)
        ctx.delete("ConfigMap", p.config, p.namespace)
        doc = wl.fresh_run(ctx, p.victim, p.namespace)
        if ctx.backend.process_state is not None:
            self.clear_study(ctx)
        ctx.apply([doc])
