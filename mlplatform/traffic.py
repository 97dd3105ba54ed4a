"""Traffic replay (Deployment ``traffic-replay``): steady production-like requests to fraud-model.

Open-loop at ``RATE`` requests per second, so a slow or failing model shows up in
latency histograms and error counters instead of slowing the replay down. The
transactions are drawn from the data period named by ``REPLAY_PERIOD`` (plus
``TRAFFIC_OVERRIDES``, JSON of transaction-profile parameters): changing it
really shifts the inputs the model sees. Most requests are the normal shape
(entity id + transaction fields, account features from the feature store); a
share (``RAW_FRACTION``) carries every feature inline. It starts once fraud-model
answers, retrying with back-off meanwhile: a client never exits over an upstream
that is still starting.

Besides the online requests, the replay publishes ``ASYNC_RATE`` settled
transactions a second (one publish a second, every feature inline, drawn from the
same period) to queue ``transactions`` of the scoring-queue Service: the async
scoring path that Deployment ``scoring-worker`` drains. 0 publishes nothing.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import Counter, Histogram

from mlops_drill.mlplatform import appkit, data
from mlops_drill.mlplatform.discovery import service_url

PUBLISHED = Counter("traffic_async_published_total", "Transactions published to the async scoring queue",
                    ["outcome"])
ASYNC_QUEUE = "transactions"
SENT = Counter("traffic_requests_total", "Replayed requests by HTTP status", ["code"])
LATENCY = Histogram("traffic_request_duration_seconds", "Latency seen by the replay",
                    buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
#: Well-known test card numbers (never real cards): payloads carry them like real ones would.
TEST_CARDS = ("4111111111111111", "5500005555555559", "4012888888881881", "378282246310005", "6011111111111117")


def build_profile() -> data.TransactionProfile:
    profile = data.period(os.environ.get("REPLAY_PERIOD", data.BASELINE_PERIOD)).transactions
    overrides = appkit.env_json_or_file("TRAFFIC_OVERRIDES")
    return data.with_overrides(profile, overrides) if overrides else profile


def make_request(rng: np.random.Generator, profile: data.TransactionProfile, raw_fraction: float) -> dict[str, Any]:
    """One replayed transaction, as the payments gateway would send it."""
    txn = {k: float(v[0]) for k, v in data.sample_transactions(rng, 1, profile).items()}
    body: dict[str, Any] = {"card_number": TEST_CARDS[int(rng.integers(len(TEST_CARDS)))]}
    if rng.random() < raw_fraction:
        account = {k: float(v[0]) for k, v in data.sample_accounts(rng, 1).items()}
        body["features"] = {**txn, **account}
    else:
        body["entity_id"] = data.entity_id(int(rng.integers(data.ENTITY_COUNT)))
        body["features"] = txn
    return body


def model_url() -> str:
    return service_url("fraud-model", os.environ.get("TARGET_NAMESPACE", "serving"))


def wait_for_model(stop: threading.Event, max_backoff: float = 2.0, log_every: float = 30.0) -> bool:
    """Hold the replay until fraud-model answers at all, as a client retries its first connection.

    Why: on a fresh baseline both Deployments start together and the model's
    Service has no ready endpoint for a few seconds; a replay that fired into it
    would start its life with error counters a candidate would chase. Any HTTP
    answer (a 503 too) ends the wait: from then on the replay records whatever
    the model does, failures included. False when stopped while waiting.
    """
    started = time.monotonic()
    backoff, next_log, reason = 0.25, 0.0, ""
    while not stop.is_set():
        url = model_url() + "/readyz"  # looked up each time: the Service's entry may only now appear
        try:
            appkit.http_json("GET", url, timeout=2.0)
            answered = True
        except appkit.UpstreamError as err:
            answered = err.status is not None
            reason = err.reason
        waited = time.monotonic() - started
        if answered:
            if waited > 0.5:
                appkit.log("info", "fraud-model answers; starting the replay", waited_s=round(waited, 1))
            return True
        if waited >= next_log:
            appkit.log("warning", "fraud-model not reachable yet; the replay starts once it answers",
                       url=url, error=reason, waited_s=round(waited, 1), retry_in_s=backoff)
            next_log = waited + log_every
        if stop.wait(backoff):
            break
        backoff = min(backoff * 2, max_backoff)
    return False


def settled_transaction(rng: np.random.Generator, profile: data.TransactionProfile, n: int) -> dict[str, Any]:
    """One async scoring message: a settled transaction with every feature inline, as the ledger exports it."""
    txn = {k: float(v[0]) for k, v in data.sample_transactions(rng, 1, profile).items()}
    account = {k: float(v[0]) for k, v in data.sample_accounts(rng, 1).items()}
    return {"request_id": f"txn-{n:09d}", "features": {**txn, **account}}


def queue_url() -> str:
    base = service_url("scoring-queue", os.environ.get("TARGET_NAMESPACE", "serving"))
    return f"{base}/queues/{ASYNC_QUEUE}/messages"


class Replay:
    def __init__(self, rate: float, raw_fraction: float, seed: int, async_rate: float = 0.0):
        self.rate, self.raw_fraction, self.async_rate = rate, raw_fraction, async_rate
        self.rng = np.random.default_rng(seed)
        self.async_rng = np.random.default_rng(seed + 1)  # its own stream: the publisher runs in a thread
        self.profile = build_profile()
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="send")
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window: list[tuple[int, float]] = []

    def send(self, body: dict[str, Any]) -> None:
        url = model_url() + "/predict"
        started = time.perf_counter()
        try:
            appkit.http_json("POST", url, body, timeout=10.0)
            code = 200
        except appkit.UpstreamError as err:
            code = err.status or 0  # 0: no HTTP answer at all (refused, timed out)
        elapsed = time.perf_counter() - started
        SENT.labels(str(code)).inc()
        LATENCY.observe(elapsed)
        with self.lock:
            self.window.append((code, elapsed))

    def publish(self) -> None:
        """``async_rate`` transactions a second to the scoring queue, one publish a second (open loop).

        A publish that fails is counted and logged (at most once a minute) and its
        transactions dropped, as a producer without a local buffer does.
        """
        rng = self.async_rng
        owed, n, next_warning = 0.0, 0, 0.0
        while not self.stop.wait(1.0):
            owed += self.async_rate
            count, owed = int(owed), owed - int(owed)
            if count == 0:
                continue
            batch = [{"body": settled_transaction(rng, self.profile, n + i)} for i in range(count)]
            n += count
            try:
                appkit.http_json("POST", queue_url(), {"messages": batch}, timeout=5.0)
                PUBLISHED.labels("ok").inc(count)
            except appkit.UpstreamError as err:
                PUBLISHED.labels("failed").inc(count)
                if time.monotonic() >= next_warning:
                    appkit.log("warning", "publish to the scoring queue failed", error=err.reason, dropped=count)
                    next_warning = time.monotonic() + 60.0

    def run(self) -> None:
        if self.async_rate > 0:
            threading.Thread(target=self.publish, name="publish", daemon=True).start()
        if not wait_for_model(self.stop):
            return
        appkit.log("info", "replay started", rate=self.rate, async_rate=self.async_rate,
                   period=os.environ.get("REPLAY_PERIOD", data.BASELINE_PERIOD), raw_fraction=self.raw_fraction,
                   overrides=sorted(appkit.env_json_or_file("TRAFFIC_OVERRIDES") or {}))
        start = time.monotonic()
        next_report = start + 10.0
        i = 0
        while not self.stop.is_set():
            due = start + i / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            self.pool.submit(self.send, make_request(self.rng, self.profile, self.raw_fraction))
            i += 1
            if time.monotonic() >= next_report:
                self.report()
                next_report += 10.0
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.report()

    def report(self) -> None:
        with self.lock:
            window, self.window = self.window, []
        if not window:
            return
        codes: dict[str, int] = {}
        for code, _ in window:
            codes[str(code)] = codes.get(str(code), 0) + 1
        lat = np.array([e for _, e in window]) * 1000
        appkit.log("info", "replay stats", requests=len(window), status_codes=codes,
                   p50_ms=round(float(np.percentile(lat, 50)), 1), p99_ms=round(float(np.percentile(lat, 99)), 1))


def main() -> None:
    appkit.set_app_name("traffic-replay")
    if appkit.env_float("RATE", 5.0) <= 0:
        raise SystemExit("invalid value for env RATE: must be > 0 requests per second")
    replay = Replay(rate=appkit.env_float("RATE", 5.0), raw_fraction=appkit.env_float("RAW_FRACTION", 0.1),
                    seed=int(appkit.env_float("TRAFFIC_SEED", 1)),
                    async_rate=max(0.0, appkit.env_float("ASYNC_RATE", 0.0)))
    server = ThreadingHTTPServer(appkit.bind_address(), appkit.metrics_handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: replay.stop.set())
    try:
        replay.run()
    except KeyboardInterrupt:
        pass
    server.shutdown()


if __name__ == "__main__":
    main()
