"""The red-herring faults: true but harmless facts, seen by the candidate exactly as real ones.

Each is applied on the session's platform, looked at with the candidate's
kubectl (events with their age and object, a ConfigMap nobody reads, a pod
with one restart that is Ready again), checked for tell-tale words, and
reverted (from a fresh instance, as ``reset`` in another process does it,
and twice) back to the healthy baseline.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime

import pytest
from answer_markers import candidate_view, markers_in
from polling import wait

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.fault import make

#: Words that would tell the candidate an object was planted (beyond the shared MARKERS).
PLANTED = re.compile(r"(?<![a-z])(fault\w*|inject\w*|herring\w*|drill\w*|seed|variants?|planted|"
                     r"warning-event|unused-configmap|restart-container-once)(?![a-z])")


def _planted_words(text: str) -> list[str]:
    return sorted(set(PLANTED.findall(text.lower())))


# ---------------------------------------------------------------- bad params (no cluster)

@pytest.mark.parametrize("name, params, field", [
    ("warning-event", {"object": "deployment/fraud-model", "reason": "BackOff", "message": "m", "count": 0},
     "params.count"),
    ("warning-event", {"object": "deployment/fraud-model", "reason": "BackOff", "message": "m", "age_minutes": 90},
     "params.age_minutes"),
    ("warning-event", {"object": "widget/x", "reason": "BackOff", "message": "m"}, "params.object"),
    ("warning-event", {"object": "pod", "reason": "BackOff", "message": "m"}, "params.selector"),
    ("unused-configmap", {"name": "Old_Config", "data": {"a": "b"}}, "params.name"),
    ("unused-configmap", {"name": "old-config"}, "params.data"),
    ("restart-container-once", {"signal": "SIGHUP"}, "params.signal"),
    ("restart-container-once", {"workload": "cronjob/feature-refresh"}, "params.workload"),
])
def test_bad_params_are_one_line_naming_the_field(name, params, field):
    with pytest.raises(DrillError) as err:
        make(name, params)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"fault {name}: {field}:"), message


# ---------------------------------------------------------------- warning-event

EVENTS = {
    "deployment": dict(namespace="serving", object="deployment/fraud-model", reason="ProgressDeadlineExceeded",
                       message='ReplicaSet "fraud-model-5f7c9d8b6d" has timed out progressing.',
                       source_component="deployment-controller", count=2, age_minutes=20),
    "pod": dict(namespace="serving", object="pod", selector="app=fraud-model", reason="Unhealthy",
                message='Liveness probe failed: Get "http://10.244.3.17:8080/healthz": context deadline exceeded '
                        "(Client.Timeout exceeded while awaiting headers)",
                source_component="kubelet", count=3, age_minutes=12),
    "node": dict(namespace="serving", object="node/gpu-node-1", reason="SystemOOM",
                 message="System OOM encountered, victim process: python, pid: 48213",
                 source_component="kubelet", age_minutes=30),
    "cronjob": dict(namespace="features", object="cronjob/feature-refresh", reason="FailedNeedsStart",
                    message="Cannot determine if job needs to be started: too many missed start times (> 100)",
                    source_component="cronjob-controller", age_minutes=41),
    "configmap": dict(namespace="features", object="configmap/upstream-schema", reason="FailedToUpdateEndpoint",
                      message="Failed to update endpoint features/upstream-schema: the object has been modified",
                      source_component="endpoint-controller", age_minutes=7),
}


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _event_lines(candidate, namespace: str, reason: str, message: str) -> list[str]:
    return [line for line in candidate("get", "events", "-n", namespace).stdout.splitlines()
            if reason in line and message in line]


@pytest.mark.cluster
@pytest.mark.parametrize("case", sorted(EVENTS))
def test_warning_event_reads_like_a_real_one_and_goes_away(platform, candidate, case):
    params = EVENTS[case]
    fault = make("warning-event", params)
    kind, _, name = params["object"].partition("/")
    if not name:  # the first pod of the selector, by name
        name = sorted(p["metadata"]["name"] for p in platform.list_objects("v1", "Pod", "serving", params["selector"])
                      if not p["metadata"].get("deletionTimestamp"))[0]
    events_ns = "default" if kind == "node" else params["namespace"]
    fault.apply(platform)
    try:
        wait(lambda: fault.verify_applied(platform), 30, "the event to be listed")
        lines = _event_lines(candidate, events_ns, params["reason"], params["message"])
        assert len(lines) == 1, lines
        # LAST SEEN, TYPE, REASON, OBJECT, MESSAGE
        assert re.match(rf"^\S+\s+Warning\s+{params['reason']}\s+{kind}/{name}\s+", lines[0]), lines
        print(f"\n[{case}] kubectl get events -n {events_ns}: {lines[0]}")

        describe = candidate("describe", kind, name, *([] if kind == "node" else ["-n", params["namespace"]])).stdout
        shown = [line for line in describe.splitlines() if params["reason"] in line and params["message"] in line]
        assert shown and params["source_component"] in shown[0], describe[-1500:]
        if params.get("count", 1) > 1:
            assert f"(x{params['count']} over" in shown[0], shown
        print(f"[{case}] kubectl describe {kind} {name}: {shown[0].strip()}")

        raw = candidate("get", "events", "-n", events_ns, "-o", "json").stdout
        ours = [e for e in json.loads(raw)["items"] if e["message"] == params["message"]]
        real = platform.get(kind, name, None if kind == "node" else params["namespace"])
        assert ours[0]["involvedObject"]["uid"] == real["metadata"]["uid"]
        # Dated back by age_minutes, but never before its object existed (a warning older than its pod is a tell)
        born, first, last = (_when(t) for t in (real["metadata"]["creationTimestamp"], ours[0]["firstTimestamp"],
                                                ours[0]["lastTimestamp"]))
        now = time.time()
        assert born <= first <= last <= now
        assert abs((now - last) - min(params["age_minutes"] * 60.0, now - born - 30 - (last - first))) < 90
        assert re.fullmatch(rf"{re.escape(name)}\.[0-9a-f]{{16}}", ours[0]["metadata"]["name"]), ours[0]["metadata"]
        assert not _planted_words(json.dumps(ours[0])), ours[0]
        assert not markers_in(candidate_view(candidate))
    finally:
        make("warning-event", params).revert(platform)  # a fresh instance: nothing kept from apply
    assert not _event_lines(candidate, events_ns, params["reason"], params["message"])
    assert not fault.verify_applied(platform)
    fault.revert(platform)  # twice: harmless
    assert baseline.unhealthy(platform) == []


# ---------------------------------------------------------------- unused-configmap

LEFT_BEHIND = {"namespace": "serving", "name": "fraud-model-thresholds-v2",
               "data": {"THRESHOLD": "0.62", "MODEL_URI": "models:/fraud-model/2"}, "labels": {"app": "fraud-model"}}


@pytest.mark.cluster
def test_unused_configmap_is_listed_read_by_nobody_and_removed(platform, candidate):
    fault = make("unused-configmap", LEFT_BEHIND)
    fault.apply(platform)
    try:
        wait(lambda: fault.verify_applied(platform), 30, "the configmap to exist")
        listed = [line for line in candidate("get", "cm", "-n", "serving").stdout.splitlines()
                  if line.startswith(LEFT_BEHIND["name"] + " ")]
        assert listed and listed[0].split()[1] == "2", listed  # NAME DATA AGE
        print(f"\nkubectl get cm -n serving: {listed[0]}")
        shown = json.loads(candidate("get", "cm", LEFT_BEHIND["name"], "-n", "serving", "-o", "json").stdout)
        assert shown["data"] == LEFT_BEHIND["data"] and shown["metadata"]["labels"] == LEFT_BEHIND["labels"]
        assert not _planted_words(json.dumps(shown["metadata"])), shown["metadata"]
        pods_json = candidate("get", "pods,deployments,cronjobs", "-A", "-o", "json").stdout
        assert LEFT_BEHIND["name"] not in pods_json, "a workload references the left-behind configmap"
        assert not markers_in(candidate_view(candidate))
        with pytest.raises(DrillError, match="already exists"):
            make("unused-configmap", LEFT_BEHIND).apply(platform)  # never overwrites
    finally:
        make("unused-configmap", LEFT_BEHIND).revert(platform)
    assert candidate("get", "cm", LEFT_BEHIND["name"], "-n", "serving", check=False).returncode != 0
    fault.revert(platform)
    assert baseline.unhealthy(platform) == []


@pytest.mark.cluster
def test_unused_configmap_never_touches_a_baseline_configmap(platform):
    before = platform.get("configmap", "upstream-schema", "features")
    clash = make("unused-configmap", {"namespace": "features", "name": "upstream-schema", "data": {"a": "b"}})
    with pytest.raises(DrillError) as err:
        clash.apply(platform)
    assert "\n" not in str(err.value) and "upstream-schema already exists" in str(err.value)
    clash.revert(platform)  # reset reverts faults that never applied: the baseline's stays
    after = platform.get("configmap", "upstream-schema", "features")
    assert after is not None and after["data"] == before["data"]


# ---------------------------------------------------------------- restart-container-once

def _registry_rows(candidate) -> list[list[str]]:
    lines = candidate("get", "pods", "-n", "registry", "-l", "app=model-registry").stdout.splitlines()
    return [line.split() for line in lines[1:]]  # NAME READY STATUS RESTARTS [(AGE ago)] AGE


@pytest.mark.cluster
@pytest.mark.parametrize("sig, last_reason, exit_code",
                         [("SIGTERM", "Error", "143"), ("SIGKILL", "OOMKilled", "137")])
def test_restart_container_once_shows_one_restart_on_a_ready_pod(platform, candidate, sig, last_reason, exit_code):
    params = {"namespace": "registry", "workload": "deployment/model-registry", "signal": sig}
    fault = make("restart-container-once", params)
    assert all(row[3] == "0" for row in _registry_rows(candidate))
    fault.apply(platform)
    try:
        wait(lambda: fault.verify_applied(platform), 60, "the registry pod restarted and Ready again")
        rows = _registry_rows(candidate)
        restarted = [r for r in rows if r[3] == "1"]
        assert restarted and restarted[0][1] == "1/1" and restarted[0][2] == "Running", rows
        print(f"\n[{sig}] kubectl get pods -n registry: {' '.join(restarted[0])}")
        describe = candidate("describe", "pod", restarted[0][0], "-n", "registry").stdout
        last = describe[describe.index("Last State:"):].splitlines()[:4]
        assert "Terminated" in last[0] and last_reason in last[1] and exit_code in last[2], last
        print(f"[{sig}] kubectl describe pod: " + " | ".join(x.strip() for x in last[:3]))
        assert baseline.unhealthy(platform) == []  # healthy now: the restart is all there is
        assert not markers_in(candidate_view(candidate))
    finally:
        again = make("restart-container-once", params)  # a fresh instance, as reset makes it
        again.revert(platform)
        again.settle(platform)
    rows = _registry_rows(candidate)
    assert len(rows) == 1 and rows[0][1] == "1/1" and rows[0][3] == "0", rows
    fault.revert(platform)
    fault.settle(platform)
    assert _registry_rows(candidate)[0][0] == rows[0][0], "a second revert replaced a healthy pod"
    assert baseline.unhealthy(platform) == []
