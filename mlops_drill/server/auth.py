"""The agent API's bearer token: what closes its loopback port to everything but its own user.

Why a token on a loopback-only server: on the embedded backend pods are local
processes that share the host's network namespace, so a candidate who
``kubectl exec``s into a pod can reach 127.0.0.1 like any local program, and
every route of this API starts, finishes or resets drills and runs commands as
the seat. Loopback keeps other machines out; the token keeps pods (and other
local users) out, the way Jupyter's token does.

Why the token lives in a 0600 file named after the port: the user's state
directory is not visible inside a pod, a file is not echoed into logs the way a
printed token is, and a client that knows only the URL (``Client(url)``,
``benchmark --url``) finds the token of the server on that port without being
told.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

import httpx

from mlops_drill import paths
from mlops_drill.errors import DrillError

TOKEN_ENV = "MLOPS_DRILL_API_TOKEN"
MIN_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")  # visible ASCII: one header value, no spaces

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def checked_token(token: str, source: str) -> str:
    """``token`` if it can be a bearer token; a one-line DrillError naming ``source`` otherwise."""
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
        raise DrillError(f"{source}: a token is at least {MIN_TOKEN_CHARS} visible ASCII characters, "
                         "no spaces (leave it unset for a random one)")
    return token


def token_file(port: int) -> Path:
    """Where ``serve-api`` on ``port`` keeps its token (under the user's state directory)."""
    return paths.state_dir() / "agent-api" / f"port-{port}.token"


def write_token_file(port: int, token: str) -> Path:
    """Write the token, readable by its user only (the folder 0700, the file 0600 even if it existed)."""
    path = token_file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path


def remove_token_file(path: Path, token: str) -> None:
    """Remove the file when the server stops, unless a newer server on that port has replaced it."""
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def find_token(base_url: str) -> str | None:
    """The token a client sends to ``base_url``: ``$MLOPS_DRILL_API_TOKEN``, else that local port's token file.

    The file is read for a loopback URL only, so a client never sends this
    machine's token to another host.
    """
    from_env = os.environ.get(TOKEN_ENV, "").strip()
    if from_env:
        return from_env
    url = httpx.URL(base_url)
    if not _is_loopback(url.host):
        return None
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        return token_file(port).read_text().strip() or None
    except OSError:
        return None


def _bearer(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credential = value.strip().partition(b" ")
            return credential.strip() if scheme.lower() == b"bearer" else b""
    return None


class BearerAuth:
    """ASGI middleware: every HTTP or WebSocket request but ``open_paths`` needs ``Authorization: Bearer <token>``.

    Why a middleware rather than a route dependency: it answers before routing
    and body parsing, so an unknown path or a malformed body gets 401 too, and a
    route added later is closed without anyone remembering to close it.
    """

    MISSING = "missing token: send `Authorization: Bearer <token>`; serve-api printed where its token is " \
              f"(the token file, or ${TOKEN_ENV})"
    WRONG = "wrong token: send the token of the serve-api you are talking to " \
            f"(its token file for this port, or ${TOKEN_ENV} as it was when it started)"

    def __init__(self, app: Asgi, token: str, open_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token.encode()
        self.open_paths = frozenset(p for p in open_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = _bearer(scope.get("headers") or ())
        if given and secrets.compare_digest(given, self.token):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": self.MISSING if given is None else self.WRONG}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="mlops-drill agent API"')]})
        await send({"type": "http.response.body", "body": body})
