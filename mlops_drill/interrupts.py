"""SIGTERM, SIGINT and SIGHUP as an exception, so a command's `finally` blocks still run.

Why: an embedded cluster's daemons run in sessions of their own (a Ctrl-C in
the user's shell must not reach them), so they outlive a command that dies of
a signal. Python's default SIGTERM and SIGHUP kill the process without
unwinding, and the `finally: backend.down()` of a bench script or a command
never runs. Inside :func:`stop_on_signals` each of the three signals raises
:class:`Interrupted` instead; cleanup runs inside :func:`shielded`, where a
second signal (a second Ctrl-C, `timeout` sending SIGTERM again) waits until
the cleanup is done instead of cutting it short.

:func:`on_interrupt` registers cleanups for what a command started but would
keep after a normal exit (a cluster it created): they run only when the
command is interrupted.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_pending: list[int] = []  # signals that arrived while shielded or while already stopping
_stopping = False
_shield_depth = 0
_cleanups: list[Callable[[], None]] = []


class Interrupted(SystemExit):
    """The process got a stop signal; exits with 128 + the signal number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"


def _handler(signum: int, _frame: object) -> None:
    global _stopping
    if _stopping or _shield_depth:
        _pending.append(signum)
        sys.stderr.write(f"{signal.Signals(signum).name}: already stopping, cleaning up first\n")
        return
    _stopping = True
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the stop signals into :class:`Interrupted` in the main thread; run interrupt cleanups on the way out.

    Outside the main thread signal handlers cannot be set, and the block runs unchanged.
    """
    global _stopping
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = signal.getsignal(signal.SIGTERM) is not _handler
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        _stopping = True  # a KeyboardInterrupt raised by other code than ours: same cleanup
        with shielded():
            run_interrupt_cleanups()
        raise
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        if outermost:  # an enclosing block is still unwinding otherwise: stay "stopping"
            _stopping = False
            _pending.clear()


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer stop signals until the block is done (cleanup that must not be cut in half), then raise."""
    global _shield_depth, _stopping
    _shield_depth += 1
    try:
        yield
    finally:
        _shield_depth -= 1
    if not _shield_depth and _pending and not _stopping:
        _stopping = True
        raise Interrupted(_pending[0])


def on_interrupt(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` if the command is stopped by a signal (last registered runs first)."""
    _cleanups.append(cleanup)


def run_interrupt_cleanups() -> None:
    while _cleanups:
        cleanup = _cleanups.pop()
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - one failed cleanup must not skip the others
            sys.stderr.write(f"cleanup after interrupt failed: {type(exc).__name__}: {exc}\n")


def up_cleaned_on_interrupt(backend, progress: bool = True):
    """``backend.up()``; a cluster this command creates is stopped again if the command is interrupted.

    A cluster this command reused is the user's and stays. One it created (no kubeconfig of that
    name existed) would otherwise be left running with nobody to stop it: it goes with an interrupt
    at any later point, also one that comes while ``up`` is half-way. (A start that fails on its
    own is left as before: its error names a log in the state directory, and the next ``up``
    recovers or recreates the cluster.)
    """
    if backend.kubeconfig().is_file():
        return backend.up(progress=progress)
    try:
        info = backend.up(progress=progress)
    except (Interrupted, KeyboardInterrupt):
        with shielded():
            backend.down()
        raise
    on_interrupt(backend.down)
    return info
