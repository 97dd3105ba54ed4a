"""Async batch scorer (Deployment ``scoring-worker``): drains the scoring queue through fraud-model.

Each of ``CONCURRENCY`` loops pulls up to ``BATCH_SIZE`` transactions from queue
``QUEUE_NAME`` of the scoring-queue Service (long poll), scores them in one call
to ``MODEL_URL`` (fraud-model's ``/batch-predict``), writes the scores to the
results sink and acks them. A failed call nacks the batch (the queue delivers it
again) and backs off, as a consumer with retries does, so a broken model URL is a
growing queue and an error log, never lost messages.

Throughput is ``CONCURRENCY x BATCH_SIZE / (time per batch)``, and the time per
batch is dominated by the sink's write (``SINK_WRITE_MS``, one commit per batch:
the timing model of the case-management database, as ``EPOCH_SECONDS`` is
training's). The baseline (2 x 200 rows per ~0.3 s) keeps up with the replay's
``ASYNC_RATE`` many times over; one loop of one row does not.

Logs one line per 10 s with what the loops did (messages scored, rate, mean batch
size, errors, the event-time lag of the last scored message), a line per failed
call, and, while the queue it reads is empty, one "waiting" line per 30 s. /metrics
has the same as counters, plus the configuration it runs with.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Counter, Gauge, Histogram

from mlops_drill.mlplatform import appkit
from mlops_drill.mlplatform.discovery import service_url

SCORED = Counter("scoring_worker_messages_total", "Messages scored and acked")
FAILED = Counter("scoring_worker_errors_total", "Model calls that failed (the batch was handed back)", ["reason"])
BATCH = Histogram("scoring_worker_batch_size", "Messages per scored batch", buckets=(1, 2, 5, 10, 25, 50, 100, 250))
BATCH_SECONDS = Histogram("scoring_worker_batch_seconds", "Pull-to-ack time of one batch",
                          buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10))
LAG = Gauge("scoring_worker_lag_seconds", "Now minus the event time of the last scored message")
CONFIG = Gauge("scoring_worker_config", "The configuration this worker runs with",
               ["queue", "batch_size", "concurrency", "model_url"])

DEFAULT_MODEL_URL = "http://fraud-model.serving.svc.cluster.local/batch-predict"
LEASE_S = 60.0
WAIT_S = 2.0
MAX_BACKOFF_S = 15.0


def resolve(url: str) -> str:
    """``url`` as this pod reaches it: a cluster DNS name through the Service table where there is one.

    Why: on process-backed nodes a Service is a local proxy port, not a DNS name (see
    ``discovery``); a real cluster resolves the name itself and the URL is kept as it is.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc" and parts.port is None:
        base = service_url(labels[0], labels[1])
        if base != f"http://{labels[0]}.{labels[1]}.svc.cluster.local":
            found = urlsplit(base)
            return urlunsplit((found.scheme, found.netloc, parts.path, parts.query, ""))
    return url


class Worker:
    def __init__(self, queue: str, batch_size: int, concurrency: int, model_url: str, sink_write_s: float,
                 consumer: str):
        self.queue, self.batch_size, self.concurrency = queue, batch_size, concurrency
        self.model_url, self.sink_write_s, self.consumer = model_url, sink_write_s, consumer
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.window = {"batches": 0, "messages": 0, "errors": 0, "lag_s": None}
        self.last_waiting_log = 0.0
        self.ready = threading.Event()

    def queue_url(self, action: str) -> str:
        base = service_url("scoring-queue", os.environ.get("QUEUE_NAMESPACE", "serving"))
        return f"{base}/queues/{self.queue}/{action}"

    def wait_for_model(self, log_every: float = 30.0) -> None:
        """Hold the loops until the model's host answers at all, as a client waits for its first connection.

        Why: on a fresh platform the worker starts beside fraud-model, whose Service has no ready
        endpoint for a few seconds; batches pulled then would fail and come back, and the worker's
        log would start with errors a candidate would chase. Any HTTP answer ends the wait; from then
        on every failure of the model call is logged and retried.
        """
        parts = urlsplit(self.model_url)
        url = urlunsplit((parts.scheme, parts.netloc, "/readyz", "", ""))
        started, next_log = time.monotonic(), 0.0
        while not self.stop.is_set():
            try:
                appkit.http_json("GET", resolve(url), timeout=2.0)
                return
            except appkit.UpstreamError as err:
                if err.status is not None and err.status != 503:
                    return
                waited = time.monotonic() - started
                if waited >= next_log:
                    appkit.log("info", "waiting for the model before pulling", url=url, error=err.reason[:200],
                               waited_s=round(waited, 1))
                    next_log = waited + log_every
            self.stop.wait(0.5)

    def loop(self, index: int) -> None:
        self.ready.wait()
        backoff = 1.0
        while not self.stop.is_set():
            try:
                pulled = appkit.http_json("POST", self.queue_url("pull"), {
                    "max": self.batch_size, "wait_s": WAIT_S, "lease_s": LEASE_S,
                    "consumer": f"{self.consumer}/{index}"}, timeout=WAIT_S + 5)["messages"]
            except appkit.UpstreamError as err:
                appkit.log("warning", "scoring queue not reachable", error=err.reason, retry_in_s=backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if not pulled:
                self.waiting()
                continue
            started = time.perf_counter()
            ids = [m["id"] for m in pulled]
            try:
                answer = appkit.http_json("POST", resolve(self.model_url),
                                          {"instances": [m["body"] for m in pulled]}, timeout=30)
                if len(answer.get("predictions") or []) != len(pulled):
                    raise appkit.UpstreamError(self.model_url, "answer does not hold one prediction per instance")
            except appkit.UpstreamError as err:
                FAILED.labels(f"http_{err.status}" if err.status else "connection").inc()
                self.handed_back(ids)
                with self.lock:
                    self.window["errors"] += 1
                appkit.log("error", "model call failed; batch handed back to the queue", url=self.model_url,
                           error=err.reason[:200], batch=len(ids), attempt=max(m["attempts"] for m in pulled),
                           retry_in_s=backoff)
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 1.0
            time.sleep(self.sink_write_s)  # one commit of the batch's scores to the results sink
            try:
                appkit.http_json("POST", self.queue_url("ack"), {"ids": ids}, timeout=10)
            except appkit.UpstreamError as err:  # the lease expires and the queue delivers them again
                appkit.log("warning", "ack failed; the batch will be delivered again", error=err.reason)
                continue
            lag = max(0.0, time.time() - max(m["event_time"] for m in pulled))
            SCORED.inc(len(ids))
            BATCH.observe(len(ids))
            BATCH_SECONDS.observe(time.perf_counter() - started)
            LAG.set(lag)
            with self.lock:
                self.window["batches"] += 1
                self.window["messages"] += len(ids)
                self.window["lag_s"] = lag

    def handed_back(self, ids: list[str]) -> None:
        try:
            appkit.http_json("POST", self.queue_url("nack"), {"ids": ids}, timeout=10)
        except appkit.UpstreamError:
            pass  # the lease runs out and the queue delivers them again anyway

    def waiting(self) -> None:
        now = time.monotonic()
        if now - self.last_waiting_log >= 30.0:
            self.last_waiting_log = now
            appkit.log("info", "no messages; waiting", queue=self.queue)

    def report(self, every: float = 10.0) -> None:
        while not self.stop.wait(every):
            with self.lock:
                w, self.window = self.window, {"batches": 0, "messages": 0, "errors": 0, "lag_s": None}
            if not w["batches"] and not w["errors"]:
                continue
            appkit.log("info", "scoring stats", queue=self.queue, batches=w["batches"], messages=w["messages"],
                       messages_per_s=round(w["messages"] / every, 2),
                       mean_batch=round(w["messages"] / w["batches"], 1) if w["batches"] else 0,
                       errors=w["errors"], lag_s=None if w["lag_s"] is None else round(w["lag_s"], 1))


def main() -> None:
    appkit.set_app_name("scoring-worker")
    batch_size = int(appkit.env_float("BATCH_SIZE", 200))
    concurrency = int(appkit.env_float("CONCURRENCY", 2))
    if batch_size < 1 or concurrency < 1:
        raise SystemExit("invalid value for env BATCH_SIZE or CONCURRENCY: must be >= 1")
    worker = Worker(queue=os.environ.get("QUEUE_NAME", "transactions"), batch_size=batch_size,
                    concurrency=concurrency, model_url=os.environ.get("MODEL_URL") or DEFAULT_MODEL_URL,
                    sink_write_s=appkit.env_float("SINK_WRITE_MS", 250) / 1000.0,
                    consumer=os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", "worker"))
    CONFIG.labels(worker.queue, str(batch_size), str(concurrency), worker.model_url).set(1)
    server = ThreadingHTTPServer(appkit.bind_address(), appkit.metrics_handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    appkit.log("info", "worker started", release=appkit.release("2.3.0"), queue=worker.queue, batch_size=batch_size,
               concurrency=concurrency, model_url=worker.model_url, sink_write_ms=round(worker.sink_write_s * 1000))
    loops = [threading.Thread(target=worker.loop, args=(i,), daemon=True) for i in range(concurrency)]
    for t in loops:
        t.start()
    threading.Thread(target=worker.report, daemon=True).start()
    worker.wait_for_model()
    worker.ready.set()
    try:
        worker.stop.wait()
    except KeyboardInterrupt:
        worker.stop.set()
    for t in loops:  # a batch pulled before the stop is still scored and acked, not left to its lease
        t.join(timeout=5.0)
    server.shutdown()


if __name__ == "__main__":
    main()
