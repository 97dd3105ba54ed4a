"""Recording shim body and the transcript's hash-chained, locked append.

Why this file is stdlib-only and self-contained: every ``kubectl``/``curl``/
``nvidia-smi`` the candidate types runs through it, so it starts as
``python -IS recorder.py TRANSCRIPT NAME REAL_TOOL [ARGS...]`` (no site, no
project imports, no pydantic: ~30 ms instead of ~200 ms). The same append and
hash functions are imported by :mod:`mlops_drill.grader.transcript`, so there is
one definition of the chain.

Capture policy (documented in ``docs/grader.md``):

* stdin and stdout are terminals -> the tool runs on a fresh pseudo-terminal
  that we proxy, like ``script(1)``: the tool still sees a tty (colours, ``-it``,
  editors, ``logs -f`` streaming), Ctrl-C is delivered by the inner terminal to
  the tool, and what it prints is captured (stdout and stderr merged, as the
  candidate saw them). Ctrl-Z is disabled on the inner terminal because there is
  no job control inside a single recorded command.
* otherwise (pipes, files, scripts) -> stdout/stderr are tee'd through pipes,
  written on immediately (streaming is preserved) and captured separately.
  SIGINT from the terminal reaches the tool directly (same process group); we
  ignore it ourselves and report what the tool did.

Either way the exit status is passed on unchanged; a tool killed by a signal
makes the shim kill itself with the same signal, so ``$?`` and the shell's job
reporting are what they would be without us.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import sys
import time

# json and hashlib are imported where used: the tool starts before they load, so
# the candidate sees output as early as without the shim.

CAP_BYTES = 64 * 1024
GENESIS = "0" * 64
EVENT_FIELDS = ("seq", "ts", "kind", "line", "argv", "cwd", "exit_code", "duration_s",
                "stdout", "stderr", "stdout_truncated", "stderr_truncated", "data")


# --------------------------------------------------------------------------- chain

def canonical_json(obj: dict) -> str:
    """The one serialisation that hashes are computed over (key order and spacing fixed)."""
    import json

    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def event_hash(event: dict) -> str:
    """sha256 of the event without its own ``hash``; ``prev_hash`` is inside, hence the chain."""
    import hashlib

    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _last_line(fd: int) -> bytes:
    """The file's last complete line, read backwards so appends stay O(1) in file size."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0:
        return b""
    pos, chunk, buf = end, 65536, b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        body = buf.rstrip(b"\n")
        nl = body.rfind(b"\n")
        if nl >= 0:
            return body[nl + 1:]
    return buf.rstrip(b"\n")


def _chain_position(fd: int) -> tuple[int, str]:
    """(next seq, prev hash) from the current last line; a torn last line still chains."""
    import hashlib
    import json

    last = _last_line(fd)
    if not last:
        return 0, GENESIS
    try:
        prev = json.loads(last)
        return int(prev["seq"]) + 1, str(prev["hash"])
    except (ValueError, KeyError, TypeError):
        lines = os.pread(fd, os.lseek(fd, 0, os.SEEK_END), 0).count(b"\n")
        return lines + 1, hashlib.sha256(last).hexdigest()


def complete_event(fields: dict) -> dict:
    """All event fields with neutral defaults, so every writer emits the same shape."""
    event = {
        "ts": float(fields.get("ts", time.time())),
        "kind": fields.get("kind", "command"),
        "line": fields.get("line", ""),
        "argv": list(fields.get("argv", [])),
        "cwd": fields.get("cwd", ""),
        "exit_code": fields.get("exit_code"),
        "duration_s": fields.get("duration_s"),
        "stdout": fields.get("stdout", ""),
        "stderr": fields.get("stderr", ""),
        "stdout_truncated": bool(fields.get("stdout_truncated", False)),
        "stderr_truncated": bool(fields.get("stderr_truncated", False)),
        "data": dict(fields.get("data", {})),
    }
    return event


def append_event(path: str, fields: dict) -> dict:
    """Append one event under an exclusive lock; several shims may write at once."""
    event = complete_event(fields)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        seq, prev = _chain_position(fd)
        end = os.lseek(fd, 0, os.SEEK_END)
        if end and os.pread(fd, 1, end - 1) != b"\n":
            os.write(fd, b"\n")  # a torn line must not swallow ours
        event["seq"] = seq
        event["prev_hash"] = prev
        event["hash"] = event_hash(event)
        data = (canonical_json(event) + "\n").encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)  # closing releases the flock
    return event


def cap(raw: bytes) -> tuple[str, bool]:
    """First CAP_BYTES of a stream as text; the flag says whether more was cut."""
    return raw[:CAP_BYTES].decode("utf-8", errors="replace"), len(raw) > CAP_BYTES


# --------------------------------------------------------------------------- running

class _Capture:
    """Keeps the first CAP_BYTES (+1, to know it was cut) of a stream."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        if self.size <= CAP_BYTES:
            self.parts.append(data[:CAP_BYTES + 1 - self.size])
        self.size += len(data)

    def result(self) -> tuple[str, bool]:
        return cap(b"".join(self.parts))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _exec_child(real: str, argv: list[str]) -> None:
    """In the forked child: undo what Python changed, then become the real tool."""
    for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGWINCH,
                signal.SIGHUP, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execv(real, argv)
    except OSError as exc:
        os.write(2, f"{argv[0]}: cannot run {real}: {exc.strerror}\n".encode())
    os._exit(127)


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue


def run_piped(real: str, argv: list[str]) -> tuple[int, bytes, bytes, str]:
    """Tee the tool's stdout/stderr through pipes; stdin is inherited untouched."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        _exec_child(real, argv)
    os.close(out_w)
    os.close(err_w)
    # The terminal's SIGINT/SIGQUIT reach the tool too (same process group); the tool decides.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGQUIT, lambda *_: None)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    caps = {out_r: _Capture(), err_r: _Capture()}
    dest = {out_r: 1, err_r: 2}
    open_fds = [out_r, err_r]
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.remove(fd)
                os.close(fd)
                continue
            caps[fd].add(data)
            try:
                _write_all(dest[fd], data)
            except BrokenPipeError:
                # Our reader went away (e.g. `| head`): close ours so the tool sees it too.
                open_fds.remove(fd)
                os.close(fd)
    status = _wait(pid)
    return status, b"".join(caps[out_r].parts), b"".join(caps[err_r].parts), "pipe"


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def run_pty(real: str, argv: list[str]) -> tuple[int, bytes, bytes, str]:
    """Run the tool on its own pseudo-terminal and proxy it, like script(1)."""
    import termios
    import tty

    outer = termios.tcgetattr(0)
    master, slave = os.openpty()
    inner = termios.tcgetattr(0)
    inner[6][termios.VSUSP] = b"\x00"  # no job control inside one recorded command
    termios.tcsetattr(slave, termios.TCSANOW, inner)
    _copy_winsize(1, slave)
    err_is_tty = os.isatty(2)
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        os.dup2(slave, 0)
        os.dup2(slave, 1)
        if err_is_tty:
            os.dup2(slave, 2)
        if slave > 2:
            os.close(slave)
        _exec_child(real, argv)
    os.close(slave)
    signal.signal(signal.SIGWINCH, lambda *_: _copy_winsize(1, master))
    # Keys arrive as bytes in raw mode; a signal can still reach us before that: pass it on.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    capture = _Capture()
    status = None
    tty.setraw(0, termios.TCSANOW)
    try:
        fds = [0, master]
        while True:
            if status is None:
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = st
            try:
                ready, _, _ = select.select(fds, [], [], 0.05 if status is None else 0.0)
            except InterruptedError:
                continue
            if not ready and status is not None:
                break  # exited and the terminal is drained
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    if status is None:
                        status = _wait(pid)
                    break
                capture.add(data)
                _write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(master, data)
                else:
                    fds.remove(0)
    finally:
        termios.tcsetattr(0, termios.TCSAFLUSH, outer)
        os.close(master)
    return status, b"".join(capture.parts), b"", "pty"


def _copy_winsize(src: int, dst: int) -> None:
    import termios
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def record_shell_line(args: list[str]) -> None:
    """``--shell TRANSCRIPT EXIT T0_US T1_US CWD LINE``: one line of plain shell history.

    Called from the shell's PROMPT_COMMAND with times in integer microseconds
    (bash's ``$EPOCHREALTIME`` without the dot), so bash needs no float maths.
    """
    transcript, code, t0, t1, cwd, line = args[:6]
    start, end = int(t0) / 1e6, int(t1) / 1e6
    try:
        append_event(transcript, {"ts": start, "kind": "shell", "line": line, "cwd": cwd,
                                  "exit_code": int(code), "duration_s": round(end - start, 6)})
    except OSError as exc:
        os.write(2, f"mlops-drill: could not record history in {transcript}: {exc}\n".encode())


def main(args: list[str]) -> None:
    """``recorder.py TRANSCRIPT NAME REAL [ARGS...]``: run REAL as NAME and record it."""
    if args and args[0] == "--shell":
        record_shell_line(args[1:])
        return
    transcript, name, real, rest = args[0], args[1], args[2], args[3:]
    argv = [name, *rest]
    started = time.time()
    clock = time.monotonic()
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = os.environ.get("PWD", "")
    use_pty = os.isatty(0) and os.isatty(1) and os.getpgrp() == _tc_pgrp(0)
    status, out, err, mode = (run_pty if use_pty else run_piped)(real, argv)
    duration = time.monotonic() - clock
    if os.WIFSIGNALED(status):
        code, killed_by = 128 + os.WTERMSIG(status), os.WTERMSIG(status)
    else:
        code, killed_by = os.waitstatus_to_exitcode(status), 0
    stdout, out_cut = cap(out)
    stderr, err_cut = cap(err)
    try:
        append_event(transcript, {
            "ts": started, "kind": "command", "line": shell_join(argv), "argv": argv, "cwd": cwd,
            "exit_code": code, "duration_s": round(duration, 6), "stdout": stdout,
            "stderr": stderr, "stdout_truncated": out_cut, "stderr_truncated": err_cut,
            "data": {"capture": mode, "real": real},
        })
    except OSError as exc:
        os.write(2, f"mlops-drill: could not record {name} in {transcript}: {exc}\n".encode())
    if killed_by:
        signal.signal(killed_by, signal.SIG_DFL)
        os.kill(os.getpid(), killed_by)
    sys.exit(code)


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def shell_join(argv: list[str]) -> str:
    """``shlex.join`` without importing shlex (and ``re``) into every shim run."""
    return " ".join(a if a and set(a) <= _SAFE else "'" + a.replace("'", "'\"'\"'") + "'"
                    for a in argv)


def _tc_pgrp(fd: int) -> int:
    """Foreground process group of the terminal; a background job must not grab it."""
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return -1


if __name__ == "__main__":
    main(sys.argv[1:])
