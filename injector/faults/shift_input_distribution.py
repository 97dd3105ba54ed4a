"""shift-input-distribution: production traffic moves away from what the model was trained on.

The replayed traffic switches to a later data period (bigger amounts, more
night-time and card-not-present transactions, longer distances): real inputs,
really shifted, and the model's score and confidence distributions move with
them. ``overrides`` sets how far live traffic moved beyond the period (its
transaction-profile parameters, e.g. a bigger amount shift); the replay reads them
from its ConfigMap as ``TRAFFIC_OVERRIDES``. The serving pods are recycled as a
weekend's node maintenance would, so their cumulative histograms show the new
traffic rather than averaging it with weeks of the old; no revision of the model
changes. The registry already holds the answer
a CT pipeline would have produced: a Staging version trained on the recent
period, with its holdout metrics as version tags.
"""
from __future__ import annotations

import json
import time

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import Fault
from mlops_drill.injector.faults._shared import (created, ensure_serving_follows_registry, is_ready,
                                                 metric_samples, pod_metric_samples, pods, recycle_pods,
                                                 restore_registry)
from mlops_drill.mlplatform.data import PERIODS, TransactionProfile
from mlops_drill.mlplatform.model import SCORE_BUCKETS


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    namespace: str = "serving"
    config_map: str = "traffic-replay"
    replay: str = "traffic-replay"
    period: str = "2024-09"
    overrides: dict[str, float] = Field(
        default_factory=dict, description="transaction-profile parameters live traffic has instead of the "
                                          "period's (amount_log_mean, night_share, distance_scale_km, "
                                          "card_present_p): how far it moved")
    recycle_serving_pods: bool = True
    min_requests: int = Field(6, ge=1)  # predictions the fresh serving pods have made on the new traffic
    min_median_score: float = Field(
        0.02, description="a bucket bound of prediction_score: their median score is above it "
                          "(baseline traffic: ~0.014)")
    production_version: str = "3"

    @field_validator("overrides")
    @classmethod
    def _profile_parameters(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TransactionProfile.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown transaction profile parameter(s) {', '.join(unknown)} (known: "
                             f"{', '.join(TransactionProfile.__dataclass_fields__)})")
        return value

    @field_validator("min_median_score")
    @classmethod
    def _a_bucket_bound(cls, value: float) -> float:
        if value not in SCORE_BUCKETS:
            raise ValueError(f"must be a bucket bound of prediction_score ({', '.join(map(str, SCORE_BUCKETS))})")
        return value


#: The ConfigMap key (and the replay's env var, optional in the baseline) for profile parameters beyond the period's.
OVERRIDES_ENV = "TRAFFIC_OVERRIDES"


class ShiftInputDistribution(Fault):
    name = "shift-input-distribution"
    Params = Params

    def _overrides(self) -> dict[str, float]:
        """The overrides that differ from the period's own profile: none means the period as it is."""
        profile = PERIODS[self.params.period].transactions
        return {k: float(v) for k, v in sorted(self.params.overrides.items()) if getattr(profile, k) != float(v)}

    def apply(self, ctx: DrillContext) -> None:
        p = self.params
        if p.period not in PERIODS:
            raise DrillError(f"fault {self.name}: params.period: unknown period {p.period!r} "
                             f"(known: {', '.join(PERIODS)})")
        self.applied_at = time.time()
        overrides = self._overrides()
        extra = {OVERRIDES_ENV: json.dumps(overrides)} if overrides else {}
        ctx.patch("configmap", p.config_map, p.namespace, {"data": {"REPLAY_PERIOD": p.period, **extra}},
                  patch_type="merge")
        for pod in pods(ctx, p.namespace, f"app={p.replay}"):  # env from the ConfigMap is read at start only
            ctx.delete("pod", pod.metadata.name, p.namespace)
        if p.recycle_serving_pods:
            # the last replacement starts on its own: the first fresh pod already shows the new traffic
            recycle_pods(ctx, p.namespace, "app=fraud-model", wait_last=False)

    def verify_applied(self, ctx: DrillContext) -> bool:
        p = self.params
        since = getattr(self, "applied_at", 0.0) - 1.0
        replay = [pod for pod in pods(ctx, p.namespace, f"app={p.replay}") if pod.metadata.deletion_timestamp is None]
        if not replay or any(created(pod) < since or not is_ready(pod) for pod in replay):
            return False
        serving = [pod for pod in pods(ctx, p.namespace, "app=fraud-model") if pod.metadata.deletion_timestamp is None]
        if p.recycle_serving_pods and any(created(pod) < since for pod in serving):
            return False
        count, at_or_below = self._scored(ctx, [pod for pod in serving if is_ready(pod)])
        if count < p.min_requests:
            return False
        # only fresh pods' cumulative histograms show the shift on their own; older ones average it away
        return at_or_below < count / 2 if p.recycle_serving_pods else True

    def _scored(self, ctx: DrillContext, serving: list) -> tuple[float, float]:
        """Predictions, and how many scored at most ``min_median_score``, as a scrape of every pod adds them.

        Why the median: the briefing's figure, and robust on a few requests where
        the mean waits for the rare high scores. Where the engine cannot reach
        pods one by one, one pod's figures through the Service stand for them.
        """
        scraped = [pod_metric_samples(ctx, pod) for pod in serving]
        if not serving or any(s is None for s in scraped):
            scraped = [metric_samples(ctx, self.params.namespace, "fraud-model") or {}]
        bucket = ("prediction_score_bucket", (("le", repr(float(self.params.min_median_score))),))
        return (sum(s.get(("prediction_score_count", ()), 0.0) for s in scraped),
                sum(s.get(bucket, 0.0) for s in scraped))

    def _replayed(self, ctx: DrillContext, pod) -> tuple[str, list] | None:
        """The period a running replay process reads and the profile parameters it overrides (its start-up
        log line says so); None when it has not said yet."""
        try:
            text = ctx.core.read_namespaced_pod_log(pod.metadata.name, self.params.namespace, limit_bytes=4096)
        except Exception:  # noqa: BLE001 - no log yet: treat as unknown, so it gets restarted
            return None
        for line in text.splitlines():
            if '"replay started"' in line:
                started = json.loads(line)
                return started.get("period"), started.get("overrides") or []
        return None

    def revert(self, ctx: DrillContext) -> None:
        p = self.params
        restore_registry(ctx)  # the fix promotes a version: stages back to CI's
        baseline.restore(ctx, "ConfigMap", p.config_map, p.namespace)
        baseline.restore(ctx, "Deployment", p.replay, p.namespace)
        want = baseline.find(ctx, "ConfigMap", p.config_map, p.namespace)["data"]["REPLAY_PERIOD"]
        replays = pods(ctx, p.namespace, f"app={p.replay}")
        stale = not replays or any(self._replayed(ctx, pod) != (want, []) for pod in replays)
        self._restarted = time.time() - 1.0
        self._stale = stale
        for pod in replays if stale else []:  # env from the ConfigMap is read at start only
            ctx.delete("pod", pod.metadata.name, p.namespace)
        baseline.restore(ctx, "Deployment", "fraud-model", p.namespace)

    def settle(self, ctx: DrillContext) -> None:
        p = self.params
        stale, restarted = getattr(self, "_stale", False), getattr(self, "_restarted", 0.0)
        ensure_serving_follows_registry(ctx, p.production_version, rolled_out=True)
        deadline = time.monotonic() + 60
        while stale and not any(is_ready(pod) and created(pod) >= restarted
                                for pod in pods(ctx, p.namespace, f"app={p.replay}")):
            if time.monotonic() > deadline:
                raise DrillError(f"{p.namespace}/{p.replay}: no Ready pod with the restored config after 60s")
            time.sleep(0.2)
