"""Escape attempts from inside a pod, shared by the embedded and the kind sandbox tests.

Each attempt is a POSIX sh script typed into `kubectl exec` as someone trying to
reach the answer key, the engine or another pod would type it. It prints
ESCAPED only when the attempt worked, and must fail with what a container
answers instead (a path that does not exist, a read-only or root-owned file, an
operation not permitted, a refused connection). What differs between backends
(paths of the engine's state, ports, the Python inside the pod) is a parameter;
what holds wherever a pod is a container is written once here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

NOT_THERE = r"No such file or directory|not found|cannot access"
DENIED = r"Operation not permitted|Permission denied|permission denied|must be superuser|Read-only file system"
RESET = r"reset|refused|Couldn't connect|Empty reply|Recv failure"


@dataclass(frozen=True)
class Escape:
    name: str
    script: str  # POSIX sh; prints ESCAPED when the attempt worked
    fails_with: str  # regex of what a container answers instead


def check_escape(escape: Escape, exec_sh) -> None:
    """Run one attempt with ``exec_sh(script) -> (stdout, stdout + stderr)`` and say how it failed.

    ESCAPED is looked for in stdout only: kubectl's error for a failed command quotes the command.
    """
    stdout, out = exec_sh(escape.script)
    assert "ESCAPED" not in stdout, f"{escape.name}: the attempt worked:\n{out}"
    assert re.search(escape.fails_with, out), f"{escape.name}: not refused as a container would be:\n{out}"


def read_file(name: str, path: Path | str, fails_with: str = NOT_THERE) -> Escape:
    return Escape(name, f"cat {path} && echo ESCAPED", fails_with)


def list_dir(name: str, path: Path | str) -> Escape:
    return Escape(name, f"ls {path} && echo ESCAPED", NOT_THERE)


def answer_key(repo: Path = REPO) -> list[Escape]:
    """The repo's scenario catalogue (every reference solution) and tests, at the host's paths."""
    return [
        read_file("read-scenario-file", repo / "scenarios" / "catalogue" / "gpu-missing-toleration.yaml"),
        list_dir("list-scenario-catalogue", repo / "scenarios"),
        list_dir("list-repo-tests", repo / "tests"),
    ]


def host_home() -> Escape:
    return Escape("read-host-home", "ls /root/.cache /root/.kube && echo ESCAPED", NOT_THERE)


def image_writes(code_dir: str) -> list[Escape]:
    """Writes outside the pod's writable paths: the image's files and the platform's code in ``code_dir``."""
    return [
        Escape("write-image-usr", "touch /usr/bin/escaped && echo ESCAPED", DENIED),
        Escape("write-etc-passwd", "echo 'x:x:0:0::/:/bin/sh' >> /etc/passwd && echo ESCAPED", DENIED),
        Escape("write-platform-code", f"touch {code_dir}/escaped.py && echo ESCAPED", DENIED),
        Escape("write-root-folder", "mkdir /escaped && echo ESCAPED", DENIED),
    ]


def privilege_attempts(py: str) -> list[Escape]:
    """Mount, chroot, namespaces, root and the kernel log: what a container's user may not do."""
    return [
        Escape("mount-tmpfs", "mount -t tmpfs none /tmp && echo ESCAPED", DENIED),
        Escape("chroot", "chroot / /bin/true && echo ESCAPED", DENIED),
        Escape("nsenter-pid-1", "nsenter -t 1 -m -u -i -n -p /bin/true && echo ESCAPED", DENIED),
        Escape("user-namespace-root", "unshare -Ur id && echo ESCAPED", DENIED),
        Escape("user-namespace-then-mount", "unshare -Urm sh -c 'mount -t tmpfs none /tmp' && echo ESCAPED", DENIED),
        Escape("become-root", f"{py} -c 'import os; os.setuid(0)' && echo ESCAPED", r"PermissionError|not permitted"),
        Escape("kernel-log", "dmesg && echo ESCAPED", DENIED),
    ]


def ptrace_pid_1(py: str) -> Escape:
    return Escape("ptrace-pid-1",
                  f"{py} -c 'import ctypes,os,sys; r=ctypes.CDLL(None,use_errno=True).ptrace(16,1,0,0); "
                  "print(os.strerror(ctypes.get_errno())); sys.exit(r)' && echo ESCAPED", DENIED)


def container_runtime_socket() -> Escape:
    return Escape("container-runtime-socket", "ls /var/run/docker.sock /run/containerd && echo ESCAPED", NOT_THERE)


def signal_absent_pid(name: str, pid: int) -> Escape:
    """A process of the machine, by its pid there: a container's PID namespace has no such process."""
    return Escape(name, f"kill -0 {pid} && echo ESCAPED", r"No such process")


def http_attempt(name: str, py: str, url: str, fails_with: str, method: str = "GET", data: str | None = None,
                 bearer_file: str | None = None) -> Escape:
    """One HTTP(S) request from the pod's own Python (no curl needed in the image), certificates unchecked.

    Prints ``status=<code>`` or ``error=<exception>``, and ESCAPED on a 2xx answer.
    """
    body = "None" if data is None else repr(data.encode())
    auth = (f"h['Authorization'] = 'Bearer ' + open({bearer_file!r}).read().strip()\n" if bearer_file else "")
    program = (
        "import ssl, urllib.request, urllib.error\n"
        "c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE\n"
        "h = {'Content-Type': 'application/json'}\n"
        f"{auth}"
        f"r = urllib.request.Request({url!r}, data={body}, method={method!r}, headers=h)\n"
        "try:\n"
        "    s = urllib.request.urlopen(r, timeout=5, context=c).status\n"
        "    print('status=%d' % s); print('ESCAPED' if 200 <= s < 300 else '')\n"
        "except urllib.error.HTTPError as e:\n"
        "    print('status=%d' % e.code)\n"
        "except Exception as e:\n"
        "    print('error=%s: %s' % (type(e).__name__, e))\n"
    )
    return Escape(name, f"{py} - <<'PYEOF'\n{program}PYEOF", fails_with)
