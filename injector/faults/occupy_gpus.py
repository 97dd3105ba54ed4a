"""occupy-gpus: another team's batch Job holds every free GPU while doing nothing.

An ``embeddings-backfill`` Job (one pod per shard, one GPU each) was started
in the training namespace; its pods are scheduled, Running and idle, waiting for
an input partition that never lands (``mlplatform.embeddings_backfill``). When
the daily ``fraud-train`` run starts next, the scheduler has no GPU left for it:
the real ``FailedScheduling ... Insufficient nvidia.com/gpu`` event. Suspending
(or deleting) the backfill releases the GPUs and the training pod schedules.
"""
from __future__ import annotations

import time
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from mlops_drill.cluster.gpu.devicemanager import RESOURCE
from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.mlplatform import releases
from mlops_drill.mlplatform.manifests import PROCESS_LABEL


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "training"
    job_name: str = "embeddings-backfill"
    image: str = releases.image("embeddings-backfill", "0.9.1")
    gpus: int | Literal["all-free"] = "all-free"
    restart_victim: str = "job/fraud-train"


def free_gpus(ctx: DrillContext) -> int:
    """GPUs the scheduler could still hand out: allocatable minus what live pods request, over all nodes."""
    from mlops_drill.cluster.processpods.podspec import gpu_request

    free = {n.metadata.name: int((n.status.allocatable or {}).get(RESOURCE, "0"))
            for n in ctx.core.list_node().items if not n.spec.unschedulable}
    for pod in ctx.core.list_pod_for_all_namespaces().items:
        node = pod.spec.node_name
        if node in free and pod.status.phase not in ("Succeeded", "Failed"):
            free[node] -= gpu_request(ctx.api.sanitize_for_serialization(pod))
    return sum(max(n, 0) for n in free.values())


def backfill_job(name: str, namespace: str, shards: int, image: str) -> dict:
    """The squatter as its owning team would have written it: nothing in it names a fault."""
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app": name, "team": "search-relevance"}},
        "spec": {
            "completionMode": "Indexed", "completions": shards, "parallelism": shards, "backoffLimit": 3,
            "template": {
                "metadata": {"labels": {"app": name, PROCESS_LABEL: "true"}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"pool": "gpu"},
                    "tolerations": [{"key": RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "backfill",
                        "image": image,
                        "command": ["python", "-m", "mlops_drill.mlplatform.embeddings_backfill"],
                        "env": [{"name": "INPUT_ROOT", "value": "/mnt/datalake"},
                                {"name": "INPUT_TABLE", "value": "txn_features_daily"},
                                {"name": "INPUT_DATE", "value": "2024-10-01"},
                                {"name": "BATCH_SIZE", "value": "4096"}],
                        "volumeMounts": [{"name": "datalake", "mountPath": "/mnt/datalake", "readOnly": True}],
                        # Small CPU and memory: a pod that waits on its input uses neither, and the
                        # GPUs must run out before the nodes' CPUs do (kind nodes have this machine's
                        # two cores), or the training pod would be Pending on cpu, not GPUs.
                        "resources": {"requests": {"cpu": "200m", "memory": "1Gi", RESOURCE: 1},
                                      "limits": {"memory": "2Gi", RESOURCE: 1}},
                    }],
                    "volumes": [{"name": "datalake",
                                 "hostPath": {"path": "/mnt/datalake", "type": "DirectoryOrCreate"}}],
                },
            },
        },
    }


class OccupyGpus(Fault):
    name = "occupy-gpus"
    shared_nodes_ready = False  # holds the GPUs of real nodes every seat schedules on
    Params = Params

    def _victim(self) -> str:
        kind, _, name = self.params.restart_victim.partition("/")
        if kind not in ("job", "jobs"):
            raise DrillError(f"fault occupy-gpus: params.restart_victim: {self.params.restart_victim!r} is not job/<name>")
        return name

    def _delete_job(self, ctx: DrillContext, name: str, timeout: float = 120) -> None:
        wl.delete_job_now(ctx, name, self.params.namespace, timeout)

    def apply(self, ctx: DrillContext) -> None:
        p, victim = self.params, self._victim()
        self.applied_at = time.time()
        self._delete_job(ctx, victim)  # today's run had not started yet
        shards = free_gpus(ctx) if p.gpus == "all-free" else p.gpus
        if shards < 1:
            raise DrillError("fault occupy-gpus: no free GPU to occupy")
        ctx.kubectl("create", "-f", "-", input=yaml.safe_dump(backfill_job(p.job_name, p.namespace, shards, p.image)))
        deadline = time.monotonic() + 60
        while len(self._running(ctx)) < shards:
            if time.monotonic() > deadline:
                raise DrillError(f"fault occupy-gpus: {p.job_name} pods not all Running after 60s")
            time.sleep(0.3)
        ctx.apply([baseline.find(ctx, "Job", victim, p.namespace)])

    def _running(self, ctx: DrillContext) -> list:
        pods = ctx.core.list_namespaced_pod(self.params.namespace,
                                            label_selector=f"job-name={self.params.job_name}").items
        return [x for x in pods if x.status.phase == "Running" and x.spec.node_name]

    def verify_applied(self, ctx: DrillContext) -> bool:
        since = getattr(self, "applied_at", 0.0) - 1.0
        victim = self._victim()
        events = ctx.core.list_namespaced_event(self.params.namespace).items
        return any(e.reason == "FailedScheduling" and f"Insufficient {RESOURCE}" in (e.message or "")
                   and (e.involved_object.name or "").startswith(f"{victim}-") and _stamp(e) >= since
                   for e in events)

    def revert(self, ctx: DrillContext) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # The two deletions do not wait for each other; the training Job comes back only once the
        # backfill's GPUs are free (its new pod never shows a FailedScheduling event of ours) and
        # its old pod is gone (no two runs write the checkpoint volume).
        with ThreadPoolExecutor(max_workers=1) as pool:
            backfill = pool.submit(self._delete_job, ctx, self.params.job_name)
            self._delete_job(ctx, self._victim())
            backfill.result()
        baseline.restore(ctx, "Job", self._victim(), self.params.namespace)


def _stamp(event) -> float:
    when = event.last_timestamp or event.event_time or event.first_timestamp
    return when.timestamp() if when else 0.0
