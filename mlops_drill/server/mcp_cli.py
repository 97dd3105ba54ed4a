"""`mlops-drill mcp`: the drill as an MCP server, on stdio (for a client that spawns it) or streamable HTTP.

Why stdio by default: MCP clients (Claude Desktop, IDE agents, the SDK's
``stdio_client``) start a server as a subprocess and talk over its stdin and
stdout, so nothing listens on a port. ``--http PORT`` serves streamable HTTP
on loopback only, for the same reason the agent API does: every tool call
runs a command as the seat.

Why the cluster is reached lazily: the client waits for the MCP handshake, and
bringing a cluster up takes longer than a client waits; the first tool that
needs the cluster (``start_scenario``) brings it up, or reuses a running one.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer

from mlops_drill.errors import DrillError
from mlops_drill.server.cli import HOST, BackendOpt, NameOpt, _ctx_factory


def mcp(http: Optional[int] = typer.Option(None, "--http", metavar="PORT",
                                           help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio"),
        backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Serve the drill over MCP (tools, the briefing resource, the rules prompt); stdio unless --http."""
    from mlops_drill.server.mcp_server import create_server

    if http is not None and not 1 <= http <= 65535:
        raise DrillError(f"--http {http}: expected a port 1-65535")
    server = create_server(_ctx_factory(backend, name))
    try:
        if http is None:
            server.run("stdio")
            return
        print(f"MCP (streamable HTTP) on http://{HOST}:{http}/mcp for cluster {name}", file=sys.stderr)
        server.run("streamable-http", host=HOST, port=http)
    finally:
        server.drills.close()  # port-forwards run in sessions of their own: a signal would leave them behind
