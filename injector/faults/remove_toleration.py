"""remove-toleration: a new revision of a GPU workload lost its GPU toleration.

The edit rolls out as a new ReplicaSet: the old pods keep serving, the new pod
stays Pending with the scheduler's real ``untolerated taint`` event.
"""
from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    workload: str = "deployment/fraud-model"
    taint_key: str = "nvidia.com/gpu"
    taint_effect: str = "NoSchedule"


class RemoveToleration(Fault):
    name = "remove-toleration"
    Params = Params

    def _kind_name(self) -> tuple[str, str]:
        kind, _, name = self.params.workload.partition("/")
        return {"deployment": "Deployment", "deploy": "Deployment", "job": "Job"}.get(kind, kind), name

    def apply(self, ctx: DrillContext) -> None:
        kind, name = self._kind_name()
        self.applied_at = time.time()
        obj = ctx.get(kind.lower(), name, self.params.namespace)
        assert obj is not None, f"{kind} {name} missing"
        spec = obj["spec"]["template"]["spec"]
        keep = [t for t in spec.get("tolerations") or [] if t.get("key") != self.params.taint_key]
        ctx.patch(kind.lower(), name, self.params.namespace,
                  [{"op": "replace", "path": "/spec/template/spec/tolerations", "value": keep}])

    def verify_applied(self, ctx: DrillContext) -> bool:
        since = getattr(self, "applied_at", 0.0) - 1.0
        events = ctx.core.list_namespaced_event(self.params.namespace).items
        return any(e.reason == "FailedScheduling" and "untolerated taint" in (e.message or "")
                   and _stamp(e) >= since for e in events)

    def revert(self, ctx: DrillContext) -> None:
        kind, name = self._kind_name()
        baseline.restore(ctx, kind, name, self.params.namespace)


def _stamp(event) -> float:
    when = event.last_timestamp or event.event_time or event.first_timestamp
    return when.timestamp() if when else 0.0
