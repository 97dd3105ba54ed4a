"""Every catalogue scenario's self-test on the embedded cluster.

start (baseline + fault) -> the symptom is observable, and nothing the candidate's
kubeconfig lists names the fault or the answer -> the reference solution, typed
through the recording shims with the candidate's kubeconfig, fixes it -> the fix checks
pass and the recorded transcript grades >= 90 -> reset restores the healthy baseline.
"""
from __future__ import annotations

import subprocess

import pytest
from answer_markers import assert_reference_solution_fixes, candidate_view, markers_in

from mlops_drill.scenarios.loader import load_catalogue

pytestmark = pytest.mark.cluster
CATALOGUE = load_catalogue()


@pytest.mark.parametrize("scenario_id", sorted(CATALOGUE))
def test_scenario_self_test(platform, candidate, scenario_id):
    from mlops_drill.injector import baseline, engine
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector.fault import REGISTRY

    sc = CATALOGUE[scenario_id]
    assert not [f.name for f in sc.faults if f.name not in REGISTRY], "every catalogue fault is implemented"
    engine.start(platform, scenario_id)  # raises when the symptom is not observable in time
    try:
        found = markers_in(candidate_view(candidate))
        assert not found, f"with {scenario_id} live the candidate can read {found}"
        before = engine.verify(platform, record=False, wait=False)
        assert not all(r.passed for r in before), f"fix checks pass before any fix: {before}"
        assert_reference_solution_fixes(platform, sc)
    finally:
        engine.reset(platform)
    assert baseline.unhealthy(platform) == []


def test_status_survives_the_engine_that_started_the_scenario(platform, cluster):
    """`start` runs in one process and ends (as after a crash); `status` from a new one still knows the drill."""
    import json
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlops_drill.cli", *args, "--name", cluster.backend.name],
                              capture_output=True, text=True, timeout=300)

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
