"""The healthy baseline: deploy it, wait for it, and put single objects back.

Restoring an object is a forced server-side apply of its baseline manifest, so
it undoes a fault whatever else happened to the object since, and doing it
twice changes nothing: every fault's revert builds on this.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from mlops_drill.cluster import access, admission
from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext

GPU_DAEMONSET = Path(__file__).resolve().parents[1] / "cluster" / "gpu"


def _plugin_daemonset(ctx: DrillContext) -> dict[str, Any]:
    name = "kwok-daemonset.yaml" if ctx.backend.runs_processes else "deviceplugin/daemonset.yaml"
    return copy.deepcopy(_plugin_manifest(name))


@functools.lru_cache(maxsize=2)
def _plugin_manifest(name: str) -> dict[str, Any]:
    """Parsed once: ``find`` and the health polls of a reset ask for the baseline many times."""
    from importlib.resources import files

    return yaml.safe_load(files("mlops_drill.cluster.gpu").joinpath(name).read_text())


@functools.lru_cache(maxsize=1)
def _exporter_manifests() -> tuple[dict[str, Any], ...]:
    """dcgm-exporter's DaemonSet and Service (process-backed: embedded backend only)."""
    from importlib.resources import files

    text = files("mlops_drill.cluster.gpu").joinpath("dcgm-exporter.yaml").read_text()
    return tuple(d for d in yaml.safe_load_all(text) if d)


def documents(ctx: DrillContext) -> list[dict[str, Any]]:
    from mlops_drill.mlplatform.manifests import baseline_documents

    docs = baseline_documents()
    if ctx.backend.owns_gpu_plugin:
        docs.append(_plugin_daemonset(ctx))
    if ctx.backend.runs_processes and ctx.backend.owns_gpu_plugin:
        docs += copy.deepcopy(list(_exporter_manifests()))
    rate = ctx.backend.replay_rate()
    if rate is not None:
        for doc in docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == REPLAY_CONFIG:
                doc["data"]["RATE"] = rate
    return docs


#: The ConfigMap whose ``RATE`` sets the production replay's requests per second.
REPLAY_CONFIG = "traffic-replay"


def find(ctx: DrillContext, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    for doc in documents(ctx):
        meta = doc["metadata"]
        if doc["kind"] == kind and meta["name"] == name and (namespace is None or meta.get("namespace") == namespace):
            return doc
    raise DrillError(f"baseline has no {kind} {namespace}/{name}")


# What a restore replaces wholesale, per kind.
REPLACED = {"Deployment": "spec", "DaemonSet": "spec", "StatefulSet": "spec", "CronJob": "spec",
            "ConfigMap": "data", "Secret": "data"}


#: While set, restored Deployments roll all their pods at once (see ``surging``).
_SURGING: contextvars.ContextVar[bool] = contextvars.ContextVar("surging", default=False)
SURGE_STRATEGY = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}}
#: What the API server stores for a Deployment that names no strategy.
DEFAULT_STRATEGY = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}


def as_sent(doc: dict[str, Any]) -> dict[str, Any]:
    """The baseline object as a restore sends it: while surging, a Deployment with the surge strategy."""
    if not _SURGING.get() or doc["kind"] != "Deployment":
        return doc
    sent = copy.deepcopy(doc)
    sent["spec"]["strategy"] = SURGE_STRATEGY
    return sent


@contextlib.contextmanager
def surging(ctx: DrillContext) -> Iterator[None]:
    """Restore Deployments with every replacement pod started at once, then give back their strategy.

    Why: the baseline's ``maxSurge: 1`` rolls ``fraud-model`` one pod after the
    other (each about 1.3 s: start, model load, the first passing readiness
    probe), which is right for the candidate's rollouts but makes ``reset`` wait
    for every pod in turn. The strategy is not part of the pod template, so
    putting it back afterwards starts no new rollout; the candidate of the next
    scenario sees the baseline's Deployment exactly.
    """
    token = _SURGING.set(True)
    try:
        yield
    finally:
        _SURGING.reset(token)
        from concurrent.futures import ThreadPoolExecutor

        from kubernetes.client.exceptions import ApiException

        def give_back(doc: dict[str, Any]) -> None:
            meta = doc["metadata"]
            try:
                ctx.apps.patch_namespaced_deployment(
                    meta["name"], meta["namespace"], [{"op": "replace", "path": "/spec/strategy",
                                                      "value": doc["spec"].get("strategy", DEFAULT_STRATEGY)}],
                    field_manager="mlops-drill", _content_type="application/json-patch+json")
            except ApiException as exc:
                if exc.status != 404:
                    raise

        deployments = [d for d in documents(ctx) if d["kind"] == "Deployment"]
        with ThreadPoolExecutor(max_workers=max(1, len(deployments))) as pool:
            list(pool.map(give_back, deployments))
        # A spec change is a new generation: healthy again only once the controller has seen it.
        wanted = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lagging = [o for o in ctx.list_objects("apps/v1", "Deployment")
                       if (o["metadata"].get("namespace"), o["metadata"]["name"]) in wanted
                       and (o.get("status") or {}).get("observedGeneration", 0) < o["metadata"]["generation"]]
            if not lagging:
                break
            time.sleep(0.02)


def reset_exact(ctx: DrillContext, doc: dict[str, Any]) -> None:
    """Replace a workload's spec (a ConfigMap's data) wholesale with the baseline's.

    A forced server-side apply only re-asserts the fields we own: an env var, a
    ``suspend: true`` or a ConfigMap key another manager added (a fault's edit,
    the candidate's) would stay. A JSON-patch replace drops them; an unchanged pod
    template makes no new revision.
    """
    from kubernetes.client.exceptions import ApiException

    field = REPLACED.get(doc["kind"])
    if field is None or field not in doc:
        return
    doc = as_sent(doc)
    meta = doc["metadata"]
    patchers = {"Deployment": ctx.apps.patch_namespaced_deployment, "DaemonSet": ctx.apps.patch_namespaced_daemon_set,
                "StatefulSet": ctx.apps.patch_namespaced_stateful_set,
                "CronJob": ctx.batch.patch_namespaced_cron_job, "ConfigMap": ctx.core.patch_namespaced_config_map,
                "Secret": ctx.core.patch_namespaced_secret}
    try:
        patchers[doc["kind"]](meta["name"], meta["namespace"], [{"op": "replace", "path": f"/{field}",
                                                                "value": doc[field]}],
                              field_manager="mlops-drill", _content_type="application/json-patch+json")
    except ApiException as exc:
        if exc.status != 404:  # missing: the apply that follows creates it
            raise


def restore(ctx: DrillContext, kind: str, name: str, namespace: str | None = None) -> None:
    """Put one object back exactly as the baseline has it."""
    doc = find(ctx, kind, name, namespace)
    if kind == "Job":
        # A Job's pod template is immutable: replace the Job instead.
        ctx.delete("job", name, namespace, wait=True)
    reset_exact(ctx, doc)
    if kind == "Job" or not _SURGING.get():  # a reset applies the whole baseline once its specs are back
        ctx.apply([as_sent(doc)])


def deploy(ctx: DrillContext, wait: bool = True, timeout: float = 90) -> float:
    """Apply the whole baseline and the candidate's access; returns seconds until healthy."""
    from mlops_drill.mlplatform.releases import all_images

    started = time.monotonic()
    ctx.backend.prepare_images(all_images())
    docs = documents(ctx)
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    ctx.apply(namespaces)
    ctx.apply([d for d in docs if d["kind"] != "Namespace"])
    access.ensure_candidate(ctx.api, ctx.kubeconfig, candidate_kubeconfig_path(ctx),
                            token=ctx.backend.candidate_token())
    # What the candidate may not run (privileged pods, node folders...): on the real cluster, not a seat's view.
    shared_api = getattr(ctx.backend, "shared_api", None)
    admission.ensure_policy(shared_api() if shared_api is not None else ctx.api,
                            shared_nodes=not ctx.backend.runs_processes)
    if wait:
        wait_healthy(ctx, timeout)
    return time.monotonic() - started


def candidate_kubeconfig_path(ctx: DrillContext) -> Path:
    state = getattr(ctx.backend, "state", None)
    return Path(state) / "candidate.kubeconfig"


def unhealthy(ctx: DrillContext) -> list[str]:
    """What is not yet as the baseline wants it (empty when healthy).

    Two list calls per poll (all Deployments, all DaemonSets), since reset and
    start poll this many times a second.
    """
    wanted = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
              for d in documents(ctx) if d["kind"] in ("Deployment", "DaemonSet")}
    seen: dict[tuple[str, str | None, str], dict] = {}
    for kind in ("Deployment", "DaemonSet"):
        for obj in ctx.list_objects("apps/v1", kind):
            seen[(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])] = obj
    problems = []
    for key in sorted(wanted, key=str):
        kind, namespace, name = key
        obj = seen.get(key)
        if obj is None:
            problems.append(f"{kind} {namespace}/{name} missing")
            continue
        status, spec = obj.get("status") or {}, obj.get("spec") or {}
        if kind == "Deployment":
            want = spec.get("replicas", 1)
            ok = status.get("availableReplicas", 0) >= want and status.get("updatedReplicas", 0) >= want \
                and status.get("replicas", 0) == want \
                and status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
            counts = (f"{status.get('availableReplicas', 0)}/{want} available, "
                      f"{status.get('updatedReplicas', 0)} updated, {status.get('replicas', 0)} replicas")
        else:
            want = status.get("desiredNumberScheduled", 0)
            ok = want > 0 and status.get("numberReady", 0) >= want and status.get("updatedNumberScheduled", 0) >= want
            counts = (f"{status.get('numberReady', 0)}/{want} ready, "
                      f"{status.get('updatedNumberScheduled', 0)} updated")
        if not ok:  # the counts say which way it is stuck (no pod placed, or placed and not ready)
            problems.append(f"{kind} {namespace}/{name} not ready ({counts})")
    return problems


def wait_healthy(ctx: DrillContext, timeout: float = 90) -> None:
    """Poll fast while a reset can still make its 2 s, then gently.

    A platform starting from nothing takes ten seconds or more; with tens of
    seats of a shared cluster starting, twenty polls a second each kept the API
    server and the seat gateway busy for nothing.
    """
    started = time.monotonic()
    deadline = started + timeout
    problems: list[str] = []
    while time.monotonic() < deadline:
        problems = unhealthy(ctx)
        if not problems:
            return
        time.sleep(0.05 if time.monotonic() - started < 2.5 else 0.25)
    raise DrillError(f"platform not healthy after {timeout:.0f}s: {'; '.join(problems)}")
