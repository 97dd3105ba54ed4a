"""Pods as a fault sees them: where a workload's replicas run, and the process behind one.

Several GPU faults hit "the replica on that node": the GPU under it falls off the
bus, or the driver under it changes, and the container dies and restarts there.
The Kubernetes API has no verb for "this container crashed", so on the embedded
backend the fault signals the pod's real local process, exactly what a crashing
CUDA process looks like to the kubelet. The process is found by the environment
the process kubelet gives every container (``POD_NAMESPACE``, ``POD_NAME`` and
this cluster's ``MLOPS_DRILL_SERVICES`` file), never by a name pattern.
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext

PLUGIN_NAMESPACE = "gpu-operator"
PLUGIN_SELECTOR = "app.kubernetes.io/name=nvidia-device-plugin"


def list_pods(ctx: DrillContext, namespace: str, selector: str) -> list[dict[str, Any]]:
    return ctx.list_objects("v1", "Pod", namespace, selector)


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def node_of(pod: dict[str, Any]) -> str:
    return pod.get("spec", {}).get("nodeName") or ""


def workload_selector(ctx: DrillContext, namespace: str, workload: str) -> str:
    """``deployment/fraud-model`` -> its pod selector (``app=fraud-model``)."""
    kind, _, name = workload.partition("/")
    obj = ctx.get(kind, name, namespace)
    if obj is None:
        raise DrillError(f"{workload} not found in namespace {namespace}")
    labels = obj["spec"]["selector"].get("matchLabels") or {}
    if not labels:
        raise DrillError(f"{workload}: selector has no matchLabels")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def ready_pod_on(ctx: DrillContext, namespace: str, selector: str, node: str) -> dict[str, Any] | None:
    return next((p for p in list_pods(ctx, namespace, selector) if node_of(p) == node and is_ready(p)), None)


def ensure_ready_pod_on(ctx: DrillContext, namespace: str, selector: str, node: str,
                        attempts: int = 3, timeout: float = 45) -> dict[str, Any]:
    """A Ready replica on ``node``; if the scheduler put every replica elsewhere, recreate one.

    The default spreading puts one replica per GPU node, so this rarely moves
    anything; when it must, the deleted replica comes back on the emptier node.
    """
    for _ in range(attempts):
        pod = ready_pod_on(ctx, namespace, selector, node)
        if pod is not None:
            return pod
        ready = [p for p in list_pods(ctx, namespace, selector) if is_ready(p)]
        if not ready:
            raise DrillError(f"no Ready pod of {namespace}/{selector} to place on node {node}")
        victim = ready[0]["metadata"]["name"]
        ctx.delete("pod", victim, namespace)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now_ready = [p for p in list_pods(ctx, namespace, selector) if is_ready(p)]
            if len(now_ready) >= len(ready) and victim not in {p["metadata"]["name"] for p in now_ready}:
                break
            time.sleep(0.5)
    pod = ready_pod_on(ctx, namespace, selector, node)
    if pod is None:
        raise DrillError(f"no Ready pod of {namespace}/{selector} could be placed on node {node}")
    return pod


def delete_pods_on(ctx: DrillContext, namespace: str, selector: str, node: str,
                   unready_only: bool = False) -> list[str]:
    """Delete the pods of ``selector`` on ``node`` (their controller starts fresh ones); their names."""
    deleted = []
    for pod in list_pods(ctx, namespace, selector):
        if node_of(pod) == node and not (unready_only and is_ready(pod)):
            ctx.delete("pod", pod["metadata"]["name"], namespace)
            deleted.append(pod["metadata"]["name"])
    return deleted


def restart_device_plugin(ctx: DrillContext, node: str) -> list[str]:
    """A fresh device-plugin pod on ``node``: it re-reads the node's GPUs from scratch. The old pods' names."""
    return delete_pods_on(ctx, PLUGIN_NAMESPACE, PLUGIN_SELECTOR, node)


def wait_device_plugin(ctx: DrillContext, node: str, replaced: list[str], timeout: float = 60) -> None:
    """The plugin pods in ``replaced`` are gone, a fresh one on ``node`` is Ready, and the baseline healthy.

    For the ``settle`` of a fault whose revert restarted the plugin: right after
    the deletion the DaemonSet's status still counts the old pod as ready, so the
    reset's health check can pass just before the DaemonSet turns unready.
    """
    from mlops_drill.injector import baseline

    deadline = time.monotonic() + timeout
    while True:
        plugins = list_pods(ctx, PLUGIN_NAMESPACE, PLUGIN_SELECTOR)
        names = {p["metadata"]["name"] for p in plugins}
        if not names & set(replaced) and any(node_of(p) == node and is_ready(p) for p in plugins) \
                and _gpus_counted(ctx, node):
            baseline.wait_healthy(ctx)  # now the DaemonSet's status can only be catching up
            return
        if time.monotonic() > deadline:
            raise DrillError(f"no Ready device-plugin pod on {node} {timeout:.0f}s after its restart")
        time.sleep(0.1)


def _gpus_counted(ctx: DrillContext, node: str) -> bool:
    """The node's GPUs are allocatable again: a real kubelet counts them only once the fresh plugin has
    registered and listed them, some seconds after its pod is Ready (the next scenario must not see 0)."""
    status = ctx.core.read_node(node).status
    capacity = (status.capacity or {}).get("nvidia.com/gpu", "0")
    return capacity != "0" and (status.allocatable or {}).get("nvidia.com/gpu") == capacity


@dataclass(frozen=True)
class LocalProcess:
    """The main process of a process-backed pod's container."""

    pid: int
    env: dict[str, str]

    @property
    def gpus(self) -> list[str]:
        """GPU UUIDs the kubelet granted the container (``NVIDIA_VISIBLE_DEVICES``)."""
        return [g for g in self.env.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if g]


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def pod_process(ctx: DrillContext, namespace: str, name: str) -> LocalProcess | None:
    """The container process of pod ``namespace/name`` (embedded: a local process; kind: pid 0, its env)."""
    state = ctx.backend.process_state
    if state is None:  # real containers (kind): what their runtime says, through the backend
        env = ctx.backend.container_env(namespace, name)
        if env is None:
            raise DrillError(f"pod {namespace}/{name}: its container cannot be reached on this backend")
        return LocalProcess(0, env)
    from mlops_drill.cluster.processpods import records

    namespace = ctx.backend.cluster_namespace(namespace)
    recorded = records.find(state, namespace, name)
    if recorded is not None:  # what the kubelet wrote; a forked container's /proc environ is the zygote's
        return LocalProcess(*recorded)
    services = str(Path(state) / "services.json")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        env = _environ(pid)
        if not env or env.get("POD_NAME") != name or env.get("POD_NAMESPACE") != namespace:
            continue
        if env.get("MLOPS_DRILL_SERVICES") != services:
            continue  # another cluster's pod of the same name, or a `kubectl exec` session
        try:
            if os.getsid(pid) != pid:  # the container's main process leads its own session
                continue
        except ProcessLookupError:
            continue
        return LocalProcess(pid, env)
    return None


def crash_container(ctx: DrillContext, namespace: str, name: str, sig: int = signal.SIGABRT) -> LocalProcess:
    """Make the pod's container die from ``sig``, as a crashing process does; the kubelet restarts it."""
    import resource

    if ctx.backend.process_state is None:  # a real container (kind): signalled from its node
        if not ctx.backend.signal_container(namespace, name, sig):
            raise DrillError(f"pod {namespace}/{name} has no running container to signal")
        return LocalProcess(0, {})
    proc = pod_process(ctx, namespace, name)
    if proc is None:
        raise DrillError(f"pod {namespace}/{name} has no running container process")
    try:  # no core file in the pod's folder: the exit status is the symptom, not a dump
        resource.prlimit(proc.pid, resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError):
        pass
    os.kill(proc.pid, sig)
    return proc


def restarted_with_error(pod: dict[str, Any], since: float) -> bool:
    """True once the container has exited non-zero after ``since`` and is waiting to restart."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        last = (status.get("lastState") or {}).get("terminated") or {}
        waiting = (status.get("state") or {}).get("waiting") or {}
        # Pod timestamps have whole seconds: a restart in the fault's own second is still after it.
        if last.get("exitCode") not in (None, 0) and waiting.get("reason") == "CrashLoopBackOff" \
                and _stamp(last.get("startedAt")) >= math.floor(since):
            return True
    return False


def _stamp(text: str | None) -> float:
    if not text:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
