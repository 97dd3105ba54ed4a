"""Loopback ports of the embedded control plane that pods must not reach.

Pods share the host's network namespace (as ``hostNetwork`` pods do), so a
port on 127.0.0.1 is a port for them too. The API server asks for a credential
and so does the kubelet front (``execfront.py``); etcd and kwok-controller's own
kubelet server answer anyone. Their ports are closed with one iptables rule per
cluster to every local user but root: the control plane runs as root, a pod's
container as its own non-root user. Where iptables is missing the cluster still
starts, and says so.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess


def tag(state: str) -> str:
    return "mlops-drill-" + hashlib.sha256(state.encode()).hexdigest()[:12]


def _iptables() -> str | None:
    return shutil.which("iptables")


def close_ports(state: str, ports: list[int]) -> str | None:
    """Reject TCP to ``ports`` on loopback from non-root users; None when done, else why not."""
    iptables = _iptables()
    if iptables is None:
        return "iptables is missing (apt-get install iptables): etcd and kwok's kubelet port stay open to pods"
    open_ports(state)
    ports = sorted(set(p for p in ports if p))
    if not ports:
        return None
    rule = ["OUTPUT", "-o", "lo", "-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, ports)),
            "-m", "owner", "!", "--uid-owner", "0", "-m", "comment", "--comment", tag(state),
            "-j", "REJECT", "--reject-with", "tcp-reset"]
    result = subprocess.run([iptables, "-w", "5", "-I", *rule], capture_output=True, text=True)
    if result.returncode != 0:
        return f"iptables refused the rule: {result.stderr.strip()[:200]}"
    return None


def open_ports(state: str) -> None:
    """Remove this cluster's rule (cluster down)."""
    iptables = _iptables()
    if iptables is None:
        return
    listed = subprocess.run([iptables, "-w", "5", "-S", "OUTPUT"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if tag(state) in line and line.startswith("-A "):
            subprocess.run([iptables, "-w", "5", "-D", *line.split()[1:]], capture_output=True, text=True)


def closed_ports(state: str) -> str:
    """The rule as iptables lists it ("" if none): for status and tests."""
    iptables = _iptables()
    if iptables is None:
        return ""
    listed = subprocess.run([iptables, "-w", "5", "-S", "OUTPUT"], capture_output=True, text=True)
    return "\n".join(line for line in listed.stdout.splitlines() if tag(state) in line)
