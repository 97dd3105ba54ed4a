"""Background helper processes that belong to one embedded cluster.

The process kubelet and the GPU controller are kopf operators that must outlive
the `mlops-drill` command that started them, and die with `cluster down`. Each
runs in its own session (so a Ctrl-C in the user's shell does not reach it),
with a pid file and a log file in the cluster's state directory.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def start(name: str, argv: list[str], state: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached unless a live one is recorded; returns its pid."""
    pid_file = state / "pids" / f"{name}.pid"
    pid = running_pid(pid_file)
    if pid:
        return pid
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = state / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def stop(name: str, state: Path, grace: float = 5.0) -> bool:
    """SIGTERM the daemon's process group, then SIGKILL after ``grace``; True if one ran."""
    pid_file = state / "pids" / f"{name}.pid"
    pid = running_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if not pid:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def stop_all(state: Path) -> list[str]:
    stopped = []
    for pid_file in sorted((state / "pids").glob("*.pid")) if (state / "pids").is_dir() else []:
        if stop(pid_file.stem, state):
            stopped.append(pid_file.stem)
    return stopped
