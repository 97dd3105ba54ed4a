"""Cached build steps with one progress line each.

A step's output is kept with a stamp naming what it was built from (versions,
recipe hash). The next run skips a step whose stamp matches, so ``cluster up``
after the first build costs only the checks.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops_drill import paths
from mlops_drill.errors import DrillError

#: Long builds yield the CPU to whoever else shares the machine.
NICE = ["nice", "-n", "10"]


def kind_cache() -> Path:
    """Root of everything the kind backend builds (``~/.cache/mlops-drill/kind``)."""
    return paths.cache_dir() / "kind"


def digest(*parts: str | bytes | Path) -> str:
    """Short hash of strings, bytes and file contents: a recipe's identity."""
    sha = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            sha.update(part.read_bytes())
        elif isinstance(part, str):
            sha.update(part.encode())
        else:
            sha.update(part)
        sha.update(b"\0")
    return sha.hexdigest()[:16]


def log_file() -> Path:
    folder = kind_cache()
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "build.log"


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, nice: bool = False,
        input: str | bytes | None = None, timeout: float | None = None, what: str = "") -> str:
    """Run a build command, its output appended to the build log; a failure is one line naming the log."""
    full = [*NICE, *cmd] if nice else cmd
    log = log_file()
    with open(log, "ab") as handle:
        handle.write(f"$ {' '.join(map(str, full))}\n".encode())
    result = subprocess.run(full, cwd=cwd, env=env, input=input.encode() if isinstance(input, str) else input,
                            capture_output=True, timeout=timeout)
    with open(log, "ab") as handle:
        handle.write(result.stdout[-20000:])
        handle.write(result.stderr[-20000:])
    if result.returncode != 0:
        last = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise DrillError(f"{what or cmd[0]} failed: {last[0][:300]} (full log: {log})")
    return result.stdout.decode(errors="replace")


@dataclass
class Step:
    """One cacheable piece: done when ``stamp_file`` holds ``stamp`` (and ``check`` agrees).

    ``stamp`` may be a function: a later step's identity includes earlier steps' outputs,
    known only once they are built.
    """

    name: str
    stamp: str | Callable[[], str]
    stamp_file: Path
    build: Callable[[], None]
    check: Callable[[], bool] = lambda: True

    def identity(self) -> str:
        return self.stamp() if callable(self.stamp) else self.stamp

    def done(self) -> bool:
        return self.stamp_file.is_file() and self.stamp_file.read_text().strip() == self.identity() and self.check()


class Progress:
    """``[kind 3/12] step ... 41.2s`` lines: plain text, so CI logs read the same as a terminal."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self.index = 0
        self.enabled = enabled
        self.timings: dict[str, float] = {}

    def line(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def run(self, step: Step) -> None:
        self.index += 1
        prefix = f"[kind {self.index}/{self.total}] {step.name}"
        if step.done():
            self.line(f"{prefix}: cached")
            self.timings[step.name] = 0.0
            return
        self.line(f"{prefix}: building ...")
        started = time.monotonic()
        step.build()
        step.stamp_file.parent.mkdir(parents=True, exist_ok=True)
        step.stamp_file.write_text(step.identity() + "\n")
        took = time.monotonic() - started
        self.timings[step.name] = took
        with open(log_file(), "a") as handle:
            handle.write(f"# step {step.name}: {took:.1f}s\n")
        self.line(f"{prefix}: done in {took:.1f}s")


def go_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Static binaries (they run in images FROM scratch), reproducible paths, no VCS stamping."""
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod -buildvcs=false")
    env.update(extra or {})
    return env
