"""unused-configmap: a ConfigMap nothing mounts or references, as old config left behind.

A red herring for compound scenarios: ``kubectl get cm`` lists a config whose
name or values look related to the incident (an old threshold, a previous
model URI), but no pod reads it, so editing it changes nothing. The fault
creates only the ConfigMap, recorded as a ``kubectl create`` makes it; it never
touches one the baseline has.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    data: dict[str, str] = Field(min_length=1)
    labels: dict[str, str] = {}


class UnusedConfigMap(Fault):
    name = "unused-configmap"
    Params = Params
    description = "an old ConfigMap no pod reads (a red herring)"

    def apply(self, ctx: DrillContext) -> None:
        from kubernetes.client.exceptions import ApiException

        p = self.params
        if ctx.get("configmap", p.name, p.namespace) is not None:
            raise DrillError(f"fault {self.name}: configmap {p.namespace}/{p.name} already exists; "
                             "choose a name the baseline does not use")
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": p.name, "namespace": p.namespace, **({"labels": p.labels} if p.labels else {})},
                "data": dict(p.data)}
        try:
            ctx.core.create_namespaced_config_map(p.namespace, body, field_manager="kubectl-create")
        except ApiException as exc:
            if exc.status == 409:
                raise DrillError(f"fault {self.name}: configmap {p.namespace}/{p.name} already exists") from None
            raise

    def verify_applied(self, ctx: DrillContext) -> bool:
        return ctx.get("configmap", self.params.name, self.params.namespace) is not None

    def revert(self, ctx: DrillContext) -> None:
        """Delete it, also when the candidate edited it; never a ConfigMap the baseline or the cluster owns.

        Why the guard: ``reset`` reverts faults that were never applied, and a
        scenario naming a baseline ConfigMap would otherwise delete that one.
        """
        from mlops_drill.injector import baseline

        p = self.params
        owned = {(d["metadata"].get("namespace"), d["metadata"]["name"])
                 for d in baseline.documents(ctx) if d["kind"] == "ConfigMap"}
        if p.name == "kube-root-ca.crt" or (p.namespace, p.name) in owned:
            return
        ctx.delete("configmap", p.name, p.namespace)
