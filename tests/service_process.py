"""A platform service as a real local process on a free port, answered before a test uses it.

One helper for the tests that start a service outside any cluster (the registry, the
scoring queue and worker, fraud-model's harness): start it, wait until its health
path answers 200 (failing with its own output when it exits or never answers), and
stop it after, killing it if it will not stop.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager
from typing import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service_process(argv: list[str], env: dict[str, str], what: str, health: str = "/healthz",
                    keep_output: bool = False) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of ``argv`` serving on a free ``PORT``; ``keep_output``: stdout is the caller's to read."""
    port = free_port()
    out = subprocess.PIPE if keep_output else subprocess.DEVNULL
    err = subprocess.STDOUT if keep_output else subprocess.PIPE
    proc = subprocess.Popen(argv, env={**os.environ, **env, "PORT": str(port)}, stdout=out, stderr=err, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                said = (proc.stdout if keep_output else proc.stderr).read()[-1000:]
                raise AssertionError(f"{what} exited: {said}")
            assert time.monotonic() < deadline, f"{what} did not answer {health} within 30 s"
            try:
                if httpx.get(base + health, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
