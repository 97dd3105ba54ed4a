"""Every scenario a seat of a shared cluster can run, run on such a seat, with a second seat beside it.

The module starts its own shared cluster (as `mlops-drill serve` does for a group
drill) with two seats behind their gateway endpoints. Each scenario's self-test
runs on seat 1 exactly as tests/test_scenarios.py runs it on a cluster of its
own: start -> symptom, nothing of the answer in the candidate's view -> the
reference solution typed through the recording shims with the seat's candidate
kubeconfig -> fix checks pass, grade >= 90 -> reset. Seat 2 stays at its
baseline the whole time: a fault, a fix or a reset on one seat must not reach
another seat's platform.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from answer_markers import assert_reference_solution_fixes, candidate_view, markers_in
from variant_seeds import far_variant_seed

from mlops_drill.scenarios.loader import load_catalogue

pytestmark = pytest.mark.cluster
CATALOGUE = load_catalogue()


def _seat_ready(scenario_id: str) -> bool:
    import mlops_drill.injector.faults  # noqa: F401  (registers every fault)
    from mlops_drill.injector.fault import seat_blockers

    return not seat_blockers(CATALOGUE[scenario_id].faults)


@pytest.fixture(scope="module")
def seats(tmp_path_factory):
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend
    from mlops_drill.cluster.seats.backend import SeatBackend, new_route
    from mlops_drill.cluster.seats.gateway import Gateway
    from mlops_drill.cluster.seats.names import seat_prefix
    from mlops_drill.injector import baseline
    from mlops_drill.injector.context import context_for

    root = tmp_path_factory.mktemp("seats")
    old = os.environ.get("MLOPS_DRILL_STATE")
    os.environ["MLOPS_DRILL_STATE"] = str(root / "state")
    shared = EmbeddedBackend(name="seat-test")
    gateway = None
    try:
        shared.up(progress=False)
        gateway = Gateway.for_kubeconfig(shared.kubeconfig())
        contexts = []
        for n in (1, 2):
            route = new_route(seat_prefix("t0t0t0", n))
            seat = SeatBackend(shared, route, gateway.add(route), root / f"seat-{n}")
            seat.up()
            contexts.append(context_for(seat))
        for ctx in contexts:
            baseline.deploy(ctx, timeout=180)
        yield contexts
    finally:
        if gateway is not None:
            gateway.close()
        shared.down()
        if old is None:
            os.environ.pop("MLOPS_DRILL_STATE", None)
        else:
            os.environ["MLOPS_DRILL_STATE"] = old


def _candidate_view(ctx) -> str:
    """What the seat's candidate kubeconfig lists: the same sweep as tests/test_scenarios.py."""
    from mlops_drill.injector import baseline

    env = {**os.environ, "KUBECONFIG": str(baseline.candidate_kubeconfig_path(ctx))}

    def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(ctx.kubectl_path), *args], capture_output=True, text=True, env=env,
                                timeout=60)
        assert result.returncode == 0 or not check, result.stderr
        return result

    return candidate_view(kubectl)


@pytest.mark.parametrize("scenario_id", sorted(s for s in CATALOGUE if _seat_ready(s)))
def test_scenario_self_test_on_a_seat(seats, scenario_id):
    from mlops_drill.injector import baseline, engine

    ctx, neighbour = seats
    sc = CATALOGUE[scenario_id]
    engine.start(ctx, scenario_id, seed=far_variant_seed(sc))
    try:
        view = _candidate_view(ctx)
        found = markers_in(view)
        assert not found, f"with {scenario_id} live the seat's candidate can read {found}"
        assert "t0t0t0" not in view, "the candidate's view names the seats of the shared cluster"
        assert_reference_solution_fixes(ctx, sc)
    finally:
        engine.reset(ctx)
    assert baseline.unhealthy(ctx) == []
    assert baseline.unhealthy(neighbour) == [], f"{scenario_id} on seat 1 disturbed seat 2"


def test_gpu_inventory_faults_are_the_ones_a_seat_cannot_run():
    """The drill server refuses these scenarios for shared seats (see test_drills.py); keep the list honest.

    Two edit the GPU inventory the shared node agent owns; gpu-allocated-idle's reference solution
    reads each node's dcgm-exporter by node name, which a seat's gateway renames; two compound ones
    place a warning Event about a node, which a seat (namespaces of its own only) cannot show;
    training-sweep-unpruned writes its study into the node folder of the cluster's own process nodes.
    """
    assert sorted(s for s in CATALOGUE if not _seat_ready(s)) == ["gpu-allocated-idle",
                                                                  "gpu-device-plugin-crash",
                                                                  "gpu-driver-cuda-mismatch",
                                                                  "gpu-toleration-noisy-node",
                                                                  "training-spot-noisy",
                                                                  "training-sweep-unpruned"]


def test_seat_hostpath_folders_are_per_seat(seats):
    """fraud-train's checkpoint folder (a hostPath) is the seat's own on the shared node agent."""
    from mlops_drill.cluster.seats.names import seat_prefix

    ctx, _ = seats
    host = Path(ctx.backend.process_state) / "volumes" / "_host"
    assert (host / seat_prefix("t0t0t0", 1)).is_dir() and (host / seat_prefix("t0t0t0", 2)).is_dir()
