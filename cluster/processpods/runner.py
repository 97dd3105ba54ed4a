"""One pod's real process, supervised the way a kubelet supervises a container.

The runner starts the container's command as a local process once KWOK has
moved the pod to Running, wires ``kubectl logs`` / ``exec`` / ``port-forward``
to it through KWOK's Logs, Exec and PortForward objects, probes readiness, and
reports what a kubelet reports: container states, restarts with back-off
(``CrashLoopBackOff``), Ready conditions, terminal phases for Job pods, and the
usual kubelet events. Symptoms therefore come from the process itself.
"""
from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import hashlib
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlops_drill.cluster.processpods import records
from mlops_drill.cluster.processpods.podspec import ProcessSpec, SpecError, gpu_request, process_spec
from mlops_drill.cluster.processpods.sandbox import (DEFAULT_CAP_NUMBERS, NVIDIA_BIN, PATH, RUN_DIR, PodSandbox,
                                                     SandboxError, etc_files, identity)

log = logging.getLogger("mlops_drill.processpods")

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def http_status(port: int, path: str) -> int:
    """Status code of one ``GET path`` on 127.0.0.1:``port``, as a kubelet's HTTP prober reads it.

    Plain asyncio streams, not an HTTP client library: the node agent probes every
    pod of the cluster about once a second (hundreds a second with tens of seats),
    and a client library's per-request cost made the agent's loop lag behind
    its probes' one-second timeouts.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/1.36\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n".encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise ValueError(f"not an HTTP answer: {line[:40]!r}")
        return int(parts[1])
    finally:
        writer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cri_line(stream: str, text: str, partial: bool = False) -> bytes:
    """One line in the CRI log format that kubelets (and KWOK's Logs) read: time, stream, tag, text."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {stream} {'P' if partial else 'F'} {text}\n".encode()


async def _pump(reader: asyncio.StreamReader | None, stream: str, logf) -> None:
    """Copy a child's output into the pod log as CRI lines, flushing each so `logs -f` streams."""
    if reader is None:
        return
    while True:
        try:
            line = await reader.readuntil(b"\n")
            partial = False
        except asyncio.IncompleteReadError as exc:
            line, partial = exc.partial, False
            if not line:
                return
        except asyncio.LimitOverrunError as exc:
            line, partial = await reader.readexactly(exc.consumed), True
        logf.write(cri_line(stream, line.rstrip(b"\n").decode(errors="replace"), partial))
        logf.flush()


#: Where the model artifacts appear in a sandboxed pod, as if baked into its image.
ARTIFACTS_IN_POD = "/opt/mlops-drill/artifacts"


async def _only_child(pid: int, timeout: float = 2.0) -> int | None:
    """The one child of ``pid`` (a container's waiter forks it at once); None if none shows up in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return None
        if children:
            return int(children[0])
        await asyncio.sleep(0.005)
    return None


def _die_with_parent() -> None:
    """Children end when the process kubelet ends (PR_SET_PDEATHSIG), like containers of a dead node."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
    os.setsid()


@dataclass
class Kubelet:
    """What every runner shares: API access, folders, GPU bookkeeping, callbacks."""

    call: Callable[..., Any]  # async: await call(fn, *args) runs a blocking API call in a thread
    core: Any  # kubernetes.client.CoreV1Api
    custom: Any  # kubernetes.client.CustomObjectsApi
    state: Path
    services_file: Path
    gpu_state_file: Path
    gpu_devices: Callable[[str], list[str]]  # node -> healthy device UUIDs
    gpu_in_use: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> uuid -> pod uid
    on_endpoint_change: Callable[[], None] = lambda: None
    zygote: Any = None  # forking.Zygote: forks ``python -m mlops_drill.…`` containers; None: exec all
    sandbox_image: list[str] | None = None  # bwrap arguments of the pods' image root; None: no sandbox
    run_dir: Path | None = None  # the kubelet's folder every pod sees read-only at sandbox.RUN_DIR
    api_port: int = 0  # the API server's port (KUBERNETES_SERVICE_PORT)
    service_env: Callable[[str], dict[str, str]] = lambda namespace: {}  # Service env vars of a namespace
    hosts_for: Callable[[str], str] = lambda namespace: ""  # /etc/hosts lines naming a pod's Services
    artifacts: Callable[[], Any] | None = None  # async: the host folder of the model artifacts (built once)
    pods_cgroup: Path | None = None  # the cgroup every pod process joins (firewall.py closes ports to it)

    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, str] | None:
        import base64

        from kubernetes.client.exceptions import ApiException

        try:
            if kind == "ConfigMap":
                return dict(self.core.read_namespaced_config_map(name, namespace).data or {})
            data = self.core.read_namespaced_secret(name, namespace).data or {}
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


class PodRunner:
    def __init__(self, kubelet: Kubelet, pod: dict) -> None:
        self.k = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.name, self.namespace, self.uid = meta["name"], meta["namespace"], meta["uid"]
        self.node = pod["spec"].get("nodeName", "")
        self.pod_ip = pod.get("status", {}).get("podIP", "")
        self.dir = kubelet.state / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.port = free_port()
        self.spec: ProcessSpec | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = False
        self.restarts = 0
        self.last_terminated: dict | None = None
        self.started_at = ""
        self.container_id = ""
        self.task: asyncio.Task | None = None
        self.stopping = False
        self.gpus: list[str] = []
        self.who = identity(pod)
        self.sandbox: PodSandbox | None = None
        self.container_pid = 0  # host pid of the container's process (inside its sandbox)

    # -- helpers -------------------------------------------------------------------------
    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.spec.container if self.spec else 'app'}.log"

    def port_for(self, container_port: int) -> int | None:
        """The local port serving ``container_port`` of this pod (what Services and port-forward use)."""
        if self.spec and (self.spec.container_port in (None, container_port)):
            return self.port
        return None

    async def event(self, reason: str, message: str, kind: str = "Normal") -> None:
        container = self.spec.container if self.spec else "app"
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {"kind": "Pod", "name": self.name, "namespace": self.namespace, "uid": self.uid,
                               "apiVersion": "v1", "fieldPath": f"spec.containers{{{container}}}"},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.node},
            "reportingComponent": "kubelet", "reportingInstance": self.node,
            "firstTimestamp": now_iso(), "lastTimestamp": now_iso(), "count": 1,
        }
        try:
            await self.k.call(self.k.core.create_namespaced_event, self.namespace, body)
        except Exception as exc:  # an event lost is not worth failing the pod
            log.debug("event %s for %s/%s not recorded: %s", reason, self.namespace, self.name, exc)

    async def patch_status(self, container_status: dict, phase: str | None = None, ready: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            current = await self.k.call(self.k.core.read_namespaced_pod_status, self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        conditions = {c.type: c for c in (current.status.conditions or [])}
        stamp = now_iso()

        def cond(ctype: str, status: bool, reason: str | None = None) -> dict:
            old = conditions.get(ctype)
            value = "True" if status else "False"
            changed = old is None or old.status != value
            return {"type": ctype, "status": value,
                    "lastTransitionTime": stamp if changed or not old.last_transition_time
                    else old.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    **({"reason": reason} if reason and not status else {})}

        terminal = phase in ("Succeeded", "Failed")
        conds = [
            cond("PodReadyToStartContainers", not terminal),
            cond("Initialized", True),
            cond("Ready", ready, "PodCompleted" if terminal else "ContainersNotReady"),
            cond("ContainersReady", ready, "PodCompleted" if terminal else "ContainersNotReady"),
            cond("PodScheduled", True),
        ]
        # Conditions others own (DisruptionTarget from an eviction or a node shutdown) stay as they are.
        managed = {c["type"] for c in conds}
        conds += [self.k.core.api_client.sanitize_for_serialization(c) for t, c in conditions.items()
                  if t not in managed]
        body: dict[str, Any] = {"status": {"conditions": conds, "containerStatuses": [container_status]}}
        if phase:
            body["status"]["phase"] = phase
        try:
            await self.k.call(self.k.core.patch_namespaced_pod_status, self.name, self.namespace, body,
                              _content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _container_status(self, state: dict, ready: bool, started: bool) -> dict:
        status = {
            "name": self.spec.container if self.spec else "app",
            "image": self.spec.image if self.spec else "",
            "imageID": f"{self.spec.image}@sha256:{hashlib.sha256((self.spec.image if self.spec else '').encode()).hexdigest()}" if self.spec else "",
            "containerID": f"containerd://{self.container_id}" if self.container_id else None,
            "ready": ready, "started": started, "restartCount": self.restarts, "state": state,
        }
        if self.last_terminated:
            status["lastState"] = {"terminated": self.last_terminated}
        return {k: v for k, v in status.items() if v is not None}

    async def _wire_kwok(self) -> None:
        """Per-pod KWOK objects, owned by the pod so they vanish with it."""
        owner = [{"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}]
        container = self.spec.container if self.spec else "app"
        env = [{"name": "NODE_NAME", "value": self.node}, {"name": "POD_NAME", "value": self.name},
               {"name": "POD_NAMESPACE", "value": self.namespace},
               {"name": "MLOPS_DRILL_GPU_STATE", "value": str(self.k.gpu_state_file)}]
        if self.gpus:  # `kubectl exec -- nvidia-smi` sees the pod's own GPUs, as in its container
            env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": ",".join(self.gpus)})
        objects = {
            "logs": {"logs": [{"containers": [container], "logsFile": str(self.log_file),
                               "previousLogsFile": str(self.log_file) + ".previous", "follow": True}]},
            "execs": {"execs": [{"containers": [container], "local": {"workDir": str(self.dir), "envs": env}}]},
        }
        if self.spec and self.spec.container_port:
            objects["portforwards"] = {"forwards": [{"ports": [self.spec.container_port],
                                                     "target": {"port": self.port, "address": "127.0.0.1"}}]}
        kinds = {"logs": "Logs", "execs": "Exec", "portforwards": "PortForward"}

        async def wire(plural: str, spec: dict) -> None:
            body = {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": kinds[plural],
                    "metadata": {"name": self.name, "namespace": self.namespace, "ownerReferences": owner},
                    "spec": spec}
            try:
                try:
                    await self.k.call(self.k.custom.create_namespaced_custom_object, "kwok.x-k8s.io", "v1alpha1",
                                      self.namespace, plural, body)
                except Exception as exc:
                    if getattr(exc, "status", None) != 409:
                        raise
                    # Left by the previous node agent (it died, its processes with it): this process has a
                    # new local port, so the old PortForward would lead kubectl to a closed socket.
                    await self.k.call(self.k.custom.patch_namespaced_custom_object, "kwok.x-k8s.io", "v1alpha1",
                                      self.namespace, plural, self.name, {"spec": spec},
                                      _content_type="application/merge-patch+json")
            except Exception as exc:
                log.warning("kwok %s for %s/%s: %s", kinds[plural], self.namespace, self.name, exc)

        await asyncio.gather(*(wire(plural, spec) for plural, spec in objects.items()))  # independent objects

    def _allocate_gpus(self) -> list[str]:
        wanted = gpu_request(self.pod)
        if not wanted:
            return []
        in_use = self.k.gpu_in_use.setdefault(self.node, {})
        free = [u for u in self.k.gpu_devices(self.node) if u not in in_use]
        chosen = free[:wanted]
        for uuid in chosen:
            in_use[uuid] = self.uid
        return chosen

    def release_gpus(self) -> None:
        in_use = self.k.gpu_in_use.get(self.node, {})
        for uuid in self.gpus:
            if in_use.get(uuid) == self.uid:
                del in_use[uuid]

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        while not self.stopping:
            try:
                self.spec = await self.k.call(process_spec, self.pod, self.k.lookup, self.dir,
                                              self.k.state / "volumes", self.k.sandbox_image is not None)
                break
            except SpecError as exc:
                await self.patch_status(self._container_status(
                    {"waiting": {"reason": "CreateContainerConfigError", "message": str(exc)}}, False, False))
                await self.event("Failed", f"Error: {exc}", "Warning")
                await asyncio.sleep(5)
        if self.stopping:
            return
        self.gpus = self._allocate_gpus()
        if self.k.sandbox_image is not None:  # the pod's sandbox is made while KWOK's objects are written
            results = await asyncio.gather(self._wire_kwok(), self._start_sandbox(), return_exceptions=True)
            if isinstance(results[1], BaseException):  # _run_once tries again and reports a failure
                log.warning("pod %s/%s: sandbox: %s", self.namespace, self.name, results[1])
        else:
            await self._wire_kwok()
        restart_policy = self.pod["spec"].get("restartPolicy", "Always")
        backoff = 0.0  # a kubelet restarts a container that exited for the first time at once
        await self.event("Pulled", f'Container image "{self.spec.image}" already present on machine')
        while not self.stopping:
            exit_code, ran_for = await self._run_once()
            if self.stopping:
                return
            succeeded = exit_code == 0
            if restart_policy == "Never" or (restart_policy == "OnFailure" and succeeded):
                phase = "Succeeded" if succeeded else "Failed"
                await self.patch_status(self._container_status({"terminated": self.last_terminated}, False, False),
                                        phase=phase)
                self.last_terminated = None
                self.release_gpus()
                return
            if ran_for > 10 * 60:
                backoff = 0.0
            if backoff == 0.0:
                await self.patch_status(self._container_status({"terminated": self.last_terminated}, False, False))
                backoff = BACKOFF_START_S
                self.restarts += 1
                continue
            await self.event("BackOff", f"Back-off restarting failed container {self.spec.container} in pod "
                             f"{self.name}_{self.namespace}({self.uid})", "Warning")
            await self.patch_status(self._container_status({"waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {int(backoff)}s restarting failed container={self.spec.container} "
                           f"pod={self.name}_{self.namespace}({self.uid})"}}, False, False))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            self.restarts += 1

    @property
    def sees_gpus(self) -> bool:
        """Containers granted GPUs, and the device plugin's, find ``nvidia-smi`` as the NVIDIA runtime gives it."""
        from mlops_drill.cluster.seats.names import namespace_prefix

        return bool(self.gpus) or self.namespace[len(namespace_prefix(self.namespace)):] == "gpu-operator"

    def _sandbox_env(self) -> dict[str, str]:
        """What a kubelet and an image give a container: PATH, HOSTNAME, HOME, Service links, the pod's env."""
        assert self.spec is not None
        api = str(self.k.api_port)
        env = {
            "PATH": (NVIDIA_BIN + ":" if self.sees_gpus else "") + PATH,
            "HOSTNAME": self.name, "HOME": "/root" if self.who.root else "/tmp", "LANG": "C.UTF-8",
            "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": api,
            "KUBERNETES_SERVICE_PORT_HTTPS": api, "KUBERNETES_PORT": f"tcp://127.0.0.1:{api}",
            f"KUBERNETES_PORT_{api}_TCP": f"tcp://127.0.0.1:{api}", f"KUBERNETES_PORT_{api}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{api}_TCP_PORT": api, f"KUBERNETES_PORT_{api}_TCP_ADDR": "127.0.0.1",
            **self.k.service_env(self.namespace),
            "POD_NAME": self.name, "POD_NAMESPACE": self.namespace, "NODE_NAME": self.node,
            "PORT": str(self.port), "CONTAINER_IMAGE": self.spec.image,
            "MLOPS_DRILL_SERVICES": f"{RUN_DIR}/services.json", "MLOPS_DRILL_GPU_STATE": f"{RUN_DIR}/gpu/state.json",
            "ARTIFACT_DIR": ARTIFACTS_IN_POD, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
        }
        if self.gpus:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        env.update(self.spec.env)
        return env

    def hosts_extra(self) -> str:
        return self.k.hosts_for(self.namespace)

    async def _start_sandbox(self) -> None:
        """The pod's sandbox (its pause process), made before its first container as a kubelet makes the pod's."""
        assert self.spec is not None and self.k.sandbox_image is not None and self.k.run_dir is not None
        image = list(self.k.sandbox_image)
        if self.k.artifacts is not None:
            image += ["--ro-bind", str(await self.k.artifacts()), ARTIFACTS_IN_POD]
        smi = None
        if self.sees_gpus:
            smi = self.dir / "nvidia-smi"
            smi.write_text(f"#!/bin/sh\nexport NODE_NAME='{self.node}' MLOPS_DRILL_GPU_STATE='{RUN_DIR}/gpu/state.json'\n"
                           f'exec "{sys.executable}" -m mlops_drill.cluster.gpu.nvidia_smi "$@"\n')
            smi.chmod(0o755)
        self.sandbox = PodSandbox(self.dir, self.name, self.who, dict(self.spec.volumes), set(self.spec.readonly),
                                  self.k.run_dir, image, smi, self.k.gpu_state_file.parent, cgroup=self.k.pods_cgroup)
        self.sandbox.write_etc(etc_files(self.name, self.namespace, self.pod_ip, self.who, self.hosts_extra()))
        await self.sandbox.start()

    def refresh_hosts(self) -> None:
        """Services came or went: rewrite the pod's /etc/hosts (in place; the container sees it at once)."""
        if self.sandbox is not None and self.sandbox.etc:
            try:
                self.sandbox.write_etc({"hosts": etc_files(self.name, self.namespace, self.pod_ip, self.who,
                                                           self.hosts_extra())["hosts"]})
            except OSError:
                pass

    def exec_argv(self, command: list[str]) -> list[str] | None:
        """What `kubectl exec` runs on the host to run ``command`` in this pod's container; None: no container."""
        if self.k.sandbox_image is None:  # MLOPS_DRILL_SANDBOX=0: on the host, as KWOK alone would run it
            return command
        if self.sandbox is None or not self.sandbox.alive() or self.spec is None:
            return None
        self.sandbox.write_exec_env(self._sandbox_env())
        return self.sandbox.enter_argv(command, None, self.spec.working_dir or "/")

    def _env(self) -> dict[str, str]:
        assert self.spec is not None
        if self.k.sandbox_image is not None:
            return self._sandbox_env()
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH",
                                                               "MLOPS_DRILL_CACHE", "XDG_CACHE_HOME")}
        env = {
            **base,
            "HOSTNAME": self.name, "POD_NAME": self.name, "POD_NAMESPACE": self.namespace, "NODE_NAME": self.node,
            "PORT": str(self.port), "CONTAINER_IMAGE": self.spec.image,
            "MLOPS_DRILL_SERVICES": str(self.k.services_file),
            "MLOPS_DRILL_GPU_STATE": str(self.k.gpu_state_file),
            "PYTHONUNBUFFERED": "1", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        }
        if self.gpus:
            env["NVIDIA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        env.update(self.spec.env)
        return env

    async def _run_once(self) -> tuple[int, float]:
        assert self.spec is not None
        if self.log_file.exists() and self.restarts:
            self.log_file.replace(str(self.log_file) + ".previous")
        self.container_id = hashlib.sha256(f"{self.uid}/{self.restarts}".encode()).hexdigest()
        await self.event("Created", f"Created container: {self.spec.container}")
        logf = open(self.log_file, "ab")
        env = self._env()
        try:
            sandbox = None
            argv, cwd = self.spec.argv, str(self.dir)
            if self.k.sandbox_image is not None:
                if self.sandbox is None or not self.sandbox.alive():
                    await self._start_sandbox()
                assert self.sandbox is not None
                cwd = self.spec.working_dir or "/"
                sandbox = {"pid": self.sandbox.pid, "uid": self.who.uid, "gid": self.who.gid,
                           "caps": list(DEFAULT_CAP_NUMBERS) if self.who.root else [],
                           "cgroup": str(self.k.pods_cgroup) if self.k.pods_cgroup else ""}
                argv = self.sandbox.enter_argv(self.spec.argv, env, cwd, session=True)
            forked = await self.k.zygote.spawn(self.spec.argv, cwd, env, 1 << 20, sandbox) if self.k.zygote else None
            self.proc = forked or await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL, cwd=self.dir, env=env, preexec_fn=_die_with_parent,
                limit=1 << 20)
        except (OSError, SandboxError) as exc:
            logf.write(cri_line("stderr", f"exec {self.spec.argv[0]}: {exc}"))
            logf.close()
            self.last_terminated = {"exitCode": 128, "reason": "StartError", "message": str(exc),
                                    "startedAt": now_iso(), "finishedAt": now_iso()}
            return 128, 0.0
        self.container_pid = self.proc.pid
        pumps = [asyncio.create_task(_pump(self.proc.stdout, "stdout", logf)),
                 asyncio.create_task(_pump(self.proc.stderr, "stderr", logf))]
        self.started_at = now_iso()
        started = asyncio.get_running_loop().time()
        # The process in the pod is the child of its waiter (zygote child or nsenter), forked once the waiter
        # has joined the pod: looked for while the Started event is written, not before it.
        inner = asyncio.ensure_future(_only_child(self.proc.pid)) if sandbox is not None else None
        await self.event("Started", f"Started container {self.spec.container}")
        if inner is not None:
            self.container_pid = await inner or self.proc.pid
        try:  # before the Running status: whoever sees the pod running finds its process record
            records.write(self.dir, self.container_pid, env)
        except OSError as exc:  # only lookups by the injector need it; the container runs regardless
            log.warning("pod %s/%s: no process record: %s", self.namespace, self.name, exc)
        no_probe = self.spec.readiness is None
        self.ready = no_probe
        await self.patch_status(self._container_status({"running": {"startedAt": self.started_at}},
                                                       self.ready, True), ready=self.ready)
        self.k.on_endpoint_change()
        probe = None if no_probe else asyncio.create_task(self._probe_loop(started))
        try:
            code = await self.proc.wait()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            records.clear(self.dir)
            if probe:
                probe.cancel()
            logf.close()
        self.ready = False
        self.k.on_endpoint_change()
        reason = "Completed" if code == 0 else ("OOMKilled" if code == -9 else "Error")
        self.last_terminated = {"exitCode": code if code >= 0 else 128 - code, "reason": reason,
                                "startedAt": self.started_at, "finishedAt": now_iso(),
                                "containerID": f"containerd://{self.container_id}"}
        return code, asyncio.get_running_loop().time() - started

    async def _probe_loop(self, started: float) -> None:
        """Readiness probes on a ticker from the container's start, as a kubelet's prober runs them.

        The ticker counts from ``started`` (the loop time the process began), not
        from when the Running status reached the API server: a kubelet's prober
        does not wait for its status manager.
        """
        assert self.spec is not None and self.spec.readiness is not None
        probe = self.spec.readiness
        http = probe.get("httpGet") or {}
        period = max(float(probe.get("periodSeconds", 10)), 0.5)
        failure_threshold = int(probe.get("failureThreshold", 3))
        loop = asyncio.get_running_loop()
        tick = started + float(probe.get("initialDelaySeconds", 0))
        await asyncio.sleep(max(0.0, tick - loop.time()))
        failures = 0
        path = http.get("path", "/")
        timeout = float(probe.get("timeoutSeconds", 1))
        while True:
            ok, why = True, ""
            try:
                status = await asyncio.wait_for(http_status(self.port, path), timeout)
                ok = 200 <= status < 400
                why = f"HTTP probe failed with statuscode: {status}"
            except asyncio.TimeoutError:
                ok = False
                why = (f'Get "http://{self.pod_ip}:{self.spec.container_port}{path}": context deadline exceeded '
                       "(Client.Timeout exceeded while awaiting headers)")
            except (OSError, ValueError):
                ok = False
                why = (f'Get "http://{self.pod_ip}:{self.spec.container_port}{path}": dial tcp '
                       f"{self.pod_ip}:{self.spec.container_port}: connect: connection refused")
            failures = 0 if ok else failures + 1
            became = True if ok else (False if failures >= failure_threshold or not self.ready else self.ready)
            if not ok:
                await self.event("Unhealthy", f"Readiness probe failed: {why}", "Warning")
            if became != self.ready:
                self.ready = became
                await self.patch_status(self._container_status({"running": {"startedAt": self.started_at}},
                                                               self.ready, True), ready=self.ready)
                self.k.on_endpoint_change()
            # A kubelet probes on a ticker: the time a probe and its event took does not push the next one.
            tick += period
            now = loop.time()
            tick = max(tick, now)  # after a stall the missed ticks are dropped, as a ticker drops them
            await asyncio.sleep(tick - now)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``, as a kubelet kills a container."""
        self.stopping = True
        self.release_gpus()
        proc = self.proc
        if proc and proc.returncode is None:
            # In a sandbox the container's process leads a session of its own inside the pod; its waiter
            # outside (proc) ignores SIGTERM and ends with it.
            groups = [proc.pid] + ([self.container_pid] if self.container_pid not in (0, proc.pid) else [])
            for group in groups:
                try:
                    os.killpg(group, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except asyncio.TimeoutError:
                for group in groups:
                    try:
                        os.killpg(group, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                await proc.wait()
        if self.task and not self.task.done() and self.task is not asyncio.current_task():
            self.task.cancel()
        if self.sandbox is not None:
            await self.sandbox.stop()
