"""skew-transform: serving scales one feature differently from training (training/serving skew).

The change arrives the way config changes usually do: a regenerated transforms
ConfigMap (name with a content-hash suffix, as kustomize's configMapGenerator
makes them) in which one feature's ``op`` was "simplified", and a new revision
of the serving Deployment that reads it. Scores really change (the model sees
values far outside what it was trained on), ``/metadata``'s
``transform_config_hash`` stops matching the registry's lineage, and the
previous revision, still in the rollout history, reads the intact ConfigMap.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import service_shows, wait_rollout
from mlops_drill.mlplatform.transforms import OPS


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "fraud-model"
    env: str = "TRANSFORM_CONFIG"
    config_map: str = "fraud-model-transforms"
    key: str = "transforms.json"
    feature: str = "amount"
    serving_op: str = "standardize"


#: kustomize's hash alphabet: no vowels or look-alike digits, so suffixes never spell words.
_ALPHABET = "bcdfghkmt2456789"


def skewed_name(base: str, content: str) -> str:
    digest = hashlib.sha256(content.encode()).digest()
    return f"{base}-" + "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


class SkewTransform(Fault):
    name = "skew-transform"
    Params = Params

    def _skewed_configmap(self, ctx: DrillContext) -> dict:
        p = self.params
        if p.serving_op not in OPS:
            from mlops_drill.errors import DrillError

            raise DrillError(f"fault {self.name}: params.serving_op: {p.serving_op!r} is not one of {', '.join(OPS)}")
        source = baseline.find(ctx, "ConfigMap", p.config_map, p.namespace)
        configs = json.loads(source["data"][p.key])
        for versions in configs.values():
            for config in versions.values():
                for spec in config["features"]:
                    if spec["name"] == p.feature:
                        spec["op"] = p.serving_op
        content = json.dumps(configs, sort_keys=True, indent=1) + "\n"
        doc = copy.deepcopy(source)
        doc["metadata"] = {"name": skewed_name(p.config_map, content), "namespace": p.namespace,
                           "labels": dict(source["metadata"].get("labels") or {})}
        doc["data"] = {p.key: content}
        return doc

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        cm = self._skewed_configmap(ctx)
        ctx.kubectl("create", "-f", "-", input=json.dumps(cm), check=False)  # exists already: same content
        deploy = ctx.get("deployment", p.deployment, p.namespace)
        assert deploy is not None, f"Deployment {p.namespace}/{p.deployment} missing"
        env = deploy["spec"]["template"]["spec"]["containers"][0].get("env") or []
        index = next(i for i, e in enumerate(env) if e["name"] == p.env)
        ctx.patch("deployment", p.deployment, p.namespace, [
            {"op": "replace", "path": f"/spec/template/spec/containers/0/env/{index}/valueFrom/configMapKeyRef/name",
             "value": cm["metadata"]["name"]}])

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        return service_shows(ctx, p.namespace, p.deployment, "/metadata", lambda meta: bool(
            meta.get("loaded") and meta.get("transform_config_hash")
            != meta.get("lineage", {}).get("transform_config_hash")))

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        baseline.restore(ctx, "ConfigMap", p.config_map, p.namespace)
        baseline.restore(ctx, "Deployment", p.deployment, p.namespace)
        for cm in ctx.core.list_namespaced_config_map(p.namespace).items:
            if cm.metadata.name.startswith(f"{p.config_map}-"):
                ctx.delete("configmap", cm.metadata.name, p.namespace)

    def settle(self, ctx: DrillContext) -> None:
        wait_rollout(ctx, self.params.namespace, self.params.deployment)  # no pod of the skew is left
