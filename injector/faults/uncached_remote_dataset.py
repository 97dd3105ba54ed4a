"""uncached-remote-dataset: today's training run streams its dataset from a far bucket on every epoch.

The fault re-creates Job ``fraud-train`` as a pipeline would submit today's run:
the same template without the data cache setting (``DATA_CACHE_DIR``) and with
the dataset read from the bucket replica in another region than the GPU nodes.
The training code then downloads every shard again on every epoch at
cross-region speed; the GPU is allocated and waits, so each epoch takes several
times as long and bills its GPU hours (and egress) for the wait. Re-creating the
Job with a cache directory (and the bucket of the nodes' region) makes every
epoch after the first read from the local disk.
"""
from __future__ import annotations

import copy
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl



class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "training"
    job: str = "fraud-train"
    cache_env: str = Field("DATA_CACHE_DIR", description="the env var today's run lacks")
    dataset_uri: str | None = Field(
        "gs://fraud-datasets-us-east1/fraud/2024-09/",
        description="DATASET_URI of today's run (None: the baseline's bucket)")
    slow_epochs: int = Field(2, ge=1, le=10,
                             description="epochs that must have re-read every shard before the symptom counts")


class UncachedRemoteDataset(Fault):
    name = "uncached-remote-dataset"
    shared_nodes_ready = False  # re-creates the training Job: no new node folder on shared nodes
    Params = Params
    description = "fraud-train re-created without its data cache, reading its dataset from another region's bucket"

    def faulty_job(self, ctx: DrillContext) -> dict[str, Any]:
        p = self.params
        job = copy.deepcopy(baseline.find(ctx, "Job", p.job, p.namespace))
        container = job["spec"]["template"]["spec"]["containers"][0]
        env = [e for e in container.get("env") or [] if e["name"] != p.cache_env]
        if p.dataset_uri is not None:
            env = [{"name": "DATASET_URI", "value": p.dataset_uri} if e["name"] == "DATASET_URI" else e for e in env]
        container["env"] = env
        return job

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        self.applied_at = time.time()
        wl.fresh_run(ctx, p.job, p.namespace)
        ctx.apply([self.faulty_job(ctx)], manager=wl.PIPELINE_MANAGER)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A pod of today's run has finished ``slow_epochs`` epochs, each re-reading every shard from the bucket."""
        p = self.params
        since = getattr(self, "applied_at", 0.0)
        for pod in wl.new_pods(ctx, p.namespace, f"job-name={p.job}", since):
            epochs = [line for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name))
                      if "cache_misses" in line and "epoch" in line]
            if len(epochs) >= p.slow_epochs and all(e["cache_hits"] == 0 for e in epochs):
                return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        doc = wl.fresh_run(ctx, p.job, p.namespace)
        ctx.apply([doc])

