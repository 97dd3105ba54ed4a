"""service-selector-drift: a Service's selector gains a label its pods do not carry.

The incident it models: a relabelling migration ("every online component gets
``tier: online``") updated the Service first and the Deployment never. The Service
keeps its ClusterIP and port, ``kubectl get svc`` looks fine, but its EndpointSlices
empty out, so every caller gets connection errors. With the default params the
feature store is cut off and fraud-model answers ``503 feature store unavailable``
for every request that needs online features.

Nothing here is visible as a marker: the extra selector label is exactly what the
migration would have written.
"""
from __future__ import annotations

import httpx
from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "features"
    service: str = "feature-store"
    label: str = "tier"
    value: str = "online"
    # Where the symptom is observed: a caller of the Service (namespace, service, path, JSON body).
    probe_namespace: str = "serving"
    probe_service: str = "fraud-model"
    probe_path: str = "/predict"
    probe_entity: str = "acct-000042"


class ServiceSelectorDrift(Fault):
    name = "service-selector-drift"
    Params = Params
    description = "a Service's selector requires a label its pods lack: no endpoints, callers fail"

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        ctx.patch("service", p.service, p.namespace, {"spec": {"selector": {p.label: p.value}}}, patch_type="merge")

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The caller fails: what the on-call engineer is paged for, not merely an empty EndpointSlice."""
        p = self.params
        body = {"entity_id": p.probe_entity, "features": {"amount": 12.5}}
        try:
            with ctx.service(p.probe_namespace, p.probe_service) as base:
                answer = httpx.post(base + p.probe_path, json=body, timeout=5.0)
        except httpx.HTTPError:
            return False
        return answer.status_code == 503

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        baseline.restore(ctx, "Service", p.service, p.namespace)
