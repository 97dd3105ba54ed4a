"""idle-gpu-shadow: a copy of the serving Deployment, left behind after a load test, holds GPUs idle.

Someone deployed ``fraud-model-shadow`` (the production pod template, its own ``app``
label, three replicas, one GPU each) to load-test the promo week, and forgot it. No
Service selects it, so it serves nothing: its GPUs are allocated and billed while
dcgm-exporter shows them near 0 % (the process only answers its probes), beside the
production replicas' GPUs that do the work. Nothing is Pending and nothing is slow;
the symptom is the bill. Scaling the shadow to zero (or deleting it) releases the GPUs.
"""
from __future__ import annotations

import copy
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    source: str = "fraud-model"  # the Deployment whose pod template the shadow copies
    name: str = "fraud-model-shadow"
    replicas: int = 3
    note: str = "load test for the promo week (PERF-2231); delete after 11/14"


def shadow_deployment(source: dict, name: str, replicas: int, note: str) -> dict:
    """The production Deployment re-labelled under another name: what a hurried load test deploys."""
    template = copy.deepcopy(source["spec"]["template"])
    template["metadata"]["labels"]["app"] = name
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": source["metadata"]["namespace"],
                     "labels": {"app": name, "team": "fraud-platform", "purpose": "load-test"},
                     "annotations": {"kubernetes.io/change-cause": note}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


class IdleGpuShadow(Fault):
    name = "idle-gpu-shadow"
    Params = Params
    # The reference solution reads each node's exporter by node name, which a seat's gateway renames.
    seat_ready = False

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        source = baseline.find(ctx, "Deployment", p.source, p.namespace)
        ctx.apply([shadow_deployment(source, p.name, p.replicas, p.note)])

    def _running(self, ctx: DrillContext) -> list:
        pods = ctx.core.list_namespaced_pod(self.params.namespace, label_selector=f"app={self.params.name}").items
        return [x for x in pods if x.status.phase == "Running" and x.spec.node_name
                and not x.metadata.deletion_timestamp]

    def verify_applied(self, ctx: DrillContext) -> bool:
        """Every shadow replica runs on a GPU node, holding its GPU."""
        return len(self._running(ctx)) >= self.params.replicas

    def revert(self, ctx: DrillContext, timeout: float = 60) -> None:
        """The shadow and its pods gone (its GPUs free for the next scenario)."""
        from concurrent.futures import ThreadPoolExecutor

        p = self.params
        ctx.delete("deployment", p.name, p.namespace)
        names = [x.metadata.name for x in
                 ctx.core.list_namespaced_pod(p.namespace, label_selector=f"app={p.name}").items]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda pod: ctx.delete("pod", pod, p.namespace), names))
        deadline = time.monotonic() + timeout
        while ctx.core.list_namespaced_pod(p.namespace, label_selector=f"app={p.name}").items:
            if time.monotonic() > deadline:
                raise DrillError(f"{p.namespace}: pods of {p.name} still there after {timeout:.0f}s")
            time.sleep(0.05)
