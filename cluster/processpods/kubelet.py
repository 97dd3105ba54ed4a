"""The process kubelet: owns every pod runner and the service proxy of one cluster."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path

from mlops_drill.cluster.gpu.model import GpuNode, new_node
from mlops_drill.cluster.processpods.kubeproxy import ServiceProxy
from mlops_drill.cluster.processpods.runner import Kubelet, PodRunner

log = logging.getLogger("mlops_drill.processpods")


class ProcessKubelet:
    """Owns all runners and the service proxy for one cluster."""

    def __init__(self, state: Path, kubeconfig: Path) -> None:
        from kubernetes import client

        from mlops_drill.cluster.kube import api_client

        api = api_client(kubeconfig)
        self.state = state
        self.runners: dict[str, PodRunner] = {}
        self.finished: set[str] = set()
        self.proxy = ServiceProxy(state / "services.json", self.resolve)
        self.kubelet = Kubelet(
            call=self._call, core=client.CoreV1Api(api), custom=client.CustomObjectsApi(api), state=state,
            services_file=state / "services.json", gpu_state_file=state / "gpu" / "state.json",
            gpu_devices=self.gpu_devices,
        )
        (state / "gpu").mkdir(parents=True, exist_ok=True)
        (state / "services.json").write_text("{}")

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

    def resolve(self, pod_ip: str, port: int) -> int | None:
        for runner in self.runners.values():
            if runner.pod_ip == pod_ip and runner.ready:
                return runner.port_for(port)
        return None

    async def pod_event(self, event_type: str | None, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        status = pod.get("status") or {}
        gone = event_type == "DELETED" or pod["metadata"].get("deletionTimestamp")
        if gone:
            runner = self.runners.pop(uid, None)
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

        runner.task = asyncio.create_task(supervise())

    async def shutdown(self) -> None:
        await asyncio.gather(*(r.stop(grace=2) for r in list(self.runners.values())), return_exceptions=True)
        self.proxy.close()
