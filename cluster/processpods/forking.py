"""The process kubelet's side of the zygote: start it, ask it for a child, watch that child.

Why a separate client: the runner needs something that behaves like
``asyncio.subprocess.Process`` (pid, returncode, stdout/stderr readers,
``wait()``) whether the container was exec'd or forked. When the zygote is
missing, slow to come up or dies, spawning falls back to an exec: the zygote
only ever makes a start faster, never makes it fail.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from mlops_drill.cluster.processpods.zygote import forkable

log = logging.getLogger("mlops_drill.processpods")
READY_TIMEOUT_S = 20.0


def enabled() -> bool:
    """``MLOPS_DRILL_ZYGOTE=0`` turns forking off (every container is exec'd)."""
    return os.environ.get("MLOPS_DRILL_ZYGOTE", "1").strip().lower() not in ("0", "false", "no", "off")


class ForkedProcess:
    """A zygote child, seen through the parts of ``asyncio.subprocess.Process`` the runner uses."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader,
                 status: asyncio.Task) -> None:
        self.pid, self.stdout, self.stderr = pid, stdout, stderr
        self.returncode: int | None = None
        self._status = status

    async def wait(self) -> int:
        if self.returncode is None:
            self.returncode = await asyncio.shield(self._status)
        return self.returncode


async def _reader(fd: int, limit: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


async def _read_line(loop: asyncio.AbstractEventLoop, sock: socket.socket, buffer: bytearray) -> dict | None:
    while b"\n" not in buffer:
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            return None
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


class Zygote:
    """One zygote per process kubelet, started at once so it is warm when the first pod comes."""

    def __init__(self, state: Path) -> None:
        self.address = f"\0mlops-drill-zygote-{os.getpid()}-{secrets.token_hex(4)}"  # abstract: no path limit
        self.log = state / "logs" / "zygote.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future | None = None
        self.starting: asyncio.Lock | None = None

    async def start(self) -> None:
        """Start the zygote unless it runs (two pods arriving at once start one zygote)."""
        if self.starting is None:
            self.starting = asyncio.Lock()
        async with self.starting:
            if self.proc is not None and self.proc.returncode is None:
                return
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "ab") as out:
                self.proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "mlops_drill.cluster.processpods.zygote", "@" + self.address[1:],
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
            self.ready = asyncio.ensure_future(self._wait_ready())

    async def _wait_ready(self) -> bool:
        """The zygote listens only once its imports are done: a connection that succeeds means warm."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while loop.time() < deadline and self.proc is not None and self.proc.returncode is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, self.address)
                return True
            except OSError:
                await asyncio.sleep(0.05)
            finally:
                sock.close()
        log.warning("zygote not ready after %.0fs: containers are exec'd (see %s)", READY_TIMEOUT_S, self.log)
        return False

    async def stop(self) -> None:
        if self.ready is not None and not self.ready.done():
            self.ready.cancel()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    async def spawn(self, argv: list[str], cwd: Path, env: dict[str, str], limit: int) -> ForkedProcess | None:
        """A forked child running ``argv``; None when it must be exec'd instead (not forkable, no zygote)."""
        if not enabled() or not forkable(argv):
            return None
        if self.proc is None or self.proc.returncode is not None:
            await self.start()
        assert self.ready is not None
        if not await asyncio.shield(self.ready):
            return None
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open(os.devnull, os.O_RDONLY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, self.address)
            request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env}).encode() + b"\n"
            sent = socket.send_fds(sock, [request[:1]], [null, out_w, err_w])
            if sent != 1:
                raise OSError("zygote took no request")
            await loop.sock_sendall(sock, request[1:])
        except OSError as exc:
            sock.close()
            for fd in (out_r, err_r):
                os.close(fd)
            log.warning("zygote unreachable (%s): exec instead", exc)
            return None
        finally:
            for fd in (null, out_w, err_w):
                os.close(fd)
        buffer = bytearray()
        answer = await _read_line(loop, sock, buffer)
        if not answer or "pid" not in answer:
            sock.close()
            for fd in (out_r, err_r):
                os.close(fd)
            return None

        async def status() -> int:
            try:
                final = await _read_line(loop, sock, buffer)
            finally:
                sock.close()
            return int(final["exit"]) if final and "exit" in final else -9  # the zygote died: so did its child

        stdout, stderr = await _reader(out_r, limit), await _reader(err_r, limit)
        return ForkedProcess(int(answer["pid"]), stdout, stderr, asyncio.ensure_future(status()))
