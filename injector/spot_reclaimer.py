"""The spot reclaimer: plays the cloud provider reclaiming spot GPU capacity under a training Job.

Started detached by the ``disable-checkpointing`` fault (``cluster.daemons``),
it watches one Job's pods on one node and stops each after it has run for a
while, the way a graceful node shutdown stops it: SIGTERM to the real process
(so the app logs what it really does on a reclaim), then the pod Failed with the
kubelet's node-shutdown reason and a ``DisruptionTarget`` condition. On kind the
SIGTERM goes to the container's process from its node (``--kind-cluster``); on
other backends, whose nodes are out of reach, it uses the Eviction API instead.

Run: ``python -m mlops_drill.injector.spot_reclaimer --kubeconfig F --namespace NS --job NAME --node NODE --after S [--first-after S]``.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

#: What a kubelet writes on a pod it stops during a graceful node shutdown (spot reclaim).
SHUTDOWN_REASON = "Terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."


class Reclaimer:
    """Plays the cloud's spot capacity: stops training pods on one node after a while, as a shutdown does."""

    def __init__(self, kubeconfig: Path, namespace: str, job: str, node: str, after: float,
                 local_processes: bool, first_after: float | None = None, process_state: Path | None = None,
                 process_namespace: str | None = None, kind_cluster: str | None = None) -> None:
        from kubernetes import client

        from mlops_drill.cluster.kube import api_client

        self.core = client.CoreV1Api(api_client(kubeconfig))
        self.namespace, self.job, self.node, self.after = namespace, job, node, after
        self.first_after = after if first_after is None else first_after
        self.local_processes = local_processes
        # The embedded cluster's folder holds its kubeconfig; a seat of a shared cluster names the shared one,
        # and the namespace its pods have there.
        self.state = process_state or Path(kubeconfig).resolve().parent
        self.process_namespace = process_namespace or namespace
        self.done: set[str] = set()
        self.kind = None
        if kind_cluster:
            from mlops_drill.cluster.backends.kind import KindBackend

            self.kind = KindBackend(name=kind_cluster, state=Path(kubeconfig).resolve().parent)

    def budget(self, uid: str) -> float:
        """Seconds this pod may run: ``after`` ±25 %, fixed per pod (spot reclaims are not a metronome).

        The run's first pod gets ``first_after`` instead: the run lands on a spot
        node whose reclaim is already under way.
        """
        spread = int(hashlib.sha256(uid.encode()).hexdigest()[:4], 16) / 0xFFFF
        return (self.after if self.done else self.first_after) * (0.75 + 0.5 * spread)

    def due(self) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={self.job}").items
        now = time.time()
        out = []
        for pod in pods:
            if pod.metadata.uid in self.done or pod.spec.node_name != self.node or pod.status.phase != "Running" \
                    or pod.metadata.deletion_timestamp:
                continue
            running = [s.state.running for s in pod.status.container_statuses or [] if s.state and s.state.running]
            if running and running[0].started_at and now - running[0].started_at.timestamp() >= self.budget(
                    pod.metadata.uid):
                out.append(pod)
        return out

    def reclaim(self, pod: Any) -> None:
        name = pod.metadata.name
        self.done.add(pod.metadata.uid)
        self._event(pod, "Killing", f"Stopping container {pod.spec.containers[0].name}")
        if self.kind is not None:
            self._stop_real_container(pod)
            return
        if not self.local_processes:
            from kubernetes import client

            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=self.namespace))
            self.core.create_namespaced_pod_eviction(name, self.namespace, body)
            return
        pid = _pod_process(name, self.process_namespace, self.state)
        if pid is None:
            return
        # A kubelet shutting its node down marks the pod Failed with the disruption condition, then stops
        # the container: the Job controller sees the condition (its pod failure policy may ignore it).
        self._mark_shut_down(name)
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self._wait_terminated(name)  # the process kubelet reports the container's exit ...
        self._mark_shut_down(name)  # ... replacing the conditions: put the disruption back

    def _stop_real_container(self, pod: Any) -> None:
        """A real kubelet keeps its own view of the phase: the disruption condition first (the Job's
        failure policy reads it), SIGTERM to the container's process from its node, then, once the
        kubelet has reported the exit (143: Failed, restartPolicy Never), the shutdown's reason."""
        name = pod.metadata.name
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": {"conditions": [
            _disruption()]}}, _content_type="application/strategic-merge-patch+json")
        if not self.kind.signal_container(self.namespace, name, signal.SIGTERM):
            return
        if self._wait_terminated(name, timeout=45):
            self._mark_shut_down(name)
            self._hold_shut_down(name)

    def _hold_shut_down(self, name: str, seconds: float = 8.0) -> None:
        """The kubelet may write the pod's final status once more after ours (seen on kind: the reason gone
        a second later, so the run's reclaim did not read as one); put it back while that can happen."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.core.read_namespaced_pod_status(name, self.namespace).status.reason != SHUTDOWN_REASON:
                self._mark_shut_down(name)

    def _wait_terminated(self, name: str, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self.core.read_namespaced_pod_status(name, self.namespace).status.container_statuses or []
            if statuses and statuses[0].state and statuses[0].state.terminated:
                return True
            time.sleep(0.2)
        return False

    def _mark_shut_down(self, name: str) -> None:
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": {
            "phase": "Failed", "reason": SHUTDOWN_REASON, "message": SHUTDOWN_MESSAGE,
            "conditions": [_disruption()]}},
            _content_type="application/strategic-merge-patch+json")

    def _event(self, pod: Any, reason: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"metadata": {"generateName": f"{pod.metadata.name}.", "namespace": self.namespace},
                "involvedObject": {"kind": "Pod", "name": pod.metadata.name, "namespace": self.namespace,
                                   "uid": pod.metadata.uid, "apiVersion": "v1",
                                   "fieldPath": f"spec.containers{{{pod.spec.containers[0].name}}}"},
                "reason": reason, "message": message, "type": "Normal",
                "source": {"component": "kubelet", "host": self.node},
                "reportingComponent": "kubelet", "reportingInstance": self.node,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1}
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except Exception:  # an event lost is not worth a missed reclaim
            pass

    def run(self) -> None:
        failures = 0
        while True:
            try:
                for pod in self.due():
                    self.reclaim(pod)
                failures = 0
            except Exception as exc:  # API down (cluster stopping): give up after a minute of it
                failures += 1
                print(f"reclaimer: {exc.__class__.__name__}: {exc}", file=sys.stderr, flush=True)
                if failures > 60:
                    return
            time.sleep(0.25)


def _disruption() -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
            "message": SHUTDOWN_MESSAGE, "lastTransitionTime": stamp}


def _pod_process(pod: str, namespace: str, state: Path | None = None) -> int | None:
    """The local process the process kubelet runs for ``pod``: its record, else found by the env it was given."""
    from mlops_drill.cluster.processpods import records

    recorded = records.find(state, namespace, pod) if state is not None else None
    if recorded is not None:
        return recorded[0]
    want = {f"POD_NAME={pod}".encode(), f"POD_NAMESPACE={namespace}".encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env and os.getpgid(int(entry.name)) == int(entry.name):
            return int(entry.name)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="reclaim spot training pods (drill engine helper)")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--after", type=float, required=True)
    parser.add_argument("--first-after", type=float, default=None,
                        help="run time of the first pod before its reclaim (default: --after)")
    parser.add_argument("--local-processes", action="store_true")
    parser.add_argument("--process-state", type=Path, default=None,
                        help="the process kubelet's folder (default: the kubeconfig's)")
    parser.add_argument("--process-namespace", default=None,
                        help="the namespace the pods have on the cluster itself (a seat's differs)")
    parser.add_argument("--kind-cluster", default=None,
                        help="the kind cluster whose node containers run the pods (SIGTERM through the node)")
    a = parser.parse_args(argv)
    Reclaimer(a.kubeconfig, a.namespace, a.job, a.node, a.after, a.local_processes, a.first_after,
              a.process_state, a.process_namespace, a.kind_cluster).run()


if __name__ == "__main__":
    main()
