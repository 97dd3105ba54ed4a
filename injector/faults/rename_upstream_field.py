"""rename-upstream-field: the upstream team renamed a column in its published schema.

The upstream's schema ConfigMap gets the new column name and the feature store
is restarted to pick it up, as the upstream's rollout would do. Nothing fails:
the feature view's source column is simply not there any more, so the store
materialises nulls (each refresh run only logs a warning), serving fills the
training mean for the missing feature, scores of risky accounts sink, and
serving's ``feature_null_rate`` for that feature climbs.
"""
from __future__ import annotations

import json
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import (metric_samples, pods, rollout_done, try_call,
                                                 wait_rollout)
from mlops_drill.mlplatform.featurestore import FEATURE_VIEWS


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "features"
    config_map: str = "upstream-schema"
    key: str = "schema.json"
    field: str = "merchant_risk_score"
    renamed_to: str = "mrch_risk_score"
    store_deployment: str = "feature-store"
    refresh_cronjob: str = "feature-refresh"
    probe_entity: str = "acct-000544"


def _feature_of(column: str) -> str:
    for columns in FEATURE_VIEWS.values():
        for feature, source in columns.items():
            if source == column:
                return feature
    raise DrillError(f"fault rename-upstream-field: params.field: no feature view reads column {column!r}")


class RenameUpstreamField(Fault):
    name = "rename-upstream-field"
    Params = Params

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.feature = _feature_of(p.field)
        self.applied_at = time.time()
        cm = ctx.get("configmap", p.config_map, p.namespace)
        assert cm is not None, f"ConfigMap {p.namespace}/{p.config_map} missing"
        schema = json.loads(cm["data"][p.key])
        # same position in the column list, new name: how a rename shows up in the upstream's export
        schema["columns"] = {(p.renamed_to if col == p.field else col): quantity
                             for col, quantity in schema["columns"].items()}
        ctx.patch("configmap", p.config_map, p.namespace,
                  {"data": {p.key: json.dumps(schema, indent=2) + "\n"}}, patch_type="merge")
        ctx.kubectl("rollout", "restart", f"deployment/{p.store_deployment}", "-n", p.namespace)

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        feature = _feature_of(p.field)
        if not rollout_done(ctx, p.namespace, p.store_deployment):
            return False
        online = try_call(ctx, p.namespace, "feature-store", f"/features/{p.probe_entity}")
        if not online or online["features"].get(feature) is not None:
            return False
        samples = metric_samples(ctx, "serving", "fraud-model") or {}
        return samples.get(("feature_null_rate", (("feature", feature),)), 0.0) > 0.0

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        baseline.restore(ctx, "ConfigMap", p.config_map, p.namespace)
        baseline.restore(ctx, "CronJob", p.refresh_cronjob, p.namespace)
        jobs = [j.metadata.name for j in
                ctx.batch.list_namespaced_job(p.namespace, label_selector=f"app={p.refresh_cronjob}").items]
        if jobs:  # runs that materialised nulls, manual re-runs: the next drill starts with a clean history
            ctx.kubectl("delete", "job", *jobs, "-n", p.namespace, "--cascade=background", "--ignore-not-found",
                        "--wait=false")
        baseline.restore(ctx, "Deployment", p.store_deployment, p.namespace)

    def settle(self, ctx: DrillContext) -> None:
        p = self.params
        feature = _feature_of(p.field)
        wait_rollout(ctx, p.namespace, p.store_deployment)
        try_call(ctx, p.namespace, "feature-store", "/materialize", "POST", {})
        online = try_call(ctx, p.namespace, "feature-store", f"/features/{p.probe_entity}")
        if online is None or online["features"].get(feature) is None:
            # the running store still has the renamed schema in its env: start it again
            for pod in pods(ctx, p.namespace, f"app={p.store_deployment}"):
                ctx.delete("pod", pod.metadata.name, p.namespace)
            wait_rollout(ctx, p.namespace, p.store_deployment)
