"""The default backend: a real Kubernetes control plane as local processes, no containers.

kwokctl's binary runtime runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok-controller from the binaries we built, on loopback.
Nodes are KWOK nodes; pods of the ML platform become real local processes
through the process kubelet. The kubeconfig stays in our state directory: the
user's ``~/.kube/config`` is never touched.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from mlops_drill import paths
from mlops_drill.cluster import daemons, kube, versions
from mlops_drill.cluster.backends.base import Backend, ClusterInfo, ClusterStatus, ComponentHealth, NodeState
from mlops_drill.cluster.config import ClusterConfig, saved_config, settle_config
from mlops_drill.cluster.kwok.config import kwokctl_config
from mlops_drill.cluster.nodes import NODE_POOLS, ensure_nodes
from mlops_drill.cluster.toolchain import Toolchain, ensure_toolchain
from mlops_drill.errors import DrillError

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _pid_alive(pid_file: Path) -> bool:
    return daemons.running_pid(pid_file) is not None


class EmbeddedBackend(Backend):
    kind = "embedded"

    def __init__(self, name: str = "mlops-drill", api_port: int | None = None,
                 config: ClusterConfig | None = None) -> None:
        super().__init__(name)
        self.requested_config = config  # None: the products the cluster was made with (or the defaults)
        env_port = os.environ.get("MLOPS_DRILL_API_PORT")
        self.api_port = api_port or (int(env_port) if env_port else None)
        self.state = paths.cluster_dir(name)
        self.workdir = self.state / "kwok"
        self.kwok_cluster = self.workdir / "clusters" / name
        self.timings: dict[str, float] = {}  # seconds since `up` began, per phase (for bench/)

    # -- paths -------------------------------------------------------------------------------
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def private_bin(self) -> Path:
        """Commands the fake kubelets run for `kubectl exec` (nvidia-smi and friends)."""
        return self.state / "bin"

    @property
    def runs_processes(self) -> bool:
        return True

    # -- kwokctl -----------------------------------------------------------------------------
    def _env(self, chain: Toolchain | None = None) -> dict[str, str]:
        path = os.environ.get("PATH", "")
        extra = [str(self.private_bin)] + ([str(chain.bin_dir)] if chain else [])
        return {**os.environ, "KWOK_WORKDIR": str(self.workdir), "PATH": os.pathsep.join(extra + [path])}

    def _kwokctl(self, chain: Toolchain, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        cmd = [str(chain["kwokctl"]), "--name", self.name, *args]
        return subprocess.run(cmd, env=self._env(chain), capture_output=True, text=True, timeout=timeout)

    def _write_config(self, chain: Toolchain) -> Path:
        import yaml

        docs = list(yaml.safe_load_all(kwokctl_config(self.api_port, self._env(chain)["PATH"],
                                                      self._kubelet_front_port(), self.kwok_cluster / "pki")))
        opts = docs[0]["options"]
        opts.update({
            "kubeVersion": versions.KUBERNETES,
            "etcdVersion": versions.ETCD.lstrip("v"),
            "kubeApiserverBinary": str(chain["kube-apiserver"]),
            "kubeControllerManagerBinary": str(chain["kube-controller-manager"]),
            "kubeSchedulerBinary": str(chain["kube-scheduler"]),
            "kubectlBinary": str(chain["kubectl"]),
            "kwokControllerBinary": str(chain["kwok"]),
            "etcdBinary": str(chain["etcd"]),
            "etcdctlBinary": str(chain["etcdctl"]),
            "etcdutlBinary": str(chain["etcdutl"]),
        })
        path = self.state / "kwokctl.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        return path

    @property
    def _front_port_file(self) -> Path:
        return self.state / "kubelet-front.port"

    def _kubelet_front_port(self) -> int:
        """The port every node names as its kubelet (the node agent's exec front), fixed at cluster creation."""
        try:
            return int(self._front_port_file.read_text())
        except (OSError, ValueError):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            self._front_port_file.parent.mkdir(parents=True, exist_ok=True)
            self._front_port_file.write_text(str(port))
            return port

    def _component_args(self, name: str) -> list[str]:
        import yaml

        try:
            docs = list(yaml.safe_load_all((self.kwok_cluster / "kwok.yaml").read_text()))
            return list(next(c for c in docs[0]["components"] if c["name"] == name).get("args") or [])
        except (OSError, StopIteration, KeyError, TypeError, IndexError):
            return []

    def _arg_port(self, component: str, flag: str) -> int | None:
        from urllib.parse import urlsplit

        for arg in self._component_args(component):
            if arg.startswith(f"--{flag}="):
                value = arg.split("=", 1)[1].split(",")[0]
                return urlsplit(value if "://" in value else "tcp://" + value).port
        return None

    def _close_engine_ports(self) -> str | None:
        """etcd and kwok's own kubelet server answer anyone on loopback: close them to pod users."""
        from mlops_drill.cluster.processpods import firewall

        ports = [self._arg_port("etcd", "listen-client-urls"), self._arg_port("etcd", "listen-peer-urls"),
                 self._arg_port("kwok-controller", "server-address")]
        return firewall.close_ports(str(self.state), [p for p in ports if p])

    def create_command(self, chain: Toolchain, dry_run: bool = False) -> list[str]:
        """The exact kwokctl invocation (``--dry-run`` shows no download is attempted)."""
        config = self._write_config(chain)
        cmd = [str(chain["kwokctl"]), "--name", self.name]
        if dry_run:
            cmd.append("--dry-run")
        cmd += ["create", "cluster", "--config", str(config), "--runtime", "binary",
                "--kubeconfig", "", "--wait", "60s", "--timeout", "120s"]
        return cmd

    # -- lifecycle ---------------------------------------------------------------------------
    def _api(self):
        return kube.api_client(self.kubeconfig())

    def _api_healthy(self) -> bool:
        if not self.kubeconfig().is_file():
            return False
        try:
            return kube.api_ready(self._api())
        except Exception:
            return False

    def _pid_file(self, component: str) -> Path:
        return self.kwok_cluster / "pids" / f"{component}.pid"

    def _check_port(self) -> None:
        if self.api_port and port_in_use(self.api_port):
            raise DrillError(
                f"port {self.api_port} on 127.0.0.1 is in use by another process: "
                "stop it, or choose another with MLOPS_DRILL_API_PORT"
            )

    def _create(self, chain: Toolchain) -> None:
        self._check_port()
        cmd = self.create_command(chain)
        result = subprocess.run(cmd, env=self._env(chain), capture_output=True, text=True, timeout=240)
        if result.returncode != 0:
            raise DrillError(f"kwokctl create cluster failed: {_last_error(result)} (log: {self._save_log(result)})")
        shutil.copyfile(self.kwok_cluster / "kubeconfig.yaml", self.kubeconfig())
        self.kubeconfig().chmod(0o600)

    def _save_log(self, result: subprocess.CompletedProcess) -> Path:
        log = self.state / "logs" / "kwokctl.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(" ".join(map(str, result.args)) + "\n" + result.stdout + result.stderr + "\n")
        return log

    def _restart(self, chain: Toolchain) -> bool:
        """Bring a stopped or half-dead cluster back from its etcd data; False if that fails."""
        self._kwokctl(chain, "stop", "cluster", timeout=60)
        result = self._kwokctl(chain, "start", "cluster", "--timeout", "60s", "--wait", "60s", timeout=120)
        if result.returncode != 0:
            self._save_log(result)
            return False
        try:
            kube.wait_for(self._api_healthy, timeout=30, what="kube-apiserver")
        except TimeoutError:
            return False
        # kwokctl starts every component at once; a kwok-controller that came up before the API server
        # never plays its stages, and the node leases still name the dead instance as holder (it would
        # wait out their whole duration): free the leases and start it again now that the API answers.
        from kubernetes import client

        coordination = client.CoordinationV1Api(self._api())
        for node in NODE_POOLS:
            try:
                coordination.delete_namespaced_lease(node.name, "kube-node-lease")
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise
        self._restart_component("kwok-controller")
        return True

    def _restart_component(self, name: str) -> None:
        """Kill one control-plane process and start it again exactly as kwokctl recorded it."""
        import signal

        import yaml

        docs = list(yaml.safe_load_all((self.kwok_cluster / "kwok.yaml").read_text()))
        component = next(c for c in docs[0]["components"] if c["name"] == name)
        pid = daemons.running_pid(self._pid_file(name))
        if pid:
            os.kill(pid, signal.SIGTERM)
            kube.wait_for(lambda: daemons.running_pid(self._pid_file(name)) is None, timeout=10, what=f"{name} to stop")
        env = {**os.environ, **{e["name"]: e["value"] for e in component.get("envs") or []}}
        with open(self.kwok_cluster / "logs" / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([component["binary"], *component.get("args", [])], cwd=component["workDir"],
                                    env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self._pid_file(name).write_text(str(proc.pid))

    def up(self, progress: bool = True) -> ClusterInfo:
        from rich.console import Console

        console = Console(stderr=True, quiet=not progress)
        chain = ensure_toolchain(progress=progress)
        self.state.mkdir(parents=True, exist_ok=True)
        self.private_bin.mkdir(parents=True, exist_ok=True)
        # Before anything starts: the node agent reads the products from the state folder.
        config = settle_config(self.state, self.requested_config, self.kwok_cluster.exists(), self.name)
        started = time.monotonic()
        with console.status(f"starting cluster {self.name} (etcd, kube-apiserver, controllers, scheduler, kwok)"):
            if self.kwok_cluster.exists() and self._api_healthy() and self._control_plane_alive():
                console.print(f"cluster {self.name} is already running; reusing it")
            elif self.kwok_cluster.exists() and (self.kwok_cluster / "kwok.yaml").exists():
                dead = [c for c in CONTROL_PLANE if not _pid_alive(self._pid_file(c))]
                console.print(f"cluster {self.name}: {', '.join(dead) or 'API server'} not running; restarting it")
                daemons.stop("agent", self.state)  # its watches died with the API server; start it fresh
                if not self._restart(chain):
                    console.print(f"cluster {self.name}: restart failed; recreating it from scratch")
                    self._delete(chain)
                    self._create(chain)
            else:
                if self.kwok_cluster.exists():
                    console.print(f"cluster {self.name}: removing an incomplete cluster directory")
                    self._delete(chain)
                self._create(chain)
            api = self._api()
            kube.wait_for(lambda: kube.api_ready(api), timeout=60, what="kube-apiserver /readyz")
            self.timings["api_ready"] = time.monotonic() - started
            from kubernetes import client

            ensure_nodes(client.CoreV1Api(api), config.node_pools())
            names = [n.name for n in NODE_POOLS]
            kube.wait_for(lambda: kube.nodes_ready(api, names), timeout=60, what="nodes Ready")
            self.timings["nodes_ready"] = time.monotonic() - started
            problem = self._close_engine_ports()
            if problem and os.environ.get("MLOPS_DRILL_ALLOW_OPEN_ENGINE") == "1":
                console.print(f"[yellow]warning:[/] {problem} (MLOPS_DRILL_ALLOW_OPEN_ENGINE=1)")
            elif problem:
                raise DrillError(f"cluster {self.name}: {problem}; set MLOPS_DRILL_ALLOW_OPEN_ENGINE=1 to run "
                                 "with the engine open to pods")
            self._start_agent()
            kube.wait_for(lambda: _gpus_advertised(api), timeout=60, what="GPUs advertised on the GPU nodes")
            self.timings["gpus_advertised"] = time.monotonic() - started
        console.print(f"cluster {self.name} ready in {time.monotonic() - started:.1f}s")
        return self.info(chain)

    def _start_agent(self) -> None:
        """The node agent (process kubelet + GPU device manager) and the exec-able nvidia-smi."""
        import sys

        smi = self.private_bin / "nvidia-smi"
        smi.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mlops_drill.cluster.gpu.nvidia_smi "$@"\n')
        smi.chmod(0o755)
        front: list[str] = []
        kwok_port = self._arg_port("kwok-controller", "server-address")
        if self._front_port_file.is_file() and kwok_port:
            front = ["--kubelet-front", self._front_port_file.read_text().strip(),
                     "--kubelet-upstream", f"127.0.0.1:{kwok_port}", "--pki", str(self.kwok_cluster / "pki")]
        daemons.start("agent", daemons.python_module("mlops_drill.cluster.agent", "--state", str(self.state),
                                                     "--kubeconfig", str(self.kubeconfig()), *front), self.state)

    def _control_plane_alive(self) -> bool:
        return all(_pid_alive(self._pid_file(c)) for c in CONTROL_PLANE)

    def info(self, chain: Toolchain | None = None) -> ClusterInfo:
        return ClusterInfo(
            name=self.name, backend=self.kind, kubeconfig=self.kubeconfig(),
            api_server=self._server_address(), kubectl=chain["kubectl"] if chain else None,
        )

    def _server_address(self) -> str:
        import yaml

        try:
            cfg = yaml.safe_load(self.kubeconfig().read_text())
            return cfg["clusters"][0]["cluster"]["server"]
        except (OSError, KeyError, IndexError, TypeError):
            return "(unknown)"

    def _delete(self, chain: Toolchain) -> None:
        self._kwokctl(chain, "delete", "cluster", timeout=120)
        # kwokctl leaves its folder when a component was already gone; we own it, so remove it.
        for component in CONTROL_PLANE:
            pid = daemons.running_pid(self._pid_file(component))
            if pid:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        shutil.rmtree(self.kwok_cluster, ignore_errors=True)

    def down(self) -> None:
        from mlops_drill.cluster.processpods import firewall

        daemons.stop_all(self.state)
        firewall.open_ports(str(self.state))
        from mlops_drill.cluster.toolchain.binaries import resolve_without_building

        found, _missing = resolve_without_building()
        if "kwokctl" in found and self.kwok_cluster.exists():
            self._delete(Toolchain(bins=found))
        shutil.rmtree(self.state, ignore_errors=True)

    def status(self) -> ClusterStatus:
        if not self.kwok_cluster.exists():
            return ClusterStatus(info=None, components=[], nodes=[], problem=f"cluster {self.name} is not created")
        components = [
            ComponentHealth(c, _pid_alive(self._pid_file(c)),
                            "" if _pid_alive(self._pid_file(c)) else "process not running")
            for c in CONTROL_PLANE
        ]
        components += [ComponentHealth(f.stem, True, "daemon") for f in sorted((self.state / "pids").glob("*.pid"))
                       if daemons.running_pid(f)] if (self.state / "pids").is_dir() else []
        info = self.info()
        if not self._api_healthy():
            return ClusterStatus(info=info, components=components, nodes=[],
                                 problem="kube-apiserver does not answer; run `mlops-drill cluster up` to recover")
        from kubernetes import client

        nodes = [
            NodeState(n.metadata.name,
                      any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])),
                      dict(n.metadata.labels or {}))
            for n in client.CoreV1Api(self._api()).list_node().items
        ]
        return ClusterStatus(info=info, components=components, nodes=nodes,
                             gpu_products=saved_config(self.state).products())


def _gpus_advertised(api) -> bool:
    from kubernetes import client

    try:
        nodes = client.CoreV1Api(api).list_node(label_selector="pool=gpu", _request_timeout=5).items
    except Exception:
        return False
    return bool(nodes) and all("nvidia.com/gpu" in (n.status.capacity or {}) for n in nodes)


def _last_error(result: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "fail" in ln.lower()]
    return (errors or lines or ["no output"])[-1][:300]
