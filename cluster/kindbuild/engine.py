"""A Docker engine for kind: the one that answers, or ``dockerd`` started here.

On a laptop Docker is already running and nothing here changes it. On a
sandbox without an init system nobody starts ``dockerd``, so we do (as root);
and where the capability bounding set lacks CAP_SYS_RESOURCE, privileged
containers (kind's nodes) cannot start with plain runc, so the engine's default
runtime becomes ``runcwrap`` (see ``runcwrap/main.go``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from mlops_drill.cluster.kindbuild.steps import kind_cache
from mlops_drill.errors import DrillError

CAP_SYS_RESOURCE = 24
RUNTIME_NAME = "mlops-drill-runc"
DAEMON_JSON = Path("/etc/docker/daemon.json")
SOCKET = Path("/var/run/docker.sock")


def cap_sys_resource_missing(status_file: Path = Path("/proc/self/status")) -> bool:
    """True where no process here can ever hold CAP_SYS_RESOURCE (it is not in the bounding set)."""
    for line in status_file.read_text().splitlines():
        if line.startswith("CapBnd:"):
            return not int(line.split(":", 1)[1].strip(), 16) & (1 << CAP_SYS_RESOURCE)
    return False


def docker() -> str:
    return os.environ.get("MLOPS_DRILL_DOCKER") or shutil.which("docker") or "docker"


def engine_answers(timeout: float = 10) -> tuple[bool, str]:
    """Whether a Docker *engine* answers (the CLI alone is not enough for kind), and its version or why not."""
    if not shutil.which(docker()):
        return False, "no docker command on PATH"
    try:
        result = subprocess.run([docker(), "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "docker version timed out: no Docker engine answers"
    if result.returncode != 0 or not result.stdout.strip():
        return False, "no Docker engine answers (" + ((result.stderr or "").strip().splitlines() or ["?"])[-1][:160] + ")"
    return True, result.stdout.strip()


def _runtimes() -> tuple[set[str], str]:
    out = subprocess.run([docker(), "info", "--format", "{{json .Runtimes}}|{{.DefaultRuntime}}"],
                         capture_output=True, text=True, timeout=20).stdout.strip()
    runtimes, _, default = out.partition("|")
    try:
        names = set(json.loads(runtimes or "{}"))
    except json.JSONDecodeError:
        names = set()
    return names, default


def _write_daemon_json(wrapper: Path) -> None:
    """Merge our runtime into daemon.json as the default, leaving every other setting as it is."""
    config = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.is_file() else {}
    config.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": str(wrapper)}
    config["default-runtime"] = RUNTIME_NAME
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(config, indent=2) + "\n")


def _dockerd_pid() -> int | None:
    pid_file = Path("/var/run/docker.pid")
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _start_dockerd() -> None:
    dockerd = shutil.which("dockerd")
    if not dockerd:
        raise DrillError("no Docker engine answers and there is no dockerd to start: install Docker "
                         "(Debian: apt-get install docker.io), or use --backend embedded")
    if os.geteuid() != 0:
        raise DrillError("no Docker engine answers; start Docker (dockerd needs root), or use --backend embedded")
    log = kind_cache() / "dockerd.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        subprocess.Popen([dockerd], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if engine_answers(timeout=5)[0]:
            return
        time.sleep(0.5)
    raise DrillError(f"dockerd did not answer within 60 s; see {log}")


def ensure_engine(wrapper: Path | None) -> str:
    """A Docker engine that can run kind's privileged nodes here; returns its version.

    ``wrapper`` is the built runcwrap, registered as the default runtime only where the
    capability is missing (detected, not assumed).
    """
    needs_wrapper = cap_sys_resource_missing()
    if needs_wrapper and wrapper is None:
        raise DrillError("CAP_SYS_RESOURCE is missing here and runcwrap is not built yet")
    ok, version = engine_answers()
    if ok and needs_wrapper:
        names, default = _runtimes()
        if RUNTIME_NAME not in names or default != RUNTIME_NAME:
            if os.geteuid() != 0:
                raise DrillError("privileged containers cannot start here (no CAP_SYS_RESOURCE) and the running "
                                 f"Docker engine lacks the {RUNTIME_NAME} runtime; as root, mlops-drill adds it")
            assert wrapper is not None
            _write_daemon_json(wrapper)
            pid = _dockerd_pid()
            if pid is None:
                raise DrillError(f"wrote {DAEMON_JSON}; restart the Docker engine so it reads it")
            os.kill(pid, signal.SIGHUP)  # dockerd reloads runtimes on SIGHUP
            for _ in range(40):
                names, default = _runtimes()
                if RUNTIME_NAME in names and default == RUNTIME_NAME:
                    break
                time.sleep(0.25)
            else:
                raise DrillError(f"the Docker engine did not take the {RUNTIME_NAME} runtime from {DAEMON_JSON}")
        return version
    if ok:
        return version
    if needs_wrapper:
        assert wrapper is not None
        _write_daemon_json(wrapper)
    _start_dockerd()
    return engine_answers()[1]
