"""Notices the kubelet (re)creating ``kubelet.sock`` in the device-plugin directory.

A restarted kubelet forgets every plugin; it wipes the directory and creates a fresh
``kubelet.sock``, and each plugin must register again. Real plugins learn this from inotify
(fsnotify in Go). We do the same through libc with ctypes, because a stat poll can miss a
delete + re-create that reuses the inode within one timestamp tick. Where inotify is missing
(macOS, odd sandboxes) we fall back to comparing the socket's identity on every wake-up.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
from pathlib import Path

_IN_CREATE = 0x00000100
_IN_MOVED_TO = 0x00000080
_IN_IGNORED = 0x00008000
_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


def _libc_inotify() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where inotify does not exist
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        return libc
    except (OSError, AttributeError):
        return None


class KubeletSocketWatcher:
    """``wait()`` sleeps until a timeout, a ``wake()``, or the kubelet socket being created."""

    def __init__(self, plugin_dir: Path, socket_name: str = "kubelet.sock",
                 use_inotify: bool = True) -> None:
        self.plugin_dir = Path(plugin_dir)
        self.socket_name = socket_name
        self._wake_r, self._wake_w = os.pipe()
        self._lock = threading.Lock()  # wake() may race close(); never write to a reused fd
        os.set_blocking(self._wake_r, False)
        self._fd = -1
        self._identity = self._stat_identity()
        self._libc = _libc_inotify() if use_inotify else None
        if self._libc is not None:
            self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            self._add_watch()

    @property
    def uses_inotify(self) -> bool:
        return self._fd >= 0

    def _add_watch(self) -> bool:
        assert self._libc is not None
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(self.plugin_dir),
                                          _IN_CREATE | _IN_MOVED_TO)
        self._watching = wd >= 0
        return self._watching

    def _stat_identity(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.plugin_dir / self.socket_name)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_ctime_ns)

    def wait(self, timeout: float) -> bool:
        """True when the kubelet socket was created since the previous call."""
        fds = [self._wake_r] + ([self._fd] if self.uses_inotify else [])
        readable, _, _ = select.select(fds, [], [], timeout)
        if self._wake_r in readable:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
        created = self._drain_events() if self.uses_inotify else False
        if self.uses_inotify and not self._watching:
            # The directory was removed or replaced: watch the new one, and compare identities
            # so a socket created while we were blind still counts.
            self._add_watch()
        identity = self._stat_identity()
        if identity is not None and identity != self._identity:
            created = True
        self._identity = identity
        return created

    def _drain_events(self) -> bool:
        created = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return created
            offset = 0
            while offset + _EVENT_HEADER.size <= len(data):
                _wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(data, offset)
                raw = data[offset + _EVENT_HEADER.size: offset + _EVENT_HEADER.size + length]
                offset += _EVENT_HEADER.size + length
                if mask & _IN_IGNORED:
                    self._watching = False
                elif raw.rstrip(b"\0") == os.fsencode(self.socket_name):
                    created = True

    def wake(self) -> None:
        """Make a pending or the next ``wait()`` return at once (used to stop promptly)."""
        with self._lock:
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._wake_r = self._wake_w = -1
