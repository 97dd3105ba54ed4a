"""`mlops-drill serve-api` and `mlops-drill benchmark`: the agent API on the command line.

Why the API binds to loopback only: every request runs a command as the seat,
so it is as powerful as a shell on the drill cluster; reach it from elsewhere
through your own tunnel, never by exposing it. Why it also takes a bearer token:
pods of the embedded backend share the host's loopback (see
:mod:`mlops_drill.server.auth`).
"""
from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any, Optional

import typer

from mlops_drill.errors import DrillError

BackendOpt = typer.Option("embedded", "--backend", "-b", help="embedded | kind | existing")
NameOpt = typer.Option("mlops-drill", "--name", help="cluster name")
HOST = "127.0.0.1"
TokenOpt = typer.Option(None, "--token", envvar="MLOPS_DRILL_API_TOKEN", show_envvar=True,
                        help="the API's bearer token (a command-line argument shows in `ps`: prefer the env var)")


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


def _listen(port: int, flag: str = "--port") -> socket.socket:
    """Bind here rather than in uvicorn: the token file is named after the bound port (``--port 0`` too)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise DrillError(f"{flag} {port}: cannot listen on {HOST}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    return sock


def serve_api(port: int = typer.Option(8765, "--port", "-p", help="TCP port on 127.0.0.1 (0: any free port)"),
              token: Optional[str] = TokenOpt, backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Serve the agent API (OpenAPI at /openapi.json) for the cluster, behind a bearer token; Ctrl-C stops it."""
    import uvicorn

    from mlops_drill.server import create_app
    from mlops_drill.server.auth import TOKEN_ENV, checked_token, new_token, remove_token_file, write_token_file

    if not 0 <= port <= 65535:
        raise DrillError(f"--port {port}: expected 0-65535")
    token = checked_token(token, f"--token / ${TOKEN_ENV}") if token else new_token()
    factory = _ctx_factory(backend, name)
    factory()  # fail now, with the cluster's own error, rather than on the first request
    sock = _listen(port)
    bound = sock.getsockname()[1]
    token_path = write_token_file(bound, token)
    base = f"http://{HOST}:{bound}"
    # The token itself is never printed: stderr often ends up in a log file.
    print(f"agent API on {base}/api/v1 (schema: /openapi.json, /docs) for cluster {name}\n"
          f"bearer token in {token_path} (mode 0600; the Python client and `benchmark --url` read it there), "
          f"or:\n  export {TOKEN_ENV}=\"$(cat {token_path})\"\n"
          f"  curl -H \"Authorization: Bearer ${TOKEN_ENV}\" {base}/api/v1/scenarios", file=sys.stderr)
    try:
        uvicorn.Server(uvicorn.Config(create_app(factory, token=token), log_level="warning")).run(sockets=[sock])
    finally:
        remove_token_file(token_path, token)
        sock.close()


def benchmark(agent: str = typer.Option(..., "--agent", help="MODULE:CALLABLE taking a client Session"),
              scenarios: str = typer.Option("all", "--scenarios", "-s", help="all | id,id,..."),
              url: Optional[str] = typer.Option(None, "--url", help="an API already serving (serve-api); "
                                                                    "default: one in-process for the cluster"),
              fmt: str = typer.Option("rich", "--format", "-f", help="rich | md | json"),
              reset: bool = typer.Option(True, "--reset/--no-reset", help="restore the baseline after each run"),
              seeds: int = typer.Option(1, "--seeds", help="variants per parameterised scenario: K distinct "
                                                           "seeds, then mean and spread per scenario (a scenario "
                                                           "without parameters runs once)"),
              seed: Optional[int] = typer.Option(None, "--seed", help="the first seed (BASE, BASE+1, ...); "
                                                                      "default: fresh random seeds"),
              token: Optional[str] = TokenOpt, backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Run an agent across scenarios (start, agent, finish, reset) and print the graded table."""
    from mlops_drill.server.benchmark import (check_seeds, load_agent, resolve_scenarios, rows_table,
                                              run_benchmark, stderr_log)
    from mlops_drill.server.client import Client

    if fmt not in ("rich", "md", "json"):
        raise DrillError(f"--format {fmt!r}: expected one of rich, md, json")
    check_seeds(seeds, seed)  # before any cluster starts
    run = load_agent(agent)
    with contextlib.ExitStack() as stack:
        if url is None:
            from mlops_drill.server import create_app, serving

            factory = _ctx_factory(backend, name)
            ctx = factory()
            app = create_app(lambda: ctx)  # its own random token, handed to its client only
            url, token = stack.enter_context(serving(app)), app.state.api_token
        # --url: the token given, else $MLOPS_DRILL_API_TOKEN, else the token file of that local port
        client = stack.enter_context(Client(url, token=token))
        ids, skipped = resolve_scenarios(scenarios, client.scenarios())
        for sid in skipped:
            stderr_log(f"{sid}: skipped, its fault is not implemented yet")
        rows = run_benchmark(client, run, ids, agent_name=agent.rpartition(":")[0].rsplit(".", 1)[-1],
                             reset=reset, log=stderr_log, seeds=seeds, base_seed=seed)
    sys.stdout.write(rows_table(rows, fmt, spread=seeds > 1))


def register(app: typer.Typer, context: Any = None) -> None:
    app.command("serve-api")(serve_api)
    app.command("benchmark")(benchmark)
    from mlops_drill.server.mcp_cli import mcp

    app.command("mcp")(mcp)
