"""The process kubelet: owns every pod runner and the service proxy of one cluster."""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import threading
import time
from pathlib import Path

from mlops_drill.cluster.gpu.model import GpuNode, new_node
from mlops_drill.cluster.processpods import forking, sandbox
from mlops_drill.cluster.processpods.forking import Zygote
from mlops_drill.cluster.processpods.kubeproxy import ServiceProxy
from mlops_drill.cluster.processpods.podspec import PROCESS_LABEL
from mlops_drill.cluster.processpods.runner import Kubelet, PodRunner

log = logging.getLogger("mlops_drill.processpods")


def _api_port(api) -> int:
    from urllib.parse import urlparse

    return urlparse(api.configuration.host).port or 443


class ProcessKubelet:
    """Owns all runners and the service proxy for one cluster."""

    def __init__(self, state: Path, kubeconfig: Path, selector: str = f"{PROCESS_LABEL}=true") -> None:
        """``selector``: the pods this kubelet owns (its relist looks at no others)."""
        from kubernetes import client

        from mlops_drill.cluster.kube import api_client

        api = api_client(kubeconfig)
        self.state = state
        self.runners: dict[str, PodRunner] = {}
        self.selector = selector
        self.finished: set[str] = set()
        self.created: dict[str, float] = {}  # pod UID -> when its runner was made (monotonic)
        self.resync_task: asyncio.Task | None = None
        run_dir = state / "run"  # what every pod sees read-only at sandbox.RUN_DIR: the Service table, GPU state
        (run_dir / "gpu").mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o755)
        self.proxy = ServiceProxy(state / "services.json", self.resolve, mirror=run_dir / "services.json",
                                  on_change=self._services_changed)
        self._artifacts: concurrent.futures.Future[Path] | None = None
        sandboxed = sandbox.enabled()
        if sandboxed:  # the pods' image is ready before the first pod comes, as an image pulled beforehand
            self._artifacts = concurrent.futures.Future()
            threading.Thread(target=self._build_image, daemon=True, name="pod-image").start()
        if sandboxed and sandbox.available() is None:
            raise SystemExit("pods run in bubblewrap sandboxes: install bubblewrap (apt-get install bubblewrap), "
                             "or set MLOPS_DRILL_SANDBOX=0 to run them as plain host processes")
        self.kubelet = Kubelet(
            call=self._call, core=client.CoreV1Api(api), custom=client.CustomObjectsApi(api), state=state,
            services_file=state / "services.json", gpu_state_file=state / "gpu" / "state.json",
            gpu_devices=self.gpu_devices, zygote=Zygote(state) if forking.enabled() else None,
            sandbox_image=sandbox.image_args() if sandboxed else None,
            run_dir=run_dir, api_port=_api_port(api), service_env=self.proxy.service_env,
            hosts_for=self.proxy.hosts_for, artifacts=self.artifacts if sandboxed else None,
            pods_cgroup=_pods_cgroup(state) if sandboxed else None,
        )
        (state / "gpu").mkdir(parents=True, exist_ok=True)
        (state / "services.json").write_text("{}")
        (run_dir / "services.json").write_text("{}")

    def _build_image(self) -> None:
        """What a pod's image holds beyond the host's files, made once per agent in its own thread.

        The model artifacts first (the first sandbox binds them; building them on the
        first pod's path put their import, numpy included, on the event loop and
        delayed every pod behind it by 0.1-1.4 s on 2 busy cores), then the packages'
        bytecode caches, which pods cannot write.
        """
        import compileall

        assert self._artifacts is not None
        try:
            from mlops_drill.mlplatform.artifacts import ensure_artifacts

            root = ensure_artifacts()
            for folder, _dirs, files in os.walk(root):  # built in a private temporary folder (0700)
                os.chmod(folder, 0o755)
                for fname in files:
                    os.chmod(os.path.join(folder, fname), 0o644)
            self._artifacts.set_result(root)
        except BaseException as exc:  # the first sandbox reports it (its pod's container cannot start)
            self._artifacts.set_exception(exc)
        for folder in sandbox.package_dirs():
            compileall.compile_dir(folder, quiet=2)

    async def artifacts(self) -> Path:
        """The model artifacts' host folder (pods see them read-only), built by ``_build_image``."""
        if self._artifacts is None or (self._artifacts.done() and self._artifacts.exception() is not None):
            self._artifacts = concurrent.futures.Future()  # not built, or it failed: build (again)
            threading.Thread(target=self._build_image, daemon=True, name="pod-image").start()
        return await asyncio.wrap_future(self._artifacts)

    def _services_changed(self) -> None:
        for runner in list(self.runners.values()):
            runner.refresh_hosts()

    def runner_of(self, namespace: str, name: str) -> PodRunner | None:
        return next((r for r in self.runners.values() if r.namespace == namespace and r.name == name
                     and not r.stopping), None)

    @staticmethod
    async def _call(fn, *args, **kwargs):
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def gpu_devices(self, node: str) -> list[str]:
        """Healthy GPU UUIDs of ``node`` from the inventory the GPU controller maintains."""
        try:
            data = json.loads(self.kubelet.gpu_state_file.read_text())
            model = GpuNode.model_validate(data[node]) if node in data else None
        except (OSError, ValueError):
            model = None
        model = model or new_node(node)
        return [d.uuid for d in model.devices if d.healthy]

    def resolve(self, uid: str, pod_ip: str, port: int) -> int | None:
        """The local port of the ready process behind one endpoint (by pod UID; by IP only without one)."""
        if uid:
            runner = self.runners.get(uid)
            return runner.port_for(port) if runner is not None and runner.ready and not runner.stopping else None
        for runner in self.runners.values():
            if runner.pod_ip == pod_ip and runner.ready and not runner.stopping:
                return runner.port_for(port)
        return None

    async def pod_event(self, event_type: str | None, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        status = pod.get("status") or {}
        gone = event_type == "DELETED" or pod["metadata"].get("deletionTimestamp")
        if gone:
            runner = self.runners.pop(uid, None)
            self.created.pop(uid, None)
            self.finished.discard(uid)
            if runner:
                await runner.stop(grace=5)
            return
        if uid in self.runners or uid in self.finished:
            return
        if status.get("phase") != "Running" or not status.get("podIP") or not pod["spec"].get("nodeName"):
            return
        runner = PodRunner(self.kubelet, pod)
        self.runners[uid] = runner
        self.created[uid] = time.monotonic()

        async def supervise() -> None:
            try:
                await runner.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod %s/%s: runner failed", runner.namespace, runner.name)
            finally:
                if not runner.stopping:  # ended on its own: a completed Job pod, or a runner error
                    self.finished.add(uid)
                    self.runners.pop(uid, None)
                    self.created.pop(uid, None)

        runner.task = asyncio.create_task(supervise())

    async def resync(self) -> None:
        """Relist the process pods and converge, as a kubelet's periodic sync does.

        A watch that reconnects (API server restart, an expired resource version)
        replays what exists, never what was deleted meanwhile: without this, a
        deleted pod's process would run on and a missed Running pod would never start.
        """
        listed_at = time.monotonic()
        found = await self._call(self.kubelet.core.list_pod_for_all_namespaces,
                                 label_selector=self.selector, _request_timeout=30)
        pods = self.kubelet.core.api_client.sanitize_for_serialization(found.items)
        live = {p["metadata"]["uid"]: p for p in pods}
        for uid, runner in list(self.runners.items()):
            if uid not in live and self.created.get(uid, listed_at) < listed_at:
                log.info("pod %s/%s is gone from the API: stopping its process", runner.namespace, runner.name)
                await self.pod_event("DELETED", runner.pod)
        self.finished &= set(live)
        for pod in pods:
            await self.pod_event(None, pod)

    async def resync_forever(self, period: float = 10.0) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API is away for a moment: the next period tries again
                log.warning("pod resync failed: %s", exc)

    async def shutdown(self) -> None:
        if self.resync_task is not None:
            self.resync_task.cancel()
        await asyncio.gather(*(r.stop(grace=2) for r in list(self.runners.values())), return_exceptions=True)
        if self.kubelet.zygote is not None:
            await self.kubelet.zygote.stop()
        self.proxy.close()


def _pods_cgroup(state: Path) -> Path | None:
    """The cgroup the cluster's firewall rule names (made by the backend before this agent starts), if any."""
    from mlops_drill.cluster.processpods import firewall

    group = firewall.pods_cgroup(str(state))
    return group if group is not None and (group / "cgroup.procs").is_file() else None
