"""shift-fraud-pattern: fraudsters change how they work; the inputs stay as they were, the relation does not.

The world moves on to a date at which one of ``outcomes.CAMPAIGNS`` has been
running for ``chargeback_window_days + matured_days`` days: the label feed
(ConfigMap ``label-feed``, read by the model monitor) stands at that date, with
chargebacks taking up to ``chargeback_window_days``. Nothing the model sees
changes (live traffic, the feature store, the served version), so serving's
score distribution and input PSI stay where they were; what changed is which of
those same transactions are fraud. The monitor, restarted as a new day's feed
would be loaded, shows it where labels exist: recall and AUC of the review queue
fall in the weeks whose chargebacks are final, and the early proxy (reported
frauds the model caught) falls in the weeks that are not. The remedy is the CT
pipeline's retraining on the newest matured days, behind its evaluation gate.

The campaign shows in the candidate's view only as its consequence; the feed's
date is the one visible trace, as a date the monitor reports anyway.
"""
from __future__ import annotations

import time
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import (created, ensure_serving_follows_registry, is_ready, pod_url, pods,
                                                 restore_registry, try_call)
from mlops_drill.mlplatform import outcomes


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    config_map: str = "label-feed"
    monitor: str = "model-monitor"
    campaign: str = Field("pos-skimming", description="the fraud pattern that began (mlplatform/outcomes.py)")
    chargeback_window_days: int = Field(14, ge=3, le=30, description="days until every chargeback has arrived")
    matured_days: int = Field(20, ge=18, le=40, description="days of the pattern whose labels are already final "
                                                            "(the pipeline trains on 14 and holds out 4)")
    training_namespace: str = "training"
    pipeline: str = Field("fraud-retrain", description="the CT pipeline's CronJob; runs of it are removed on reset")
    production_version: str = "3"

    @field_validator("campaign")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in outcomes.CAMPAIGNS:
            raise ValueError(f"unknown campaign {value!r} (known: {', '.join(outcomes.CAMPAIGNS)})")
        return value


class ShiftFraudPattern(Fault):
    name = "shift-fraud-pattern"
    Params = Params
    description = "a new fraud pattern on unchanged inputs; chargeback labels arrive days late"

    def as_of(self) -> str:
        p = self.params
        start = outcomes.CAMPAIGNS[p.campaign].start
        return (start + timedelta(days=p.chargeback_window_days + p.matured_days)).isoformat()

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        ctx.patch("configmap", p.config_map, p.namespace,
                  {"data": {"LABEL_FEED_AS_OF": self.as_of(), "CHARGEBACK_WINDOW_DAYS": str(p.chargeback_window_days)}},
                  patch_type="merge")
        for pod in pods(ctx, p.namespace, f"app={p.monitor}"):  # the feed is read at start: today's load
            ctx.delete("pod", pod.metadata.name, p.namespace)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A monitor pod started after the change answers with the new feed date."""
        p = self.params
        since = getattr(self, "applied_at", 0.0) - 1.0
        fresh = [pod for pod in pods(ctx, p.namespace, f"app={p.monitor}")
                 if created(pod) >= since and is_ready(pod)]
        return any(self._feed_date(ctx, pod) == self.as_of() for pod in fresh)

    def _feed_date(self, ctx: DrillContext, pod) -> str | None:
        import httpx

        base = pod_url(ctx, pod)
        if base is None:  # not a process-backed pod: the Service's answer stands for it
            got = try_call(ctx, self.params.namespace, self.params.monitor, "/labels")
            return got.get("as_of") if got else None
        try:
            return httpx.get(base + "/labels", timeout=5).json().get("as_of")
        except (httpx.HTTPError, ValueError):
            return None

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        if not restore_registry(ctx) and _registered_beyond_baseline(ctx):
            for pod in pods(ctx, "registry", "app=model-registry"):  # a version created without a transition
                ctx.delete("pod", pod.metadata.name, "registry")
        self._delete_pipeline_runs(ctx)
        baseline.restore(ctx, "ConfigMap", p.config_map, p.namespace)
        baseline.restore(ctx, "Deployment", p.monitor, p.namespace)
        want = baseline.find(ctx, "ConfigMap", p.config_map, p.namespace)["data"]["LABEL_FEED_AS_OF"]
        self._restarted = time.time() - 1.0
        self._stale = [pod.metadata.name for pod in pods(ctx, p.namespace, f"app={p.monitor}")
                       if self._feed_date(ctx, pod) != want]
        for name in self._stale:
            ctx.delete("pod", name, p.namespace)

    def _delete_pipeline_runs(self, ctx: DrillContext) -> None:
        """Runs of the CT pipeline (``kubectl create job --from=cronjob/...``) are the drill's, not the baseline's."""
        p = self.params
        for job in ctx.batch.list_namespaced_job(p.training_namespace).items:
            labels = (job.spec.template.metadata.labels or {}) if job.spec.template.metadata else {}
            owners = [o.name for o in job.metadata.owner_references or [] if o.kind == "CronJob"]
            if labels.get("app") == p.pipeline or p.pipeline in owners:
                ctx.delete("job", job.metadata.name, p.training_namespace)

    def settle(self, ctx: DrillContext) -> None:
        p = self.params
        ensure_serving_follows_registry(ctx, p.production_version, rolled_out=True)
        want = baseline.find(ctx, "ConfigMap", p.config_map, p.namespace)["data"]["LABEL_FEED_AS_OF"]
        deadline = time.monotonic() + 60
        while getattr(self, "_stale", None):
            ready = [pod for pod in pods(ctx, p.namespace, f"app={p.monitor}") if is_ready(pod)]
            if ready and all(self._feed_date(ctx, pod) == want for pod in ready):
                return
            if time.monotonic() > deadline:
                raise DrillError(f"{p.namespace}/{p.monitor}: no Ready pod with the baseline label feed after 60s")
            time.sleep(0.2)


def _registered_beyond_baseline(ctx: DrillContext) -> bool:
    from mlops_drill.mlplatform.artifacts import VERSIONS

    found = try_call(ctx, "registry", "model-registry",
                     "/api/2.0/mlflow/model-versions/search?filter=name%3D%27fraud-model%27")
    return found is None or any(int(v["version"]) > len(VERSIONS) for v in found.get("model_versions", []))
