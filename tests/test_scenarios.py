"""Every catalogue scenario's self-test on the embedded cluster.

start (baseline + fault) -> the symptom is observable, and nothing the candidate's
kubeconfig lists names the fault or the answer -> the reference solution, typed
through the recording shims with the candidate's kubeconfig, fixes it -> the fix checks
pass and the recorded transcript grades >= 90 -> reset restores the healthy baseline.
"""
from __future__ import annotations

import os
import subprocess

import pytest
from answer_markers import assert_reference_solution_fixes, candidate_view, markers_in, variant_markers_in

from mlops_drill.scenarios.loader import load_catalogue
from mlops_drill.scenarios.variants import draw

pytestmark = pytest.mark.cluster
CATALOGUE = load_catalogue()
#: Self-tests per parameterised scenario (the rest of its values: tests/test_scenario_variants.py without a
#: cluster, bench/variant_sweep.py on one).
VARIANT_SEEDS = 5


def covering_seeds(sc, n: int = VARIANT_SEEDS, first: int = 1_000_003) -> list[int]:
    """``n`` seeds, each the first of a window whose draw brings the most values the earlier ones did not:
    the runs show as many different incidents as they can. Seven digits, so the seed cannot hide among
    the small numbers of a candidate's view."""
    draws = {seed: set(draw(sc, seed).items()) for seed in range(first, first + 200)}
    seeds: list[int] = []
    seen: set[tuple[str, object]] = set()
    for _ in range(n):
        best = max((s for s in draws if s not in seeds), key=lambda s: (len(draws[s] - seen), -s))
        seeds.append(best)
        seen |= draws[best]
    return sorted(seeds)


CASES = [pytest.param(sid, None, id=sid) for sid, sc in sorted(CATALOGUE.items()) if not sc.parameters] + [
    pytest.param(sid, seed, id=f"{sid}-seed{seed}")
    for sid, sc in sorted(CATALOGUE.items()) if sc.parameters for seed in covering_seeds(sc)]


@pytest.mark.parametrize("scenario_id, seed", CASES)
def test_scenario_self_test(platform, candidate, scenario_id, seed):
    from mlops_drill.grader.transcript import read_transcript
    from mlops_drill.injector import baseline, engine
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector.fault import REGISTRY

    assert not [f.name for f in CATALOGUE[scenario_id].faults if f.name not in REGISTRY], \
        "every catalogue fault is implemented"
    started = engine.start(platform, scenario_id, seed=seed)  # raises when the symptom is not observable in time
    sc = engine.session_scenario(started.session)  # the drawn variant (the scenario itself without parameters)
    try:
        view = candidate_view(candidate)
        found = markers_in(view) + variant_markers_in(view, sc)
        assert not found, f"with {scenario_id} (seed {seed}) live the candidate can read {found}"
        before = engine.verify(platform, record=False, wait=False)
        assert not all(r.passed for r in before), f"fix checks pass before any fix: {before}"
        assert_reference_solution_fixes(platform, sc)
        if seed is not None:
            recorded = [e.data for e in read_transcript(started.session.transcript).events
                        if e.kind == "session" and e.data.get("action") == "variant"]
            assert recorded == [{"action": "variant", "scenario": scenario_id, "seed": seed,
                                 "values": sc.variant.values}], "finish records the draw for a replay"
    finally:
        engine.reset(platform)
    assert baseline.unhealthy(platform) == []



def _session_cli(cluster, cluster_state):
    """`mlops-drill ... --name <session cluster>` in a new process, aimed at the session cluster's state.

    Named, not inherited: a kind session fixture (set up earlier in a full run) points the process
    environment at its own state folder until the session ends.
    """
    import sys

    env = {**os.environ, "MLOPS_DRILL_STATE": str(cluster_state)}

    def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlops_drill.cli", *args, "--name", cluster.backend.name],
                              capture_output=True, text=True, timeout=timeout, env=env)
    return cli


def test_status_survives_the_engine_that_started_the_scenario(platform, cluster, cluster_state):
    """`start` runs in one process and ends (as after a crash); `status` from a new one still knows the drill."""
    import json

    cli = _session_cli(cluster, cluster_state)

    started = cli("start", "gpu-missing-toleration")
    assert started.returncode == 0, started.stderr
    assert "export KUBECONFIG=" in started.stdout
    try:
        info = json.loads(cli("status", "--json").stdout)
        assert info["scenario"] == "gpu-missing-toleration" and info["elapsed_s"] >= 0
        assert info["kubeconfig"].endswith("candidate.kubeconfig")
        assert "gpu-missing-toleration" in cli("status").stdout
    finally:
        reset = cli("reset")
    assert reset.returncode == 0 and "baseline restored" in reset.stdout, reset.stderr
    assert cli("status").stdout.strip() == "no scenario running"


def test_a_fresh_seed_is_told_only_by_finish(platform, cluster, cluster_state):
    """`start` without --seed draws a hidden variant: the briefing and `status` do not name it, `finish` does,
    and `grade-transcript` on the session's transcript regrades that same variant."""
    import json
    import sys

    from mlops_drill.injector import engine
    from mlops_drill.scenarios.variants import draw

    cli = _session_cli(cluster, cluster_state)

    started = cli("start", "wrong-model-version")
    assert started.returncode == 0, started.stderr
    session = engine.load_session(platform)
    try:
        assert session is not None and session.seed is not None
        assert session.values == draw(CATALOGUE["wrong-model-version"], session.seed)
        told = started.stdout + started.stderr + cli("status", "--json").stdout
        assert str(session.seed) not in told and "archived_version" not in told and "{{" not in told
        engine.run_as_candidate(platform, engine.session_scenario(session).reference_solution)  # checks pass at once
        finished = cli("finish", "--format", "json")
        assert finished.returncode == 0, finished.stderr
        graded = json.loads(finished.stdout)
        assert graded["seed"] == session.seed and graded["values"] == session.values and graded["score"] >= 90
        replay = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "grade-transcript", session.transcript,
                                 "--scenario", "wrong-model-version", "--format", "json"],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "MLOPS_DRILL_STATE": str(cluster_state)})
        assert replay.returncode == 0, replay.stderr
        again = json.loads(replay.stdout)
        assert (again["seed"], again["values"], again["score"]) == (graded["seed"], graded["values"], graded["score"])
    finally:
        assert cli("reset").returncode == 0
