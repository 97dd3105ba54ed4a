"""release-large-model: the afternoon release ships a 4x larger model and a readiness probe that lies.

One new Deployment revision, as a CD pipeline would roll it: image tag 1.5.0
(whose handler queues requests until the model is loaded instead of refusing
them), ``MODEL_VERSION`` pinned to the 4x larger model, and the readiness probe
pointed at the liveness endpoint. Every new pod therefore joins the Service
seconds before its model is on the GPU; the requests it gets meanwhile wait for
the load, which is the p99 spike. ``kubectl rollout undo`` is the real fix.
"""
from __future__ import annotations

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
    deployment: str = "fraud-model"
    image_tag: str = "1.5.0"
    model_version: str = Field("5", description="the 4x larger model the release pins")
    readiness_path: str = Field("/healthz", description="answers 200 before the model is loaded")
    readiness_period_seconds: int = Field(1, ge=1)
    slo_seconds: float = Field(0.25, gt=0, description="a request slower than this is the symptom")


class ReleaseLargeModel(Fault):
    name = "release-large-model"
    Params = Params
    description = "new revision: release 1.5.0 + 4x model, readiness on /healthz; cold pods take traffic"

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        obj = ctx.get("deployment", p.deployment, p.namespace)
        assert obj is not None, f"deployment {p.deployment} missing"
        container = "/spec/template/spec/containers/0"
        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
        ops = [{"op": "replace", "path": f"{container}/image", "value": wl.image_with_tag(image, p.image_tag)}]
        ops += wl.set_env_ops(obj, "MODEL_VERSION", p.model_version)
        ops.append({"op": "replace", "path": f"{container}/readinessProbe",
                    "value": {"httpGet": {"path": p.readiness_path, "port": 8080},
                              "periodSeconds": p.readiness_period_seconds, "failureThreshold": 3}})
        ctx.patch("deployment", p.deployment, p.namespace, ops)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A Ready pod of the new release keeps a /predict waiting longer than the SLO (it queues behind the load).

        The replay's slow answers are logged only once the load is over; a request
        sent to a Ready new pod that has not been answered within the SLO is the
        same spike, seen from the client as it happens. Where the engine cannot
        reach a pod directly, the logged slow answers are the evidence.
        """
        import httpx

        p = self.params
        since = getattr(self, "applied_at", 0.0)
        for pod in wl.new_pods(ctx, p.namespace, f"app={p.deployment}", since):
            if not pod.spec.containers[0].image.endswith(f":{p.image_tag}"):
                continue
            base = pod_url(ctx, pod) if is_ready(pod) else None
            if base is not None:
                try:
                    httpx.post(base + "/predict", json=inline_transaction(), timeout=p.slo_seconds)
                except httpx.TimeoutException:
                    return True
                except httpx.HTTPError:
                    pass
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "request" and line.get("path") == "/predict" \
                        and float(line.get("latency_ms", 0)) >= p.slo_seconds * 1000:
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)
