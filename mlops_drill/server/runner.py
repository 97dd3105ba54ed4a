"""Running an allowed command as the seat, and writing it into the session's transcript.

Why commands are recorded here and not by the shell's shims: the API has no
shell, but the grader must see the same ``command`` events a human's recorded
shell writes (argv, exit code, output, times), so an agent's transcript grades
exactly like a person's. Refusals are recorded as ``session`` events with
``data.action == "refused"``: the instructor sees them in the transcript, and
the grader, which scores only what ran, ignores them, as it ignores a typo the
shell rejected.

Port-forwards are the one thing that outlives a request: each runs as a child
``kubectl port-forward`` whose output is drained by a thread (so it never
blocks on a full pipe), and whose local ports are the only ones ``curl`` may
reach. All of them stop when the session finishes.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlops_drill.grader.transcript import append
from mlops_drill.server.policy import Checked

OUTPUT_CAP = 1024 * 1024           # bytes of stdout/stderr one response carries
FORWARD_READY_S = 15.0             # how long a port-forward may take to listen
_FORWARDING = re.compile(r"Forwarding from (?:127\.0\.0\.1|\[::1\]|localhost):(\d+)")


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False


@dataclass
class _Forward:
    line: str
    proc: subprocess.Popen
    ports: set[int] = field(default_factory=set)
    output: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _cap(text: str) -> tuple[str, bool]:
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= OUTPUT_CAP:
        return text, False
    return raw[:OUTPUT_CAP].decode("utf-8", errors="ignore"), True


class CommandRunner:
    """Runs one session's commands with its kubeconfig and keeps its port-forwards."""

    def __init__(self, transcript: Path, kubeconfig: Path, kubectl: Path, curl: str | None) -> None:
        self.transcript = Path(transcript)
        self.kubeconfig = Path(kubeconfig)
        self.tools = {"kubectl": str(kubectl), "curl": curl}
        self._forwards: list[_Forward] = []
        self._lock = threading.Lock()

    # -- environment ---------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        """Only what the tools need: no proxies, no KUBECTL_* knobs, no curlrc from the server's user."""
        keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
        return {**keep, "KUBECONFIG": str(self.kubeconfig)}

    def _real(self, cmd: Checked) -> list[str]:
        binary = self.tools.get(cmd.tool)
        if not binary:
            raise FileNotFoundError(f"{cmd.tool}: not installed on the API host")
        if cmd.tool == "curl":
            # -q must come first (no ~/.curlrc); no globbing, http only, no redirect elsewhere.
            return [binary, "-q", "--globoff", "--proto", "=http", "--proto-redir", "=http", *cmd.argv[1:]]
        return [binary, *cmd.argv[1:]]

    # -- ports curl may reach -------------------------------------------------------------
    def forwarded_ports(self) -> frozenset[int]:
        with self._lock:
            return frozenset(p for f in self._forwards if f.alive for p in f.ports)

    # -- running ---------------------------------------------------------------------------
    def run(self, cmd: Checked, stdin: str | None, timeout_s: float) -> Result:
        if cmd.port_forward:
            return self._record(cmd, *self._start_forward(cmd))
        started = time.time()
        t0 = time.monotonic()
        try:
            proc = subprocess.run(self._real(cmd), input=stdin, capture_output=True, text=True,
                                  env=self._env(), timeout=timeout_s, errors="replace",
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            out = _text(exc.stdout)
            err = _text(exc.stderr) + f"\nmlops-drill: stopped after {timeout_s:g}s (timeout_s)\n"
            code = 124
        except FileNotFoundError as exc:
            code, out, err = 127, "", f"{exc}\n"
        if code < 0:
            code = 128 - code  # killed by signal N -> 128+N, as a shell reports it
        return self._record(cmd, code, out, err, time.monotonic() - t0, started)

    def _record(self, cmd: Checked, code: int, out: str, err: str, duration: float, started: float) -> Result:
        append(self.transcript, "command", line=cmd.line, argv=list(cmd.argv), cwd="", exit_code=code,
               duration_s=round(duration, 3), stdout=out, stderr=err, ts=started,
               data={"capture": "api", "real": self.tools.get(cmd.tool) or ""})
        out_c, out_cut = _cap(out)
        err_c, err_cut = _cap(err)
        return Result(code, out_c, err_c, round(duration, 3), out_cut, err_cut)

    def refuse(self, line: str, reason: str) -> None:
        append(self.transcript, "session", line=line, exit_code=None,
               data={"action": "refused", "reason": reason})

    # -- port-forwards ----------------------------------------------------------------------
    def _start_forward(self, cmd: Checked) -> tuple[int, str, str, float, float]:
        started = time.time()
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(self._real(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, env=self._env(),
                                    start_new_session=True, errors="replace")
        except FileNotFoundError as exc:
            return 127, "", f"{exc}\n", time.monotonic() - t0, started
        fwd = _Forward(cmd.line, proc)
        threading.Thread(target=self._drain, args=(fwd,), daemon=True, name="port-forward").start()
        fwd.ready.wait(FORWARD_READY_S)
        time.sleep(0.2)  # the other ports' (and IPv6) lines follow the first at once
        out = "".join(fwd.output)
        if fwd.ports and fwd.alive:
            with self._lock:
                self._forwards.append(fwd)
            return 0, out, "", time.monotonic() - t0, started
        _stop(proc)
        code = proc.returncode if proc.returncode and proc.returncode > 0 else 1
        if not out.strip():
            out = f"port-forward did not listen within {FORWARD_READY_S:g}s\n"
        return code, "", out, time.monotonic() - t0, started

    def _drain(self, fwd: _Forward) -> None:
        """Read the forward's output for its whole life (a full pipe would stall it); note its ports."""
        assert fwd.proc.stdout is not None
        for line in fwd.proc.stdout:
            match = _FORWARDING.search(line)
            if match:
                with self._lock:
                    fwd.ports.add(int(match.group(1)))
            if len(fwd.output) < 40 and not line.startswith("Handling connection"):
                fwd.output.append(line)
            if match:
                fwd.ready.set()
        fwd.ready.set()

    def stop_forwards(self) -> int:
        with self._lock:
            forwards, self._forwards = self._forwards, []
        for fwd in forwards:
            _stop(fwd.proc)
        return len(forwards)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
