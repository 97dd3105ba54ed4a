"""Catalogue scenarios on the kind backend, and the product on kind reached as an ``existing`` cluster.

The same self-test as tests/test_scenarios.py (start -> symptom, nothing of the answer
in the candidate's view -> the reference solution typed as the candidate fixes it, grade
>= 90 -> reset to a healthy baseline), on real kubelets: pods are containers of the
platform image, GPU faults act through the gRPC device plugin and each node's inventory
file. Then one scenario again through ``--backend existing`` pointed at the kind kubeconfig.
"""
from __future__ import annotations

import os

import pytest
from answer_markers import assert_reference_solution_fixes, candidate_view, markers_in
from kind_fixtures import candidate_kubectl
from variant_seeds import far_variant_seed

from mlops_drill.scenarios.loader import load_catalogue

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1200)]  # the first test also waits for the platform on kind
CATALOGUE = load_catalogue()
#: The scenarios CI runs on kind: the catalogue's fourteen of issue 17. The seven after them passed on kind too
#: (docs/kind.md) and are left out to keep CI under an hour; MLOPS_DRILL_KIND_SCENARIOS=all (or a comma list)
#: runs them.
#: Each costs 30-120 s on two cores, besides the platform's first start (about 5 min).
PASSING_ON_KIND = ("bad-canary", "cold-start-regression", "cpu-fallback", "data-drift", "gpu-device-plugin-crash",
                   "gpu-driver-cuda-mismatch", "gpu-insufficient-capacity", "gpu-missing-toleration",
                   "schema-drift", "secret-in-env", "skewed-transform", "stale-feature-cache",
                   "training-no-checkpoint", "wrong-model-version")
KIND_SCENARIOS = os.environ.get("MLOPS_DRILL_KIND_SCENARIOS", ",".join(PASSING_ON_KIND))


def _selected() -> list[str]:
    if KIND_SCENARIOS == "all":
        return sorted(CATALOGUE)
    return [s for s in KIND_SCENARIOS.split(",") if s in CATALOGUE]


def self_test(ctx, candidate, scenario_id: str) -> None:
    from mlops_drill.injector import baseline, engine
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)

    sc = CATALOGUE[scenario_id]
    engine.start(ctx, scenario_id, seed=far_variant_seed(sc))  # raises when the symptom is not observable in time
    try:
        found = markers_in(candidate_view(candidate))
        assert not found, f"with {scenario_id} live the candidate can read {found}"
        before = engine.verify(ctx, record=False, wait=False)
        assert not all(r.passed for r in before), f"fix checks pass before any fix: {before}"
        assert_reference_solution_fixes(ctx, sc)
    finally:
        engine.reset(ctx)
    assert baseline.unhealthy(ctx) == []


@pytest.mark.parametrize("scenario_id", _selected())
def test_scenario_self_test_on_kind(kind_platform, kind_session, scenario_id):
    self_test(kind_platform, candidate_kubectl(kind_platform, kind_session.kubectl_path), scenario_id)


def test_a_scenario_through_the_existing_backend_on_the_kind_cluster(kind_platform, kind_session, tmp_path,
                                                                     monkeypatch):
    """`--backend existing --kubeconfig <kind's>`: the product on a cluster it did not make."""
    from mlops_drill.cluster.backends.existing import ExistingBackend
    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import DrillContext

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("PATH", f"{kind_session.kubectl_path.parent}{os.pathsep}{os.environ['PATH']}")
    backend = ExistingBackend(name="kind-as-existing", kubeconfig=str(kind_session.kubeconfig))
    info = backend.up(progress=False)
    assert info.api_server == kind_session.backend.info().api_server
    ctx = DrillContext(backend, kind_session.kubectl_path)
    baseline.deploy(ctx, timeout=300)  # the images are already on the nodes (loaded by the kind backend)
    self_test(ctx, candidate_kubectl(ctx, kind_session.kubectl_path), "bad-canary")
