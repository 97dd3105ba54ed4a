"""The part of a container runtime's default seccomp profile that keeps a pod in its namespaces.

Why: without it a pod's user could ``unshare -U`` (unprivileged user namespaces are
on in most kernels) and be "root" in namespaces of its own, which a container under
containerd's or Docker's default profile cannot. Like those profiles, the filter
refuses ``unshare``/``clone`` with CLONE_NEWUSER (EPERM) and ``clone3`` (ENOSYS, so
the C library falls back to ``clone``, whose flags a filter can read). x86-64 only;
elsewhere nothing is filtered.

Used twice: the zygote's container process installs it (``install``), and
``python -I -S seccomp.py COMMAND...`` installs it and execs COMMAND, for
`kubectl exec` and exec'd containers. Needs no_new_privs already set (setpriv sets it).
"""
from __future__ import annotations

import ctypes
import os
import platform
import struct
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
NR_CLONE, NR_UNSHARE, NR_CLONE3 = 56, 272, 435
CLONE_NEWUSER = 0x10000000
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
EPERM, ENOSYS = 1, 38
LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06


def _program() -> bytes:
    ops = [  # (code, jump if true, jump if false, k); jumps count from the next instruction
        (LD_ABS, 0, 0, 4),                   # 0: architecture
        (JEQ, 0, 6, AUDIT_ARCH_X86_64),      # 1: other arch -> 8 allow
        (LD_ABS, 0, 0, 0),                   # 2: syscall number
        (JEQ, 6, 0, NR_CLONE3),              # 3: clone3 -> 10 ENOSYS
        (JEQ, 1, 0, NR_UNSHARE),             # 4: unshare -> 6 check flags
        (JEQ, 0, 2, NR_CLONE),               # 5: clone -> 6 check flags, else 8 allow
        (LD_ABS, 0, 0, 16),                  # 6: flags (args[0], low 32 bits)
        (JSET, 1, 0, CLONE_NEWUSER),         # 7: a new user namespace -> 9 EPERM
        (RET, 0, 0, RET_ALLOW),              # 8
        (RET, 0, 0, RET_ERRNO | EPERM),      # 9
        (RET, 0, 0, RET_ERRNO | ENOSYS),     # 10
    ]
    return b"".join(struct.pack("HBBI", *op) for op in ops)


def install() -> None:
    """Filter this process and its future children (raises OSError where the kernel refuses)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    code = _program()
    buffer = ctypes.create_string_buffer(code, len(code))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Fprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


if __name__ == "__main__":
    install()
    os.execvp(sys.argv[1], sys.argv[1:])
