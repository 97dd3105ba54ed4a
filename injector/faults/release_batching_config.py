"""release-batching-config: the morning release turns on micro-batching with one inference slot per pod.

One new Deployment revision, as a CD pipeline would roll it: image tag 1.4.1 (the
same model and code path) with ``MAX_CONCURRENT_REQUESTS=1``, ``BATCH_SIZE=64`` and a
``BATCH_TIMEOUT_MS``. With one request admitted at a time a batch can never hold
more than one row, so every request waits the full batch timeout for rows that
cannot arrive, and the next one queues behind it. The timeout is fitted to the
traffic the replay sends (its ``RATE``, which differs per backend): the single
slot is at most ~75 % busy, so the queue stays stable and every answer is a 200,
and the timeout is never shorter than the queue needs to break the SLO. At the
embedded cluster's 10 requests/s over 2 pods that is 150 ms and p99 goes from tens
of milliseconds to about half a second. ``kubectl rollout undo`` is the real fix;
so is setting the env back (no batch wait, or enough concurrency for the batch to
fill well inside the latency budget).
"""
from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.injector.faults._shared import is_ready, pod_metric_samples

#: The replay's ConfigMap and its RATE when unset (mlplatform/traffic.py's default).
REPLAY_CONFIG, DEFAULT_RATE = "traffic-replay", 5.0
#: Bounds of fraud-model's ``inference_request_duration_seconds`` a slow request is counted against.
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "fraud-model"
    image_tag: str = Field("1.4.1", description="the release that ships the config (same model, same code path)")
    max_concurrent_requests: int = Field(1, ge=1, description="inference slots per pod")
    batch_size: int = Field(64, ge=2, description="rows a batch waits for")
    batch_timeout_ms: int | None = Field(
        None, ge=1, le=5000, description="longest wait for a batch to fill; unset: fitted to the replay's rate "
                                         "(min(400 ms, 75 % of the time between two requests to one pod))")
    slo_seconds: float = Field(0.25, gt=0, description="a /predict slower than this is the symptom; one of the "
                                                       "service's latency histogram bounds")

    @field_validator("slo_seconds")
    @classmethod
    def _a_bucket_bound(cls, value: float) -> float:
        if value not in LATENCY_BOUNDS:
            raise ValueError(f"must be one of the latency histogram's bounds {LATENCY_BOUNDS}")
        return value


class ReleaseBatchingConfig(Fault):
    name = "release-batching-config"
    Params = Params
    description = ("new revision: release 1.4.1 with MAX_CONCURRENT_REQUESTS=1, BATCH_SIZE=64 and a BATCH_TIMEOUT_MS "
                   "fitted to the replay's rate (150 ms at 10 requests/s)")

    def batch_timeout_ms(self, ctx: DrillContext, replicas: int) -> int:
        """The given timeout, else one that keeps the only slot ~75 % busy at most and breaks the SLO.

        Why fitted: one slot serves at most 1/timeout requests a second, so a
        timeout longer than the time between two requests to a pod queues without
        bound and ends in client timeouts, not in the slow 200s of this incident.
        Where the traffic is light the timeout alone (400 ms) is over the SLO.
        """
        if self.params.batch_timeout_ms is not None:
            return self.params.batch_timeout_ms
        config = ctx.get("configmap", REPLAY_CONFIG, self.params.namespace) or {}
        try:
            rate = float((config.get("data") or {}).get("RATE", DEFAULT_RATE))
        except ValueError:
            rate = DEFAULT_RATE
        per_pod = max(rate, 0.1) / max(replicas, 1)
        return int(min(0.4, 0.75 / per_pod) * 1000)

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        obj = ctx.get("deployment", p.deployment, p.namespace)
        assert obj is not None, f"deployment {p.deployment} missing"
        timeout_ms = self.batch_timeout_ms(ctx, int(obj["spec"].get("replicas", 1)))
        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
        ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                "value": wl.image_with_tag(image, p.image_tag)}]
        for name, value in (("MAX_CONCURRENT_REQUESTS", p.max_concurrent_requests), ("BATCH_SIZE", p.batch_size),
                            ("BATCH_TIMEOUT_MS", timeout_ms)):
            ops += wl.set_env_ops(obj, name, str(value))
        ctx.patch("deployment", p.deployment, p.namespace, ops)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A pod of the new release answered real traffic slower than the SLO (its own latency histogram).

        A single probe request would only show the batch timeout (below the SLO);
        the spike is the queue the replay's traffic builds, so the evidence is the
        replay's requests in the pod's ``inference_request_duration_seconds``.
        Where the engine cannot reach a pod directly, the logged slow answers are.
        """
        p = self.params
        for pod in wl.new_pods(ctx, p.namespace, f"app={p.deployment}", getattr(self, "applied_at", 0.0)):
            if not pod.spec.containers[0].image.endswith(f":{p.image_tag}") or not is_ready(pod):
                continue
            samples = pod_metric_samples(ctx, pod)
            if samples is not None:
                if _slower_than(samples, p.slo_seconds) > 0:
                    return True
                continue
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "request" and line.get("path") == "/predict" and line.get("status") == 200 \
                        and float(line.get("latency_ms", 0)) >= p.slo_seconds * 1000:
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)


def _slower_than(samples: dict, seconds: float) -> float:
    """/predict requests of one pod slower than ``seconds`` (``seconds`` must be a bucket bound)."""
    label = (("endpoint", "/predict"),)
    total = samples.get(("inference_request_duration_seconds_count", label), 0.0)
    under = next((v for (name, labels), v in samples.items()
                  if name == "inference_request_duration_seconds_bucket" and dict(labels).get("endpoint") == "/predict"
                  and float(dict(labels).get("le", "nan")) == seconds), total)
    return total - under
