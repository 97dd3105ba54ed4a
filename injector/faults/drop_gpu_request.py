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
        """The release is fully rolled out and the Service answers from a CPU pod."""
        p = self.params
        obj = ctx.get("deployment", p.deployment, p.namespace)
        if obj is None or not _rolled_out(obj):
            return False
        pods = ctx.core.list_namespaced_pod(p.namespace, label_selector=_selector(obj)).items
        if len(pods) != obj["spec"].get("replicas", 1) or any(
                not (c.image or "").endswith(f":{p.image_tag}") for pod in pods for c in pod.spec.containers):
            return False  # pods of the old ReplicaSet are still terminating
        import httpx

        try:
            with ctx.service(p.namespace, p.deployment) as url:
                return httpx.get(url + "/metadata", timeout=5).json().get("device") == "cpu"
        except (httpx.HTTPError, ValueError):
            return False

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)


def _rolled_out(obj: dict) -> bool:
    want = obj["spec"].get("replicas", 1)
    st = obj.get("status", {})
    return (st.get("observedGeneration", 0) >= obj["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("availableReplicas", 0) >= want
            and st.get("replicas", 0) == want)


def _selector(obj: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items())
