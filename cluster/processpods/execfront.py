"""The kubelet endpoint the API server dials on the embedded backend: KWOK's, behind a front.

Why a front: KWOK's Exec runs a ``kubectl exec`` command on the host with
kwok-controller's own rights and has no way to wrap it. The API server reaches
every node's kubelet at the node's ``daemonEndpoints.kubeletEndpoint`` port,
which the node stages point here. This front takes only connections that
present a client certificate of the cluster's CA (the API server's
``--kubelet-client-certificate``), rewrites an exec request's ``command``
parameters so the command runs inside the pod's sandbox (``PodRunner.exec_argv``:
nsenter + setpriv + the container's env), and then tunnels the upgraded stream
to KWOK as the seat gateway tunnels upgrades. An exec into a pod without a
sandbox, and ``attach`` / ``run``, are refused: nothing reaches the host's shell.
Logs and port-forward pass unchanged.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from mlops_drill.cluster.processpods.kubeproxy import pump
from mlops_drill.cluster.processpods.spdystatus import ExecStreams, FrameScanner

log = logging.getLogger("mlops_drill.execfront")
MAX_HEAD = 256 * 1024

# (namespace, pod name, command) -> the host command that runs it inside the pod, or None: no such container.
ExecRewriter = Callable[[str, str, list[str]], "list[str] | None"]


def rewrite_head(head: bytes, rewrite: ExecRewriter) -> tuple[bytes | None, bool, str]:
    """The request head to send on (None: refuse), whether it is an upgrade, and why it was refused."""
    text = head.decode("latin-1")
    request_line, _, rest = text.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        return None, False, "bad request line"
    method, target, version = parts
    url = urlsplit(target)
    segments = [unquote(s) for s in url.path.split("/")]
    headers = [h for h in rest.split("\r\n") if h]
    upgrade = any(h.lower().startswith("upgrade:") for h in headers)
    kind = segments[1] if len(segments) > 1 else ""
    if kind in ("attach", "run"):
        return None, upgrade, f"{kind} is not served for process-backed pods"
    if kind == "exec":
        if len(segments) < 4:
            return None, upgrade, "exec needs /exec/<namespace>/<pod>/<container>"
        namespace, pod = segments[2], segments[3]
        query = parse_qsl(url.query, keep_blank_values=True)
        command = [v for k, v in query if k == "command"]
        argv = rewrite(namespace, pod, command) if command else None
        if argv is None:
            return None, upgrade, f"container not found in pod {namespace}/{pod}"
        query = [(k, v) for k, v in query if k != "command"] + [("command", a) for a in argv]
        target = url.path + "?" + urlencode(query, quote_via=quote)
    if not upgrade:  # one request per connection: a kept-alive connection's next request would pass unread
        headers = [h for h in headers if not h.lower().startswith("connection:")] + ["Connection: close"]
    return (f"{method} {target} {version}\r\n" + "\r\n".join(headers) + "\r\n\r\n").encode("latin-1"), upgrade, ""


class ExecFront:
    def __init__(self, rewrite: ExecRewriter, upstream: tuple[str, int], pki: Path) -> None:
        self.rewrite = rewrite
        self.upstream = upstream
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.context.verify_mode = ssl.CERT_REQUIRED  # only the API server's kubelet client certificate
        self.server: asyncio.base_events.Server | None = None

    async def start(self, port: int, host: str = "127.0.0.1") -> None:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=self.context)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            writer.close()
            return
        if len(head) > MAX_HEAD:
            writer.close()
            return
        try:
            new_head, upgrade, why = rewrite_head(head, self.rewrite)
        except Exception as exc:  # never forward what could not be read
            new_head, upgrade, why = None, False, f"unreadable request: {exc}"
        if new_head is None:
            body = why.encode() + b"\n"
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        up_writer.write(new_head)
        await up_writer.drain()
        to_upstream = to_client = None
        if upgrade:
            try:
                answer = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
                writer.close()
                up_writer.close()
                return
            writer.write(answer)
            status = answer.split(b"\r\n", 1)[0]
            if b" 101 " not in status:  # refused upgrade: answer it, then nothing more on this connection
                await pump(up_reader, writer)
                up_writer.close()
                return
            if _is_exec(new_head) and b"upgrade: spdy/" in answer.lower():
                streams = ExecStreams()  # KWOK's exit status, told as a kubelet tells it (spdystatus.py)
                to_upstream = FrameScanner(streams, from_client=True).feed
                to_client = FrameScanner(streams, from_client=False).feed
        await asyncio.gather(pump(reader, up_writer, to_upstream), pump(up_reader, writer, to_client))


def _is_exec(head: bytes) -> bool:
    target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
    return urlsplit(target.decode("latin-1")).path.split("/")[1:2] == ["exec"]
