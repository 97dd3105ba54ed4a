"""Run an app with uvicorn on a loopback port in a background thread.

Why a real server and not an in-process transport for benchmarks and tests:
agents use the synchronous client, and a real socket is the interface an
outside agent gets, so the benchmark measures what users run.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator

import uvicorn
from fastapi import FastAPI

from mlops_drill.errors import DrillError


@contextlib.contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0) -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT``) while the app serves; stop it afterwards."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True, name="mlops-drill-api")
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DrillError(f"the agent API did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
