"""break-feature-refresh: the refresh CronJob points at an offline table that does not exist.

A plausible config change (a migration PR that switched the job to the next
version of the upstream table before that table exists) makes every run fail
with the store's real error, and the online store stops moving. To be
observable at once rather than after hours, the fault also puts the state the
incident would have reached: the online store holds the features as the last
good run left them ``age_online_features_minutes`` ago (a real backfill to that
moment, so lookups, ``/freshness`` and serving's ``feature_freshness_seconds``
all agree), recent successful runs and their completion events are gone as
they would be, the CronJob's ``lastSuccessfulTime`` is that old, and one run of
the broken CronJob fails right away, named and owned like a scheduled run.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import call, created, try_call


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "features"
    cronjob: str = "feature-refresh"
    env: str = "SOURCE_TABLE"
    bad_value: str = "payments.account_snapshot_v2"
    age_online_features_minutes: float = Field(900, gt=5)


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BreakFeatureRefresh(Fault):
    name = "break-feature-refresh"
    Params = Params

    # -- helpers
    def _jobs(self, ctx: DrillContext) -> list:
        p = self.params
        return [j for j in ctx.batch.list_namespaced_job(p.namespace).items
                if any(o.kind == "CronJob" and o.name == p.cronjob for o in j.metadata.owner_references or [])
                or (j.metadata.labels or {}).get("app") == p.cronjob]

    def _run_name(self) -> str:
        # the scheduled run of the previous minute: never the name the controller is about to create
        return f"{self.params.cronjob}-{int(self.applied_at // 60) - 1}"

    # -- the three verbs
    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        ctx.kubectl("set", "env", f"cronjob/{p.cronjob}", "-n", p.namespace, f"{p.env}={p.bad_value}")
        # the last good runs are long gone from the history; so are their events. A run still going was
        # started from the good config: left alone it would materialise fresh features after the backfill
        # below (the store is then fresh and the symptom never shows), so it goes too, pods and all,
        # before the backfill. A pod on a real node takes seconds to start, which opens that window wide.
        good = [j.metadata.name for j in self._jobs(ctx)
                if (j.status.active or 0) or (j.status.succeeded or 0) or not (j.status.failed or 0)
                or j.metadata.name == self._run_name()]
        if good:
            # The job's Python is its container's PID 1 on a real node and has no SIGTERM handler, so the
            # kernel drops the kubelet's SIGTERM: without a short grace each pod would take its full 30 s.
            ctx.kubectl("delete", "pod", "-n", p.namespace, "-l", f"job-name in ({','.join(good)})",
                        "--grace-period=1", "--wait=false")
            ctx.kubectl("delete", "job", *good, "-n", p.namespace, "--cascade=foreground", "--ignore-not-found",
                        "--wait=true", "--timeout=90s")
        age_s = p.age_online_features_minutes * 60
        call(ctx, p.namespace, "feature-store", "/materialize", "POST", {"end_ts": self.applied_at - age_s})
        # "Completed" / "SawCompletedJob" events would say otherwise (one server-side call each: there
        # are hundreds after a while); the pods' start events stay, as they would for failing runs
        ctx.core.delete_collection_namespaced_event(p.namespace, field_selector="involvedObject.kind=Job")
        ctx.core.delete_collection_namespaced_event(
            p.namespace, field_selector=f"involvedObject.kind=CronJob,involvedObject.name={p.cronjob}")
        ctx.kubectl("patch", "cronjob", p.cronjob, "-n", p.namespace, "--subresource=status", "--type=merge",
                    "-p", '{"status":{"lastSuccessfulTime":"%s"}}' % _rfc3339(self.applied_at - age_s))
        self._start_scheduled_run(ctx)

    def _start_scheduled_run(self, ctx: DrillContext) -> None:
        """One run from the (now broken) CronJob, as its controller would have started it."""
        p = self.params
        cron = ctx.get("cronjob", p.cronjob, p.namespace)
        assert cron is not None, f"CronJob {p.namespace}/{p.cronjob} missing"
        template = cron["spec"]["jobTemplate"]
        name = self._run_name()
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": name, "namespace": p.namespace,
                            "labels": dict(template.get("metadata", {}).get("labels") or {}),
                            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp":
                                            _rfc3339((int(self.applied_at // 60) - 1) * 60)},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": p.cronjob,
                                                 "uid": cron["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": template["spec"]}
        ctx.kubectl("create", "-f", "-", input=json.dumps(job))

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        fresh = try_call(ctx, p.namespace, "feature-store", "/freshness")
        views = (fresh or {}).get("feature_views", {})
        stale = bool(views) and all(v["age_seconds"] > p.age_online_features_minutes * 60 - 120
                                    for v in views.values())
        since = getattr(self, "applied_at", 0.0) - 2.0
        failed_run = any(pod.status.phase == "Failed" and created(pod) >= since
                         for pod in ctx.core.list_namespaced_pod(p.namespace, label_selector=f"app={p.cronjob}").items)
        return stale and failed_run

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        baseline.restore(ctx, "CronJob", p.cronjob, p.namespace)
        jobs = [j.metadata.name for j in self._jobs(ctx)]
        if jobs:  # failed runs and manual re-runs: the next drill starts with a clean history
            ctx.kubectl("delete", "job", *jobs, "-n", p.namespace, "--cascade=background", "--ignore-not-found",
                        "--wait=false")
        ctx.kubectl("patch", "cronjob", p.cronjob, "-n", p.namespace, "--subresource=status", "--type=merge",
                    "-p", '{"status":{"lastSuccessfulTime":null}}', check=False)
        try_call(ctx, p.namespace, "feature-store", "/materialize", "POST", {})
