"""What the candidate may not ask the cluster to run: a ValidatingAdmissionPolicy on their requests.

Why: the candidate may create pods and edit workloads in the platform namespaces,
as an on-call engineer may. On real kubelets (kind, existing clusters) a pod that is
privileged, shares the node's namespaces, adds capabilities, drops its seccomp
profile or mounts a node folder is the node: its root, the kubelet's credentials,
then the cluster. The Pod Security "baseline" level forbids these, but it would
forbid the platform's own node folders too (the training Job's checkpoint folder,
the device plugin's kubelet socket folder), and it cannot tell who asks. So the
policy matches the candidate's identity only (solo and every seat's impersonated
ServiceAccount) and checks the pod, or the pod template of every workload kind
they may write:

* no privileged container, host network / PID / IPC, ``Unmasked`` /proc, or
  ``Unconfined`` seccomp, and only the capabilities baseline allows to be added;
* a node folder (hostPath) only where the object already had that folder (a
  rollout restart of the device plugin's DaemonSet), or the training Job's own
  checkpoint folder when it is created again.

And ``kubectl exec`` into the device plugin's pods runs ``nvidia-smi`` only: that
container is root with the kubelet's device-plugin folder, where a shell could
register a plugin of its own. Failure policy Fail: a broken policy refuses rather
than lets through.
"""
from __future__ import annotations

from typing import Any

from mlops_drill.cluster.access import CANDIDATE_SA

POLICY = "mlops-drill-candidate-workloads"
EXEC_POLICY = "mlops-drill-candidate-exec"
#: Node folders the platform's own workloads use that the candidate may create again (the Job, replaced).
RECREATABLE_HOST_PATHS = ("/var/lib/mlops-drill/fraud-train",)
#: Capabilities the Pod Security baseline level allows a container to add.
BASELINE_CAPABILITIES = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
#: The device plugin's pods (their names come from its DaemonSet).
DEVICE_PLUGIN_POD_PREFIX = "nvidia-device-plugin-"

_CANDIDATE = (f"request.userInfo.username.startsWith('system:serviceaccount:') && "
              f"request.userInfo.username.endsWith(':{CANDIDATE_SA}')")


def _pod_spec(obj: str) -> str:
    """CEL: the pod spec of ``obj`` (a Pod, or a workload's template)."""
    return (f"{obj}.kind == 'Pod' ? {obj}.spec : "
            f"({obj}.kind == 'CronJob' ? {obj}.spec.jobTemplate.spec.template.spec : {obj}.spec.template.spec)")


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def _policy(name: str, rules: list[dict[str, Any]], conditions: dict[str, str],
            validations: list[tuple[str, str]], variables: dict[str, str] | None = None) -> dict[str, Any]:
    """A fail-closed ValidatingAdmissionPolicy: each validation is (CEL expression, message), denied as Forbidden."""
    spec: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": rules},
        "matchConditions": [{"name": n, "expression": e} for n, e in conditions.items()],
        "validations": [{"expression": e, "message": m, "reason": "Forbidden"} for e, m in validations],
    }
    if variables:
        spec["variables"] = [{"name": n, "expression": e} for n, e in variables.items()]
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name}, "spec": spec}


def policy_objects(shared_nodes: bool = False) -> list[dict[str, Any]]:
    """``shared_nodes``: the cluster's kubelets are real (kind, existing), so the seats on it share node
    folders; there a seat's candidate (namespace ``s-...--x``) may not create a node folder anew."""
    containers = ("variables.spec.containers + variables.spec.?initContainers.orValue([]) + "
                  "variables.spec.?ephemeralContainers.orValue([])")
    validations = [
        (f"({containers}).all(c, !c.?securityContext.?privileged.orValue(false))",
         "privileged containers are not allowed"),
        ("!variables.spec.?hostNetwork.orValue(false) && !variables.spec.?hostPID.orValue(false) && "
         "!variables.spec.?hostIPC.orValue(false)",
         "sharing the node's network, PID or IPC namespace is not allowed"),
        (f"({containers}).all(c, c.?securityContext.?capabilities.?add.orValue([]).all(a, "
         f"a in {_cel_list(BASELINE_CAPABILITIES)}))",
         "adding capabilities beyond the Pod Security baseline set is not allowed"),
        (f"variables.spec.?securityContext.?seccompProfile.?type.orValue('') != 'Unconfined' && "
         f"({containers}).all(c, c.?securityContext.?seccompProfile.?type.orValue('') != 'Unconfined')",
         "an Unconfined seccomp profile is not allowed"),
        (f"({containers}).all(c, c.?securityContext.?procMount.orValue('Default') == 'Default')",
         "an Unmasked /proc is not allowed"),
        ("variables.spec.?volumes.orValue([]).all(v, !has(v.hostPath) || v.hostPath.path in variables.allowedHostPaths)",
         "a hostPath volume is only allowed where the workload already had it"),
    ]
    old_paths = (f"(request.operation == 'UPDATE' ? ({_pod_spec('oldObject')}).?volumes.orValue([])"
                 ".filter(v, has(v.hostPath)).map(v, v.hostPath.path) : [])")
    policy = _policy(
        POLICY,
        rules=[{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["pods", "replicationcontrollers"]},
               {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"]},
               {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                "resources": ["jobs", "cronjobs"]}],
        conditions={"candidate": _CANDIDATE},
        variables={"spec": _pod_spec("object"),
                   "allowedHostPaths": f"{_recreatable(shared_nodes)} + {old_paths}"},
        validations=validations)
    exec_policy = _policy(
        EXEC_POLICY,
        rules=[{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CONNECT"],
                "resources": ["pods/exec", "pods/attach"]}],
        conditions={"candidate": _CANDIDATE,
                    "device-plugin": f"request.name.startsWith('{DEVICE_PLUGIN_POD_PREFIX}')"},
        validations=[("request.subResource == 'exec' && object.?command.orValue([]).size() > 0 && "
                      "object.command[0] in ['nvidia-smi', '/usr/local/nvidia/bin/nvidia-smi', "
                      "'/usr/bin/nvidia-smi']",
                      "only nvidia-smi may be run in the device plugin's pods (use kubectl logs for the rest)")])
    bindings = [{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                 "metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]}}
                for name in (POLICY, EXEC_POLICY)]
    return [policy, exec_policy, *bindings]


def _recreatable(shared_nodes: bool) -> str:
    paths = _cel_list(RECREATABLE_HOST_PATHS)
    if not shared_nodes:
        return paths
    # A seat's copy of the folder is the gateway's (`/var/lib/mlops-drill/s-...--fraud-train`): a Job the
    # candidate creates anew gets none, so no seat reaches the folder of another, or the single user's.
    return f"{paths}.filter(p, !request.namespace.contains('--'))"


def ensure_policy(api_client, shared_nodes: bool = False) -> None:
    """Create or replace the policies and their bindings on the cluster (the real one, never a seat's view)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.AdmissionregistrationV1Api(api_client)
    for obj in policy_objects(shared_nodes):
        name = obj["metadata"]["name"]
        create, read, replace = (
            (api.create_validating_admission_policy, api.read_validating_admission_policy,
             api.replace_validating_admission_policy) if obj["kind"] == "ValidatingAdmissionPolicy" else
            (api.create_validating_admission_policy_binding, api.read_validating_admission_policy_binding,
             api.replace_validating_admission_policy_binding))
        try:
            create(obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": read(name).metadata.resource_version}}
            replace(name, obj)
