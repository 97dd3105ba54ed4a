"""How the baseline agent reads kubectl tables and judges a revision's changes (no cluster needed)."""
from __future__ import annotations

import copy

from mlops_drill.agents.evidence import age_seconds, prometheus, table, template_changes

PODS = """\
NAMESPACE      NAME                                   READY   STATUS             RESTARTS     AGE   NODE
serving        fraud-model-65465b9874-4hv6x           0/1     CrashLoopBackOff   3 (12s ago)  76s   gpu-node-0
training       fraud-train-7r9kj                      0/1     Pending            0            1s    <none>
"""

EVENTS = """\
NAMESPACE   LAST SEEN   TYPE      REASON             OBJECT                MESSAGE
serving     2s          Warning   FailedScheduling   pod/fraud-model-x-y   0/4 nodes are available: 2 node(s) had untolerated taint(s).
"""

HEALTHY = {"spec": {
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "containers": [{"name": "fraud-model", "image": "mlops-drill/fraud-model:1.4.0",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}},
                    "env": [{"name": "MODEL_STAGE", "value": "Production"},
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                            {"name": "TRANSFORM_CONFIG",
                             "valueFrom": {"configMapKeyRef": {"name": "transforms", "key": "t.json"}}}]}]}}


def _edit(change) -> dict:
    template = copy.deepcopy(HEALTHY)
    change(template["spec"])
    return template


def test_tables_keep_cells_with_spaces_whole():
    pods = table(PODS)
    assert pods[0]["RESTARTS"] == "3 (12s ago)" and pods[0]["NODE"] == "gpu-node-0"
    assert pods[1]["STATUS"] == "Pending"
    event = table(EVENTS)[0]
    assert event["LAST SEEN"] == "2s" and event["MESSAGE"].endswith("untolerated taint(s).")


def test_ages():
    assert age_seconds("3m2s") == 182 and age_seconds("2d4h") == 2 * 86400 + 4 * 3600
    assert age_seconds("<unknown>") is None


def test_prometheus_samples():
    samples = prometheus('# HELP x\nfeature_null_rate{feature="merchant_risk"} 0.5\nup 1\n')
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("feature_null_rate", {"feature": "merchant_risk"}, 0.5), ("up", {}, 1.0)]


def test_a_change_that_breaks_is_risky_and_its_reverse_is_not():
    cases = {
        "toleration": lambda s: s.pop("tolerations"),
        "gpu": lambda s: s["containers"][0].update(resources={}),
        "literal-secret": lambda s: s["containers"][0]["env"].__setitem__(1, {"name": "DB_PASSWORD", "value": "x"}),
        "payload-logging": lambda s: s["containers"][0]["env"].append({"name": "LOG_PAYLOADS", "value": "true"}),
        "pin": lambda s: s["containers"][0]["env"].append({"name": "MODEL_VERSION", "value": "2"}),
        "image": lambda s: s["containers"][0].update(image="mlops-drill/fraud-model:1.5.0"),
        "probe": lambda s: s["containers"][0].update(readinessProbe={"httpGet": {"path": "/healthz"}}),
    }
    for kind, change in cases.items():
        broken = _edit(change)
        forward = [c for c in template_changes(HEALTHY, broken) if c.kind == kind]
        assert forward and all(c.risky for c in forward), (kind, forward)
        back = [c for c in template_changes(broken, HEALTHY) if c.risky]
        assert back == [], (kind, back)


def test_a_switch_to_a_configmap_born_with_the_incident_is_risky():
    switched = _edit(lambda s: s["containers"][0]["env"][2]["valueFrom"]["configMapKeyRef"].update(name="t-new"))
    (change,) = template_changes(HEALTHY, switched, frozenset({"t-new"}))
    assert change.kind == "configmap" and change.risky
    (back,) = template_changes(switched, HEALTHY, frozenset({"t-new"}))
    assert not back.risky
