"""A seat: start it with the fault injected, run its fix checks, stop it.

Two kinds of seat, one engine. With ``namespaces`` isolation (the default) a
seat is a set of namespaces and nodes of the server's one shared cluster,
reached through its own gateway endpoint that shows it as a whole cluster
(``cluster/seats``): tens of seats fit where a handful of clusters would.
With ``clusters`` isolation each seat is an embedded cluster of its own. Either
way the engine runs exactly as `mlops-drill start` runs it, so a seat behaves
like a single-user drill.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from mlops_drill.drills.model import Drill, DrillStore, Seat, Verification
from mlops_drill.drills.shared import SharedCluster
from mlops_drill.errors import DrillError

SHARED = SharedCluster()
log = logging.getLogger("mlops_drill.drills")


def _backend(store: DrillStore, drill: Drill, seat: Seat):
    if drill.isolation == "namespaces":
        assert seat.route is not None
        backend = SHARED.seat_backend(seat.route, seat.gateway_port, store.seat_dir(drill, seat) / "cluster")
        if seat.gateway_port != backend.port:
            with store.lock:
                seat.gateway_port = backend.port
                store.save(drill)
        return backend
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(name=seat.cluster)


def _context(store: DrillStore, drill: Drill, seat: Seat):
    from mlops_drill.injector.context import context_for

    return context_for(_backend(store, drill, seat))


def provision(store: DrillStore, drill: Drill, seat: Seat) -> None:
    """Cluster up, baseline, fault, symptom: the seat is ready when this returns."""
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector import engine

    t0 = time.monotonic()
    try:
        backend = _backend(store, drill, seat)
        try:
            backend.up(progress=False)
        except DrillError:
            # Seen with two seat clusters starting at once on a loaded 2-core machine: kwokctl gives up
            # half-way ("failed to init crds"). A clean second attempt is cheaper than a lost seat.
            backend.down()
            backend.up(progress=False)
        cluster_s = time.monotonic() - t0
        from mlops_drill.injector.context import context_for

        try:
            report = engine.start(context_for(backend), drill.scenario, seed=drill.seat_seed(seat))
        except Exception as exc:
            # Seen once in a full test run: the second of two seats starting side by side failed with the
            # API's 409 Conflict (which write, the one-line record did not say). The start cleans up after
            # itself, so a second attempt is a clean one; anything else fails the seat as before.
            if getattr(exc, "status", None) != 409:
                raise
            report = engine.start(context_for(backend), drill.scenario, seed=drill.seat_seed(seat))
        with store.lock:
            # What the engine really drew (session.json of the seat), kept where the instructor replays a grade.
            seat.seed, seat.values = report.session.seed, report.session.values or None
            seat.setup_s = {"cluster": round(cluster_s, 1), **{k: round(v, 1) for k, v in report.seconds.items()},
                            "total": round(time.monotonic() - t0, 1)}
            seat.started_at = report.session.started_at
            seat.state = "ready"
            store.save(drill)
    except Exception as exc:  # a seat that fails must not take the drill down; the instructor sees why
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        line = f"{line} {_api_message(exc)}".strip()
        with store.lock:
            seat.state, seat.error = "failed", f"{type(exc).__name__}: {line}"[:300]
            store.save(drill)


def provision_all(store: DrillStore, drill: Drill, parallel: int = 1,
                  cancelled: Callable[[], bool] = lambda: False) -> None:
    """Start every seat; ``parallel`` seats at a time (2 cores: 1 is fastest overall, see bench)."""
    def one(seat: Seat) -> None:
        if cancelled():
            return
        provision(store, drill, seat)

    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix=f"drill-{drill.id}") as pool:
        list(pool.map(one, drill.seats))
    with store.lock:
        if drill.state == "starting":
            drill.state = "running"
            store.save(drill)


def verify(store: DrillStore, drill: Drill, seat: Seat, why: str, wait: bool = True) -> Verification:
    """Run the scenario's fix checks on the seat's cluster; the result stays on the server."""
    from mlops_drill.injector import engine

    if seat.state != "ready":
        raise DrillError(f"seat {seat.n} of drill {drill.id} is {seat.state}, not ready: nothing to verify")
    results = engine.verify(_context(store, drill, seat), record=False, wait=wait)
    verification = Verification(ts=time.time(), results={r.id: r.passed for r in results}, why=why)
    store.add_verification(drill, seat, verification)
    return verification


def stop(store: DrillStore, drill: Drill, seat: Seat) -> None:
    """Stop the seat's cluster, or remove the seat from the shared one (its transcript stays)."""
    _backend(store, drill, seat).down()
    if seat.route is not None:
        SHARED.release(seat.route["prefix"])
    with store.lock:
        seat.state = "stopped"
        store.save(drill)


def stop_all(store: DrillStore, drill: Drill, before: Callable[[Seat], None] = lambda seat: None) -> None:
    """``before`` each seat, then stop it; seats of the shared cluster side by side.

    A shared seat's end-state check and removal are a few API calls each; fifty
    of them one after another kept the instructor waiting for minutes.
    """
    left = [seat for seat in drill.seats if seat.state != "stopped"]

    def one(seat: Seat) -> None:
        before(seat)
        stop(store, drill, seat)

    at_once = 8 if drill.isolation == "namespaces" else 1
    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix=f"stop-{drill.id}") as pool:
        list(pool.map(one, left))


def stop_shared_if_idle(store: DrillStore) -> bool:
    """Stop the shared cluster once no drill that uses it is left running; True when stopped."""
    with store.lock:
        busy = any(d.isolation == "namespaces" and d.state != "stopped" for d in store.drills.values())
    if busy or SHARED.gateway is None:
        return False
    SHARED.down()
    return True


def restore_routes(store: DrillStore) -> None:
    """After a server restart: every live shared seat back on the port its kubeconfig names."""
    for drill in list(store.drills.values()):
        if drill.isolation != "namespaces" or drill.state == "stopped":
            continue
        if drill.shared_kubeconfig != SHARED.kubeconfig:
            # Its seats live on another cluster than this server was started for: left alone, not moved.
            log.warning("drill %s: its seats are on %s, this server shares %s; restart with --shared-kubeconfig %s "
                        "to serve them", drill.id, drill.shared_kubeconfig or "the embedded cluster",
                        SHARED.kubeconfig or "the embedded cluster", drill.shared_kubeconfig or "(none)")
            continue
        for seat in drill.seats:
            if seat.state in ("ready", "starting") and seat.gateway_port:
                _backend(store, drill, seat)


def candidate_kubeconfig(store: DrillStore, drill: Drill, seat: Seat) -> Path:
    from mlops_drill.injector import baseline

    return baseline.candidate_kubeconfig_path(_context(store, drill, seat))


def _api_message(exc: Exception) -> str:
    """The Kubernetes API's own message of a client error, which names the object ("" for anything else):
    the exception's first line is only "(409)"."""
    import json

    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        return str(json.loads(body).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return body[:200]
