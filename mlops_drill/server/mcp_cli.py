"""`mlops-drill mcp`: the drill as an MCP server, on stdio (for a client that spawns it) or streamable HTTP.

Why stdio by default: MCP clients (Claude Desktop, IDE agents, the SDK's
``stdio_client``) start a server as a subprocess and talk over its stdin and
stdout, so nothing listens on a port. ``--http PORT`` serves streamable HTTP
on loopback only and behind the agent API's bearer token, for the same reasons
the agent API does: every tool call runs a command as the seat, and pods of the
embedded backend share the host's loopback (:mod:`mlops_drill.server.auth`).

Why the cluster is reached lazily: the client waits for the MCP handshake, and
bringing a cluster up takes longer than a client waits; the first tool that
needs the cluster (``start_scenario``) brings it up, or reuses a running one.
"""
from __future__ import annotations

import sys
from typing import Optional

import typer

from mlops_drill.errors import DrillError
from mlops_drill.server.cli import HOST, BackendOpt, NameOpt, TokenOpt, _ctx_factory, _listen


def mcp(http: Optional[int] = typer.Option(None, "--http", metavar="PORT",
                                           help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio"),
        token: Optional[str] = TokenOpt, backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Serve the drill over MCP (tools, the briefing resource, the rules prompt); stdio unless --http."""
    from mlops_drill.server.auth import TOKEN_ENV, checked_token, new_token
    from mlops_drill.server.mcp_server import create_server

    if http is not None and not 1 <= http <= 65535:
        raise DrillError(f"--http {http}: expected a port 1-65535")
    if http is not None:
        token = checked_token(token, f"--token / ${TOKEN_ENV}") if token else new_token()
    server = create_server(_ctx_factory(backend, name))
    try:
        if http is None:
            server.run("stdio")
            return
        _serve_http(server, http, token, name)
    finally:
        server.drills.close()  # port-forwards run in sessions of their own: a signal would leave them behind


def _serve_http(server, port: int, token: str, name: str) -> None:
    """The SDK's streamable HTTP app behind the bearer token, on a socket bound here (the token file's port)."""
    import uvicorn

    from mlops_drill.server.auth import TOKEN_ENV, BearerAuth, remove_token_file, write_token_file

    sock = _listen(port, "--http")
    token_path = write_token_file(port, token)
    print(f"MCP (streamable HTTP) on http://{HOST}:{port}/mcp for cluster {name}\n"
          f"bearer token in {token_path} (mode 0600); send it as `Authorization: Bearer <token>`, e.g.\n"
          f"  export {TOKEN_ENV}=\"$(cat {token_path})\"", file=sys.stderr)
    app = BearerAuth(server.streamable_http_app(host=HOST), token)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        remove_token_file(token_path, token)
        sock.close()
