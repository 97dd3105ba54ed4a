"""The pieces of a pod's sandbox that need no cluster: the kubelet front's request rewrite, a pod's
identity and /etc files, Service links and hosts lines, and the bwrap mount order.

The end-to-end behaviour (a real exec through the API server into a real pod) is in
tests/test_pod_sandbox.py.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from mlops_drill.cluster.processpods import sandbox
from mlops_drill.cluster.processpods.execfront import rewrite_head
from mlops_drill.cluster.processpods.kubeproxy import ServiceProxy


def _head(target: str, *headers: str) -> bytes:
    return ("POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode()


def _rewrite(namespace: str, pod: str, command: list[str]) -> list[str] | None:
    return ["/usr/bin/nsenter", "--target=42", "--", *command] if (namespace, pod) == ("serving", "p") else None


def test_front_prefixes_an_exec_command_and_keeps_the_stream_options() -> None:
    head, upgrade, why = rewrite_head(_head("/exec/serving/p/c?command=sh&command=-c&command=echo%20hi&input=1"
                                            "&output=1&tty=0", "Connection: Upgrade", "Upgrade: SPDY/3.1"),
                                      _rewrite)
    assert head is not None and upgrade and not why
    target = head.decode().split(" ")[1]
    query = parse_qsl(urlsplit(target).query, keep_blank_values=True)
    assert [v for k, v in query if k == "command"] == ["/usr/bin/nsenter", "--target=42", "--", "sh", "-c", "echo hi"]
    assert ("input", "1") in query and ("tty", "0") in query
    assert b"Upgrade: SPDY/3.1" in head and b"Connection: Upgrade" in head


@pytest.mark.parametrize("target", ["/exec/serving/other/c?command=id", "/exec/serving/p/c",
                                    "/attach/serving/p/c?output=1", "/run/serving/p/c?cmd=id", "/exec/serving"])
def test_front_refuses_what_would_run_outside_a_sandbox(target: str) -> None:
    head, _, why = rewrite_head(_head(target, "Connection: Upgrade", "Upgrade: SPDY/3.1"), _rewrite)
    assert head is None and why


def test_front_closes_a_plain_request_after_its_answer() -> None:
    head, upgrade, _ = rewrite_head(_head("/containerLogs/serving/p/c?follow=true", "Connection: keep-alive"),
                                    _rewrite)
    assert head is not None and not upgrade
    assert b"Connection: close" in head and b"keep-alive" not in head


def test_identity_is_non_root_unless_the_spec_asks() -> None:
    assert sandbox.identity({"spec": {"containers": [{}]}}) == sandbox.Identity(1000, 1000)
    assert sandbox.identity({"spec": {"securityContext": {"runAsUser": 0}, "containers": [{}]}}).root
    pod = {"spec": {"securityContext": {"runAsUser": 2000}, "containers": [{"securityContext": {"runAsUser": 3000,
                                                                                               "runAsGroup": 7}}]}}
    assert sandbox.identity(pod) == sandbox.Identity(3000, 7)


def test_etc_files_are_a_pods() -> None:
    files = sandbox.etc_files("fraud-model-abc", "serving", "10.244.0.9", sandbox.Identity(),
                              "127.150.0.2\tmodel-registry.registry.svc.cluster.local\n")
    assert "10.244.0.9\tfraud-model-abc\n" in files["hosts"] and files["hosts"].endswith("svc.cluster.local\n")
    assert files["resolv.conf"].startswith("search serving.svc.cluster.local svc.cluster.local cluster.local\n")
    assert files["hostname"] == "fraud-model-abc\n"
    assert "app:x:1000:1000:" in files["passwd"] and "app:x:1000:" in files["group"]


def test_service_links_and_hosts_lines_name_only_the_pods_own_seat() -> None:
    async def run() -> ServiceProxy:
        proxy = ServiceProxy(Path("/dev/null"), lambda *_: None)
        proxy._write_table = lambda: None  # no table file here
        for ns in ("serving", "s-1a2b3c-1--serving", "s-1a2b3c-2--serving"):
            await proxy.service_changed({"metadata": {"namespace": ns, "name": "fraud-model"},
                                         "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        proxy.close()
        return proxy

    proxy = asyncio.run(run())
    env = proxy.service_env("s-1a2b3c-1--serving")
    address = proxy.aliases[("s-1a2b3c-1--serving", "fraud-model")]
    assert env["FRAUD_MODEL_SERVICE_HOST"] == address and env["FRAUD_MODEL_SERVICE_PORT_HTTP"] == "80"
    assert env["FRAUD_MODEL_PORT_80_TCP"] == f"tcp://{address}:80"
    hosts = proxy.hosts_for("s-1a2b3c-1--serving")
    assert hosts == f"{address}\tfraud-model.serving.svc.cluster.local fraud-model.serving.svc fraud-model.serving " \
                    "fraud-model\n"
    assert proxy.hosts_for("serving").count("\n") == 1 and address not in proxy.hosts_for("serving")


def test_parents_of_mount_points_are_made_readable_first() -> None:
    args = sandbox._parents_first(["--ro-bind", "/usr/lib", "/usr/lib", "--bind", "/x", "/var/lib/data"])
    made = [args[i + 3] for i in range(len(args) - 3) if args[i] == "--perms" and args[i + 2] == "--dir"]
    assert made == ["/usr", "/var", "/var/lib"] and args[:2] == ["--perms", "0755"]
    assert args.index("/var/lib") < args.index("/var/lib/data")


def test_a_checkout_under_tmp_is_mounted_on_top_of_the_pods_own_tmp() -> None:
    """A venv in /tmp/ci/main must not be hidden by the pod's tmpfs on /tmp (a CI clone under /tmp)."""
    args = sandbox._parents_first(["--unshare-pid", "--ro-bind", "/tmp/ci/main/.venv", "/tmp/ci/main/.venv",
                                   "--perms", "1777", "--size", "1024", "--tmpfs", "/tmp", "--chdir", "/"])
    assert args[:3] == ["--unshare-pid", "--chdir", "/"]
    tmpfs = args.index("--tmpfs")
    assert args[tmpfs - 4:tmpfs + 2] == ["--perms", "1777", "--size", "1024", "--tmpfs", "/tmp"]
    assert tmpfs < args.index("/tmp/ci") < args.index("/tmp/ci/main") < args.index("/tmp/ci/main/.venv")


@pytest.mark.skipif(sandbox.available() is None, reason="bubblewrap is not installed")
def test_a_sandbox_shows_only_its_own_processes_and_an_image_root(tmp_path: Path) -> None:
    """A real bwrap pause process, entered as `kubectl exec` enters it (nsenter + setpriv); needs root."""
    if shutil.which("id") is None or subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0":
        pytest.skip("the process kubelet runs as root")

    async def run() -> str:
        (tmp_path / "run").mkdir()
        (tmp_path / "vol").mkdir()
        (tmp_path / "vol" / "key").write_text("value\n")
        box = sandbox.PodSandbox(tmp_path, "pod-a", sandbox.Identity(), {"/etc/cfg": tmp_path / "vol"},
                                 {"/etc/cfg"}, tmp_path / "run", sandbox.image_args())
        box.write_etc(sandbox.etc_files("pod-a", "ns", "10.244.0.2", box.who))
        await box.start()
        try:
            argv = box.enter_argv(["/bin/sh", "-c", "id -u; hostname; cat /etc/cfg/key; ps -e --no-headers | wc -l; "
                                   f"ls {tmp_path} 2>&1; touch /etc/cfg/x 2>&1; unshare -Ur true 2>&1"],
                                  {"PATH": sandbox.PATH})
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            return out.decode()
        finally:
            await box.stop()

    lines = asyncio.run(run()).splitlines()
    assert lines[:4] == ["1000", "pod-a", "value", "4"], lines  # /pause, sh, and the pipeline: ps, wc
    assert "No such file or directory" in lines[4] and "Read-only file system" in lines[5], lines
    assert "Operation not permitted" in lines[6], lines  # no user namespace of its own, as under a runtime's seccomp
