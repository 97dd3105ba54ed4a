"""Group-drill commands on the `mlops-drill` CLI: ``serve`` (instructor) and ``join`` (seat)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

TOKEN_ENV = "MLOPS_DRILL_INSTRUCTOR_TOKEN"


def serve(
    port: int = typer.Option(8765, "--port", "-p", help="TCP port on the host"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback by default)"),
    state: Optional[Path] = typer.Option(None, "--state", help="where drills and transcripts are kept"),
    parallel: int = typer.Option(1, "--parallel", help="seat clusters started at once (1 on 2 cores)"),
    shared_parallel: int = typer.Option(4, "--shared-parallel",
                                        help="seats of the shared cluster started at once"),
    shared_kubeconfig: Optional[Path] = typer.Option(
        None, "--shared-kubeconfig",
        help="seats share this existing cluster (e.g. a kind cluster) instead of an embedded one of the server's"),
) -> None:
    """Serve group drills: the instructor's dashboard and API, and the seats' join endpoint."""
    import uvicorn

    from mlops_drill import paths
    from mlops_drill.drills.app import create_app

    token = os.environ.get(TOKEN_ENV) or None
    if shared_kubeconfig is not None and not shared_kubeconfig.is_file():
        raise typer.BadParameter(f"{shared_kubeconfig}: no such file", param_hint="--shared-kubeconfig")
    app = create_app(state or paths.state_dir() / "drills", instructor_token=token, parallel=parallel,
                     shared_parallel=shared_parallel, shared_kubeconfig=shared_kubeconfig)
    base = f"http://{host}:{port}"
    if token is None:  # generated: shown once, never written anywhere
        print(f"instructor token: {app.state.instructor_token}", file=sys.stderr)
    print(f"dashboard: {base}/login?token=<instructor token>\n"
          f"create a drill: curl -H 'Authorization: Bearer <token>' -d '{{\"scenario\": \"gpu-missing-toleration\", "
          f"\"seats\": 3}}' -H 'Content-Type: application/json' {base}/api/drills", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def join(
    code: str = typer.Argument(..., help="the seat's join code, e.g. K7QM-3XPA"),
    server: str = typer.Option(..., "--server", help="the drill server, e.g. http://127.0.0.1:8765"),
) -> None:
    """Join a group drill: fetch your seat's kubeconfig and open the recorded shell."""
    from mlops_drill.drills.join import join as run_join

    raise typer.Exit(run_join(code, server))


def register(app: typer.Typer, context: Any = None) -> None:
    app.command("serve")(serve)
    app.command("join")(join)
