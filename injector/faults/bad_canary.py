"""bad-canary: a canary Deployment of a release candidate shares the stable pods' ``app`` label.

The Service selects ``app=fraud-model`` only, so it round-robins real replay
traffic onto the canary as well. Release 1.6.0-rc1 divides by ``txn_count_24h``
unguarded: every transaction of an account with no activity in 24 h gets a 500
from the canary, and a retry that lands on a stable pod succeeds. Taking the
canary out of traffic (scale to 0 or delete) is the fix; the stable Deployment
is untouched.
"""
from __future__ import annotations

import copy
import time

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl

#: Field manager of the canary: what `kubectl apply --server-side` from a deploy pipeline records.
PIPELINE_MANAGER = "kubectl"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    stable: str = "fraud-model"
    canary_deployment: str = "fraud-model-canary"
    canary_image_tag: str = "1.6.0-rc1"
    canary_replicas: int = Field(1, ge=1, le=4)
    track_label: str = Field("canary", description="value of the pods' `track` label, beside `app`")


class BadCanary(Fault):
    name = "bad-canary"
    Params = Params
    description = "canary Deployment (1.6.0-rc1) behind the stable Service; it answers 500 on txn_count_24h == 0"

    def canary_manifest(self, ctx: DrillContext) -> dict:
        p = self.params
        stable = baseline.find(ctx, "Deployment", p.stable, p.namespace)
        app = stable["spec"]["selector"]["matchLabels"]["app"]
        labels = {"app": app, "track": p.track_label}
        template = copy.deepcopy(stable["spec"]["template"])
        template["metadata"]["labels"].update(labels)
        container = template["spec"]["containers"][0]
        container["image"] = wl.image_with_tag(container["image"], p.canary_image_tag)
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": p.canary_deployment, "namespace": p.namespace, "labels": labels},
            "spec": {"replicas": p.canary_replicas, "revisionHistoryLimit": 10,
                     "selector": {"matchLabels": labels}, "template": template},
        }

    def apply(self, ctx: DrillContext) -> None:
        self.applied_at = time.time()
        ctx.apply([self.canary_manifest(ctx)], manager=PIPELINE_MANAGER)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A canary pod answered real replay traffic with HTTP 500."""
        p = self.params
        selector = f"track={p.track_label},app={self.canary_manifest(ctx)['spec']['selector']['matchLabels']['app']}"
        for pod in wl.new_pods(ctx, p.namespace, selector, getattr(self, "applied_at", 0.0)):
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "request" and line.get("path") == "/predict" and line.get("status") == 500:
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        ctx.delete("deployment", p.canary_deployment, p.namespace)
        wl.wait_gone(ctx, "deployment", p.canary_deployment, p.namespace)
        baseline.restore(ctx, "Deployment", p.stable, p.namespace)
