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


def _zygote_env() -> dict[str, str]:
    """The zygote's own environment, which every child's ``/proc/<pid>/environ`` shows: nothing of the host's."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "MLOPS_DRILL_ZYGOTE")
    return {"HOME": "/", "PYTHONUNBUFFERED": "1", **{k: v for k, v in os.environ.items() if k in keep}}


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
        # A socket file in a private folder, never an abstract socket: abstract names belong to the network
        # namespace, which pods share with the host, so any pod could ask the zygote for a root process.
        folder = state / "zygote"
        if len(str(folder)) > 80:  # sun_path holds 108 bytes
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix="mlops-drill-zygote-"))
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        self.address = str(folder / f"z-{os.getpid()}-{secrets.token_hex(3)}.sock")
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
                    sys.executable, "-m", "mlops_drill.cluster.processpods.zygote", self.address,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=_zygote_env())
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

    async def spawn(self, argv: list[str], cwd: Path | str, env: dict[str, str], limit: int,
                    sandbox: dict | None = None) -> ForkedProcess | None:
        """A forked child running ``argv``; None when it must be exec'd instead (not forkable, no zygote).

        ``sandbox`` (pid of the pod's pause process, uid, gid, caps): the child joins that pod.
        """
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
            request = json.dumps({"argv": argv, "cwd": str(cwd), "env": env, "sandbox": sandbox}).encode() + b"\n"
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
