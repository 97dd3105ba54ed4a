"""disable-checkpointing: the training Job lost its checkpoint setting while it runs on spot GPUs.

The fault re-creates Job ``fraud-train`` as a pipeline would submit today's run:
the same template without ``CHECKPOINT_DIR``, pinned to the spot GPU node (the
node gets the provider's spot label), with the pod failure policy a spot Job
has (disruptions do not count against ``backoffLimit``). A small reclaimer then plays the
cloud provider: whenever a training pod on the spot node has run for about
``preempt_after_seconds`` it is terminated the way a spot shutdown terminates
it (SIGTERM to the real process, pod Failed with the kubelet's node-shutdown
reason and a ``DisruptionTarget`` condition). The Job replaces the pod, and
without a checkpoint the new one trains again from epoch 1 while the cost
ledger keeps counting: the run never ends. Re-creating the Job with
``CHECKPOINT_DIR`` on the mounted volume makes each new pod resume instead.

The reclaimer is a detached process of this cluster (``cluster.daemons``, pid
file in the state folder), so it outlives the ``mlops-drill start`` command,
stops with ``revert`` and with ``cluster down``, and is nothing the candidate's
kubeconfig can see.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.injector.spot_reclaimer import SHUTDOWN_REASON

DAEMON = "spot-reclaimer"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "training"
    job: str = "fraud-train"
    env: str = Field("CHECKPOINT_DIR", description="the env var the new run lacks")
    spot_node: str = "gpu-node-1"
    spot_label: str = Field("cloud.google.com/gke-spot", description="node label (value \"true\") marking spot capacity")
    preempt_after_seconds: float = Field(20.0, ge=5, le=600,
                                         description="run time of a training pod before it is reclaimed (±25%)")
    first_preempt_after_seconds: float = Field(
        1.2, ge=0.5, le=600, description="run time of the run's first pod (±25%): the spot node it lands on "
                                         "is already being reclaimed")


class DisableCheckpointing(Fault):
    name = "disable-checkpointing"
    shared_nodes_ready = False  # labels the spot node and shuts its training pods down
    Params = Params
    description = "fraud-train re-created without CHECKPOINT_DIR on a spot node that keeps reclaiming its pod"

    # -- the faulty run ----------------------------------------------------------------
    def faulty_job(self, ctx: DrillContext) -> dict[str, Any]:
        p = self.params
        job = copy.deepcopy(baseline.find(ctx, "Job", p.job, p.namespace))
        spec = job["spec"]["template"]["spec"]
        container = spec["containers"][0]
        container["env"] = [e for e in container.get("env") or [] if e["name"] != p.env]
        spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), p.spot_label: "true"}
        # What a team moving a Job to spot adds: reclaims do not count against backoffLimit.
        job["spec"]["podFailurePolicy"] = {"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
        return job

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        state = _state(ctx)
        self.applied_at = time.time()
        from mlops_drill.cluster import daemons

        daemons.stop(DAEMON, state)
        wl.fresh_run(ctx, p.job, p.namespace)
        ctx.kubectl("label", "node", p.spot_node, f"{p.spot_label}=true", "--overwrite")
        ctx.apply([self.faulty_job(ctx)], manager=wl.PIPELINE_MANAGER)
        args = ["--kubeconfig", str(ctx.kubeconfig), "--namespace", p.namespace, "--job", p.job,
                "--node", p.spot_node, "--after", str(p.preempt_after_seconds),
                "--first-after", str(p.first_preempt_after_seconds)]
        if ctx.backend.process_state is not None:
            args += ["--local-processes", "--process-state", str(ctx.backend.process_state),
                     "--process-namespace", ctx.backend.cluster_namespace(p.namespace)]
        elif ctx.backend.kind == "kind":  # real containers on nodes of ours: SIGTERM through the node
            args += ["--kind-cluster", ctx.backend.name]
        daemons.start(DAEMON, daemons.python_module("mlops_drill.injector.spot_reclaimer", *args), state)

    def verify_applied(self, ctx: DrillContext) -> bool:
        """A pod of today's run was reclaimed and its own log says its epochs are lost."""
        p = self.params
        since = getattr(self, "applied_at", 0.0)
        for pod in wl.new_pods(ctx, p.namespace, f"job-name={p.job}", since):
            if pod.status.phase != "Failed" or pod.status.reason != SHUTDOWN_REASON:
                continue
            for line in wl.json_lines(wl.pod_log(ctx, p.namespace, pod.metadata.name)):
                if line.get("msg") == "SIGTERM received, stopping" and line.get("checkpoint") is None:
                    return True
        return False

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        from mlops_drill.cluster import daemons

        state = getattr(ctx.backend, "state", None)
        if state is not None:
            daemons.stop(DAEMON, Path(state))
        ctx.kubectl("label", "node", p.spot_node, f"{p.spot_label}-", check=False)
        doc = wl.fresh_run(ctx, p.job, p.namespace)
        ctx.apply([doc])


def _state(ctx: DrillContext) -> Path:
    state = getattr(ctx.backend, "state", None)
    if state is None:
        raise DrillError("fault disable-checkpointing: this backend keeps no local state folder for the reclaimer")
    return Path(state)

