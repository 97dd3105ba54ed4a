"""The async scoring path: scoring-queue, scoring-worker and fraud-model's /batch-predict, over real HTTP.

Each service runs as its own process on a local port, configured by env as in its pod (the worker finds
the queue through ``SCORING_QUEUE_URL``, as discovery's first rule allows, and the model through
``MODEL_URL``). No cluster is needed. What is asserted is what an engineer sees: the queue's depth, age,
rates and consumers, the worker's logs, and the scores.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import httpx
import pytest
from service_process import free_port, service_process
from test_serving_concurrency import _metrics, _running, _transactions


@contextmanager
def _process(module: str, env: dict[str, str], health: str = "/healthz") -> Iterator[tuple[str, subprocess.Popen]]:
    with service_process([sys.executable, "-m", f"mlops_drill.mlplatform.{module}"], env, module, health,
                         keep_output=True) as running:
        yield running


def _logs(proc: subprocess.Popen) -> list[dict]:
    """What the process logged (JSON lines); call after it was stopped."""
    proc.terminate()
    proc.wait(10)
    return [json.loads(line) for line in proc.stdout.read().splitlines() if line.startswith("{")]


def _publish(queue: str, bodies: list[dict], event_time: float | None = None, name: str = "transactions") -> None:
    messages = [{"body": b, **({"event_time": event_time} if event_time is not None else {})} for b in bodies]
    r = httpx.post(f"{queue}/queues/{name}/messages", json={"messages": messages}, timeout=10)
    assert r.status_code == 200, r.text


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_queue_reports_depth_age_rates_and_consumers_from_the_messages_it_holds():
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, [{"n": 1}], event_time=time.time() - 300)
        _publish(queue, [{"n": 2}, {"n": 3}])
        stats = httpx.get(f"{queue}/queues/transactions", timeout=5).json()
        assert stats["depth"] == 3 and stats["in_flight"] == 0
        assert 299 <= stats["oldest_message_age_seconds"] <= 310
        pulled = httpx.post(f"{queue}/queues/transactions/pull", json={"max": 2, "consumer": "w/0"}).json()["messages"]
        assert [m["body"]["n"] for m in pulled] == [1, 2], "oldest event first"
        httpx.post(f"{queue}/queues/transactions/nack", json={"ids": [pulled[0]["id"]]})
        httpx.post(f"{queue}/queues/transactions/ack", json={"ids": [pulled[1]["id"]]})
        stats = httpx.get(f"{queue}/queues/transactions", timeout=5).json()
        assert (stats["depth"], stats["in_flight"], stats["acked_total"], stats["redelivered_total"]) == (2, 0, 1, 1)
        assert stats["active_consumers"] == 1 and stats["consumers"]["w/0"]["acked"] == 1
        assert stats["oldest_message_age_seconds"] >= 299, "a message handed back is still the oldest"
        # A consumer of another queue waits on an empty one (long poll) and is counted there, not here.
        started = time.monotonic()
        assert httpx.post(f"{queue}/queues/transactions-v2/pull", json={"max": 10, "wait_s": 0.5, "consumer": "x"},
                          timeout=5).json() == {"messages": []}
        assert time.monotonic() - started >= 0.45
        names = {q["queue"]: q for q in httpx.get(f"{queue}/queues", timeout=5).json()["queues"]}
        assert names["transactions-v2"]["active_consumers"] == 1 and names["transactions"]["active_consumers"] == 1
        text = httpx.get(f"{queue}/metrics", timeout=5).text
        assert 'scoring_queue_depth{queue="transactions"} 2.0' in text
        assert 'scoring_queue_acked_total{queue="transactions"} 1.0' in text
        assert httpx.post(f"{queue}/queues/transactions/messages", json={"messages": [
            {"body": {}, "event_time": time.time() + 3600}]}).status_code == 400, "an event from the future"
        assert httpx.get(f"{queue}/queues/nope", timeout=5).status_code == 404


def test_batch_predict_scores_as_predict_does():
    """The async path scores a row exactly as the online path does (same model, transform, threshold)."""
    rows = _transactions(20)
    with _running() as base:
        batch = httpx.post(base + "/batch-predict", json={"instances": rows}, timeout=10)
        assert batch.status_code == 200, batch.text
        online = [httpx.post(base + "/predict", json=r, timeout=10).json()["score"] for r in rows]
        assert [p["score"] for p in batch.json()["predictions"]] == online
        assert [p["request_id"] for p in batch.json()["predictions"]] == [r["request_id"] for r in rows]
        m = _metrics(base)
        assert m[("inference_async_rows_total", ())] == 20
        assert m[("inference_batch_size_count", ())] == 20, "only the online passes count as its batches"
        assert httpx.post(base + "/batch-predict", json={"instances": []}, timeout=10).status_code == 422


@pytest.fixture(scope="module")
def model():
    with _running() as base:
        yield base


def _worker_env(queue: str, model: str, **env: str) -> dict[str, str]:
    return {"SCORING_QUEUE_URL": queue, "MODEL_URL": f"{model}/batch-predict", "SINK_WRITE_MS": "50",
            "CONTAINER_IMAGE": "mlops-drill/scoring-worker:2.3.0", **env}


def test_worker_drains_a_backlog_in_batches(model):
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, _transactions(400), event_time=time.time() - 600)
        with _process("scoring_worker", _worker_env(queue, model)) as (_, worker):
            done = _wait(lambda: (s := httpx.get(f"{queue}/queues/transactions").json())["acked_total"] == 400 and s,
                         30, "the worker acks the whole backlog")
            assert done["depth"] == 0 and done["oldest_message_age_seconds"] == 0.0
            assert _metrics(model)[("inference_async_rows_total", ())] >= 400
            time.sleep(10.5)  # one stats line
            logs = _logs(worker)
        stats = [line for line in logs if line["msg"] == "scoring stats"]
        assert stats and stats[0]["mean_batch"] > 10 and stats[0]["errors"] == 0


def test_batches_of_one_row_fall_behind_the_publish_rate(model):
    """BATCH_SIZE=1, CONCURRENCY=1: each batch pays the sink's commit, ~3.5 rows a second at 250 ms."""
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, _transactions(100))
        with _process("scoring_worker", _worker_env(queue, model, BATCH_SIZE="1", CONCURRENCY="1",
                                                    SINK_WRITE_MS="250")):
            time.sleep(4)
            acked = httpx.get(f"{queue}/queues/transactions").json()["acked_total"]
        assert 4 <= acked <= 17, acked


def test_a_wrong_model_url_hands_every_batch_back_and_retries(model):
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, _transactions(50))
        env = _worker_env(queue, model, MODEL_URL=f"{model}/v1/models/fraud-model:predict")
        with _process("scoring_worker", env) as (_, worker):
            _wait(lambda: httpx.get(f"{queue}/queues/transactions").json()["redelivered_total"] >= 2, 20,
                  "the batches come back to the queue")
            logs = _logs(worker)
        stats = httpx.get(f"{queue}/queues/transactions").json()
        assert stats["acked_total"] == 0 and stats["depth"] + stats["in_flight"] == 50, "nothing lost, nothing scored"
        failed = [line for line in logs if line["msg"] == "model call failed; batch handed back to the queue"]
        assert failed and "HTTP 404" in failed[0]["error"] and failed[-1]["attempt"] >= 2


def test_a_wrong_queue_name_leaves_the_real_queue_without_a_consumer(model):
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, _transactions(30))
        with _process("scoring_worker", _worker_env(queue, model, QUEUE_NAME="transactions-v2")) as (_, worker):
            time.sleep(3)
            queues = {q["queue"]: q for q in httpx.get(f"{queue}/queues").json()["queues"]}
            logs = _logs(worker)
        assert queues["transactions"]["depth"] == 30 and queues["transactions"]["active_consumers"] == 0
        assert queues["transactions-v2"]["active_consumers"] == 2  # the worker's two loops
        assert any(line["msg"] == "no messages; waiting" and line["queue"] == "transactions-v2" for line in logs)


def test_a_worker_waits_for_the_model_before_pulling():
    """On a fresh platform the model may not answer yet: the worker pulls nothing and logs no error meanwhile."""
    down = f"http://127.0.0.1:{free_port()}"
    with _process("scoring_queue", {}) as (queue, _):
        _publish(queue, [{"n": i} for i in range(10)])
        with _process("scoring_worker", _worker_env(queue, down)) as (_, worker):
            time.sleep(3)
            stats = httpx.get(f"{queue}/queues/transactions").json()
            logs = _logs(worker)
        assert (stats["depth"], stats["in_flight"], stats["redelivered_total"]) == (10, 0, 0)
        assert [line["msg"] for line in logs if line["level"] != "info"] == []
        assert any(line["msg"] == "waiting for the model before pulling" for line in logs)
