"""async-worker-release: a release of the async batch scorer stops it keeping up; the online path is untouched.

One new revision of Deployment ``scoring-worker``, as a CD pipeline would roll it:
another image tag (same code) and one setting changed, named by ``env``:

* ``BATCH_SIZE``: batches of one row and one loop (``CONCURRENCY=1``, as if tuned
  down for a load test). Each batch still pays the results sink's commit, so the
  worker scores ~3.5 transactions a second against the 5 the replay publishes: it
  is busy, logs no error, and falls further behind every second.
* ``MODEL_URL``: the scorer calls a path fraud-model does not serve (KServe's v1
  ``:predict`` path); every call is a 404, the batch is handed back to the queue and
  the worker backs off and retries, so nothing is lost and nothing is scored.
* ``QUEUE_NAME``: the worker subscribes to a queue nobody publishes to; it logs that
  it is waiting for messages while the real queue grows with no consumer.

The release "went out" ``backlog_minutes`` ago: what the queue would hold by now is
published at apply, with the event times the transactions had (a publisher sets
them, as Kafka's CreateTime), so the depth and the oldest message's age are what
that many minutes of the broken release make of the replay's ``ASYNC_RATE``.
fraud-model is not touched: its pods, /healthz, p99 and error rate stay normal.
``kubectl rollout undo`` is the real fix (so is setting the env back); the backlog
then drains in seconds.
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults import _workload as wl
from mlops_drill.injector.faults._shared import call, is_ready, try_call, wait_rollout

#: The replay's ConfigMap, its ASYNC_RATE when unset, and the queue it publishes to.
REPLAY_CONFIG, DEFAULT_ASYNC_RATE, QUEUE = "traffic-replay", 5.0, "transactions"
#: Seconds one batch of the worker takes besides its rows: the sink's commit (SINK_WRITE_MS) and three calls.
BATCH_OVERHEAD_S = 0.28
#: Most messages the fault publishes as backlog (memory of the queue, time of the drain after the fix).
MAX_BACKLOG = 15_000
#: The oldest message of a working queue is seconds old; the symptom is this many times the fix check's bound.
HEALTHY_AGE_S = 30.0


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    deployment: str = "scoring-worker"
    queue_service: str = "scoring-queue"
    image_tag: str = Field("2.4.1", description="the worker release that ships the change (same code)")
    env: Literal["BATCH_SIZE", "MODEL_URL", "QUEUE_NAME"] = Field(
        "BATCH_SIZE", description="the one setting the release changed")
    batch_size: int = Field(1, ge=1, description="BATCH_SIZE of the release (env BATCH_SIZE); CONCURRENCY is 1")
    model_url: str = Field("http://fraud-model.serving.svc.cluster.local/v1/models/fraud-model:predict",
                           description="MODEL_URL of the release (env MODEL_URL): a path fraud-model answers 404")
    queue_name: str = Field("transactions-v2", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
                            description="QUEUE_NAME of the release (env QUEUE_NAME): a queue nobody publishes to")
    backlog_minutes: int = Field(20, ge=1, le=240, description="how long ago the release went out")


class AsyncWorkerRelease(Fault):
    name = "async-worker-release"
    Params = Params
    description = ("new scoring-worker revision (another tag) with one setting changed: batches of one row, a model "
                   "URL that answers 404, or a queue nobody publishes to; the transactions queue backs up")

    def env_changes(self) -> dict[str, str]:
        p = self.params
        if p.env == "BATCH_SIZE":
            return {"BATCH_SIZE": str(p.batch_size), "CONCURRENCY": "1"}
        if p.env == "MODEL_URL":
            return {"MODEL_URL": p.model_url}
        if p.queue_name == QUEUE:
            raise DrillError(f"fault {self.name}: params.queue_name: must differ from the queue the replay "
                             f"publishes to ({QUEUE})")
        return {"QUEUE_NAME": p.queue_name}

    def scored_per_second(self) -> float:
        """What the broken release still scores of the queue a second (0 when it scores nothing)."""
        if self.params.env != "BATCH_SIZE":
            return 0.0
        return self.params.batch_size / BATCH_OVERHEAD_S

    def async_rate(self, ctx: DrillContext) -> float:
        config = ctx.get("configmap", REPLAY_CONFIG, self.params.namespace) or {}
        try:
            return max(0.0, float((config.get("data") or {}).get("ASYNC_RATE", DEFAULT_ASYNC_RATE)))
        except ValueError:
            return DEFAULT_ASYNC_RATE

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        changes = self.env_changes()
        self.applied_at = time.time()
        obj = ctx.get("deployment", p.deployment, p.namespace)
        if obj is None:
            raise DrillError(f"deployment {p.namespace}/{p.deployment} missing")
        image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
        ops = [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                "value": wl.image_with_tag(image, p.image_tag)}]
        for name, value in changes.items():
            ops += wl.set_env_ops(obj, name, value)
        ctx.patch("deployment", p.deployment, p.namespace, ops)
        # The old pod must be gone before the backlog is there: a working consumer would drain it at once.
        wait_rollout(ctx, p.namespace, p.deployment, timeout=90)
        self.publish_backlog(ctx)

    def publish_backlog(self, ctx: DrillContext) -> None:
        """What ``backlog_minutes`` of this release left in the queue, with the event times it would have.

        Oldest first and FIFO by event time: a consumer that scores ``c`` of the ``r``
        published a second has scored everything older than ``(1 - c / r)`` of the
        time since the release, and holds the rest at full density.
        """
        from mlops_drill.mlplatform import data
        from mlops_drill.mlplatform.traffic import settled_transaction

        rate = self.async_rate(ctx)
        if rate <= 0:
            raise DrillError(f"fault {self.name}: the replay publishes nothing to queue {QUEUE} (ASYNC_RATE is 0)")
        behind = max(0.0, 1.0 - self.scored_per_second() / rate)
        window = self.params.backlog_minutes * 60.0 * behind
        count = min(MAX_BACKLOG, int(window * rate))
        if count == 0:
            return
        rng = np.random.default_rng()
        profile = data.period(data.BASELINE_PERIOD).transactions
        now = time.time()
        times = np.sort(now - window + rng.random(count) * (window - 1.0))
        for start in range(0, count, 2000):
            batch = [{"body": settled_transaction(rng, profile, 800_000_000 + start + i), "event_time": float(t)}
                     for i, t in enumerate(times[start:start + 2000])]
            call(ctx, self.params.namespace, self.params.queue_service, f"/queues/{QUEUE}/messages", "POST",
                 {"messages": batch}, timeout=30)
        self.expected_age = window

    def verify_applied(self, ctx: DrillContext) -> bool:
        """The new release runs, and the queue holds a backlog as old as the fix check calls broken, or older."""
        p = self.params
        pods = [pod for pod in wl.new_pods(ctx, p.namespace, f"app={p.deployment}", getattr(self, "applied_at", 0.0))
                if pod.spec.containers[0].image.endswith(f":{p.image_tag}") and is_ready(pod)]
        if not pods:
            return False
        stats = try_call(ctx, p.namespace, p.queue_service, f"/queues/{QUEUE}")
        want = min(getattr(self, "expected_age", 0.0) * 0.9, 3 * HEALTHY_AGE_S) or 3 * HEALTHY_AGE_S
        return stats is not None and stats.get("oldest_message_age_seconds", 0.0) >= want

    def revert(self, ctx: DrillContext) -> None:
        baseline.restore(ctx, "Deployment", self.params.deployment, self.params.namespace)

    def settle(self, ctx: DrillContext, timeout: float = 90) -> None:
        """The restored worker has drained the backlog: the next drill starts with a queue that keeps up."""
        p = self.params
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = try_call(ctx, p.namespace, p.queue_service, f"/queues/{QUEUE}")
            if stats is not None and stats.get("oldest_message_age_seconds", 0.0) < HEALTHY_AGE_S \
                    and stats.get("depth", 0) + stats.get("in_flight", 0) < 200:
                return
            time.sleep(0.5)
        raise DrillError(f"queue {QUEUE} of {p.namespace}/{p.queue_service} still backed up {timeout:.0f}s after "
                         "the reset")
