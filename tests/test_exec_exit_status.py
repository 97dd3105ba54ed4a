"""`kubectl exec` into a process-backed pod reports a failed command as a kubelet does.

A kubelet answers a non-zero exit with a NonZeroExitCode status, so kubectl prints
"command terminated with exit code N" and exits N. KWOK's own exec reports an internal
error quoting the host command line; the kubelet front rewrites that status
(cluster/processpods/spdystatus.py). The units feed it SPDY frames as KWOK writes them;
the cluster test types real `kubectl exec` commands with the candidate's kubeconfig.
"""
from __future__ import annotations

import json

import pytest
from polling import wait

from mlops_drill.cluster.processpods.spdystatus import ExecStreams, FrameScanner, kubelet_status

KWOK_EXIT_2 = json.dumps({"status": "Failure", "reason": "InternalError", "code": 500, "message":
                          "Internal error occurred: error executing command in container: cmd wait: /bin/sh -c "
                          "echo $$ > \"$0\" && exec \"$@\" /sys/fs/cgroup/x/cgroup.procs /usr/bin/nsenter "
                          "--target=4242 -- /usr/bin/setpriv --reuid=1000 -- nvidia-smi -q -d BOGUS: exit status 2"})


def _data(stream: int, payload: bytes, flags: int = 0) -> bytes:
    return stream.to_bytes(4, "big") + bytes([flags]) + len(payload).to_bytes(3, "big") + payload


def _syn_stream(stream: int) -> bytes:
    body = stream.to_bytes(4, "big") + (0).to_bytes(4, "big") + b"\x00\x00" + b"compressed-headers"
    return bytes([0x80, 0x03, 0x00, 0x01, 0x00]) + len(body).to_bytes(3, "big") + body


def test_an_exit_status_becomes_a_kubelets_non_zero_exit_code() -> None:
    status = json.loads(kubelet_status(KWOK_EXIT_2.encode()))
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
    assert "nsenter" not in status["message"] and "cgroup" not in status["message"]


def test_a_signal_becomes_128_plus_its_number_and_success_passes_unchanged() -> None:
    killed = json.dumps({"status": "Failure", "message": "Internal error occurred: cmd wait: x y: signal: killed"})
    assert json.loads(kubelet_status(killed.encode()))["details"]["causes"][0]["message"] == "137"
    assert kubelet_status(b'{"status":"Success"}') is None
    assert kubelet_status(b"not json") is None


def test_the_commands_own_arguments_cannot_fake_its_exit_code() -> None:
    spoof = json.dumps({"status": "Failure", "message": "Internal error occurred: cmd wait: sh -c exit 3 "
                        "a: exit status 0\n: signal: killed\nb: exit status 3"})
    assert json.loads(kubelet_status(spoof.encode()))["details"]["causes"][0]["message"] == "3"


def test_a_command_that_never_started_loses_the_host_command_line() -> None:
    start = json.dumps({"status": "Failure", "reason": "InternalError", "message": "Internal error occurred: error "
                        "executing command in container: cmd start: /usr/bin/nsenter --target=1 -- x: no such file"})
    status = json.loads(kubelet_status(start.encode()))
    assert status["reason"] == "InternalError" and status["message"].endswith(": no such file")
    assert "nsenter" not in status["message"]


def test_only_the_error_streams_frames_are_rewritten_even_when_split_across_reads() -> None:
    streams = ExecStreams()
    client, upstream = FrameScanner(streams, from_client=True), FrameScanner(streams, from_client=False)
    opened = _syn_stream(1) + _syn_stream(3)
    assert client.feed(opened[:5]) == b"" and client.feed(opened[5:]) == opened  # whole frames, unchanged
    assert streams.error_stream == 1
    stdout = _data(3, KWOK_EXIT_2.encode())  # the same bytes on stdout are the user's own output
    error = _data(1, KWOK_EXIT_2.encode(), flags=1)
    wire = stdout + error
    out = upstream.feed(wire[:20]) + upstream.feed(wire[20:])
    assert out.startswith(stdout)
    rewritten = out[len(stdout):]
    assert rewritten[4] == 1 and int.from_bytes(rewritten[5:8], "big") == len(rewritten) - 8
    assert json.loads(rewritten[8:])["reason"] == "NonZeroExitCode"


@pytest.mark.cluster
@pytest.mark.parametrize("script,code", [("exit 3", 3), ("ls /no/such/folder", 2), ("kill -9 $$", 137),
                                         ("true", 0)])
def test_kubectl_exec_exits_with_the_commands_code(candidate, script, code) -> None:
    def ready_pod() -> str | None:  # a Ready one: an earlier test on the shared cluster may have left one going
        pods = json.loads(candidate("get", "pods", "-n", "serving", "-l", "app=fraud-model", "-o", "json").stdout)
        return next((p["metadata"]["name"] for p in pods["items"] if not p["metadata"].get("deletionTimestamp")
                     and any(c.get("type") == "Ready" and c.get("status") == "True"
                             for c in p["status"].get("conditions") or [])), None)

    pod = wait(ready_pod, timeout=60, what="a Ready fraud-model pod")
    result = candidate("exec", "-n", "serving", pod, "--", "sh", "-c", script, check=False)
    assert result.returncode == code, result.stderr
    if code:
        assert f"command terminated with exit code {code}" in result.stderr, result.stderr
    for host_detail in ("nsenter", "setpriv", "cgroup", "seccomp", "Internal error"):
        assert host_detail not in result.stderr, result.stderr
