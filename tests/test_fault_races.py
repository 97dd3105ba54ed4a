"""Faults injected while the platform keeps working: what was already running must not undo the fault.

The platform never stops for a drill: the refresh CronJob fires every minute, and a run
started from the good config just before the fault may reach the store after the fault's
backfill. On a kind node a pod takes seconds to start, so there the window is wide (CI
saw `stale-feature-cache` never show its symptom on kind); here the run is made slow on
purpose, so the race happens every time on the embedded cluster too.
"""
from __future__ import annotations

import copy
import json
import time

import pytest
from polling import wait

from mlops_drill.injector.faults._shared import try_call

pytestmark = pytest.mark.cluster

SLOW_RUN = "feature-refresh-slow-good-run"


def _start_slow_good_run(ctx, delay_s: float) -> None:
    """A run of the CronJob's (still good) template whose POST to the store lands ``delay_s`` after it starts."""
    cron = ctx.get("cronjob", "feature-refresh", "features")
    spec = copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])
    container = spec["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c",
                            f"import sys, time; time.sleep({delay_s}); "
                            "from mlops_drill.mlplatform import feature_refresh; sys.exit(feature_refresh.main())"]
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": SLOW_RUN, "namespace": "features", "labels": {"app": "feature-refresh"}},
           "spec": spec}
    ctx.kubectl("create", "-f", "-", input=json.dumps(job))
    wait(lambda: any(p.status.phase == "Running" for p in ctx.core.list_namespaced_pod(
        "features", label_selector=f"job-name={SLOW_RUN}").items), 60, "the slow good run's pod to run")


def test_a_good_run_still_going_cannot_freshen_the_store_after_the_refresh_breaks(platform):
    from mlops_drill.injector.fault import make
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)

    ctx = platform
    _start_slow_good_run(ctx, delay_s=5)
    fault = make("break-feature-refresh", {})
    started = time.monotonic()
    fault.apply(ctx)
    try:
        wait(lambda: fault.verify_applied(ctx), 60, "the stale store and a failed run")
        # past the moment the good run would have posted its fresh features
        time.sleep(max(0.0, 8 - (time.monotonic() - started)))
        ages = {name: view["age_seconds"]
                for name, view in try_call(ctx, "features", "feature-store", "/freshness")["feature_views"].items()}
        assert ages and all(age > 800 * 60 for age in ages.values()), f"the store was freshened: ages {ages}"
        assert ctx.get("job", SLOW_RUN, "features") is None, "the good run started before the fault is gone"
    finally:
        fault.revert(ctx)
        ctx.kubectl("delete", "job", SLOW_RUN, "-n", "features", "--ignore-not-found", "--wait=false")
