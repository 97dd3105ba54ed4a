"""Which local process runs a pod's container, written down by the kubelet that started it.

Why not only ``/proc/<pid>/environ``: a container forked by the zygote keeps the
zygote's start-up environment block there, so searching for ``POD_NAME`` finds
nothing. The kubelet writes ``container.json`` (pid, the process's start time,
env) into the pod's folder when the container starts and removes it when the
container ends; the start time guards against a recycled pid.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

RECORD = "container.json"


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``: when the process started, in clock ticks since boot."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw.rsplit(")", 1)[1].split()[19])


def write(pod_dir: Path, pid: int, env: dict[str, str]) -> None:
    tmp = pod_dir / f".{RECORD}.tmp"
    tmp.write_text(json.dumps({"pid": pid, "start": start_time(pid), "env": env}))
    os.replace(tmp, pod_dir / RECORD)


def clear(pod_dir: Path) -> None:
    (pod_dir / RECORD).unlink(missing_ok=True)


def live(state: Path, pattern: str = "*") -> Iterator[tuple[int, dict[str, str]]]:
    """(pid, env) of every live container process recorded under ``state`` (pod folders matching ``pattern``)."""
    for record in (state / "pods").glob(f"{pattern}/{RECORD}"):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        pid = int(data["pid"])
        started = start_time(pid)
        if started is not None and started == data.get("start"):
            yield pid, data.get("env") or {}


def find(state: Path, namespace: str, name: str) -> tuple[int, dict[str, str]] | None:
    """(pid, env) of the live container process of pod ``namespace/name`` on the cluster in ``state``."""
    return next(((pid, env) for pid, env in live(state, f"{namespace}_{name}_*")
                 if env.get("POD_NAME") == name and env.get("POD_NAMESPACE") == namespace), None)
