"""Shared by the serving and training faults: put a workload back, find its new pods, read their logs.

Why a full template restore: a server-side apply of the baseline leaves fields
that another manager added (an extra env var, a ``value`` next to the
baseline's ``valueFrom``), so a fault that edited env would survive ``reset``.
Replacing the pod template first, then re-applying, restores it exactly.
"""
from __future__ import annotations

import json
import shutil
import time
from typing import Any, Iterable

from mlops_drill.injector.context import DrillContext


def container_env(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["spec"]["template"]["spec"]["containers"][0].get("env") or []


def env_index(obj: dict[str, Any], name: str) -> int | None:
    return next((i for i, e in enumerate(container_env(obj)) if e["name"] == name), None)


def set_env_ops(obj: dict[str, Any], name: str, value: str) -> list[dict[str, Any]]:
    """JSON-patch ops that give env ``name`` the literal ``value`` (added when missing)."""
    base = "/spec/template/spec/containers/0/env"
    index = env_index(obj, name)
    entry = {"name": name, "value": value}
    if index is None:
        return [{"op": "add", "path": f"{base}/-", "value": entry}]
    return [{"op": "replace", "path": f"{base}/{index}", "value": entry}]


def new_pods(ctx: DrillContext, namespace: str, selector: str, since: float) -> list[Any]:
    """Pods matching ``selector`` created after ``since`` (epoch seconds): only this session's evidence."""
    pods = ctx.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.metadata.creation_timestamp
            and p.metadata.creation_timestamp.timestamp() >= since - 1.0]


def pod_log(ctx: DrillContext, namespace: str, pod: str) -> str:
    """The pod's log as ``kubectl logs`` shows it; empty while it has none."""
    try:
        return ctx.core.read_namespaced_pod_log(pod, namespace, _request_timeout=10) or ""
    except Exception:  # not started yet, or already gone: no evidence either way
        return ""


def json_lines(text: str) -> Iterable[dict[str, Any]]:
    """The JSON objects of a platform app's log (one per line); other lines are skipped."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def image_with_tag(image: str, tag: str) -> str:
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}:{tag}"


def wait_gone(ctx: DrillContext, kind: str, name: str, namespace: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ctx.get(kind, name, namespace) is not None:
        time.sleep(0.2)


def clear_run_state(ctx: DrillContext, job: dict[str, Any]) -> None:
    """Today's run starts clean: yesterday's checkpoint and cost ledger go (process-backed and kind nodes).

    Without this a run with checkpointing would resume from the last finished
    run's final epoch and the ledger would count yesterday's GPU hours.
    """
    from mlops_drill.cluster.processpods.podspec import SpecError, folder_within
    from mlops_drill.cluster.seats.names import namespace_prefix

    state = ctx.backend.process_state
    if state is None:  # kind: the host folders are each GPU node container's own; elsewhere out of reach
        clear = getattr(ctx.backend, "clear_node_folders", None)
        if clear is not None:
            clear([v["hostPath"]["path"] for v in job["spec"]["template"]["spec"].get("volumes") or []
                   if v.get("hostPath", {}).get("path")])
        return
    seat = namespace_prefix(ctx.backend.cluster_namespace(job["metadata"]["namespace"]))
    for volume in job["spec"]["template"]["spec"].get("volumes") or []:
        host = volume.get("hostPath", {}).get("path")
        if host:
            try:  # never through a link a pod planted on the way (podspec.folder_within)
                folder = folder_within(state / "volumes", f"_host/{seat}/{host}", f'hostPath "{host}"')
            except SpecError:
                continue
            shutil.rmtree(folder)


#: Field manager of a Job or Deployment a fault submits as a team's pipeline would: `kubectl apply --server-side`.
PIPELINE_MANAGER = "kubectl"


def delete_job(ctx: DrillContext, name: str, namespace: str) -> None:
    """Delete the Job and wait for its pods too, so no old process still writes the shared volume."""
    ctx.kubectl("delete", "job", name, "-n", namespace, "--ignore-not-found", "--cascade=foreground",
                "--wait=true", "--timeout=60s", timeout=90)


def delete_job_now(ctx: DrillContext, name: str, namespace: str, timeout: float = 60) -> None:
    """The Job and its pods gone, so their GPUs are free again, in ~0.4 s.

    The Job goes at once and its pods are deleted directly, as ``kubectl delete pods -l job-name=...``
    would, where a foreground deletion (:func:`delete_job`) waits ~2 s for the garbage collector.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mlops_drill.errors import DrillError

    selector = f"job-name={name}"

    def pods() -> list[str]:
        return [x.metadata.name for x in ctx.core.list_namespaced_pod(namespace, label_selector=selector).items]

    ctx.delete("job", name, namespace)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda pod: ctx.delete("pod", pod, namespace), pods()))
    deadline = time.monotonic() + timeout
    while pods():
        if time.monotonic() > deadline:
            raise DrillError(f"{namespace}: pods of Job {name} still there after {timeout:.0f}s")
        time.sleep(0.05)


def fresh_run(ctx: DrillContext, name: str, namespace: str) -> dict[str, Any]:
    """Delete the Job and clear its run's node state (checkpoints, cache, ledger); returns the baseline Job.

    What every training fault does before it submits a run of its own, and after, before the
    baseline's run goes back: no run ever starts on what an earlier one left behind.
    """
    from mlops_drill.injector import baseline

    delete_job(ctx, name, namespace)
    doc = baseline.find(ctx, "Job", name, namespace)
    clear_run_state(ctx, doc)
    return doc
