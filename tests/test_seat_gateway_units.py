"""The seat gateway's rewriting rules, without a cluster.

The end-to-end behaviour (real kubectl through a seat's endpoint, isolation
between seats) is in test_drills.py; here each rule is pinned on the exact
requests and answers kubectl sends and gets.
"""
from __future__ import annotations

import json

import pytest

from mlops_drill.cluster.seats.gateway import (Refused, Route, _event_kept, rewrite_body, rewrite_path,
                                               rewrite_query, rewrite_response)
from mlops_drill.cluster.seats.names import seat_prefix, split

ROUTE = Route(prefix=seat_prefix("ab12cd", 2), admin_token="a", candidate_token="c")
P = ROUTE.prefix
OTHER = seat_prefix("ab12cd", 3)


def test_prefix_is_recognised_and_split_back():
    assert P == "s-ab12cd-2--"
    assert split(P + "serving") == (P, "serving")
    assert split("serving") == ("", "serving")
    assert split("s-x--serving") == ("", "s-x--serving")  # no seat number: not a seat's name


@pytest.mark.parametrize("path, want, listed", [
    ("/api/v1/namespaces/serving/pods", f"/api/v1/namespaces/{P}serving/pods", "pods"),
    ("/api/v1/namespaces/serving/pods/fraud-model-1/log", f"/api/v1/namespaces/{P}serving/pods/fraud-model-1/log",
     None),
    ("/apis/apps/v1/namespaces/serving/deployments/fraud-model",
     f"/apis/apps/v1/namespaces/{P}serving/deployments/fraud-model", None),
    ("/api/v1/namespaces/serving", f"/api/v1/namespaces/{P}serving", None),
    ("/api/v1/namespaces", "/api/v1/namespaces", "namespaces"),
    ("/api/v1/pods", "/api/v1/pods", "pods"),
    ("/api/v1/nodes/gpu-node-0", f"/api/v1/nodes/{P}gpu-node-0", None),
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles/oncall:view",
     f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{P}oncall:view", None),
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles/view", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view",
     None),
    ("/apis", "/apis", None),
    ("/version", "/version", None),
])
def test_paths_name_the_seats_objects(path, want, listed):
    rewritten, resource, _ = rewrite_path(path, ROUTE)
    assert (rewritten, resource) == (want, listed)


def test_another_seats_names_are_refused_not_rewritten():
    with pytest.raises(Refused) as namespace:
        rewrite_path(f"/api/v1/namespaces/{OTHER}serving/pods", ROUTE)
    assert namespace.value.status == 403
    with pytest.raises(Refused) as node:
        rewrite_path(f"/api/v1/nodes/{OTHER}gpu-node-0", ROUTE)
    assert node.value.status == 404
    with pytest.raises(Refused):
        rewrite_body({"metadata": {"name": "x", "namespace": OTHER + "serving"}}, ROUTE)


def test_field_selectors_follow_the_names():
    query = rewrite_query("fieldSelector=spec.nodeName%3Dgpu-node-0%2Cstatus.phase%21%3DFailed&limit=500",
                          ROUTE, "pods")
    assert f"spec.nodeName%3D{P}gpu-node-0" in query and "status.phase%21%3DFailed" in query
    assert "limit=500" in query
    assert f"involvedObject.namespace%3D{P}serving" in rewrite_query(
        "fieldSelector=involvedObject.namespace%3Dserving", ROUTE, "events")


def test_bodies_name_namespaces_nodes_and_the_seats_cluster_roles():
    binding = rewrite_body({"kind": "ClusterRoleBinding", "metadata": {"name": "oncall:view"},
                            "roleRef": {"kind": "ClusterRole", "name": "oncall:view"},
                            "subjects": [{"kind": "ServiceAccount", "name": "oncall-engineer",
                                          "namespace": "kube-system"}]}, ROUTE)
    assert binding["metadata"]["name"] == P + "oncall:view"
    assert binding["roleRef"]["name"] == P + "oncall:view"
    assert binding["subjects"][0]["namespace"] == P + "kube-system"
    assert rewrite_body({"roleRef": {"kind": "ClusterRole", "name": "view"}}, ROUTE)["roleRef"]["name"] == "view"
    pod = rewrite_body({"kind": "Pod", "metadata": {"name": "debug", "namespace": "serving"},
                        "spec": {"nodeName": "gpu-node-1"}}, ROUTE)
    assert (pod["metadata"]["namespace"], pod["spec"]["nodeName"]) == (P + "serving", P + "gpu-node-1")


def test_a_seats_namespaces_and_daemonsets_select_its_own_nodes():
    ns = rewrite_body({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "serving"}}, ROUTE)
    assert ns["metadata"]["name"] == P + "serving"
    assert ns["metadata"]["annotations"]["scheduler.alpha.kubernetes.io/node-selector"] == \
        "mlops-drill.dev/seat=s-ab12cd-2"
    ds = rewrite_body({"kind": "DaemonSet", "metadata": {"name": "plugin", "namespace": "gpu-operator"},
                       "spec": {"template": {"spec": {"nodeSelector": {"pool": "gpu"}}}}}, ROUTE)
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu", "mlops-drill.dev/seat": "s-ab12cd-2"}


def _pods(*namespaces: str) -> bytes:
    return json.dumps({"kind": "PodList", "items": [
        {"metadata": {"name": f"p{i}", "namespace": ns},
         "spec": {"nodeName": P + "gpu-node-0", "nodeSelector": {"pool": "gpu", "mlops-drill.dev/seat": "s-ab12cd-2"}}}
        for i, ns in enumerate(namespaces)]}).encode()


def test_lists_keep_only_the_seats_objects_by_the_products_names():
    body = json.loads(rewrite_response(_pods(P + "serving", OTHER + "serving", "kube-system", P + "features"),
                                       ROUTE, "pods", listing=True))
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in body["items"]] == \
        [("serving", "p0"), ("features", "p3")]
    assert body["items"][0]["spec"] == {"nodeName": "gpu-node-0", "nodeSelector": {"pool": "gpu"}}


def test_nodes_and_namespaces_are_the_seats_own_only_cluster_roles_keep_the_shared_ones():
    nodes = {"kind": "NodeList", "items": [{"metadata": {"name": n}} for n in
                                           ("gpu-node-0", P + "gpu-node-0", OTHER + "gpu-node-0")]}
    assert [n["metadata"]["name"] for n in json.loads(rewrite_response(
        json.dumps(nodes).encode(), ROUTE, "nodes", True))["items"]] == ["gpu-node-0"]
    roles = {"kind": "ClusterRoleList", "items": [{"metadata": {"name": n}} for n in
                                                  ("view", P + "oncall:view", OTHER + "oncall:view")]}
    assert [n["metadata"]["name"] for n in json.loads(rewrite_response(
        json.dumps(roles).encode(), ROUTE, "clusterroles", True))["items"]] == ["view", "oncall:view"]


def test_tables_and_watch_events_are_filtered_too():
    table = {"kind": "Table", "columnDefinitions": [], "rows": [
        {"cells": ["a", "Running"], "object": {"metadata": {"name": "a", "namespace": P + "serving"}}},
        {"cells": ["b", "Running"], "object": {"metadata": {"name": "b", "namespace": OTHER + "serving"}}}]}
    rows = json.loads(rewrite_response(json.dumps(table).encode(), ROUTE, "pods", True))["rows"]
    assert [r["cells"][0] for r in rows] == ["a"]
    assert _event_kept({"type": "ADDED", "object": {"metadata": {"namespace": P + "serving"}}}, ROUTE, "pods")
    assert not _event_kept({"type": "ADDED", "object": {"metadata": {"namespace": OTHER + "x"}}}, ROUTE, "pods")
    assert _event_kept({"type": "ERROR", "object": {"kind": "Status"}}, ROUTE, "pods")


def test_plain_text_and_errors_lose_the_prefix():
    assert rewrite_response(f"pod {P}serving/x started on {P}gpu-node-0".encode(), ROUTE, None, False) == \
        b"pod serving/x started on gpu-node-0"
    status = json.dumps({"kind": "Status", "message": f'User "system:serviceaccount:{P}kube-system:oncall-engineer" '
                                                      f'cannot list configmaps in "{P}mlops-drill-system"'})
    out = json.loads(rewrite_response(status.encode(), ROUTE, "configmaps", True))
    assert out["message"] == ('User "system:serviceaccount:kube-system:oncall-engineer" cannot list configmaps '
                              'in "mlops-drill-system"')


def test_protobuf_bodies_get_the_seats_namespace_and_keep_everything_else():
    """kubectl's typed clients (create job --from, drain's evictions) send protobuf, not JSON."""
    from mlops_drill.cluster.seats import protobuf as pb

    meta = pb.encode([(1, 2, b"feature-refresh-manual"), (3, 2, b"features"), (9, 0, 300)])
    spec = pb.encode([(1, 0, 1), (6, 2, pb.encode([(2, 2, pb.encode([(10, 2, b"gpu-node-0")]))]))])
    job = pb.encode([(1, 2, meta), (2, 2, spec)])
    body = pb.MAGIC + pb.encode([(1, 2, pb.encode([(1, 2, b"batch/v1"), (2, 2, b"Job")])), (2, 2, job),
                                 (4, 2, b"")])
    out = pb.rewrite_body(body, "jobs", ROUTE.ns, lambda n: P + n)
    raw = dict((n, v) for n, _, v in pb.parse(out[len(pb.MAGIC):]))[2]
    fields = dict((n, v) for n, _, v in pb.parse(raw))
    new_meta = pb.parse(fields[1])
    assert new_meta == [(1, 2, b"feature-refresh-manual"), (3, 2, (P + "features").encode()), (9, 0, 300)]
    assert fields[2] == spec, "a Job's template is not a Pod: no node name is touched there"
    pod = pb.encode([(1, 2, pb.encode([(1, 2, b"debug"), (3, 2, b"serving")])),
                     (2, 2, pb.encode([(10, 2, b"gpu-node-0")]))])
    out = pb.rewrite_body(pb.MAGIC + pb.encode([(2, 2, pod)]), "pods", ROUTE.ns, lambda n: P + n)
    assert (P + "gpu-node-0").encode() in out and (P + "serving").encode() in out
    with pytest.raises(ValueError):
        pb.rewrite_body(b"{}", "jobs", ROUTE.ns, str)


# -- seats of an existing cluster: the cluster's own nodes, shared ---------------------------------
SHARED = Route(prefix=P, admin_token="a", candidate_token="c", shared_nodes=True)


def test_on_shared_nodes_node_names_pass_unchanged_and_namespaces_still_carry_the_seat():
    assert rewrite_path("/api/v1/nodes/gpu-node-0", SHARED)[0] == "/api/v1/nodes/gpu-node-0"
    assert rewrite_path("/api/v1/namespaces/serving/pods", SHARED)[0] == f"/api/v1/namespaces/{P}serving/pods"
    assert rewrite_query("fieldSelector=spec.nodeName%3Dgpu-node-1", SHARED, "pods") == \
        "fieldSelector=spec.nodeName%3Dgpu-node-1"
    pod = rewrite_body({"kind": "Pod", "metadata": {"name": "p", "namespace": "serving"},
                        "spec": {"nodeName": "gpu-node-1"}}, SHARED)
    assert pod["metadata"]["namespace"] == P + "serving" and pod["spec"]["nodeName"] == "gpu-node-1"


def test_on_shared_nodes_no_seat_placement_is_added():
    ds = rewrite_body({"kind": "DaemonSet", "metadata": {"name": "d", "namespace": "gpu-operator"},
                       "spec": {"template": {"spec": {"nodeSelector": {"pool": "gpu"}}}}}, SHARED)
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    ns = rewrite_body({"kind": "Namespace", "metadata": {"name": "serving"}}, SHARED)
    assert ns["metadata"] == {"name": P + "serving"}


def test_on_shared_nodes_a_seat_lists_the_clusters_nodes_but_no_seats_nodes():
    nodes = {"kind": "NodeList", "items": [{"metadata": {"name": n}} for n in
                                           ("gpu-node-0", "cpu-node-1", OTHER + "gpu-node-0")]}
    listed = json.loads(rewrite_response(json.dumps(nodes).encode(), SHARED, "nodes", listing=True))
    assert [i["metadata"]["name"] for i in listed["items"]] == ["gpu-node-0", "cpu-node-1"]
    mine = json.loads(rewrite_response(json.dumps(nodes).encode(), ROUTE, "nodes", listing=True))
    assert mine["items"] == []  # a seat with nodes of its own sees only those


def test_faults_that_act_on_a_node_are_refused_where_seats_share_nodes():
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector.fault import seat_blockers
    from mlops_drill.scenarios.loader import load_catalogue

    catalogue = load_catalogue()
    assert seat_blockers(catalogue["training-no-checkpoint"].faults) == []
    assert seat_blockers(catalogue["training-no-checkpoint"].faults, shared_nodes=True) == ["disable-checkpointing"]
    assert seat_blockers(catalogue["gpu-insufficient-capacity"].faults, shared_nodes=True) == ["occupy-gpus"]
    for namespaced in ("stale-feature-cache", "bad-canary", "gpu-missing-toleration", "wrong-model-version"):
        assert seat_blockers(catalogue[namespaced].faults, shared_nodes=True) == [], namespaced


@pytest.mark.parametrize("route", [ROUTE, SHARED], ids=["own-nodes", "shared-nodes"])
@pytest.mark.parametrize("path", ["/api/v1/%6eodes/gpu-node-0", f"/api/v1/%6eamespaces/{OTHER}serving/pods/x",
                                  "/api/v1/namespaces/serving/pods/fraud%2Dmodel"])
def test_a_percent_encoded_path_is_refused_before_any_rule_reads_it(route, path):
    """The API server decodes a path before it routes and authorizes it: compared raw, it would slip past."""
    with pytest.raises(Refused) as refused:
        rewrite_path(path, route)
    assert refused.value.status == 400


@pytest.mark.parametrize("path", ["/api/v1/watch/pods", f"/api/v1/watch/namespaces/{OTHER}serving/pods",
                                  "/apis/apps/v1/watch/deployments"])
def test_the_deprecated_watch_paths_are_refused(path):
    with pytest.raises(Refused) as refused:
        rewrite_path(path, ROUTE)
    assert refused.value.status == 400 and "watch=true" in str(refused.value)


def test_on_shared_nodes_a_seats_node_folder_carries_its_prefix_and_answers_show_the_platforms():
    job = {"kind": "Job", "metadata": {"name": "fraud-train", "namespace": "training"},
           "spec": {"template": {"spec": {"volumes": [
               {"name": "train-state", "hostPath": {"path": "/var/lib/mlops-drill/fraud-train",
                                                    "type": "DirectoryOrCreate"}},
               {"name": "other", "hostPath": {"path": "/etc"}}]}}}}
    sent = rewrite_body(job, SHARED)["spec"]["template"]["spec"]["volumes"]
    assert sent[0]["hostPath"] == {"path": f"/var/lib/mlops-drill/{P}fraud-train", "type": "DirectoryOrCreate"}
    assert sent[1]["hostPath"] == {"path": "/etc"}  # not the platform's: left for admission to refuse
    shown = json.loads(rewrite_response(json.dumps({"kind": "Job", "spec": {"template": {"spec": {
        "volumes": sent}}}}).encode(), SHARED, None, listing=False))
    assert shown["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == "/var/lib/mlops-drill/fraud-train"
    # A seat with nodes of its own keeps the path: the process kubelet gives each seat its folder.
    own = rewrite_body(job, ROUTE)["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"]
    assert own == "/var/lib/mlops-drill/fraud-train"


def test_on_shared_nodes_a_candidate_may_not_make_a_node_folder_anew():
    from mlops_drill.cluster.admission import policy_objects

    def allowed(objs):
        return next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"
                    and o["metadata"]["name"] == "mlops-drill-candidate-workloads")["spec"]["variables"]

    own = {v["name"]: v["expression"] for v in allowed(policy_objects())}["allowedHostPaths"]
    shared = {v["name"]: v["expression"] for v in allowed(policy_objects(shared_nodes=True))}["allowedHostPaths"]
    assert "contains('--')" not in own and "filter(p, !request.namespace.contains('--'))" in shared
