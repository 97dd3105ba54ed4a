"""A pod's container sandbox on the embedded backend, built by bubblewrap.

Why bubblewrap: it is the established, setuid-free sandbox tool (Flatpak's) and
builds one in ~20 ms as root, where ``runc`` wants an OCI bundle written per
pod and a detour through its own state directory. Why a "pause" process: like
a pod's pause container, one ``bwrap`` per pod holds the namespaces (mount,
PID, UTS, IPC) and the mount tree; the container process and every ``kubectl
exec`` join them (``setns``/``nsenter``). The container can therefore still be
forked from the warm zygote and joined to its pod afterwards, and a restarted
container finds the same pod, as under a real kubelet.

What is inside: an image-like read-only root made of the host's ``/usr`` (the
tools ``ls``, ``cat``, ``ps``, ``curl`` of a Debian image), the Python runtime and
the installed platform packages only (never the repo's scenarios, tests or
engine state, nor anything else of the host's home), the pod's volumes at their
``mountPath``, its own ``/tmp``, ``/proc`` and ``/dev``, and ``/etc/hosts``,
``/etc/resolv.conf``, ``/etc/hostname``, ``/etc/passwd`` written for the pod.
The network namespace is the host's (as ``hostNetwork: true``): the engine's
loopback ports that need no credential are closed to pod users by
``firewall.py``.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: A pod's /tmp and /dev/shm are memory: bounded, as a runtime bounds /dev/shm (64 MiB by default).
TMP_BYTES = 256 << 20
SHM_BYTES = 64 << 20
#: Where the kubelet's shared, read-only files (Service table, GPU state) appear in a pod.
RUN_DIR = "/var/run/mlops-drill"
#: The user a container runs as unless its securityContext names one (no image says USER here).
DEFAULT_UID = 1000
#: Where ``nvidia-smi`` appears in a container granted GPUs (on the PATH of NVIDIA's CUDA images).
NVIDIA_BIN = "/usr/local/nvidia/bin"
#: The container's env for `kubectl exec` (as podman's /run/.containerenv marks a container).
EXEC_ENV = "/run/.containerenv"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: /etc files of the host an image would carry too (the OS release, the loader's cache, name service order).
#: Few on purpose: every bind is a mount, and mounts are serialised in the kernel when pods start together.
ETC_FROM_HOST = ("os-release", "debian_version", "ld.so.cache", "nsswitch.conf", "localtime", "alternatives",
                 "ssl", "services")
#: Parts of /usr an image has no use for (and that would only cost mounts).
USR_SKIPPED = ("local", "games", "include", "src")
USR_LOCAL_KEPT = ("bin", "lib", "sbin")


#: Installs seccomp.py's filter and execs its arguments (inside the pod: the package is in the image).
SECCOMP_SCRIPT = str(Path(__file__).resolve().with_name("seccomp.py"))


class SandboxError(Exception):
    """The sandbox tool is missing or failed: the container cannot start (a kubelet's CreateContainerError)."""


def available() -> str | None:
    """Path of ``bwrap`` and ``nsenter``'s availability; None when a pod cannot be sandboxed here."""
    bwrap = shutil.which("bwrap")
    return bwrap if bwrap and shutil.which("nsenter") and shutil.which("setpriv") else None


def enabled() -> bool:
    """``MLOPS_DRILL_SANDBOX=0`` runs pods as plain host processes (only for debugging the kubelet)."""
    return os.environ.get("MLOPS_DRILL_SANDBOX", "1").strip().lower() not in ("0", "false", "no", "off")


def package_dirs() -> list[str]:
    """The folders the installed platform packages load from: their own code and nothing beside it."""
    import mlops_drill
    import mlops_drill.cluster
    import mlops_drill.mlplatform

    return sorted({str(Path(p).resolve()) for mod in (mlops_drill, mlops_drill.cluster, mlops_drill.mlplatform)
                   for p in mod.__path__})


def image_args() -> list[str]:
    """bwrap arguments for the image-like read-only root every pod shares."""
    args: list[str] = []
    for entry in sorted(Path("/usr").iterdir()):
        if entry.name in USR_SKIPPED or not entry.is_dir():
            continue
        args += ["--ro-bind", str(entry), str(entry)]
    for name in USR_LOCAL_KEPT:  # /usr/local itself stays the sandbox's own: /usr/local/nvidia/bin goes there
        entry = Path("/usr/local") / name
        if entry.is_dir():
            args += ["--ro-bind", str(entry), str(entry)]
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in ETC_FROM_HOST:
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path.resolve()), str(path)]
    runtime = {str(Path(sys.base_prefix).resolve()), str(Path(sys.prefix))}
    for folder in sorted(runtime) + package_dirs():
        if not folder.startswith("/usr/"):
            args += ["--ro-bind", folder, folder]
    return args


@dataclass
class Identity:
    """Who the container runs as: its securityContext, else a non-root user as a hardened image would set."""

    uid: int = DEFAULT_UID
    gid: int = DEFAULT_UID

    @property
    def root(self) -> bool:
        return self.uid == 0


def identity(pod: dict) -> Identity:
    spec = pod.get("spec") or {}
    pod_ctx = spec.get("securityContext") or {}
    ctr_ctx = ((spec.get("containers") or [{}])[0].get("securityContext")) or {}
    uid = ctr_ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    gid = ctr_ctx.get("runAsGroup", pod_ctx.get("runAsGroup"))
    uid = DEFAULT_UID if uid is None else int(uid)
    return Identity(uid, int(gid) if gid is not None else (0 if uid == 0 else uid))


def etc_files(name: str, namespace: str, pod_ip: str, who: Identity, hosts_extra: str = "") -> dict[str, str]:
    """/etc files a kubelet writes into a container (hosts, resolv.conf, hostname) and an image's passwd."""
    domain = f"{namespace}.svc.cluster.local"
    hosts = ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
             "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
             f"{pod_ip or '127.0.0.1'}\t{name}\n")
    passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    group = "root:x:0:\nnogroup:x:65534:\n"
    if not who.root:
        passwd += f"app:x:{who.uid}:{who.gid}:app:/tmp:/bin/sh\n"
        group += f"app:x:{who.gid}:\n"
    return {
        "hosts": hosts + hosts_extra,
        "resolv.conf": f"search {domain} svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
        "hostname": name + "\n",
        "passwd": passwd,
        "group": group,
    }


@dataclass
class PodSandbox:
    """One pod's namespaces and mount tree, held by a bwrap "pause" process."""

    pod_dir: Path
    hostname: str
    who: Identity
    volumes: dict[str, Path]  # mountPath -> host folder
    readonly: set[str]  # mountPaths mounted read-only
    run_dir: Path  # the kubelet's shared read-only folder, seen at RUN_DIR
    image: list[str]  # image_args()
    nvidia_smi: Path | None = None  # the per-pod nvidia-smi script, for containers granted GPUs
    gpu_dir: Path | None = None  # the node agent's GPU state folder, seen at RUN_DIR/gpu
    cgroup: Path | None = None  # the cluster's pods cgroup: every process entering the pod joins it first
    proc: asyncio.subprocess.Process | None = None
    pid: int = 0  # host pid of the sandbox's PID 1 (what nsenter and setns target)
    etc: dict[str, str] = field(default_factory=dict)

    @property
    def etc_dir(self) -> Path:
        return self.pod_dir / "etc"

    def write_etc(self, files: dict[str, str]) -> None:
        """Write (or rewrite in place, so the bind mount sees it) the pod's /etc files."""
        self.etc_dir.mkdir(parents=True, exist_ok=True)
        for fname, text in files.items():
            path = self.etc_dir / fname
            with open(path, "a+") as fh:  # same inode: a bind mount of the file follows the new text
                fh.seek(0)
                fh.truncate()
                fh.write(text)
            path.chmod(0o644)
        self.etc = dict(files)

    def bwrap_args(self) -> list[str]:
        args = ["--unshare-pid", "--unshare-uts", "--unshare-ipc", "--hostname", self.hostname,
                "--die-with-parent", "--new-session", "--cap-drop", "ALL", *self.image,
                "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
                "--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--ro-bind", str(self.run_dir), RUN_DIR,
                "--dir", "/var/tmp"]
        if self.gpu_dir is not None:
            args += ["--ro-bind", str(self.gpu_dir), f"{RUN_DIR}/gpu"]
        for fname in sorted(self.etc):
            args += ["--ro-bind", str(self.etc_dir / fname), f"/etc/{fname}"]
        (self.pod_dir / "containerenv").touch()
        args += ["--ro-bind", str(self.pod_dir / "containerenv"), EXEC_ENV]
        if self.nvidia_smi is not None:
            args += ["--ro-bind", str(self.nvidia_smi), f"{NVIDIA_BIN}/nvidia-smi"]
        for mount_path in sorted(self.volumes, key=len):
            kind = "--ro-bind" if mount_path in self.readonly else "--bind"
            args += [kind, str(self.volumes[mount_path]), mount_path]
        # PID 1 of the pod is its pause process: `sleep` under the name a pod's pause container has.
        sleep = shutil.which("sleep") or "/usr/bin/sleep"
        args += ["--ro-bind", sleep, "/pause", "--chdir", "/", "--as-pid-1"]
        return _parents_first(args)

    async def start(self) -> int:
        """Start the pause process; the host pid of the sandbox's PID 1 once its namespaces exist."""
        bwrap = available()
        if bwrap is None:
            raise SandboxError("bubblewrap (bwrap), nsenter and setpriv are needed to run pods: "
                               "apt-get install bubblewrap util-linux")
        for host in self.volumes.values():
            if host.is_dir() and not self.who.root:
                # A kubelet makes writable volumes usable by the container's user (fsGroup / emptyDir 0777).
                try:
                    os.chown(host, self.who.uid, self.who.gid, follow_symlinks=False)
                except OSError:
                    pass
        args_r, args_w = os.pipe()
        info_r, info_w = os.pipe()
        with os.fdopen(args_w, "wb") as fh:  # NUL-separated via --args: the pause process's cmdline stays short
            fh.write(b"".join(a.encode() + b"\0" for a in self.bwrap_args()))
        log = open(self.pod_dir / "sandbox.log", "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                bwrap, "--args", str(args_r), "--info-fd", str(info_w), "--", "/pause", "infinity", pass_fds=(args_r, info_w),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        finally:
            os.close(args_r)
            os.close(info_w)
            log.close()
        try:  # read on the event loop: the default thread pool is busy with the kubelet's API calls
            reader = asyncio.StreamReader()
            loop = asyncio.get_running_loop()
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                        os.fdopen(info_r, "rb", 0))
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"}"), 10)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
                raw = b""
            finally:
                transport.close()
        except OSError:
            raw = b""
        try:
            child = int(json.loads(raw)["child-pid"])
            # The child exists once its namespaces do, but it is still building the mount tree: joining it
            # before it has become /pause would join a half-built sandbox that still sees the host.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while _cmdline(child) != [b"/pause", b"infinity"]:
                if loop.time() > deadline or self.proc.returncode is not None or not Path(f"/proc/{child}").exists():
                    raise ValueError("pause never started")
                await asyncio.sleep(0.002)
            self.pid = child
        except (ValueError, KeyError, TypeError):
            await self.stop()
            detail = (self.pod_dir / "sandbox.log").read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise SandboxError(f"bwrap did not start: {detail[0]}") from None
        return self.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self.pid > 0

    def write_exec_env(self, env: dict[str, str]) -> None:
        """The container's env as a script that runs its arguments with exactly that env (``EXEC_ENV`` inside).

        `kubectl exec` then carries a short command line (KWOK prints it whole in its
        error when a command fails), and the env a process gets is the container's.
        """
        import shlex

        text = "exec /usr/bin/env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items()) + ' "$@"\n'
        path = self.pod_dir / "containerenv"
        with open(path, "a+") as fh:  # in place: the bind mount keeps showing this file
            fh.seek(0)
            fh.truncate()
            fh.write(text)
        path.chmod(0o644)

    def enter_argv(self, argv: list[str], env: dict[str, str] | None, cwd: str = "/",
                   session: bool = False) -> list[str]:
        """A host command line that runs ``argv`` inside the pod as the container's user, with ``env`` only.

        nsenter joins the pause process's namespaces (and forks, so the command is in
        the pod's PID namespace), setpriv drops to the container's user (or, for a
        root container, to a container runtime's default capabilities) with
        no_new_privs, and ``env -i`` replaces the environment (``env`` None: the
        one ``write_exec_env`` wrote last).
        """
        enter = ["/usr/bin/nsenter", f"--target={self.pid}", "--mount", "--uts", "--ipc", "--pid",
                 "--root", f"--wdns={cwd}", "--"]
        priv = ["/usr/bin/setpriv", f"--reuid={self.who.uid}", f"--regid={self.who.gid}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all"]
        priv += [f"--bounding-set=-all,{','.join('+' + c for c in DEFAULT_CAPS)}" if self.who.root
                 else "--bounding-set=-all"]
        if self.cgroup is not None:  # joined on the host, before nsenter: inside there is no /sys to join from
            enter = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.cgroup / "cgroup.procs"), *enter]
        lead = ["/usr/bin/setsid"] if session else []  # a container's process leads its own session
        filtered = [sys.executable, "-I", "-S", SECCOMP_SCRIPT, *argv]  # a runtime's seccomp default, then argv
        if env is None:
            return [*enter, *priv, "--", *lead, "/bin/sh", EXEC_ENV, *filtered]
        return [*enter, *priv, "--", *lead, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *filtered]

    async def stop(self) -> None:
        """Kill the pause process: the kernel ends every process of the pod's PID namespace with it."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


#: The capabilities a container runtime (containerd, Docker) leaves a root container by default.
DEFAULT_CAPS = ("chown", "dac_override", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
                "net_bind_service", "net_raw", "sys_chroot", "mknod", "audit_write", "setfcap")
#: Their numbers (linux/capability.h), for the zygote's own drop.
DEFAULT_CAP_NUMBERS = (0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31)


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    except OSError:
        return []


_MOUNT_ARITY = {"--ro-bind": 2, "--bind": 2, "--symlink": 2, "--tmpfs": 1, "--dir": 1, "--proc": 1,
                "--dev": 1}
_MODIFIER_ARITY = {"--perms": 1, "--size": 1}  # apply to the next mount operation
_FLAG_ARITY = {"--hostname": 1, "--chdir": 1, "--cap-drop": 1}


def _parents_first(args: list[str]) -> list[str]:
    """Mounts ordered parents first, with the folders on the way made with an image's 0755.

    bwrap applies mounts in order, so a tmpfs on ``/tmp`` listed after a bind of
    ``/tmp/ci/main/.venv`` would hide it (a checkout under /tmp); ordering by the
    target's depth puts every mount on top of its parent's. bwrap also makes
    missing parents private (0700), and a non-root container could not even reach
    ``/usr/lib`` through them, so those folders are made first, 0755.
    """
    flags: list[str] = []
    mounts: list[tuple[str, list[str]]] = []  # (target, the operation with its modifiers)
    pending: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _MODIFIER_ARITY:
            pending += args[i:i + 2]
            i += 2
        elif arg in _MOUNT_ARITY:
            n = _MOUNT_ARITY[arg]
            op = pending + args[i:i + 1 + n]
            mounts.append((args[i + n], op))
            pending = []
            i += 1 + n
        else:
            n = _FLAG_ARITY.get(arg, 0)
            flags += args[i:i + 1 + n]
            i += 1 + n
    targets = {t for t, _ in mounts}
    parents = {str(p) for t in targets for p in Path(t).parents if str(p) != "/"} - targets
    mounts += [(folder, ["--perms", "0755", "--dir", folder]) for folder in sorted(parents)]
    ordered = sorted(mounts, key=lambda m: m[0].rstrip("/").count("/"))  # stable: same depth keeps order
    return flags + [a for _, op in ordered for a in op]