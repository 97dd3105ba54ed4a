"""A seat's cluster: start it with the fault injected, run its fix checks, stop it.

Why one embedded cluster per seat (and not namespaces of a shared cluster):
the baseline, every fault and the candidate RBAC use fixed namespace names, so
the only isolation available without rewriting them is a whole cluster. The
engine is used exactly as `mlops-drill start` uses it, so a seat behaves like
a single-user drill.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from mlops_drill.drills.model import Drill, DrillStore, Seat, Verification
from mlops_drill.errors import DrillError


def _backend(seat: Seat):
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    return EmbeddedBackend(name=seat.cluster)


def _context(seat: Seat):
    from mlops_drill.injector.context import context_for

    return context_for(_backend(seat))


def provision(store: DrillStore, drill: Drill, seat: Seat) -> None:
    """Cluster up, baseline, fault, symptom: the seat is ready when this returns."""
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector import engine

    t0 = time.monotonic()
    try:
        backend = _backend(seat)
        try:
            backend.up(progress=False)
        except DrillError:
            # Seen with two seats starting at once on a loaded 2-core machine: kwokctl gives up
            # half-way ("failed to init crds"). A clean second attempt is cheaper than a lost seat.
            backend.down()
            backend.up(progress=False)
        cluster_s = time.monotonic() - t0
        from mlops_drill.injector.context import context_for

        report = engine.start(context_for(backend), drill.scenario)
        with store.lock:
            seat.setup_s = {"cluster": round(cluster_s, 1), **{k: round(v, 1) for k, v in report.seconds.items()},
                            "total": round(time.monotonic() - t0, 1)}
            seat.started_at = report.session.started_at
            seat.state = "ready"
            store.save(drill)
    except Exception as exc:  # a seat that fails must not take the drill down; the instructor sees why
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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
    results = engine.verify(_context(seat), record=False, wait=wait)
    verification = Verification(ts=time.time(), results={r.id: r.passed for r in results}, why=why)
    store.add_verification(drill, seat, verification)
    return verification


def stop(store: DrillStore, drill: Drill, seat: Seat) -> None:
    """Stop the seat's cluster and remove its state (its transcript stays with the drill)."""
    _backend(seat).down()
    with store.lock:
        seat.state = "stopped"
        store.save(drill)


def candidate_kubeconfig(seat: Seat) -> Path:
    from mlops_drill.injector import baseline

    return baseline.candidate_kubeconfig_path(_context(seat))
