"""The scenario engine: start a drill, tell its status, verify, reset, stop.

Session state is a small JSON file in the cluster's state folder, so `status`
works after the engine (or the user's terminal) died. The candidate never sees
it through their kubeconfig. Faults come from the scenario file; their state
lives in the cluster objects they changed, so `reset` reverts whatever the
session file says was injected and re-applies the whole baseline (both at
once, with every Deployment rolling all its pods together: see `reset`).
"""
from __future__ import annotations

import contextvars
import functools
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlops_drill.errors import DrillError
from mlops_drill.injector import baseline
from mlops_drill.injector.checks import CheckResult, run_checks
from mlops_drill.injector.context import DrillContext
from mlops_drill.injector.fault import make

SYMPTOM_TIMEOUT_S = 60.0


class FaultRecord(BaseModel):
    name: str
    params: dict[str, Any] = {}


class Session(BaseModel):
    scenario: str
    #: The file the scenario came from: a pack folder named at `start` need not be named again.
    scenario_file: str | None = None
    started_at: float
    faults: list[FaultRecord]
    transcript: str
    candidate_kubeconfig: str
    #: The draw of a parameterised scenario (None otherwise). Kept here, in the engine's state folder,
    #: never in the cluster or the transcript while the drill runs: `finish` records it with the grade.
    seed: int | None = None
    values: dict[str, Any] = {}


@dataclass
class StartReport:
    session: Session
    briefing: str
    seconds: dict[str, float] = field(default_factory=dict)


def _state_dir(ctx: DrillContext) -> Path:
    state = getattr(ctx.backend, "state", None)
    if state is None:
        raise DrillError("this backend keeps no local state folder")
    return Path(state)


def session_path(ctx: DrillContext) -> Path:
    return _state_dir(ctx) / "session.json"


def load_session(ctx: DrillContext) -> Session | None:
    path = session_path(ctx)
    if not path.is_file():
        return None
    try:
        return Session.model_validate_json(path.read_text())
    except ValueError as exc:
        raise DrillError(f"{path}: unreadable session file ({str(exc).splitlines()[0]}); "
                         "run `mlops-drill reset` to start clean") from None


def _save(ctx: DrillContext, session: Session) -> None:
    path = session_path(ctx)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(session.model_dump_json(indent=1))
    os.replace(tmp, path)


def scenario(scenario_id: str):
    """The scenario with this id: built-in or from a pack folder (``--scenarios``, ``MLOPS_DRILL_SCENARIOS``)."""
    from mlops_drill.scenarios.packs import find_scenario

    return scenario_at(find_scenario(scenario_id))


def scenario_at(path: Path):
    return _loaded(path, path.stat().st_mtime_ns).model_copy(deep=True)


def session_scenario(session: Session):
    """The running session's scenario (its drawn variant), from the file it was started from while that
    still exists."""
    from mlops_drill.scenarios.variants import render

    if session.scenario_file and Path(session.scenario_file).is_file():
        sc = scenario_at(Path(session.scenario_file))
    else:
        sc = scenario(session.scenario)
    if not sc.parameters:
        return sc
    if session.seed is None:
        raise DrillError(f"scenario {sc.id} declares parameters but the session recorded no seed; "
                         "`mlops-drill reset` and start it again")
    return render(sc, session.values, session.seed)


@functools.lru_cache(maxsize=64)
def _loaded(path: Path, mtime_ns: int):
    """Parsed once per file version: a drill server grades and verifies tens of seats against one scenario."""
    from mlops_drill.scenarios.loader import load_scenario_file

    return load_scenario_file(path)


def ensure_platform(ctx: DrillContext) -> float:
    """Deploy the baseline unless it is already healthy; seconds spent."""
    started = time.monotonic()
    if baseline.unhealthy(ctx) or not baseline.candidate_kubeconfig_path(ctx).is_file():
        baseline.deploy(ctx, timeout=ctx.backend.platform_start_timeout)
    return time.monotonic() - started


def start(ctx: DrillContext, scenario_id: str, seed: int | None = None) -> StartReport:
    """Inject the scenario's faults and wait for the symptom; a parameterised scenario draws its variant
    from ``seed`` (a fresh, unpredictable one when None; it is told at `finish`, not here)."""
    from mlops_drill.scenarios.packs import find_scenario
    from mlops_drill.scenarios.variants import variant

    scenario_file = find_scenario(scenario_id)
    sc = variant(scenario_at(scenario_file), seed)
    seconds: dict[str, float] = {}
    if load_session(ctx) is not None:
        seconds["reset_previous"] = reset(ctx)
    seconds["baseline"] = ensure_platform(ctx)
    faults = [make(f.name, f.params) for f in sc.faults]
    state = _state_dir(ctx)
    run_dir = state / "sessions" / f"{scenario_id}-{int(time.time())}"
    session = Session(scenario=scenario_id, scenario_file=str(scenario_file), started_at=time.time(),
                      faults=[FaultRecord(name=f.name, params=f.params.model_dump()) for f in faults],
                      transcript=str(run_dir / "transcript.jsonl"),
                      candidate_kubeconfig=str(baseline.candidate_kubeconfig_path(ctx)),
                      seed=sc.variant.seed if sc.variant else None,
                      values=sc.variant.values if sc.variant else {})
    # The incident first, then its noise: a harmless fact placed while the real faults still roll out (a
    # registry restarting as the canary starts and asks it for its model) could stop being harmless.
    rounds = [[f for f, spec in zip(faults, sc.faults) if spec.red_herring is None],
              [f for f, spec in zip(faults, sc.faults) if spec.red_herring is not None]]
    try:
        _inject_and_wait(ctx, scenario_id, [r for r in rounds if r], seconds)
    except Exception as exc:
        raise _undo_failed_start(ctx, session, exc) from None
    except BaseException:  # an interrupt (Ctrl-C, SIGTERM): no long reset now, but `reset` must know the faults
        _keep(ctx, session)
        raise
    session.started_at = time.time()
    _keep(ctx, session)
    from mlops_drill.grader.transcript import append

    append(session.transcript, "session", line="", data={"action": "start", "scenario": scenario_id,
                                                          "started_at": session.started_at})
    return StartReport(session, sc.briefing, seconds)


def _keep(ctx: DrillContext, session: Session) -> None:
    """The session where `verify`, `finish` and `reset` find it, with the folder its transcript goes in."""
    Path(session.transcript).parent.mkdir(parents=True, exist_ok=True)
    _save(ctx, session)


def _inject_and_wait(ctx: DrillContext, scenario_id: str, rounds: list[list], seconds: dict[str, float]) -> None:
    """Apply each round's faults, then wait until each one's symptom shows, before the next round."""
    t0 = time.monotonic()
    seconds["inject"] = 0.0
    for faults in rounds:
        t_apply = time.monotonic()
        for fault in faults:
            fault.apply(ctx)
        seconds["inject"] += time.monotonic() - t_apply
        deadline = time.monotonic() + SYMPTOM_TIMEOUT_S
        pending = list(faults)
        while pending:
            pending = [f for f in pending if not f.verify_applied(ctx)]
            if pending and time.monotonic() > deadline:
                raise DrillError(f"scenario {scenario_id}: symptom of {pending[0].name} not observable after "
                                 f"{SYMPTOM_TIMEOUT_S:.0f}s")
            if pending:
                time.sleep(0.1)
    seconds["symptom"] = time.monotonic() - t0


def _undo_failed_start(ctx: DrillContext, session: Session, exc: Exception) -> Exception:
    """Put the baseline back after a start that failed half-way; the exception to raise.

    Why: the faults applied so far stay applied, and without a session nothing would
    know to revert them: `reset` would restore only the baseline's own objects, and a
    fault that re-created a Job (immutable template) would break the next deploy. The
    session is saved for the moment the reset needs it; the reset removes it again.
    """
    try:
        _save(ctx, session)
        reset(ctx)
    except Exception as undo:  # noqa: BLE001 - the start's own error is the one to report
        first = (str(undo).splitlines() or [""])[0]
        note = f"; restoring the baseline failed too ({type(undo).__name__}: {first}): run `mlops-drill reset`"
    else:
        note = "; its faults were reverted and the baseline restored"
    if isinstance(exc, DrillError):
        return DrillError(f"{exc}{note}")
    exc.add_note(note.lstrip("; "))
    return exc


def verify(ctx: DrillContext, record: bool = True, wait: bool = True) -> list[CheckResult]:
    """Run the fix checks; ``wait=False`` tries each once (no polling for a rollout to finish)."""
    session = load_session(ctx)
    if session is None:
        raise DrillError("no scenario is running: `mlops-drill start <id>` first")
    results = run_checks(ctx, session_scenario(session).fix.checks, timeout_scale=1.0 if wait else 0.0)
    if record:
        from mlops_drill.grader.transcript import append

        append(session.transcript, "verification", data={"results": {r.id: r.passed for r in results},
                                                         "details": {r.id: r.detail for r in results}})
    return results


def reset(ctx: DrillContext) -> float:
    """Back to the healthy baseline without recreating the cluster; seconds taken."""
    from mlops_drill.cluster.nodes import NODE_POOLS
    from mlops_drill.injector.nodes import restore_node

    started = time.monotonic()
    session = load_session(ctx)
    faults = [make(record.name, record.params) for record in (session.faults if session else [])]
    with baseline.surging(ctx):
        docs = [d for d in baseline.documents(ctx) if d["kind"] != "Job"]
        docs.sort(key=lambda d: d["kind"] not in ("ConfigMap", "Secret"))  # what pods read at start goes first
        ctx.api  # noqa: B018  (made once here, not by two threads at once)
        # Specs are replaced exactly first, one request each, side by side and beside the faults' reverts
        # (each in a copy of this context, so they still see that the reset is surging). The apply of the
        # whole baseline follows them: before, it would roll a Deployment to an in-between template (the
        # baseline's fields plus a fault's extra env var) and then again.
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="reset") as each, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="reset-apply") as pool:
            exact = [each.submit(contextvars.copy_context().run, baseline.reset_exact, ctx, doc) for doc in docs]
            # Nodes are the cluster's, not the baseline's: undo a candidate's cordon, taint or label too.
            # Not where seats share a cluster's real nodes: there a node is every seat's, and the candidate
            # cannot change one (the gateway refuses node writes).
            shared = getattr(ctx.backend, "shared_nodes", False)
            nodes = [] if shared else [each.submit(restore_node, ctx, node.name) for node in NODE_POOLS]

            def apply_whole() -> None:
                for future in exact:
                    future.result()
                ctx.apply([baseline.as_sent(d) for d in docs])

            applying = pool.submit(contextvars.copy_context().run, apply_whole)
            for fault in faults:
                fault.revert(ctx)
            for future in nodes:
                future.result()
            applying.result()
        session_path(ctx).unlink(missing_ok=True)
        baseline.wait_healthy(ctx)
        for fault in faults:
            fault.settle(ctx)
    return time.monotonic() - started


def stop(ctx: DrillContext) -> None:
    reset(ctx)


def status(ctx: DrillContext) -> dict[str, Any]:
    session = load_session(ctx)
    if session is None:
        return {"scenario": None}
    hints = 0
    commands = 0
    path = Path(session.transcript)
    if path.is_file():
        from mlops_drill.grader.transcript import read_transcript

        events = read_transcript(path).events
        hints = sum(e.kind == "hint" for e in events)
        commands = sum(e.kind in ("command", "shell") for e in events)
    sc = session_scenario(session)
    return {"scenario": session.scenario, "title": sc.title, "elapsed_s": round(time.time() - session.started_at),
            "time_limit_s": sc.time_limit_minutes * 60, "hints_used": hints, "hints_total": len(sc.hints),
            "commands": commands, "transcript": session.transcript,
            "kubeconfig": session.candidate_kubeconfig}


def run_as_candidate(ctx: DrillContext, lines: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Type ``lines`` into a recorded (non-interactive) shell as the candidate would.

    The recording shims append every kubectl/curl call to the session's
    transcript; background jobs (port-forwards) are stopped at the end.
    """
    from mlops_drill.grader.shell import SCENARIO_ENV, STARTED_ENV, find_real_tools, write_shims
    from mlops_drill.grader.transcript import TRANSCRIPT_ENV
    from mlops_drill.scenarios.packs import SCENARIOS_ENV, env_value_with

    session = load_session(ctx)
    if session is None:
        raise DrillError("no scenario is running: `mlops-drill start <id>` first")
    shim_dir = Path(session.transcript).parent / "shims"
    real = find_real_tools()
    real["kubectl"] = ctx.kubectl_path
    if shim_dir.exists():
        shutil.rmtree(shim_dir)
    write_shims(shim_dir, Path(session.transcript), {k: v for k, v in real.items() if k != "nvidia-smi"})
    script = "set +e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + "\n".join(
        f"{line}\n" + (f"{_SETTLE}\n" if line.rstrip().endswith("&") else "") for line in lines)
    env = {**os.environ, "KUBECONFIG": session.candidate_kubeconfig, TRANSCRIPT_ENV: session.transcript,
           SCENARIO_ENV: session.scenario, STARTED_ENV: repr(session.started_at),
           SCENARIOS_ENV: env_value_with(session.scenario_file),
           "PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


# After a backgrounded line (a port-forward), give it a moment to listen, as a person would.
_SETTLE = "sleep 1.5"


def finish(ctx: DrillContext):
    """Verify the fix, grade the transcript and return the graded transcript."""
    from mlops_drill.grader.grade import grade
    from mlops_drill.grader.importers import load_recording

    session = load_session(ctx)
    if session is None:
        raise DrillError("no scenario is running: `mlops-drill start <id>` first")
    verify(ctx)
    sc = session_scenario(session)
    if sc.variant is not None:
        from mlops_drill.grader.transcript import append

        # The draw joins the transcript only now, beside the grade: `grade-transcript` replays this variant.
        append(session.transcript, "session", data={"action": "variant", **sc.variant.model_dump()})
    return grade(load_recording(Path(session.transcript)), sc)
