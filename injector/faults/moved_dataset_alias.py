"""moved-dataset-alias: a rerun of the training Job cannot reproduce the registered model, its data alias moved.

The fault plays a month of the team's history for real, then today:

1. the data catalogue (ConfigMap ``fraud-datasets`` in the Job's namespace, the
   alias table the data pipeline keeps) has published snapshots up to
   ``recorded_snapshot`` and points ``alias`` at it;
2. Job ``fraud-train`` runs with ``DATASET_URI=...@<alias>`` and
   ``REGISTER_MODEL``: the training code resolves the alias, trains, and
   registers its model in the model registry with the snapshot, content hash,
   row counts, settings and validation AUC it really had; that version is
   promoted to Production;
3. the data pipeline publishes ``snapshots_since`` more snapshots (late rows,
   chargebacks that arrived since) and moves the alias to the newest;
4. the team reruns the same Job to reproduce the Production model: it resolves
   the alias to the newer snapshot and trains on other rows and labels, so its
   row count, data hash and validation AUC differ from the registry's record.

Pinning ``DATASET_URI`` to the recorded snapshot id (``...@<snapshot>``, which
never moves) makes the rerun read exactly the recorded data and reproduce the
registered metrics; a new seed or other hyperparameters cannot.
"""
from __future__ import annotations

import copy
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.mlplatform import dataset_versions as dv

CATALOG_KEY = "catalog.json"
CATALOG_MOUNT = "/etc/fraud-datasets"
REGISTRY_API = "/api/2.0/mlflow"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "training"
    job: str = "fraud-train"
    model: str = Field("fraud-cnp", description="registered model the Job's runs register into")
    catalog: str = Field("fraud-datasets", description="ConfigMap holding the data catalogue's alias table")
    bucket: str = "fraud-datasets-us-central1"
    period: str = "2024-09"
    alias: str = Field("latest", pattern=r"^[a-z][a-z0-9-]*$", description="the alias the Job reads through")
    recorded_snapshot: str = Field("2024-10-04", description="the snapshot the Production model was trained on")
    snapshots_since: int = Field(3, ge=1, le=8, description="snapshots published since; the alias moved to the newest")
    epochs: int = Field(6, ge=1, le=50)
    epoch_seconds: float = Field(0.4, ge=0, le=10)
    learning_rate: float = 0.02
    random_state: int = 20240301
    hidden_units: int = 16
    original_run_timeout: float = Field(150.0, ge=10, description="seconds the recorded run may take")

    def moved_snapshot(self) -> str:
        index = dv.SNAPSHOTS.index(self.recorded_snapshot) + self.snapshots_since
        if index >= len(dv.SNAPSHOTS):
            raise DrillError(f"fault moved-dataset-alias: params.snapshots_since: {self.snapshots_since} snapshots "
                             f"after {self.recorded_snapshot} is past the last one ({dv.SNAPSHOTS[-1]})")
        return dv.SNAPSHOTS[index]


class MovedDatasetAlias(Fault):
    name = "moved-dataset-alias"
    shared_nodes_ready = False  # its fix re-creates the training Job: no new node folder on shared nodes
    Params = Params
    description = "fraud-train reads its data through an alias that moved since the registered model was trained"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        super().__init__(params)
        if self.params.recorded_snapshot not in dv.SNAPSHOTS:
            raise DrillError(f"fault {self.name}: params.recorded_snapshot: {self.params.recorded_snapshot!r} is "
                             f"not a snapshot ({dv.SNAPSHOTS[0]} .. {dv.SNAPSHOTS[-1]})")
        self.params.moved_snapshot()  # the move stays within the published snapshots

    # -- the team's objects ---------------------------------------------------------------
    def catalog(self, snapshot: str) -> dict[str, Any]:
        p = self.params
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": p.catalog, "namespace": p.namespace, "labels": {"app": "data-catalog"}},
                "data": {CATALOG_KEY: json.dumps(dv.catalog_for(p.period, p.alias, snapshot), indent=2) + "\n"}}

    def training_job(self, ctx: DrillContext) -> dict[str, Any]:
        """The Job template the pipeline submits: the baseline's, reading the versioned table through the alias."""
        p = self.params
        job = copy.deepcopy(baseline.find(ctx, "Job", p.job, p.namespace))
        spec = job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        settings = {"EPOCHS": str(p.epochs), "EPOCH_SECONDS": format(p.epoch_seconds, "g"),
                    "DATASET_URI": f"gs://{p.bucket}/{dv.TABLE}/{p.period}@{p.alias}",
                    "DATASET_CATALOG": f"{CATALOG_MOUNT}/{CATALOG_KEY}",
                    "RANDOM_STATE": str(p.random_state), "LEARNING_RATE": format(p.learning_rate, "g"),
                    "HIDDEN_UNITS": str(p.hidden_units), "REGISTER_MODEL": p.model}
        env = [{"name": e["name"], "value": settings.pop(e["name"])} if e["name"] in settings else e
               for e in container.get("env") or []]
        env += [{"name": k, "value": v} for k, v in settings.items()]
        container["env"] = env
        container["volumeMounts"] = [*(container.get("volumeMounts") or []),
                                     {"name": "data-catalog", "mountPath": CATALOG_MOUNT, "readOnly": True}]
        spec["volumes"] = [*(spec.get("volumes") or []), {"name": "data-catalog", "configMap": {"name": p.catalog}}]
        return job

    # -- the registry ------------------------------------------------------------------------
    def _registry(self, ctx: DrillContext, method: str, path: str, body: dict | None = None) -> Any:
        from mlops_drill.mlplatform import appkit

        with ctx.service("registry", "model-registry") as base:
            return appkit.http_json(method, f"{base}{REGISTRY_API}/{path}", body, timeout=10)

    def recorded_version(self, ctx: DrillContext) -> dict[str, str] | None:
        """Tags of the model version the recorded run registered, or None while there is none."""
        from mlops_drill.mlplatform import appkit

        try:
            got = self._registry(ctx, "GET", f"model-versions/get?name={self.params.model}&version=1")
        except appkit.UpstreamError:
            return None
        return {t["key"]: t["value"] for t in got["model_version"]["tags"]}

    def _forget_model(self, ctx: DrillContext) -> None:
        from mlops_drill.mlplatform import appkit

        try:
            self._registry(ctx, "POST", "registered-models/delete", {"name": self.params.model})
        except appkit.UpstreamError as err:
            if err.status != 404:
                raise DrillError(f"fault {self.name}: model registry: {err.reason}") from None

    # -- the three verbs ------------------------------------------------------------------------
    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        wl.fresh_run(ctx, p.job, p.namespace)
        self._forget_model(ctx)
        # Last month: the recorded run reads the alias while it points at the recorded snapshot, and registers.
        ctx.apply([self.catalog(p.recorded_snapshot)], manager=wl.PIPELINE_MANAGER)
        ctx.apply([self.training_job(ctx)], manager=wl.PIPELINE_MANAGER)
        deadline = time.monotonic() + p.original_run_timeout
        while self.recorded_version(ctx) is None:
            if time.monotonic() > deadline:
                raise DrillError(f"fault {self.name}: the recorded training run did not register "
                                 f"{p.model} within {p.original_run_timeout:.0f} s")
            time.sleep(0.5)
        self._registry(ctx, "POST", "model-versions/transition-stage",
                       {"name": p.model, "version": "1", "stage": "Production", "archive_existing_versions": True})
        # Since then: new snapshots, the alias moved; today the team reruns the same Job.
        wl.fresh_run(ctx, p.job, p.namespace)
        ctx.apply([self.catalog(p.moved_snapshot())], manager=wl.PIPELINE_MANAGER)
        self.applied_at = time.time()
        ctx.apply([self.training_job(ctx)], manager=wl.PIPELINE_MANAGER)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """Today's rerun finished on another data version than the registry recorded for the Production model."""
        p = self.params
        recorded = self.recorded_version(ctx)
        if recorded is None:
            return False
        since = getattr(self, "applied_at", 0.0)
        for pod in wl.new_pods(ctx, p.namespace, f"job-name={p.job}", since):
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "training finished" and line.get("data_version"):
                    return line["data_version"] != recorded.get("data_version")
        return False

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        doc = wl.fresh_run(ctx, p.job, p.namespace)
        ctx.delete("ConfigMap", p.catalog, p.namespace)
        self._forget_model(ctx)
        ctx.apply([doc])
