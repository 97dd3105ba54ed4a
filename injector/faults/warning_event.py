"""warning-event: one Warning Event about a healthy object, as a component wrote it a while ago.

A red herring for compound scenarios: clusters are full of old warnings that
have nothing to do with today's incident (a probe that failed once during a
deploy, a back-off an hour ago). The Event is a plain core/v1 Event with the
object's real reference (apiVersion, kind, name, namespace, uid), so
``kubectl get events`` and ``kubectl describe <object>`` show it exactly like
one the kubelet or a controller recorded; its name is ``<object>.<hex>`` as
the event recorder names them (the hex of the first occurrence in nanoseconds).
Nothing in it says who really wrote it.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault

#: kubectl's names of the kinds an Event may be about -> (apiVersion, kind, namespaced).
KINDS: dict[str, tuple[str, str, bool]] = {
    **dict.fromkeys(("deployment", "deployments", "deploy"), ("apps/v1", "Deployment", True)),
    **dict.fromkeys(("pod", "pods", "po"), ("v1", "Pod", True)),
    **dict.fromkeys(("node", "nodes", "no"), ("v1", "Node", False)),
    **dict.fromkeys(("cronjob", "cronjobs", "cj"), ("batch/v1", "CronJob", True)),
    **dict.fromkeys(("configmap", "configmaps", "cm"), ("v1", "ConfigMap", True)),
    **dict.fromkeys(("job", "jobs"), ("batch/v1", "Job", True)),
    **dict.fromkeys(("daemonset", "daemonsets", "ds"), ("apps/v1", "DaemonSet", True)),
    **dict.fromkeys(("service", "services", "svc"), ("v1", "Service", True)),
}

#: Where the API server keeps Events of cluster-scoped objects (what the kubelet does for a Node).
CLUSTER_EVENTS_NAMESPACE = "default"


class Params(BaseModel):
    """What the Event says and about what.

    ``object`` is ``kind/name`` (``deployment/fraud-model``, ``node/gpu-node-1``,
    ``cronjob/feature-refresh``, ``configmap/...``), or ``pod`` together with a
    label ``selector``: the first pod (by name) that matches. ``age_minutes``:
    how long ago the Event was last seen; the first sighting is ``count - 1``
    times ``interval_minutes`` earlier. Keep ``age_minutes`` at most 50: the
    API server deletes Events an hour after they were last written
    (``--event-ttl``, 1 h by default), so an older warning could not be listed
    on a real cluster. (This one, written now, is deleted an hour from now.)
    """

    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    object: str
    selector: str | None = Field(None, validate_default=True)
    reason: str = Field(min_length=1)
    message: str = Field(min_length=1)
    source_component: str = Field("kubelet", min_length=1)
    count: int = Field(1, ge=1)
    age_minutes: int = Field(5, ge=0, le=50)
    interval_minutes: int = Field(3, ge=1)

    @field_validator("object")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kind, slash, name = value.partition("/")
        if kind.lower() not in KINDS:
            known = ", ".join(sorted({k.lower() for _, k, _ in KINDS.values()}))
            raise ValueError(f"{value!r}: the kind must be one of {known}")
        if slash and not name:
            raise ValueError(f"{value!r}: the name is missing after '/'")
        return value

    @field_validator("selector", mode="after")
    @classmethod
    def _pod_chosen(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind, slash, _ = (info.data.get("object") or "/").partition("/")
        if not slash and not (KINDS.get(kind.lower(), ("", "", True))[1] == "Pod" and value):
            raise ValueError(f"object {info.data.get('object')!r} names no object: give kind/name, "
                             "or 'pod' with a label selector here")
        return value


class WarningEvent(Fault):
    name = "warning-event"
    Params = Params
    description = "a past Warning Event about a healthy object (a red herring)"

    @classmethod
    def seat_ready_with(cls, params: dict[str, Any]) -> bool:
        """Not about a node on a seat: a seat's gateway shows the seat only its own namespaces, so an Event about
        a cluster-scoped object (kept in the shared ``default``) could never reach its candidate."""
        kind = KINDS.get(str(params.get("object", "")).partition("/")[0].lower())
        return kind is None or kind[2]

    @property
    def _kind(self) -> tuple[str, str, bool]:
        return KINDS[self.params.object.partition("/")[0].lower()]

    @property
    def _event_namespace(self) -> str:
        return self.params.namespace if self._kind[2] else CLUSTER_EVENTS_NAMESPACE

    def _target(self, ctx: DrillContext) -> dict[str, Any]:
        """The object the Event is about, as the API has it now."""
        p = self.params
        api_version, kind, namespaced = self._kind
        _, _, name = p.object.partition("/")
        if not name:  # pod + selector
            pods = sorted((x for x in ctx.list_objects("v1", "Pod", p.namespace, p.selector)
                           if not x["metadata"].get("deletionTimestamp")), key=lambda x: x["metadata"]["name"])
            if not pods:
                raise DrillError(f"fault {self.name}: no pod matches {p.selector!r} in namespace {p.namespace}")
            return pods[0]
        obj = ctx.get(kind.lower(), name, p.namespace if namespaced else None)
        if obj is None:
            where = f" in namespace {p.namespace}" if namespaced else ""
            raise DrillError(f"fault {self.name}: {kind.lower()} {name} not found{where}")
        return obj

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        target = self._target(ctx)
        api_version, kind, namespaced = self._kind
        meta = target["metadata"]
        host = meta["name"] if kind == "Node" else (target.get("spec") or {}).get("nodeName")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        # Never older than the object itself: "40m (x2 over 43m)" on a pod made five minutes ago is a tell.
        born = _parse_time(meta.get("creationTimestamp")) or now - timedelta(days=1)
        room = max(timedelta(0), now - born - timedelta(seconds=30))
        span = timedelta(minutes=p.interval_minutes * (p.count - 1))
        age = min(timedelta(minutes=p.age_minutes), max(timedelta(0), room - span))
        last = now - age
        first = max(last - span, born)
        # The event recorder names an Event after its object and the first sighting's UnixNano, in hex.
        nanos = int(first.timestamp()) * 10**9 + random.randrange(10**9)
        involved = {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"],
                    "resourceVersion": meta.get("resourceVersion", "")}
        if namespaced:
            involved["namespace"] = meta["namespace"]
        source = {"component": p.source_component, **({"host": host} if host else {})}
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{nanos:016x}", "namespace": self._event_namespace},
            "involvedObject": involved, "reason": p.reason, "message": p.message, "type": "Warning",
            "source": source, "reportingComponent": p.source_component, "reportingInstance": host or "",
            "firstTimestamp": _iso(first), "lastTimestamp": _iso(last), "count": p.count,
        }
        ctx.core.create_namespaced_event(self._event_namespace, body, field_manager=p.source_component)

    def _ours(self, ctx: DrillContext) -> list[Any]:
        """Events in the namespace that are this one: same object kind (and name), reason, message and source.

        Matched by content, not by a name kept from ``apply``: ``reset`` reverts in
        a fresh process. A real event that says exactly the same goes too, which a
        return to the baseline can only welcome.
        """
        p = self.params
        _, kind, _ = self._kind
        name = p.object.partition("/")[2]
        selector = f"involvedObject.kind={kind},reason={p.reason}" + (f",involvedObject.name={name}" if name else "")
        try:
            events = ctx.core.list_namespaced_event(self._event_namespace, field_selector=selector).items
        except Exception:  # noqa: BLE001 - a reason the field selector cannot carry (a comma): filter here
            events = ctx.core.list_namespaced_event(self._event_namespace).items
        return [e for e in events if e.involved_object.kind == kind and e.reason == p.reason
                and e.message == p.message and (not name or e.involved_object.name == name)
                and e.type == "Warning" and (e.source.component if e.source else None) == p.source_component]

    def verify_applied(self, ctx: DrillContext) -> bool:
        return bool(self._ours(ctx))

    def revert(self, ctx: DrillContext) -> None:
        from kubernetes.client.exceptions import ApiException

        for event in self._ours(ctx):
            try:
                ctx.core.delete_namespaced_event(event.metadata.name, self._event_namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    """An API timestamp (``2026-12-05T03:21:04Z``) as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
