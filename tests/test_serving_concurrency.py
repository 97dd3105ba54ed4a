"""fraud-model's throughput knobs: MAX_CONCURRENT_REQUESTS, BATCH_SIZE and BATCH_TIMEOUT_MS.

The service runs as its own process (configured by env, as in its pod) on a
local port and is called over real HTTP from several threads at once. No
cluster is needed: every request carries its features inline (no feature-store
lookup) and the harness loads the model straight from the artifact folder instead
of asking the registry. A process of its own also keeps the service's Prometheus
metrics out of the test process, whose registry other platform modules share.
What is asserted is what an engineer sees: answers, latency, and /metrics.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterator

import httpx
import numpy as np
import pytest
from service_process import service_process
from prometheus_client.parser import text_string_to_metric_families

from mlops_drill.mlplatform import data
from mlops_drill.mlplatform.artifacts import ensure_artifacts

#: The service with model version 3 loaded from the artifact folder (the registry lookup is what it skips).
HARNESS = """
from mlops_drill.mlplatform import appkit, serving
from mlops_drill.mlplatform.artifacts import ensure_artifacts, load_version
s = serving.Settings.from_env()
v = load_version(ensure_artifacts(), "fraud-model", "3")
slot = serving.Slot(version=v, transform=v.transform, size_gib=float(v.card["serving_size_gib"]))
slot.loaded.set()
appkit.serve(serving.create_app(s, slot))
"""
KNOBS = ("MAX_CONCURRENT_REQUESTS", "BATCH_SIZE", "BATCH_TIMEOUT_MS")


def _env(**knobs: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KNOBS and k != "NVIDIA_VISIBLE_DEVICES"}
    # ~1 ms a forward pass on the CPU: the waits measured here are the knobs', not the model's
    return {**env, "INFERENCE_TIME_SCALE": "0.01", "CONTAINER_IMAGE": "mlops-drill/fraud-model:1.4.0", **knobs}


@contextmanager
def _running(**knobs: str) -> Iterator[str]:
    ensure_artifacts()  # built once here, not raced by the service's start
    with service_process([sys.executable, "-c", HARNESS], _env(**knobs), "the service") as (base, _):
        yield base


def _transactions(n: int, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    txns = data.sample_transactions(rng, n, data.period(data.BASELINE_PERIOD).transactions)
    accounts = data.sample_accounts(rng, n)
    return [{"request_id": f"t{i}", "features": {k: float(v[i]) for k, v in {**txns, **accounts}.items()}}
            for i in range(n)]


def _metrics(base: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(base + "/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _bucket(samples: dict, name: str, le: str) -> float:
    return samples[(f"{name}_bucket", (("le", le),))]


def _concurrently(base: str, bodies: list[dict]) -> tuple[list[httpx.Response], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda b: httpx.post(base + "/predict", json=b, timeout=30), bodies))
    return answers, time.perf_counter() - started


def test_defaults_neither_queue_nor_batch() -> None:
    with _running() as base:
        before = _metrics(base)
        answers, elapsed = _concurrently(base, _transactions(8))
        after = _metrics(base)
    assert [a.status_code for a in answers] == [200] * 8
    assert elapsed < 2.0
    assert after[("inference_max_concurrent_requests", ())] == 64
    assert after[("inference_max_batch_size", ())] == 1
    assert after[("inference_batch_timeout_seconds", ())] == 0
    # one forward pass per request, and no request waited for a slot
    assert _bucket(after, "inference_batch_size", "1.0") - _bucket(before, "inference_batch_size", "1.0") == 8
    waited = after[("inference_queue_wait_seconds_sum", ())] - before[("inference_queue_wait_seconds_sum", ())]
    assert waited < 0.05
    assert after[("inference_requests_queued", ())] == 0 and after[("inference_requests_in_flight", ())] == 0


def test_one_slot_with_a_batch_timeout_serialises_requests_behind_the_timeout() -> None:
    """The misconfiguration: a batch of 64 can never fill when only one request is admitted at a time."""
    with _running(MAX_CONCURRENT_REQUESTS="1", BATCH_SIZE="64", BATCH_TIMEOUT_MS="150") as base:
        before = _metrics(base)
        answers, elapsed = _concurrently(base, _transactions(4))
        after = _metrics(base)
    assert [a.status_code for a in answers] == [200] * 4, "slow, never failing"
    assert elapsed >= 4 * 0.15, "each request waited the full batch timeout, one after the other"
    assert after[("inference_max_concurrent_requests", ())] == 1
    assert after[("inference_max_batch_size", ())] == 64
    assert after[("inference_batch_timeout_seconds", ())] == pytest.approx(0.15)
    # every forward pass ran a single row
    ran = after[("inference_batch_size_count", ())] - before[("inference_batch_size_count", ())]
    singles = _bucket(after, "inference_batch_size", "1.0") - _bucket(before, "inference_batch_size", "1.0")
    assert ran == singles == 4
    # each waited ~150 ms in the batcher, and the later ones queued for a slot behind it
    batch_wait = after[("inference_batch_wait_seconds_sum", ())] - before[("inference_batch_wait_seconds_sum", ())]
    assert batch_wait >= 4 * 0.14
    queue_wait = after[("inference_queue_wait_seconds_sum", ())] - before[("inference_queue_wait_seconds_sum", ())]
    assert queue_wait >= 0.15, "requests sent together queued for the only slot"
    slow = (after[("inference_request_duration_seconds_count", (("endpoint", "/predict"),))]
            - after[("inference_request_duration_seconds_bucket", (("endpoint", "/predict"), ("le", "0.25")))]) - (
            before.get(("inference_request_duration_seconds_count", (("endpoint", "/predict"),)), 0.0)
            - before.get(("inference_request_duration_seconds_bucket", (("endpoint", "/predict"), ("le", "0.25"))),
                         0.0))
    assert slow >= 2, "the service's own latency histogram shows the spike"


def test_enough_slots_fill_a_batch_and_score_as_alone() -> None:
    bodies = _transactions(4, seed=11)
    with _running() as base:
        alone = {a.json()["request_id"]: a.json()["score"] for a in _concurrently(base, bodies)[0]}
    with _running(MAX_CONCURRENT_REQUESTS="8", BATCH_SIZE="4", BATCH_TIMEOUT_MS="6000") as base:
        before = _metrics(base)
        answers, elapsed = _concurrently(base, bodies)
        after = _metrics(base)
    assert [a.status_code for a in answers] == [200] * 4
    assert elapsed < 3.0, "a full batch runs at once instead of waiting out the (6 s) timeout"
    assert _bucket(after, "inference_batch_size", "4.0") - _bucket(before, "inference_batch_size", "4.0") == 1
    assert _bucket(after, "inference_batch_size", "2.0") - _bucket(before, "inference_batch_size", "2.0") == 0
    assert {a.json()["request_id"]: a.json()["score"] for a in answers} == alone, "batching never changes a score"


@pytest.mark.parametrize("name, value, message", [
    ("MAX_CONCURRENT_REQUESTS", "0", "invalid value for env MAX_CONCURRENT_REQUESTS: '0' must be >= 1"),
    ("BATCH_SIZE", "eight", "invalid value for env BATCH_SIZE: 'eight' is not a whole number"),
    ("BATCH_TIMEOUT_MS", "-5", "invalid value for env BATCH_TIMEOUT_MS: -5 must be >= 0"),
])
def test_a_bad_knob_stops_the_service_with_one_line(name: str, value: str, message: str) -> None:
    stopped = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.serving"], env=_env(**{name: value}),
                             capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 1
    assert stopped.stderr.strip().splitlines()[-1] == message
