"""On kind a pod is a real container: the escape attempts of tests/test_pod_sandbox.py, where they apply.

Each attempt is typed into a real `kubectl exec` with the candidate's kubeconfig
(``baseline.candidate_kubeconfig_path``) into a platform pod of the kind
cluster: the answer key, the engine's and kind's state on this machine, the
control plane's etcd and the kubelets' API, other processes, and the
container's own limits. The attempts that hold on every backend come from
tests/escape_attempts.py; the targets are kind's own (node IPs, kubelet port
10250, the node's kubeadm files). What makes them fail is the real container
runtime: the platform image (no answer key in it, a non-root user), containerd
and runc (mount, PID and network namespaces), the kubelet's default seccomp
profile (``seccompDefault``) and Kubernetes' own authentication.

Left out on kind, and why:

* ``zygote-socket``, ``kwok-kubelet-port-plain``, ``kwok-kubelet-port-exec``,
  ``kubelet-front-without-client-cert``, ``signal-node-agent``, ``read-host-volumes``,
  ``read-cluster-ca-key`` (kwokctl's pki): parts of the embedded engine that kind
  does not have. Their counterparts here are the real kubelet's ports, the
  node containers' processes and the node's ``/etc/kubernetes/pki``.
* ``etcdctl-on-loopback`` and the ``curl-*`` attempts as written there: the
  platform image has neither etcdctl nor curl. The same requests are made with
  the image's Python (``http_attempt``), which is there.
* ``proc-1-root``, ``ptrace-pid-1``, ``signal-pid-1``, ``read-instructor-token-from-environ``
  as written there: in a kind pod PID 1 is the container's own application,
  running as the same user as `kubectl exec`, not a root pause process. Reading
  its root or environment, tracing or signalling it is the container acting on
  itself (and the kernel ignores SIGKILL to a PID namespace's init from inside).
  ``engine-secrets-in-environ`` checks what matters instead: no engine variable
  in any process the pod can see.
"""
from __future__ import annotations

import json
import subprocess

import pytest
from escape_attempts import (NOT_THERE, RESET, Escape, answer_key, check_escape, container_runtime_socket,
                             host_home, http_attempt, image_writes, list_dir, privilege_attempts, read_file,
                             signal_absent_pid)
from kind_fixtures import candidate_kubectl

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1200)]  # the first test also waits for the platform on kind

PY = "python"  # the image's runtime, on the container's PATH
TLS_REFUSED = (r"CERTIFICATE_REQUIRED|certificate required|SSLError|SSLEOFError|EOF occurred in violation of protocol"
               r"|ConnectionResetError|RemoteDisconnected")
#: This machine's files under /root: the image has a /root too, root's own (0700), so the container's user
#: is stopped there before the rest of the path would be found missing.
UNDER_ROOT = r"No such file or directory|Permission denied"


@pytest.fixture(scope="module")
def candidate(kind_platform, kind_session):
    return candidate_kubectl(kind_platform, kind_session.kubectl_path)


@pytest.fixture(scope="module")
def fraud_pod(kind_session, kind_platform) -> dict:
    pods = kind_session.json("get", "pods", "-n", "serving", "-l", "app=fraud-model")["items"]
    running = [p for p in pods if p["status"].get("phase") == "Running"]
    assert running, "no Running fraud-model pod"
    return running[0]


def _exec_sh(candidate, namespace: str, target: str):
    def run(script: str) -> tuple[str, str]:
        result = candidate("exec", "-n", namespace, target, "--", "sh", "-c", script, check=False)
        return result.stdout, result.stdout + result.stderr
    return run


@pytest.fixture(scope="module")
def pod_sh(candidate, fraud_pod):
    return _exec_sh(candidate, "serving", fraud_pod["metadata"]["name"])


@pytest.fixture(scope="module")
def agent_api(kind_platform):
    """The real agent API over the kind platform, on this machine's loopback (an ephemeral port): its URL."""
    from mlops_drill.server import create_app, serving

    with serving(create_app(lambda: kind_platform)) as url:
        yield url


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def kind_escapes(kind_session, kind_platform, fraud_pod: dict, agent_url: str) -> list[Escape]:
    """The attempts with this kind cluster's targets filled in."""
    from urllib.parse import urlsplit

    from mlops_drill import paths
    from mlops_drill.cluster.kindbuild.steps import kind_cache
    from mlops_drill.injector import baseline

    control_plane = kind_session.json("get", "node", "cpu-node-0")
    cp_ip = next(a["address"] for a in control_plane["status"]["addresses"] if a["type"] == "InternalIP")
    host_ip = fraud_pod["status"]["hostIP"]
    node = kind_session.node_container(fraud_pod["spec"]["nodeName"])
    node_init = int(_docker("inspect", "-f", "{{.State.Pid}}", node))
    network = json.loads(_docker("network", "inspect", "kind"))[0]
    gateway = next(c["Gateway"] for c in network["IPAM"]["Config"] if "." in c.get("Gateway", ""))
    agent_port = urlsplit(agent_url).port
    sa = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    return [
        # the answer key and the engine's state on this machine
        *answer_key(),
        Escape("answer-key-in-image",
               f"{PY} -c 'import mlops_drill.scenarios.catalogue' && echo ESCAPED; "
               f"{PY} -c 'import mlops_drill.injector' && echo ESCAPED; "
               f"{PY} -c 'import mlops_drill.grader' && echo ESCAPED; "
               "find / -xdev -name 'gpu-missing-toleration*' 2>/dev/null | grep . && echo ESCAPED; true",
               r"No module named 'mlops_drill\.scenarios'[\s\S]*No module named 'mlops_drill\.injector'"
               r"[\s\S]*No module named 'mlops_drill\.grader'"),
        read_file("read-admin-kubeconfig", kind_session.kubeconfig, UNDER_ROOT),
        read_file("read-candidate-kubeconfig-file", baseline.candidate_kubeconfig_path(kind_platform), UNDER_ROOT),
        list_dir("list-engine-state", paths.state_dir()),
        list_dir("list-kind-cluster-state", kind_session.state),
        list_dir("list-kind-build-cache", kind_cache()),
        host_home(),
        Escape("engine-secrets-in-environ",
               "(env; cat /proc/[0-9]*/environ) 2>/dev/null | tr '\\0' '\\n' | grep -a -E "
               "'^(INSTRUCTOR_TOKEN|MLOPS_DRILL_STATE|MLOPS_DRILL_INSTRUCTOR[A-Z_]*|KUBECONFIG)=' "
               "&& echo ESCAPED || echo no-engine-secret", r"no-engine-secret"),
        # the node's own files: kubeadm's admin credentials, the cluster CA, the kubelet's folder
        read_file("read-node-admin-conf", "/etc/kubernetes/admin.conf"),
        read_file("read-node-ca-key", "/etc/kubernetes/pki/ca.key"),
        list_dir("list-node-kubelet-folder", "/var/lib/kubelet/pods"),
        container_runtime_socket(),
        # other processes: the node's, other pods', this machine's
        Escape("list-other-pods-processes",
               "n=$(ps -e --no-headers | wc -l); [ $n -gt 6 ] && echo ESCAPED; ps -eo args | grep -v grep "
               "| grep -E 'kubelet|containerd|etcd|kube-apiserver|dockerd|flanneld|device.?plugin' && echo ESCAPED; "
               f"ls /proc/{node_init}/", NOT_THERE),
        signal_absent_pid("signal-node-container-init", node_init),
        # the control plane and the kubelets without credentials
        http_attempt("etcd-client-port-on-control-plane", PY, f"https://{cp_ip}:2379/v3/kv/range", TLS_REFUSED,
                     method="POST", data='{"key":"AA==","range_end":"AA=="}'),
        http_attempt("etcd-peer-port-on-control-plane", PY, f"https://{cp_ip}:2380/members", TLS_REFUSED),
        http_attempt("etcd-metrics-port-on-control-plane", PY, f"http://{cp_ip}:2381/metrics", RESET),
        http_attempt("etcd-on-pod-loopback", PY, "http://127.0.0.1:2379/v3/kv/range", RESET, method="POST",
                     data='{"key":"AA==","range_end":"AA=="}'),
        http_attempt("kubelet-port-without-credentials", PY, f"https://{host_ip}:10250/pods", r"status=401"),
        http_attempt("kubelet-exec-without-credentials", PY,
                     f"https://{host_ip}:10250/run/serving/{fraud_pod['metadata']['name']}/fraud-model?cmd=id",
                     r"status=401", method="POST", data=""),
        http_attempt("kubelet-read-only-port", PY, f"http://{host_ip}:10255/pods", RESET),
        http_attempt("apiserver-anonymous-secrets", PY, "https://kubernetes.default.svc/api/v1/secrets",
                     r"status=40[13]"),
        http_attempt("service-account-token-secrets", PY, "https://kubernetes.default.svc/api/v1/secrets",
                     r"status=403|No such file", bearer_file=sa),
        # the engine's agent API, on this machine's loopback and through the kind network's gateway
        http_attempt("agent-api-on-pod-loopback", PY, f"http://127.0.0.1:{agent_port}/api/v1/scenarios", RESET),
        http_attempt("agent-api-through-host-gateway", PY, f"http://{gateway}:{agent_port}/api/v1/scenarios", RESET),
        # the container's own limits
        *image_writes(f"$({PY} -c 'import mlops_drill.mlplatform as m; print(m.__path__[0])')"),
        *privilege_attempts(PY),
    ]


#: The names, for one test each (the targets are only known once the cluster is up).
KIND_ESCAPE_NAMES = [
    "read-scenario-file", "list-scenario-catalogue", "list-repo-tests", "answer-key-in-image",
    "read-admin-kubeconfig", "read-candidate-kubeconfig-file", "list-engine-state", "list-kind-cluster-state",
    "list-kind-build-cache", "read-host-home", "engine-secrets-in-environ", "read-node-admin-conf",
    "read-node-ca-key", "list-node-kubelet-folder", "container-runtime-socket", "list-other-pods-processes",
    "signal-node-container-init", "etcd-client-port-on-control-plane", "etcd-peer-port-on-control-plane",
    "etcd-metrics-port-on-control-plane", "etcd-on-pod-loopback", "kubelet-port-without-credentials",
    "kubelet-exec-without-credentials", "kubelet-read-only-port", "apiserver-anonymous-secrets",
    "service-account-token-secrets", "agent-api-on-pod-loopback", "agent-api-through-host-gateway",
    "write-image-usr", "write-etc-passwd", "write-platform-code", "write-root-folder", "mount-tmpfs", "chroot",
    "nsenter-pid-1", "user-namespace-root", "user-namespace-then-mount", "become-root", "kernel-log",
]


@pytest.fixture(scope="module")
def attempts(kind_session, kind_platform, fraud_pod, agent_api) -> dict[str, Escape]:
    found = {e.name: e for e in kind_escapes(kind_session, kind_platform, fraud_pod, agent_api)}
    assert sorted(found) == sorted(KIND_ESCAPE_NAMES)
    return found


@pytest.mark.parametrize("name", KIND_ESCAPE_NAMES)
def test_escape_attempt_fails_in_a_kind_pod(name, attempts, pod_sh) -> None:
    check_escape(attempts[name], pod_sh)


def test_the_agent_api_answers_on_this_machine(agent_api) -> None:
    """The agent-API attempts hit a live server: from here (not a pod) it answers."""
    import urllib.error
    import urllib.request

    try:
        status = urllib.request.urlopen(f"{agent_api}/api/v1/scenarios", timeout=10).status
    except urllib.error.HTTPError as err:
        status = err.code  # alive, and asks for its token
    assert status in (200, 401), status


def test_the_container_runs_as_a_user_with_no_capabilities(pod_sh) -> None:
    """What runc gives the platform's containers: the image's non-root user, no capabilities, seccomp filtering."""
    out = pod_sh("id -u; grep -E '^(CapEff|Seccomp):' /proc/self/status")[0].split()
    assert out[0] == "1000", out
    status = dict(zip(out[1::2], out[2::2]))
    assert int(status["CapEff:"], 16) == 0 and status["Seccomp:"] == "2", status


def test_device_plugin_pod_runs_nvidia_smi_only(candidate) -> None:
    """The plugin runs as root with the kubelet's device-plugin folder: a shell there could register a plugin
    of its own and heal a GPU fault. The candidate's exec into it runs nvidia-smi only (cluster/admission.py)."""
    shell = candidate("exec", "-n", "gpu-operator", "ds/nvidia-device-plugin-daemonset", "--", "sh", "-c",
                      "echo '{}' > /etc/mlops-drill/gpu.json && echo ESCAPED", check=False)
    assert "ESCAPED" not in shell.stdout and "only nvidia-smi" in shell.stderr, shell.stdout + shell.stderr
    # nvidia-smi passes the policy; the plugin's own container requests no GPU, so the runtime mounts no
    # nvidia-smi into it (the plugin's Allocate does that for GPU containers): runc then says it is not found.
    smi = candidate("exec", "-n", "gpu-operator", "ds/nvidia-device-plugin-daemonset", "--", "nvidia-smi", "-L",
                    check=False)
    assert "only nvidia-smi" not in smi.stderr, smi.stderr
    assert (smi.returncode == 0 and "GPU 0:" in smi.stdout) or "executable file not found" in smi.stderr, smi.stderr
