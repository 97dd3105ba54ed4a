"""drop-gpu-request: a release of the serving Deployment that no longer asks for a GPU.

A chart values change for the new tag turned the GPU off as a whole: the
``nvidia.com/gpu`` request and limit, the GPU pool nodeSelector and the GPU
toleration are gone from the pod template. The rollout succeeds, the new pods
land on CPU nodes, the kubelet hands them no GPU (no ``NVIDIA_VISIBLE_DEVICES``)
and the app falls back to CPU inference: ``/metadata`` says ``cpu``, device time
is 20x and end-to-end latency about 10x, while the GPUs sit idle.
"""
from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import service_shows


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "fraud-model"
    image_tag: str = "1.4.2"
    resource: str = "nvidia.com/gpu"


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class DropGpuRequest(Fault):
    name = "drop-gpu-request"
    Params = Params

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        obj = ctx.get("deployment", p.deployment, p.namespace)
        assert obj is not None, f"deployment {p.deployment} missing"
        spec = obj["spec"]["template"]["spec"]
        index = next(i for i, c in enumerate(spec["containers"]) if c["name"] == p.deployment)
        container = spec["containers"][index]
        repo = container["image"].rsplit(":", 1)[0]
        base = f"/spec/template/spec/containers/{index}"
        ops: list[dict] = [{"op": "replace", "path": f"{base}/image", "value": f"{repo}:{p.image_tag}"}]
        for part in ("requests", "limits"):
            if p.resource in (container.get("resources") or {}).get(part, {}):
                ops.append({"op": "remove", "path": f"{base}/resources/{part}/{_pointer(p.resource)}"})
        for field in ("nodeSelector", "tolerations"):
            if field in spec:
                ops.append({"op": "remove", "path": f"/spec/template/spec/{field}"})
        ctx.patch("deployment", p.deployment, p.namespace, ops)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The Service answers from a CPU pod of the release (the old GPU pods may still be draining)."""
        p = self.params
        return service_shows(ctx, p.namespace, p.deployment, "/metadata", lambda meta: meta.get("device") == "cpu")

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)
