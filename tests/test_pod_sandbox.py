"""A pod is a container: `kubectl exec` and the pod's own process see only the pod's sandbox.

Every escape attempt below is typed into a real `kubectl exec` with the
candidate's kubeconfig, into a platform pod of the session's embedded cluster,
as someone trying to reach the answer key, the engine or another pod would.
Each script prints ESCAPED only when its attempt worked, and each must fail with
the error a container would give (a path that does not exist, a read-only file
system, an operation not permitted, a reset connection). The same list runs on
a group-drill seat through the seat gateway in tests/test_drills.py.

The golden tests show what a user sees with `kubectl exec deploy/fraud-model`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
# The attempts that hold wherever a pod is a container are shared with tests/test_kind_pod_sandbox.py.
from escape_attempts import (DENIED, NOT_THERE, REPO, RESET, Escape, answer_key, check_escape,  # noqa: F401
                             container_runtime_socket, host_home, image_writes, list_dir, privilege_attempts,
                             ptrace_pid_1, read_file, signal_absent_pid)

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class HostFacts:
    """What an attacker inside a pod would aim at on this machine."""

    state: Path  # the cluster's engine state folder
    admin_kubeconfig: Path
    other_kubeconfig: Path  # the candidate's (solo) or another seat's credentials
    pki: Path  # kwokctl's CA and admin key
    etcd_port: int
    etcd_peer_port: int
    kwok_port: int
    front_port: int
    api_port: int
    agent_pid: int
    etcdctl: str


def escapes(h: HostFacts) -> list[Escape]:
    py = sys.executable  # the runtime is in the image, at the path the platform's packages expect
    return [
        read_file("read-admin-kubeconfig", h.admin_kubeconfig),
        read_file("read-other-kubeconfig", h.other_kubeconfig),
        list_dir("list-engine-state", h.state),
        *answer_key(REPO),
        read_file("read-cluster-ca-key", h.pki / "admin.key"),
        host_home(),
        Escape("read-instructor-token-from-environ",
               "(env; cat /proc/*/environ) 2>&1 | grep -a -E 'INSTRUCTOR_TOKEN|MLOPS_DRILL_STATE' && echo ESCAPED; "
               "cat /proc/1/environ", DENIED),
        Escape("list-other-pods-processes",
               "n=$(ps -e --no-headers | wc -l); [ $n -gt 6 ] && echo ESCAPED; ps -eo args | grep -v grep "
               "| grep -E 'kube-apiserver|etcd|kwok|cluster[.]agent|processpods[.]zygote' && echo ESCAPED; "
               "ls /proc/999999", NOT_THERE),
        Escape("signal-pid-1", "kill -9 1 && echo ESCAPED", DENIED),
        signal_absent_pid("signal-node-agent", h.agent_pid),
        Escape("etcdctl-on-loopback", f"{h.etcdctl} --endpoints=127.0.0.1:{h.etcd_port} get / --prefix && echo ESCAPED",
               NOT_THERE),
        Escape("curl-etcd-client-port",
               f"curl -sS -m 5 -X POST -d '{{\"key\":\"AA==\",\"range_end\":\"AA==\"}}' "
               f"http://127.0.0.1:{h.etcd_port}/v3/kv/range && echo ESCAPED", RESET),
        Escape("curl-etcd-peer-port", f"curl -sS -m 5 http://127.0.0.1:{h.etcd_peer_port}/members && echo ESCAPED",
               RESET),
        Escape("kwok-kubelet-port-plain", f"curl -sS -m 5 http://127.0.0.1:{h.kwok_port}/pods && echo ESCAPED", RESET),
        Escape("kwok-kubelet-port-exec",
               f"curl -sS -m 5 -X POST 'http://127.0.0.1:{h.kwok_port}/exec/serving/x/y?command=id' && echo ESCAPED",
               RESET),
        Escape("kubelet-front-without-client-cert",
               f"curl -sS -k -m 5 https://127.0.0.1:{h.front_port}/pods && echo ESCAPED",
               r"alert|handshake|certificate|SSL|reset|Empty reply"),
        Escape("apiserver-anonymous-secrets",
               f"c=$(curl -s -k -m 5 -o /dev/null -w '%{{http_code}}' https://127.0.0.1:{h.api_port}/api/v1/secrets); "
               "echo status=$c; [ \"$c\" = 200 ] && echo ESCAPED", r"status=40[13]"),
        Escape("zygote-socket",
               f"grep -a mlops-drill-zygote /proc/net/unix && echo ESCAPED; ls {h.state}/zygote && echo ESCAPED",
               NOT_THERE),
        *image_writes(str(REPO / "mlplatform")),
        *privilege_attempts(py),
        ptrace_pid_1(py),
        Escape("proc-1-root", "ls /proc/1/root/ && echo ESCAPED", DENIED),
        list_dir("read-host-volumes", h.state / "volumes"),
        container_runtime_socket(),
    ]


def host_facts(backend, other_kubeconfig: Path) -> HostFacts:
    """The targets on an embedded cluster's machine, read from its own state."""
    from mlops_drill.cluster import daemons
    from mlops_drill.cluster.toolchain.binaries import resolve_without_building

    found, _ = resolve_without_building()
    from urllib.parse import urlsplit

    return HostFacts(
        state=backend.state, admin_kubeconfig=backend.kubeconfig(), other_kubeconfig=other_kubeconfig,
        pki=backend.kwok_cluster / "pki",
        etcd_port=backend._arg_port("etcd", "listen-client-urls"),
        etcd_peer_port=backend._arg_port("etcd", "listen-peer-urls"),
        kwok_port=backend._arg_port("kwok-controller", "server-address"),
        front_port=int((backend.state / "kubelet-front.port").read_text()),
        api_port=urlsplit(backend._server_address()).port or 443,
        agent_pid=daemons.running_pid(backend.state / "pids" / "agent.pid") or 1,
        etcdctl=str(found.get("etcdctl", "etcdctl")),
    )


# ------------------------------------------------------------------------------------ solo mode

@pytest.fixture(scope="module")
def fraud_pod(candidate) -> str:
    pods = json.loads(candidate("get", "pods", "-n", "serving", "-l", "app=fraud-model", "-o", "json").stdout)
    running = [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]
    assert running, "no Running fraud-model pod"
    return running[0]


@pytest.fixture(scope="module")
def pod_sh(candidate, fraud_pod):
    def run(script: str) -> tuple[int, str]:
        result = candidate("exec", "-n", "serving", fraud_pod, "--", "sh", "-c", script, check=False)
        return result.stdout, result.stdout + result.stderr
    return run


@pytest.fixture(scope="module")
def facts(cluster, platform) -> HostFacts:
    from mlops_drill.injector import baseline

    return host_facts(cluster.backend, baseline.candidate_kubeconfig_path(platform))


ESCAPE_NAMES = [e.name for e in escapes(HostFacts(Path("/s"), Path("/a"), Path("/o"), Path("/p"),
                                                  1, 2, 3, 4, 5, 6, "etcdctl"))]


def test_at_least_25_named_escape_attempts() -> None:
    assert len(ESCAPE_NAMES) >= 25 and len(set(ESCAPE_NAMES)) == len(ESCAPE_NAMES)


@pytest.mark.parametrize("name", ESCAPE_NAMES)
def test_escape_attempt_fails_in_solo_exec(name, facts, pod_sh) -> None:
    check_escape(next(e for e in escapes(facts) if e.name == name), pod_sh)


def test_the_pods_own_process_runs_sandboxed(cluster, platform, fraud_pod) -> None:
    """The container's process itself (forked from the zygote): non-root, no capabilities, its pod's namespaces."""
    import os

    from mlops_drill.cluster.processpods import records

    found = records.find(cluster.backend.state, "serving", fraud_pod)
    assert found is not None, "no process record for the fraud-model pod"
    pid, _ = found
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if ":\t" in line)
    assert status["Uid"].split()[:2] == ["1000", "1000"], status["Uid"]
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    for ns in ("mnt", "pid", "uts", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), f"{ns} is the host's"
    assert status["NSpid"].split()[-1] != str(pid), "not in a PID namespace of its own"


# ------------------------------------------------------------------------------------ golden

def _normalise(text: str, pod: str) -> str:
    return text.replace(pod, "<pod>")


def test_golden_hostname(pod_sh, fraud_pod) -> None:
    assert pod_sh("hostname")[0].strip() == fraud_pod


def test_golden_ls_root(pod_sh) -> None:
    image = ["bin", "dev", "etc", "lib", "lib64", "opt", "pause", "proc", "run", "sbin", "tmp", "usr", "var"]
    # The Python runtime and the platform packages keep their host paths (/root/.pyenv, a checkout
    # in /work or /tmp): their top folder shows too, unless the image has it anyway (/tmp).
    host_tops = {Path(p).resolve().parts[1] for p in (sys.base_prefix, sys.prefix, str(REPO))} - set(image)
    listing = [n for n in pod_sh("ls /")[0].split() if n not in host_tops]
    assert listing == image, listing


def test_golden_os_release(pod_sh) -> None:
    assert pod_sh("cat /etc/os-release")[0] == Path("/etc/os-release").read_text()


def test_golden_env(pod_sh, fraud_pod) -> None:
    env = dict(line.split("=", 1) for line in pod_sh("env")[0].splitlines() if "=" in line and line[0].isupper())
    assert env["HOSTNAME"] == fraud_pod and env["POD_NAME"] == fraud_pod
    assert env["HOME"] == "/tmp" and env["POD_NAMESPACE"] == "serving" and env["MODEL_NAME"] == "fraud-model"
    assert env["PATH"] == "/usr/local/nvidia/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1" and env["KUBERNETES_SERVICE_PORT"].isdigit()
    assert env["FRAUD_MODEL_SERVICE_PORT"] == "80" and env["FRAUD_MODEL_PORT"].startswith("tcp://127.")
    assert env["DB_USER"] == "fraud_model" and env["NVIDIA_VISIBLE_DEVICES"].startswith("GPU-")
    leaked = [k for k, v in env.items() if "/root/" in v or "drill-state" in v or k.startswith("XDG_")
              or k in ("MLOPS_DRILL_STATE", "MLOPS_DRILL_CACHE", "KUBECONFIG", "PYTHONPATH")]
    assert not leaked, f"host environment in the container: {leaked}"


def test_golden_ps_aux(candidate, fraud_pod) -> None:
    out = candidate("exec", "-n", "serving", fraud_pod, "--", "ps", "aux").stdout.splitlines()
    assert out[0].split() == ["USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME", "COMMAND"]
    rows = [(ln.split()[0], ln.split(None, 10)[10]) for ln in out[1:]]
    assert rows[0] == ("root", "/pause infinity")
    assert rows[1] == ("app", "python -m mlops_drill.mlplatform.serving")
    assert rows[2:] == [("app", "ps aux")], rows


def test_golden_configmap_mount(pod_sh, cluster) -> None:
    data = cluster.json("get", "configmap", "fraud-model-transforms", "-n", "serving")["data"]
    key = sorted(data)[0]
    assert pod_sh(f"cat /etc/fraud-model/{key}")[0] == data[key]
    assert pod_sh("ls /etc/fraud-model")[0].split() == sorted(data)


def test_golden_curl_service_by_cluster_dns_name(pod_sh) -> None:
    out, _ = pod_sh("curl -sS -m 5 http://model-registry.registry.svc.cluster.local/healthz; echo; "
                       "curl -sS -m 5 -o /dev/null -w '%{http_code}\\n' http://fraud-model/healthz")
    assert json.loads(out.splitlines()[0])["status"] == "ok", out
    assert out.splitlines()[1] == "200", out


def test_nvidia_smi_in_gpu_pod_and_device_plugin(candidate, fraud_pod) -> None:
    one = candidate("exec", "-n", "serving", fraud_pod, "--", "nvidia-smi", "-L").stdout.splitlines()
    assert len(one) == 1 and one[0].startswith("GPU 0: NVIDIA H100"), one
    plugin = candidate("exec", "-n", "gpu-operator", "ds/nvidia-device-plugin-daemonset", "--", "nvidia-smi", "-L")
    assert len(plugin.stdout.splitlines()) >= 2, plugin.stdout


def test_escape_attempt_agent_api_without_token_in_solo_exec(agent_api, pod_sh) -> None:
    """The engine's agent API listens on the loopback the pods share: without its bearer token, 401 only."""
    from urllib.parse import urlsplit

    port = urlsplit(agent_api[1]).port
    attempt = ("for h in 'X-None: 1' 'Authorization: Bearer guessed-guessed-guessed-guessed'; do "
               f"s=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' -H \"$h\" http://127.0.0.1:{port}/api/v1/scenarios); "
               f"p=$(curl -s -m 5 -o /dev/null -w '%{{http_code}}' -H \"$h\" -H 'Content-Type: application/json' "
               f"-d '{{\"scenario\":\"no-such-scenario\"}}' http://127.0.0.1:{port}/api/v1/sessions); "
               "echo status=$s,$p; case $s$p in 401401) ;; 000*|*000) ;; *) echo ESCAPED;; esac; done")
    escape = Escape("agent-api-without-token", attempt, r"status=401,401\nstatus=401,401")
    check_escape(escape, pod_sh)
