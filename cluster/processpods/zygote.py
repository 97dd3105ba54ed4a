"""A pre-warmed Python that forks the platform's containers instead of exec'ing them.

Why: every platform container is ``python -m mlops_drill.…``, and on a 2-core
machine most of its start-up (about 1 s of a 2.3 s pod start) is importing
FastAPI, pydantic, uvicorn and numpy. A rollout of ``fraud-model`` starts its
pods one after another, so that second dominated how fast a fault shows and how
fast ``reset`` puts the baseline back. The zygote imports those third-party
libraries once per cluster and forks a child per container, as Android's zygote
and CPython's ``forkserver`` do. It imports nothing of ``mlops_drill``: the
child imports the app fresh after its environment is set, so no module-level
state (paths, caches, env reads) leaks from one container into another.

A forked child is still a real process with its own pid, session, file
descriptors and exit status; what differs from an exec is that
``/proc/<pid>/environ`` keeps the zygote's start-up block, so the kubelet
records each container's pid and env in the pod's folder (``records.py``) and
every lookup reads that record first.

Protocol, one Unix-socket connection per container: the client sends one JSON
line (argv, env, cwd) with stdin, stdout and stderr attached as SCM_RIGHTS
descriptors; the zygote answers ``{"pid": N}`` and later ``{"exit": CODE}``
(CODE as ``Popen.returncode``: negative for a signal). Only ``python -m
mlops_drill.…`` commands come here (``forkable``); anything else is exec'd.

Run: ``python -m mlops_drill.cluster.processpods.zygote ADDRESS`` (a Unix socket path, or
``@name`` for an abstract one).
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys

from mlops_drill.cluster.processpods import seccomp  # stateless: the filter every sandboxed child installs

#: What the platform's apps import; each is imported once here and shared by every child.
PRELOAD = ("setproctitle", "numpy", "yaml", "httpx", "pydantic", "fastapi", "fastapi.responses", "starlette.middleware",
           "uvicorn", "uvicorn.config", "uvicorn.server", "uvicorn.main", "uvicorn.loops.asyncio",
           "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.http.httptools_impl",
           "uvicorn.lifespan.on", "kubernetes.client")
MAX_REQUEST = 4 << 20


def forkable(argv: list[str]) -> bool:
    """``<this interpreter> -m mlops_drill.…``: what the zygote can run without an exec."""
    return len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2].startswith("mlops_drill.")


def _preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional speed-up (httptools, ...) missing: the child imports what it needs
            continue


def _die_with(parent: int) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before the prctl took hold
        os._exit(1)


def _libc():
    import ctypes

    return ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _drop_to(uid: int, gid: int, keep_caps: tuple[int, ...]) -> None:
    """Become the container's user; a root container keeps only a container runtime's default capabilities."""
    import ctypes

    libc = _libc()
    for cap in range(64):  # the bounding set first (it needs CAP_SETPCAP, gone once the uid changes)
        if cap not in keep_caps and libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
    if uid != 0:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # from root to another uid: every capability goes
    else:
        os.setgroups([])
        os.setgid(gid)
        mask = sum(1 << c for c in keep_caps)

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                        ("inheritable", ctypes.c_uint32)]

        data = (Data * 2)(Data(mask, mask, 0), Data(0, 0, 0))
        _check(libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")
    _check(libc.prctl(38, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")


def _enter_sandbox(sandbox: dict) -> None:
    """Join the pod's namespaces (held by its pause process), then fork the container's process into them.

    setns into a PID namespace applies to children only, so this process stays
    outside as the container's waiter: it passes the exit status (or the signal)
    of the process inside on to the zygote, as a runtime shim does.
    """
    import resource

    libc = _libc()
    target = int(sandbox["pid"])
    if sandbox.get("cgroup"):  # the pods' cgroup, joined while /sys is still the host's (firewall.py)
        with open(os.path.join(sandbox["cgroup"], "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    handles = [os.open(f"/proc/{target}/ns/{ns}", os.O_RDONLY) for ns in ("ipc", "uts", "pid", "mnt")]
    expected = os.readlink(f"/proc/{target}/exe") if os.path.exists(f"/proc/{target}") else ""
    try:
        for fd in handles:
            _check(libc.setns(fd, 0), "setns")
    finally:
        for fd in handles:
            os.close(fd)
    if not expected:
        os._exit(127)
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the waiter gone (zygote killed), the container goes
        if os.getppid() != parent and os.getppid() != 0:
            os._exit(1)
        os.setsid()  # the container's process leads its own session, as its PID 1 would: signals go to its group
        _drop_to(int(sandbox["uid"]), int(sandbox["gid"]), tuple(sandbox.get("caps") or ()))
        seccomp.install()  # as a runtime's default profile: no user namespaces of its own
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # the process group's signal reaches the container itself
    for fd in (0, 1, 2):
        os.close(fd)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # no handler can be set for these (OSError: exit 1)
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def _run_child(request: dict, fds: list[int], zygote_pid: int, inherited: list[int]) -> None:
    """In the forked child: become the container's process, run its module, exit with its status."""
    import io
    import runpy

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Ignored, as `python` itself sets it at start-up: a write to a closed connection must raise
        # BrokenPipeError, not kill the container (exit 141) while a Service has no ready endpoint yet.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        for fd in inherited:  # the zygote's own: its socket, its siblings' connections, its wake-up pipe
            try:
                os.close(fd)
            except OSError:
                pass
        _die_with(zygote_pid)
        os.setsid()
        try:  # `ps -o comm`, `top`: the container's module, not "python"
            import ctypes

            ctypes.CDLL("libc.so.6").prctl(15, request["argv"][2].rsplit(".", 1)[-1][:15].encode(), 0, 0, 0)
        except OSError:
            pass
        try:  # `ps aux`: the container's command line, not the zygote's (nor its socket's path)
            import setproctitle

            setproctitle.setproctitle(" ".join(["python", *request["argv"][1:]]))
        except ImportError:
            pass
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        if request.get("sandbox"):
            try:
                _enter_sandbox(request["sandbox"])  # returns in the container's process, inside its pod
            except OSError as exc:
                os.write(2, f"cannot enter the pod's sandbox: {exc}\n".encode())
                os._exit(128)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True, write_through=True)
        if "numpy" in sys.modules:  # the legacy global RNG is copied by fork: give each child its own
            sys.modules["numpy"].random.seed()
        argv = request["argv"]
        sys.argv = [argv[2], *argv[3:]]
        sys.path[0] = os.getcwd()  # what `python -m` puts first
        try:
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if not isinstance(exc.code, (int, type(None))):
                print(exc.code, file=sys.stderr)
        except KeyboardInterrupt:
            code = 128 + signal.SIGINT
        except BaseException:  # what `python -m` prints for an uncaught exception, and its status
            import traceback

            traceback.print_exc()
            code = 1
        try:
            import threading

            threading._shutdown()  # type: ignore[attr-defined]  # join non-daemon threads, as exit does
            import atexit

            atexit._run_exitfuncs()
        except BaseException:
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if not msg:
        raise EOFError  # a readiness check: connected, sent nothing
    data = bytearray(msg)
    conn.settimeout(10)
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_REQUEST:
            raise ValueError("incomplete request")
        data += chunk
    return json.loads(data), list(fds)


def serve(address: str) -> None:
    """Accept spawn requests until the parent (the node agent) dies."""
    _die_with(os.getppid())
    _preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if not address.startswith("\0"):
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass
    server.bind(address)
    server.listen(64)
    print(f"zygote ready ({len(sys.modules)} modules preloaded)", flush=True)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(server, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    me = os.getpid()
    while True:
        for key, _ in selector.select():
            if key.data == "accept":
                conn, _ = server.accept()
                fds: list[int] = []
                try:
                    request, fds = _read_request(conn)
                except (OSError, ValueError, EOFError) as exc:
                    if not isinstance(exc, EOFError):
                        print(f"zygote: bad request: {exc}", file=sys.stderr, flush=True)
                    for fd in fds:
                        os.close(fd)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    _run_child(request, fds, me, [conn.fileno(), server.fileno(), wake_r, wake_w,
                                                  selector.fileno(), *(c.fileno() for c in waiting.values())])
                for fd in fds:
                    os.close(fd)
                waiting[pid] = conn
                try:
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                except OSError:
                    pass
            else:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    conn = waiting.pop(pid, None)
                    if conn is not None:
                        try:
                            conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                        except OSError:
                            pass
                        conn.close()


if __name__ == "__main__":
    serve("\0" + sys.argv[1][1:] if sys.argv[1].startswith("@") else sys.argv[1])
