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
from mlops_drill.injector.faults._shared import inline_transaction, is_ready, pod_url


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
        ctx.apply([self.canary_manifest(ctx)], manager=wl.PIPELINE_MANAGER)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A Ready canary pod, so in the Service's rotation, fails an account with no recent activity.

        The replay finds that out at its own pace: a third of 10 requests/s reach
        the canary and 8 % of accounts have ``txn_count_24h == 0``, so its first
        500 comes after about 4 s on average and sometimes after 10. The
        evidence a smoke test collects is the same failure at once: one such
        transaction sent to the canary pod, which answers it 500 like the
        replay's. Where the engine cannot reach a pod directly, a 500 the canary
        logged for replay traffic is the evidence.
        """
        p = self.params
        selector = f"track={p.track_label},app={self.canary_manifest(ctx)['spec']['selector']['matchLabels']['app']}"
        for pod in wl.new_pods(ctx, p.namespace, selector, getattr(self, "applied_at", 0.0)):
            if not is_ready(pod):
                continue
            base = pod_url(ctx, pod)
            if base is not None:
                if _answers_500(base, inline_transaction(txn_count_24h=0.0)):
                    return True
                continue
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "request" and line.get("path") == "/predict" and line.get("status") == 500:
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        ctx.delete("deployment", p.canary_deployment, p.namespace)
        wl.wait_gone(ctx, "deployment", p.canary_deployment, p.namespace)
        baseline.restore(ctx, "Deployment", p.stable, p.namespace)


def _answers_500(base: str, body: dict) -> bool:
    import httpx

    try:
        return httpx.post(base + "/predict", json=body, timeout=5).status_code == 500
    except httpx.HTTPError:
        return False
