"""Async scoring queue (Deployment ``scoring-queue``): transactions wait here for the batch scorer.

Besides the online endpoint, the platform scores settled transactions
asynchronously: the traffic replay publishes them here and Deployment
``scoring-worker`` pulls them in batches, scores them with fraud-model and acks
them. A queue is the one place where "the async path is behind" can be read, so
everything it reports is computed from the messages it holds: depth (ready to
deliver), in flight (leased to a consumer, not yet acked), the age of the oldest
unscored transaction (its producer's event time, as Kafka's CreateTime), the
publish rate of fresh events and the ack rate over the last minute, and the
consumers that pulled lately.

Semantics are a small SQS/Kafka-consumer subset: named queues created on first
use (a consumer that subscribes to a queue nobody publishes to waits on an empty
one), long-poll pulls that lease messages for ``lease_s``, ack to delete, nack
(or an expired lease) to deliver again. Delivery is oldest event first. State is
in memory: deleting the pod loses the backlog, as with any queue without
persistence.
"""
from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mlops_drill.mlplatform import appkit

#: Seconds over which enqueue and ack rates are averaged.
RATE_WINDOW_S = 60.0
#: A consumer counts as active when it pulled within this many seconds (a consumer long-polls every few).
CONSUMER_ACTIVE_S = 15.0
#: A message counts in the publish rate when its event time is this recent: a backfill of old events is
#: a deeper queue, not a busier producer.
FRESH_S = 10.0
MAX_DEPTH = 200_000  # beyond this a publish is refused (HTTP 507), as a full queue would
MAX_PULL = 1000
MAX_WAIT_S = 20.0
QUEUE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass
class Message:
    id: str
    body: Any
    event_time: float
    attempts: int = 0
    lease_until: float = 0.0
    consumer: str = ""


@dataclass
class Consumer:
    last_pull: float = 0.0
    pulled: int = 0
    acked: int = 0


@dataclass
class Queue:
    """One named queue; every method is called with the store's lock held."""

    name: str
    ready: list[Message] = field(default_factory=list)  # sorted by event_time, oldest first
    leased: dict[str, Message] = field(default_factory=dict)
    enqueued_total: int = 0
    acked_total: int = 0
    redelivered_total: int = 0
    enqueues: deque = field(default_factory=deque)  # (time, count)
    acks: deque = field(default_factory=deque)
    consumers: dict[str, Consumer] = field(default_factory=dict)

    def put(self, messages: list[Message], now: float) -> None:
        in_order = not self.ready or not messages or min(m.event_time for m in messages) >= self.ready[-1].event_time
        self.ready.extend(sorted(messages, key=lambda m: m.event_time))
        if not in_order:  # a publisher's late batch (older event times): keep delivering oldest first
            self.ready.sort(key=lambda m: m.event_time)
        self.enqueued_total += len(messages)
        fresh = sum(1 for m in messages if m.event_time >= now - FRESH_S)
        if fresh:
            self.enqueues.append((now, fresh))

    def expire_leases(self, now: float) -> None:
        expired = [m for m in self.leased.values() if m.lease_until <= now]
        if expired:
            self.give_back([m.id for m in expired])

    def give_back(self, ids: list[str]) -> int:
        back = [self.leased.pop(i) for i in ids if i in self.leased]
        for m in back:
            m.lease_until, m.consumer = 0.0, ""
        if back:
            self.redelivered_total += len(back)
            self.ready.extend(back)
            self.ready.sort(key=lambda m: m.event_time)
        return len(back)

    def take(self, n: int, lease_s: float, consumer: str, now: float) -> list[Message]:
        batch, self.ready = self.ready[:n], self.ready[n:]
        for m in batch:
            m.attempts += 1
            m.lease_until, m.consumer = now + lease_s, consumer
            self.leased[m.id] = m
        seen = self.consumers.setdefault(consumer, Consumer())
        seen.last_pull = now
        seen.pulled += len(batch)
        return batch

    def ack(self, ids: list[str], now: float) -> int:
        done = [self.leased.pop(i) for i in ids if i in self.leased]
        for m in done:
            if m.consumer in self.consumers:
                self.consumers[m.consumer].acked += 1
        self.acked_total += len(done)
        if done:
            self.acks.append((now, len(done)))
        return len(done)

    def stats(self, now: float) -> dict[str, Any]:
        self.expire_leases(now)
        for window in (self.enqueues, self.acks):
            while window and window[0][0] < now - RATE_WINDOW_S:
                window.popleft()
        held = self.ready + list(self.leased.values())
        oldest = min((m.event_time for m in held), default=None)
        span = min(RATE_WINDOW_S, max(1.0, now - STARTED))
        active = {name: c for name, c in self.consumers.items() if now - c.last_pull <= CONSUMER_ACTIVE_S}
        return {
            "queue": self.name,
            "depth": len(self.ready),
            "in_flight": len(self.leased),
            "oldest_message_age_seconds": round(now - oldest, 1) if oldest is not None else 0.0,
            "enqueue_rate_per_second": round(sum(n for _, n in self.enqueues) / span, 2),
            "ack_rate_per_second": round(sum(n for _, n in self.acks) / span, 2),
            "enqueued_total": self.enqueued_total,
            "acked_total": self.acked_total,
            "redelivered_total": self.redelivered_total,
            "active_consumers": len(active),
            "consumers": {name: {"last_pull_seconds_ago": round(now - c.last_pull, 1), "pulled": c.pulled,
                                 "acked": c.acked} for name, c in sorted(active.items())},
        }


STARTED = time.time()


class Store:
    """Every queue, one lock; pulls wait on a condition instead of spinning."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.queues: dict[str, Queue] = {}

    def queue(self, name: str) -> Queue:
        if name not in self.queues:
            self.queues[name] = Queue(name)
            appkit.log("info", "queue created", queue=name)
        return self.queues[name]

    def publish(self, name: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
        now = time.time()
        messages = []
        for item in bodies:
            event_time = item.get("event_time", now) if isinstance(item, dict) else now
            if not isinstance(event_time, (int, float)) or event_time > now + 60:
                raise ValueError("event_time must be epoch seconds, not in the future")
            messages.append(Message(uuid.uuid4().hex[:20], item.get("body", item) if isinstance(item, dict) else item,
                                    float(event_time)))
        with self.arrived:
            q = self.queue(name)
            if len(q.ready) + len(q.leased) + len(messages) > MAX_DEPTH:
                raise OverflowError(f"queue {name} is full ({MAX_DEPTH} messages)")
            q.put(messages, now)
            self.arrived.notify_all()
            return {"queue": name, "enqueued": len(messages), "depth": len(q.ready)}

    def pull(self, name: str, n: int, wait_s: float, lease_s: float, consumer: str) -> list[Message]:
        deadline = time.monotonic() + wait_s
        with self.arrived:
            q = self.queue(name)
            while True:
                now = time.time()
                q.expire_leases(now)
                if q.ready or time.monotonic() >= deadline:
                    return q.take(n, lease_s, consumer, now)
                seen = q.consumers.setdefault(consumer, Consumer())
                seen.last_pull = now  # a consumer waiting on an empty queue is still subscribed
                self.arrived.wait(min(1.0, deadline - time.monotonic()))

    def settle(self, name: str, ids: list[str], ok: bool) -> int:
        with self.lock:
            q = self.queue(name)
            return q.ack(ids, time.time()) if ok else q.give_back(ids)

    def stats(self, name: str | None = None) -> Any:
        with self.lock:
            now = time.time()
            if name is not None:
                return self.queues[name].stats(now) if name in self.queues else None
            return [q.stats(now) for _, q in sorted(self.queues.items())]


def metrics_text(store: Store) -> str:
    """Prometheus text of every queue, computed at scrape time from the messages held."""
    rows = store.stats()
    gauges = [
        ("scoring_queue_depth", "gauge", "Messages ready to deliver", "depth"),
        ("scoring_queue_in_flight", "gauge", "Messages leased to a consumer and not acked yet", "in_flight"),
        ("scoring_queue_oldest_message_age_seconds", "gauge",
         "Age of the oldest unscored message (now minus its event time)", "oldest_message_age_seconds"),
        ("scoring_queue_enqueue_rate", "gauge", f"Messages published per second over the last {RATE_WINDOW_S:.0f} s",
         "enqueue_rate_per_second"),
        ("scoring_queue_ack_rate", "gauge", f"Messages acked (scored) per second over the last {RATE_WINDOW_S:.0f} s",
         "ack_rate_per_second"),
        ("scoring_queue_consumers", "gauge", f"Consumers that pulled within {CONSUMER_ACTIVE_S:.0f} s",
         "active_consumers"),
        ("scoring_queue_enqueued_total", "counter", "Messages published", "enqueued_total"),
        ("scoring_queue_acked_total", "counter", "Messages acked", "acked_total"),
        ("scoring_queue_redelivered_total", "counter", "Messages delivered again (nack or lease expired)",
         "redelivered_total"),
    ]
    out = []
    for name, kind, help_text, key in gauges:
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        out += [f'{name}{{queue="{row["queue"]}"}} {float(row[key])}' for row in rows]
    return "\n".join(out) + "\n"


def make_handler(store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: Any, ctype: str = "application/json") -> None:
            body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self) -> tuple[str | None, str]:
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            if len(parts) >= 2 and parts[0] == "queues":
                return parts[1], "/".join(parts[2:])
            return None, "/".join(parts)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            name, rest = self._route()
            if name is None and rest == "metrics":
                self._send(200, metrics_text(store), "text/plain; version=0.0.4")
            elif name is None and rest in ("healthz", "readyz"):
                self._send(200, {"status": "ok"})
            elif name is None and rest == "queues":
                self._send(200, {"queues": store.stats()})
            elif name is not None and rest == "":
                found = store.stats(name)
                self._send(200, found) if found is not None else self._send(404, {"detail": f"no queue {name}"})
            else:
                self._send(404, {"detail": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            name, rest = self._route()
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                if name is None or not QUEUE_NAME.match(name):
                    raise LookupError("not found")
                if rest == "messages":
                    self._send(200, store.publish(name, list(body.get("messages") or [])))
                elif rest == "pull":
                    n = max(1, min(int(body.get("max", 1)), MAX_PULL))
                    wait_s = max(0.0, min(float(body.get("wait_s", 0)), MAX_WAIT_S))
                    got = store.pull(name, n, wait_s, float(body.get("lease_s", 30)), str(body.get("consumer", "")))
                    self._send(200, {"messages": [{"id": m.id, "body": m.body, "event_time": m.event_time,
                                                   "attempts": m.attempts} for m in got]})
                elif rest in ("ack", "nack"):
                    done = store.settle(name, [str(i) for i in body.get("ids") or []], ok=rest == "ack")
                    self._send(200, {"queue": name, rest + "ed": done})
                else:
                    raise LookupError("not found")
            except LookupError as err:
                self._send(404, {"detail": str(err)})
            except OverflowError as err:
                self._send(507, {"detail": str(err)})
            except (ValueError, TypeError, AttributeError) as err:
                self._send(400, {"detail": f"bad request: {err}"})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main() -> None:
    appkit.set_app_name("scoring-queue")
    store = Store()
    server = ThreadingHTTPServer(appkit.bind_address(), make_handler(store))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    appkit.log("info", "listening", address="%s:%d" % server.server_address[:2])
    server.serve_forever()


if __name__ == "__main__":
    main()
