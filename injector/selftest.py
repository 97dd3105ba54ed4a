"""A scenario's self-test on the running cluster, as the catalogue's tests run it, one stage at a time.

Why in the package and not only in the test suite: an instructor writing a scenario
pack has no checkout of our tests, yet needs the same evidence that the drill works:
the fault's symptom shows, the fix checks fail before the fix, the reference solution
typed as the candidate repairs it and grades >= 90, and reset brings the baseline back.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlops_drill.errors import DrillError
from mlops_drill.injector.context import DrillContext

PASS_SCORE = 90.0


@dataclass
class Stage:
    name: str
    ok: bool
    detail: str
    seconds: float


def selftest(ctx: DrillContext, path: Path, report: Callable[[Stage], None], seed: int | None = None) -> bool:
    """Run every stage for the scenario file ``path`` (it must be on offer: built-in or in a pack folder);
    ``report`` gets each stage as it ends. True when all passed; the baseline is restored either way.
    A parameterised scenario runs the variant ``seed`` draws (a fresh one when None, named in the start stage)."""
    from mlops_drill.grader.grade import grade
    from mlops_drill.grader.importers import load_recording
    from mlops_drill.injector import baseline, engine
    from mlops_drill.scenarios.packs import find_scenario

    def stage(name: str, started: float, ok: bool, detail: str) -> bool:
        report(Stage(name, ok, detail, time.monotonic() - started))
        return ok

    path = path.resolve()
    t0 = time.monotonic()
    try:
        sc = engine.scenario_at(path)
        offered = find_scenario(sc.id).resolve()
        if offered != path:
            raise DrillError(f"{path}: scenario id {sc.id!r} resolves to {offered}; add this file's folder "
                             "with --scenarios")
    except DrillError as exc:
        return stage("load", t0, False, str(exc))
    if not stage("load", t0, True, f"{sc.id}: {len(sc.faults)} fault(s), {len(sc.steps)} steps"):
        return False

    t0 = time.monotonic()
    try:
        started = engine.start(ctx, sc.id, seed=seed)
    except DrillError as exc:
        stage("start", t0, False, str(exc))
        _reset_quietly(ctx)
        return False
    sc = engine.session_scenario(started.session)
    drawn = f" (variant {', '.join(f'{k}={v}' for k, v in sc.variant.values.items())}, seed {sc.variant.seed})" \
        if sc.variant else ""
    ok = stage("start", t0, True, f"faults {', '.join(f.name for f in sc.faults)} injected{drawn}, symptom "
                                  f"observable after {started.seconds['symptom']:.1f}s")
    try:
        t0 = time.monotonic()
        before = engine.verify(ctx, record=False, wait=False)
        failing = [r.id for r in before if not r.passed]
        ok = stage("symptom", t0, bool(failing),
                   f"fix checks failing before the fix: {', '.join(failing)}" if failing
                   else "every fix check passes before any fix: the checks do not see the fault")
        if ok:
            t0 = time.monotonic()
            typed = engine.run_as_candidate(ctx, sc.reference_solution)
            tail = " ".join(typed.stderr.split()[-40:])
            ok = stage("reference solution", t0, True, f"{len(sc.reference_solution)} lines typed as the candidate "
                                                       f"(last exit {typed.returncode})"
                       + (f"; stderr ends: {tail}" if typed.returncode else ""))
        if ok:
            t0 = time.monotonic()
            results = engine.verify(ctx)
            failed = [f"{r.id} ({r.detail})" for r in results if not r.passed]
            ok = stage("fix checks", t0, not failed, f"all {len(results)} pass" if not failed
                       else f"failing after the reference solution: {'; '.join(failed)}")
        if ok:
            t0 = time.monotonic()
            session = engine.load_session(ctx)
            assert session is not None
            graded = grade(load_recording(Path(session.transcript)), engine.session_scenario(session))
            ok = stage("grade", t0, graded.score >= PASS_SCORE,
                       f"reference solution graded {graded.score:g}/100 (needs >= {PASS_SCORE:g})")
    finally:
        t0 = time.monotonic()
        try:
            engine.reset(ctx)
            unhealthy = baseline.unhealthy(ctx)
            reset_ok = stage("reset", t0, not unhealthy, "baseline healthy again" if not unhealthy
                             else f"still unhealthy after reset: {', '.join(map(str, unhealthy))}")
        except DrillError as exc:
            reset_ok = stage("reset", t0, False, str(exc))
    return ok and reset_ok


def _reset_quietly(ctx: DrillContext) -> None:
    """After a failed start some faults may be in: put the baseline back before reporting."""
    from mlops_drill.injector import engine

    try:
        engine.reset(ctx)
    except DrillError:
        pass
