"""The candidate's kubeconfig: what a platform engineer on call would have, and no more.

The candidate may read cluster-wide workload objects, nodes and events, and
act (exec, logs, port-forward, patch, roll out, delete, create Secrets) in the
platform namespaces. They cannot read ConfigMaps or Secrets outside those
namespaces, nor anything in the engine's namespace, nor KWOK's objects; that is
where fault state, expected steps and grading data live.
"""
from __future__ import annotations

from pathlib import Path

import yaml

PLATFORM_NAMESPACES = ("serving", "features", "registry", "training", "gpu-operator")
ENGINE_NAMESPACE = "mlops-drill-system"
CANDIDATE_SA = "oncall-engineer"
CANDIDATE_SA_NAMESPACE = "kube-system"

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete", "deletecollection"]

CLUSTER_READ_RULES = [
    {"apiGroups": [""], "resources": ["nodes", "namespaces", "pods", "services", "endpoints", "events",
                                      "persistentvolumes", "persistentvolumeclaims", "replicationcontrollers",
                                      "serviceaccounts", "resourcequotas", "limitranges"], "verbs": READ},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets",
                                          "controllerrevisions"], "verbs": READ},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": READ},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": READ},
    {"apiGroups": ["scheduling.k8s.io"], "resources": ["priorityclasses"], "verbs": READ},
    {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ},
    {"apiGroups": ["node.k8s.io"], "resources": ["runtimeclasses"], "verbs": READ},
    {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": READ},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": READ},
]

# Cordon, drain and label nodes: what an on-call engineer does with a broken GPU node.
NODE_RULES = [
    {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch", "update"]},
]

NAMESPACE_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims",
                                      "serviceaccounts", "endpoints", "events"], "verbs": READ + WRITE},
    {"apiGroups": [""], "resources": ["pods/log", "pods/status"], "verbs": READ},
    {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward", "pods/attach", "services/proxy"],
     "verbs": ["get", "create"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets", "statefulsets", "daemonsets",
                                          "deployments/scale", "replicasets/scale", "statefulsets/scale",
                                          "deployments/rollback", "controllerrevisions"], "verbs": READ + WRITE},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ + WRITE},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ + WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": READ + WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ + WRITE},
]


def rbac_objects(namespaces: tuple[str, ...] = PLATFORM_NAMESPACES) -> list[dict]:
    subject = {"kind": "ServiceAccount", "name": CANDIDATE_SA, "namespace": CANDIDATE_SA_NAMESPACE}
    objs: list[dict] = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": CANDIDATE_SA, "namespace": CANDIDATE_SA_NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "oncall:view"}, "rules": CLUSTER_READ_RULES + NODE_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "oncall:view"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "oncall:view"},
         "subjects": [subject]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "oncall:operate"}, "rules": NAMESPACE_RULES},
    ]
    for ns in namespaces:
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                     "metadata": {"name": "oncall:operate", "namespace": ns},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                 "name": "oncall:operate"},
                     "subjects": [subject]})
    return objs


def candidate_kubeconfig(admin_kubeconfig: Path, token: str, user: str = "oncall-engineer") -> str:
    """A kubeconfig with the admin's server and CA but the candidate's token (no client cert)."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "drill", "cluster": cluster["cluster"]}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "drill", "context": {"cluster": "drill", "user": user, "namespace": "serving"}}],
        "current-context": "drill",
    }
    return yaml.safe_dump(cfg, sort_keys=False)


def ensure_candidate(api_client, admin_kubeconfig: Path, out: Path, hours: int = 24,
                     token: str | None = None) -> Path:
    """Create the RBAC objects and write the candidate's kubeconfig to ``out``.

    ``token``: what the kubeconfig carries instead of a minted ServiceAccount
    token (a seat's gateway token, which the gateway turns into this identity).
    """
    from kubernetes import client, utils
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    for ns in PLATFORM_NAMESPACES:
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except ApiException as exc:
            if exc.status != 409:
                raise
    rbac = client.RbacAuthorizationV1Api(api_client)
    for obj in rbac_objects():
        try:
            utils.create_from_dict(api_client, obj)
        except utils.FailToCreateError as exc:
            if not all(getattr(e, "status", None) == 409 for e in exc.api_exceptions):
                raise
            if obj["kind"] == "ClusterRole":  # rules may have grown since this cluster was set up
                rbac.replace_cluster_role(obj["metadata"]["name"], obj)
    token = token or core.create_namespaced_service_account_token(
        CANDIDATE_SA, CANDIDATE_SA_NAMESPACE,
        {"spec": {"audiences": [], "expirationSeconds": hours * 3600}}).status.token
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(candidate_kubeconfig(admin_kubeconfig, token))
    out.chmod(0o600)
    return out
