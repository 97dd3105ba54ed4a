"""pin-archived-model: serving is pinned to a model version the registry has archived.

A ``kubectl set env ... MODEL_VERSION=<old>`` (a debugging pin that was never
removed, or a hurried rollback) rolls out as a new revision. The pods really
load the archived version, so scores differ from the signed-off model while
every health signal stays green; ``/metadata`` says which version and stage it
serves, the registry says which one is in Production.
"""
from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import (ensure_serving_follows_registry, restore_registry,
                                                 service_shows)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "fraud-model"
    env: str = "MODEL_VERSION"
    version: str = "2"
    production_version: str = "3"


class PinArchivedModel(Fault):
    name = "pin-archived-model"
    Params = Params

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        ctx.kubectl("set", "env", f"deployment/{p.deployment}", "-n", p.namespace, f"{p.env}={p.version}")

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        return service_shows(ctx, p.namespace, p.deployment, "/metadata", lambda meta: bool(
            meta.get("loaded") and str(meta.get("model_version")) == p.version))

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        # A candidate may have "fixed" it by moving stages; then pods may have loaded another version.
        self._stages_moved = restore_registry(ctx)
        baseline.restore(ctx, "Deployment", p.deployment, p.namespace)

    def settle(self, ctx: DrillContext) -> None:
        if getattr(self, "_stages_moved", True):  # else every pod since started with CI's Production
            ensure_serving_follows_registry(ctx, self.params.production_version, rolled_out=True)
