"""`mlops-drill serve-api` and `mlops-drill benchmark`: the agent API on the command line.

Why the API binds to loopback only: every request runs a command as the seat,
so it is as powerful as a shell on the drill cluster; reach it from elsewhere
through your own tunnel, never by exposing it.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Optional

import typer

from mlops_drill.errors import DrillError

BackendOpt = typer.Option("embedded", "--backend", "-b", help="embedded | kind | existing")
NameOpt = typer.Option("mlops-drill", "--name", help="cluster name")
HOST = "127.0.0.1"


def _ctx_factory(backend: str, name: str):
    """A factory the app calls once: the cluster (started or reused) and its drill context."""
    def make():
        from mlops_drill.cluster.backends import get_backend
        from mlops_drill.injector.context import context_for
        from mlops_drill.interrupts import up_cleaned_on_interrupt

        b = get_backend(backend, name=name)
        up_cleaned_on_interrupt(b, progress=False)
        return context_for(b)
    return make


def serve_api(port: int = typer.Option(8765, "--port", "-p", help="TCP port on 127.0.0.1 (0: any free port)"),
              backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Serve the agent API (OpenAPI at /openapi.json) for the cluster; Ctrl-C stops it."""
    import uvicorn

    from mlops_drill.server import create_app

    if not 0 <= port <= 65535:
        raise DrillError(f"--port {port}: expected 0-65535")
    factory = _ctx_factory(backend, name)
    factory()  # fail now, with the cluster's own error, rather than on the first request
    print(f"agent API on http://{HOST}:{port}/api/v1 (schema: /openapi.json) for cluster {name}", file=sys.stderr)
    uvicorn.run(create_app(factory), host=HOST, port=port, log_level="warning")


def benchmark(agent: str = typer.Option(..., "--agent", help="MODULE:CALLABLE taking a client Session"),
              scenarios: str = typer.Option("all", "--scenarios", "-s", help="all | id,id,..."),
              url: Optional[str] = typer.Option(None, "--url", help="an API already serving (serve-api); "
                                                                    "default: one in-process for the cluster"),
              fmt: str = typer.Option("rich", "--format", "-f", help="rich | md | json"),
              reset: bool = typer.Option(True, "--reset/--no-reset", help="restore the baseline after each run"),
              backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Run an agent across scenarios (start, agent, finish, reset) and print the graded table."""
    from mlops_drill.server.benchmark import load_agent, resolve_scenarios, rows_table, run_benchmark, stderr_log
    from mlops_drill.server.client import Client

    if fmt not in ("rich", "md", "json"):
        raise DrillError(f"--format {fmt!r}: expected one of rich, md, json")
    run = load_agent(agent)
    with contextlib.ExitStack() as stack:
        if url is None:
            from mlops_drill.server import create_app, serving

            factory = _ctx_factory(backend, name)
            ctx = factory()
            url = stack.enter_context(serving(create_app(lambda: ctx)))
        client = stack.enter_context(Client(url))
        ids, skipped = resolve_scenarios(scenarios, client.scenarios())
        for sid in skipped:
            stderr_log(f"{sid}: skipped, its fault is not implemented yet")
        rows = run_benchmark(client, run, ids, agent_name=agent.rpartition(":")[0].rsplit(".", 1)[-1],
                             reset=reset, log=stderr_log)
    sys.stdout.write(rows_table(rows, fmt))


def register(app: typer.Typer, context: Any = None) -> None:
    app.command("serve-api")(serve_api)
    app.command("benchmark")(benchmark)
    from mlops_drill.server.mcp_cli import mcp

    app.command("mcp")(mcp)
