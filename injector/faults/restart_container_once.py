"""restart-container-once: one pod of a workload restarted once and is healthy again.

A red herring for compound scenarios: ``kubectl get pods`` shows ``RESTARTS 1``
next to a Ready pod, and ``kubectl describe pod`` a Last State, but the
container has been serving normally since. The fault signals the container's
real process (:func:`mlops_drill.injector.pods.crash_container`), so the
kubelet itself counts the restart, at once the first time (restartPolicy
Always, no back-off yet). With SIGTERM the platform's apps shut down gracefully
and uvicorn then re-raises the signal (as it does since 0.29), so the container
ends by signal 15: Last State ``Error``, exit code 143, what a SIGTERM'd
process shows on a real node too. With SIGKILL the exit is by signal 9, which
the embedded backend's kubelet reports as ``OOMKilled`` (exit code 137), the
way a container the OOM killer took looks: a stronger, different herring.

Nothing is remembered for ``revert``: it deletes every pod of the workload that
has restarted, and the Deployment replaces it with a fresh one (0 restarts).
"""
from __future__ import annotations

import signal
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from mlops_drill.errors import DrillError
from mlops_drill.injector import pods
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import rollout_done


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "registry"
    workload: str = "deployment/model-registry"
    signal: Literal["SIGTERM", "SIGKILL"] = "SIGTERM"

    @field_validator("workload")
    @classmethod
    def _a_deployment(cls, value: str) -> str:
        kind, _, name = value.partition("/")
        if kind.lower() not in ("deployment", "deployments", "deploy") or not name:
            raise ValueError(f"{value!r}: give deployment/<name>")
        return value


def restarts(pod: dict[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


class RestartContainerOnce(Fault):
    name = "restart-container-once"
    shared_nodes_ready = False  # signals through the node runtime: out of a shared-node seat's reach
    Params = Params
    description = "one pod restarted once and Ready again (a red herring)"

    @property
    def _deployment(self) -> str:
        return self.params.workload.partition("/")[2]

    def _pods(self, ctx: DrillContext) -> list[dict[str, Any]]:
        p = self.params
        return pods.list_pods(ctx, p.namespace, pods.workload_selector(ctx, p.namespace, p.workload))

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        ready = sorted((x for x in self._pods(ctx) if pods.is_ready(x)), key=lambda x: x["metadata"]["name"])
        if not ready:
            raise DrillError(f"fault {self.name}: no Ready pod of {p.workload} in namespace {p.namespace}")
        pods.crash_container(ctx, p.namespace, ready[0]["metadata"]["name"], getattr(signal, p.signal))

    def verify_applied(self, ctx: DrillContext) -> bool:
        """Some pod has restarted and is Ready again: the symptom is "restarted once, healthy now"."""
        return any(restarts(x) >= 1 and pods.is_ready(x) for x in self._pods(ctx))

    def revert(self, ctx: DrillContext) -> None:
        for pod in self._pods(ctx):
            if restarts(pod) > 0 and not pod["metadata"].get("deletionTimestamp"):
                ctx.delete("pod", pod["metadata"]["name"], self.params.namespace)

    def settle(self, ctx: DrillContext, timeout: float = 120) -> None:
        """The Deployment is fully available again with fresh pods only (none restarted, none terminating).

        Why more than the rollout: right after the deletion the Deployment's status
        still counts the deleted pod as available.
        """
        p = self.params
        deadline = time.monotonic() + timeout
        while True:
            current = self._pods(ctx)
            want = (ctx.get("deployment", self._deployment, p.namespace) or {}).get("spec", {}).get("replicas", 1)
            if rollout_done(ctx, p.namespace, self._deployment) and len(current) == want \
                    and all(pods.is_ready(x) and restarts(x) == 0 for x in current):
                return
            if time.monotonic() > deadline:
                raise DrillError(f"deployment {p.namespace}/{self._deployment}: no fresh Ready pods "
                                 f"{timeout:.0f}s after the restarted one was replaced")
            time.sleep(0.2)
