"""What the platform faults share: rollout waits, HTTP to services, registry reset.

Not a fault itself (the package imports it like the others; it registers nothing).
Restoring an object exactly is :func:`mlops_drill.injector.baseline.restore`.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable


from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext


def rollout_done(ctx: DrillContext, namespace: str, name: str) -> bool:
    """The Deployment's latest revision is fully available and no older pod is left."""
    obj = ctx.get("deployment", name, namespace)
    if obj is None:
        return False
    want = obj["spec"].get("replicas", 1)
    st = obj.get("status", {})
    return (st.get("observedGeneration", 0) >= obj["metadata"]["generation"]
            and st.get("updatedReplicas", 0) == want and st.get("availableReplicas", 0) >= want
            and st.get("replicas", 0) == want)


def wait_rollout(ctx: DrillContext, namespace: str, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not rollout_done(ctx, namespace, name):
        if time.monotonic() > deadline:
            raise DrillError(f"deployment {namespace}/{name}: rollout not done after {timeout:.0f}s")
        time.sleep(0.1)
    # pods of the old ReplicaSet may still be terminating: wait until only current pods remain
    selector = ",".join(f"{k}={v}" for k, v in baseline.find(ctx, "Deployment", name, namespace)
                        ["spec"]["selector"]["matchLabels"].items())
    while len(ctx.core.list_namespaced_pod(namespace, label_selector=selector).items) > \
            (ctx.get("deployment", name, namespace) or {}).get("spec", {}).get("replicas", 1):
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)


def call(ctx: DrillContext, namespace: str, service: str, path: str, method: str = "GET",
         body: Any = None, timeout: float = 10) -> Any:
    """JSON answer of a platform Service (raises on HTTP errors: callers decide what that means)."""
    import httpx

    with ctx.service(namespace, service) as base:
        response = httpx.request(method, base + path, json=body, timeout=timeout)
    response.raise_for_status()
    return response.json()


def try_call(ctx: DrillContext, namespace: str, service: str, path: str, method: str = "GET",
             body: Any = None) -> Any | None:
    """Like ``call`` but None when the service cannot answer yet (for verify loops)."""
    try:
        return call(ctx, namespace, service, path, method, body)
    except Exception:  # noqa: BLE001 - not answering yet is an ordinary state while things roll out
        return None


def service_shows(ctx: DrillContext, namespace: str, service: str, path: str,
                  symptom: Callable[[Any], bool], tries: int = 6) -> bool:
    """Some answer of the Service shows the symptom: a new pod is already serving traffic.

    Why not wait for the whole rollout: the Service balances over every Ready
    pod, so from the first new pod on part of the real traffic gets the faulty
    answer; that is what a user notices, while the old pods are still draining.
    """
    return any((answer := try_call(ctx, namespace, service, path)) is not None and symptom(answer)
               for _ in range(tries))


def metric_samples(ctx: DrillContext, namespace: str, service: str) -> dict[tuple[str, tuple], float] | None:
    """Every sample of one pod's /metrics behind the Service (None when unreachable)."""
    try:
        with ctx.service(namespace, service) as base:
            text = _metrics_text(base, timeout=10)
    except Exception:  # noqa: BLE001 - no proxy or port-forward yet: unreachable like any other
        return None
    return None if text is None else _samples(text)


def _metrics_text(base: str, timeout: float) -> str | None:
    """``base``'s /metrics page (None when it does not answer)."""
    import httpx

    try:
        return httpx.get(base + "/metrics", timeout=timeout).text
    except httpx.HTTPError:
        return None


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def pod_url(ctx: DrillContext, pod: Any) -> str | None:
    """Base URL of one pod's container as the engine reaches it; None where it cannot.

    Why per pod: a Service answers from one pod per request, so a check that
    must see every replica (a Prometheus scrape does the same) or one given
    replica (a canary) reads the pod itself. On process-backed nodes the
    container's local port is in the kubelet's process record; other backends
    give None and the caller keeps to what the Service shows.
    """
    from mlops_drill.cluster.processpods import records

    state = ctx.backend.process_state
    if state is None:
        return None
    found = records.find(state, ctx.backend.cluster_namespace(pod.metadata.namespace), pod.metadata.name)
    port = found[1].get("PORT") if found else None
    return f"http://127.0.0.1:{port}" if port else None


def pod_metric_samples(ctx: DrillContext, pod: Any) -> dict[tuple[str, tuple], float] | None:
    """Every sample of this pod's own /metrics (None when it cannot be reached)."""
    base = pod_url(ctx, pod)
    text = None if base is None else _metrics_text(base, timeout=5)
    return None if text is None else _samples(text)


def inline_transaction(**features: float) -> dict[str, Any]:
    """A replay-shaped /predict body carrying every feature inline (``features`` override some).

    What a smoke test sends a single pod: a real transaction of the baseline
    period, so a pod answers it as it answers the replay's.
    """
    import numpy as np

    from mlops_drill.mlplatform import data

    rng = np.random.default_rng()
    txn = data.sample_transactions(rng, 1, data.period(data.BASELINE_PERIOD).transactions)
    account = data.sample_accounts(rng, 1)
    values = {k: float(v[0]) for k, v in {**txn, **account}.items()}
    return {"card_number": "4111111111111111", "features": {**values, **features}}


def created(obj: Any) -> float:
    """creationTimestamp of a client object or a dict, as epoch seconds."""
    if isinstance(obj, dict):
        stamp = obj.get("metadata", {}).get("creationTimestamp")
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    stamp = obj.metadata.creation_timestamp
    return stamp.timestamp() if stamp else 0.0


def pods(ctx: DrillContext, namespace: str, selector: str) -> list:
    return ctx.core.list_namespaced_pod(namespace, label_selector=selector).items


def is_ready(pod) -> bool:
    return pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def recycle_pods(ctx: DrillContext, namespace: str, selector: str, timeout: float = 60,
                 wait_last: bool = True) -> None:
    """Replace a workload's pods one by one, each after its successor is Ready (no outage).

    With ``wait_last=False`` the last pod is deleted once the one before it has
    a Ready successor, and its own successor starts without being waited for:
    the others already serve, so there is no outage either way.
    """
    victims = pods(ctx, namespace, selector)
    for i, pod in enumerate(victims):
        ready_before = {p.metadata.name for p in pods(ctx, namespace, selector) if is_ready(p)}
        ctx.delete("pod", pod.metadata.name, namespace)
        if not wait_last and i == len(victims) - 1:
            return
        deadline = time.monotonic() + timeout
        while not any(is_ready(p) and p.metadata.name not in ready_before for p in pods(ctx, namespace, selector)):
            if time.monotonic() > deadline:
                raise DrillError(f"{namespace}: no replacement for pod {pod.metadata.name} after {timeout:.0f}s")
            time.sleep(0.1)


# ---------------------------------------------------------------- the model registry

def registry_changed(ctx: DrillContext) -> bool:
    """True when stages moved since the registry started (its audit log grew past CI's history)."""
    from mlops_drill.mlplatform.artifacts import HISTORY

    audit = try_call(ctx, "registry", "model-registry", "/audit?limit=1000")
    return audit is None or len(audit.get("events", [])) > len(HISTORY)


def restore_registry(ctx: DrillContext, timeout: float = 90) -> bool:
    """Stages back to CI's: the baseline registry keeps state in memory, so a fresh pod starts clean.

    True when stages had moved (and the registry was restarted), False when nothing was to do.
    """
    if not registry_changed(ctx):
        return False
    for pod in pods(ctx, "registry", "app=model-registry"):
        ctx.delete("pod", pod.metadata.name, "registry")
    deadline = time.monotonic() + timeout
    while registry_changed(ctx):
        if time.monotonic() > deadline:
            raise DrillError(f"model registry: stages not back to the baseline after {timeout:.0f}s")
        time.sleep(0.3)
    return True


def serving_versions(ctx: DrillContext, samples: int = 8) -> set[str]:
    """Model versions the fraud-model Service answers with (several calls: it balances over pods)."""
    seen = set()
    for _ in range(samples):
        meta = try_call(ctx, "serving", "fraud-model", "/metadata")
        seen.add(str(meta.get("model_version")) if meta else "unreachable")
    return seen


def ensure_serving_follows_registry(ctx: DrillContext, version: str = "3", rolled_out: bool = False) -> None:
    """Pods load their version at start: ones started while another version was in Production are replaced.

    ``rolled_out``: the caller has already waited for the Deployment (``Fault.settle``).
    """
    if not rolled_out:
        wait_rollout(ctx, "serving", "fraud-model")
    if serving_versions(ctx) != {version}:
        for pod in pods(ctx, "serving", "app=fraud-model"):
            ctx.delete("pod", pod.metadata.name, "serving")
        deadline = time.monotonic() + 90
        while serving_versions(ctx, samples=4) != {version} or not rollout_done(ctx, "serving", "fraud-model"):
            if time.monotonic() > deadline:
                raise DrillError(f"fraud-model: pods do not serve version {version} after reset")
            time.sleep(0.5)
