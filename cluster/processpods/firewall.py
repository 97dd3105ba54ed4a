"""Loopback ports of the embedded control plane that pods must not reach.

Pods share the host's network namespace (as ``hostNetwork`` pods do), so a
port on 127.0.0.1 is a port for them too. The API server asks for a credential
and so does the kubelet front (``execfront.py``); etcd and kwok-controller's own
kubelet server answer anyone. Their ports are closed to pods by two iptables
rules per cluster, both tagged with the cluster's comment:

* by cgroup: every process of every pod (the container, what it forks, each
  ``kubectl exec``) is put in the cluster's cgroup v2 group before it enters its
  sandbox, and TCP from that group to the ports is reset. This holds for a pod
  whose securityContext asks for root too: such a container is uid 0 on the
  host, and a pod cannot leave the group (no ``/sys`` in its sandbox, no
  CAP_SYS_ADMIN to mount one).
* by user: every local user but root, as a second wall where cgroup v2 is
  missing.

A cluster that was killed rather than stopped leaves its rules behind; the next
cluster to close its ports removes every tagged rule whose ports no process
listens on any more. A cluster started again gets its new rules before the old
ones go, so its ports are never open in between. Where iptables or cgroup v2 is
missing the cluster refuses to start (the backend says why), unless
``MLOPS_DRILL_ALLOW_OPEN_ENGINE=1`` accepts an engine open to pods.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

PREFIX = "mlops-drill-"


def tag(state: str) -> str:
    return PREFIX + hashlib.sha256(state.encode()).hexdigest()[:12]


def _iptables() -> str | None:
    return shutil.which("iptables")


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup`` or, on hybrid hosts, its ``unified``)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def pods_cgroup(state: str) -> Path | None:
    """The cgroup every pod process of this cluster joins; None where there is no cgroup v2 to use."""
    root = cgroup2_root()
    return root / tag(state) if root is not None else None


def _make_cgroup(state: str) -> Path | None:
    group = pods_cgroup(state)
    if group is None:
        return None
    try:
        group.mkdir(exist_ok=True)
    except OSError:
        return None
    return group


def _remove_cgroup(name: str) -> None:
    root = cgroup2_root()
    if root is not None:
        try:
            (root / name).rmdir()  # only when empty: a process still in it keeps it
        except OSError:
            pass


def join(group: Path, pid: int = 0) -> None:
    """Put ``pid`` (0: the caller) in ``group``; raises OSError when that is not possible."""
    with open(group / "cgroup.procs", "w") as fh:
        fh.write(str(pid or os.getpid()))


def close_ports(state: str, ports: list[int]) -> str | None:
    """Reject TCP to ``ports`` on loopback from pods; None when done, else why not (or not fully)."""
    iptables = _iptables()
    if iptables is None:
        return "iptables is missing (apt-get install iptables): etcd and kwok's kubelet port stay open to pods"
    sweep_stale(keep=tag(state))
    ports = sorted(set(p for p in ports if p))
    old = [line for line in _rules() if tag(state) in line]  # a cluster started again: replaced after, not before
    if not ports:
        open_ports(state)
        return None
    match = ["OUTPUT", "-o", "lo", "-p", "tcp", "-m", "multiport", "--dports", ",".join(map(str, ports))]
    action = ["-m", "comment", "--comment", tag(state), "-j", "REJECT", "--reject-with", "tcp-reset"]
    problems = []
    by_user = subprocess.run([iptables, "-w", "30", "-I", *match, "-m", "owner", "!", "--uid-owner", "0", *action],
                             capture_output=True, text=True)
    if by_user.returncode != 0:
        problems.append(f"iptables refused the rule: {by_user.stderr.strip()[:200]}")
    group = _make_cgroup(state)
    if group is None:
        problems.append("no cgroup v2 here: pods that run as root can still reach etcd and kwok's kubelet port")
    else:
        by_group = subprocess.run([iptables, "-w", "30", "-I", *match, "-m", "cgroup", "--path", group.name, *action],
                                  capture_output=True, text=True)
        if by_group.returncode != 0:
            problems.append(f"iptables refused the cgroup rule: {by_group.stderr.strip()[:200]}")
    for line in old:  # the same rule stays once: -D removes the first of two equal ones
        _delete(line)
    return "; ".join(problems) or None


def _rules() -> list[str]:
    iptables = _iptables()
    if iptables is None:
        return []
    listed = subprocess.run([iptables, "-w", "30", "-S", "OUTPUT"], capture_output=True, text=True)
    return [line for line in listed.stdout.splitlines() if line.startswith("-A ") and PREFIX in line]


def _delete(line: str) -> None:
    iptables = _iptables()
    if iptables is not None:
        subprocess.run([iptables, "-w", "30", "-D", *line.split()[1:]], capture_output=True, text=True)


def open_ports(state: str) -> None:
    """Remove this cluster's rules and its pods' cgroup (cluster down)."""
    for line in _rules():
        if tag(state) in line:
            _delete(line)
    _remove_cgroup(tag(state))


def listening_ports() -> set[int]:
    """TCP ports some process on this host listens on (IPv4 and IPv6)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def sweep_stale(keep: str = "") -> list[str]:
    """Remove the rules (and cgroups) of clusters that are gone: none of their ports is listened on."""
    listening = listening_ports()
    removed = []
    for line in _rules():
        found = re.search(rf"--comment ({PREFIX}[0-9a-f]+)", line)
        ports = re.search(r"--dports (\S+)", line)
        if not found or found.group(1) == keep or not ports:
            continue
        if not {int(p) for p in ports.group(1).split(",") if p.isdigit()} & listening:
            _delete(line)
            _remove_cgroup(found.group(1))
            removed.append(found.group(1))
    return removed


def closed_ports(state: str) -> str:
    """The rules as iptables lists them ("" if none): for status and tests."""
    return "\n".join(line for line in _rules() if tag(state) in line)
