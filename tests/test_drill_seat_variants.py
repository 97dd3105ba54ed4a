"""Group drills with ``seed_per_seat``: how seats' seeds derive from the drill's, and who may see them.

No cluster here: the derivation is a pure function, a drill is a file the store
writes, and the seat and instructor endpoints answer from that file (a seat that
was never provisioned has no transcript and no cluster to reach). The drill on real
seats is tests/test_drills.py::test_each_seat_gets_its_own_variant_when_asked.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from mlops_drill.drills.app import create_app
from mlops_drill.drills.dashboard import drill_page, seat_cells
from mlops_drill.drills.model import Drill, DrillStore
from mlops_drill.drills.progress import dashboard, debrief, drill_scenario
from mlops_drill.drills.seat_variants import candidate_seed, seat_seeds
from mlops_drill.injector.engine import scenario
from mlops_drill.scenarios.variants import SEED_SPACE, draw, variant_count

TOKEN = "instructor-unit-token"


def test_a_seat_seed_is_the_documented_hash_of_drill_seed_seat_and_try() -> None:
    """What docs/architecture.md tells an instructor who rebuilds a seat's seed by hand."""
    by_hand = int(hashlib.sha256(b"42:seat:3:0").hexdigest()[:16], 16) % SEED_SPACE
    assert candidate_seed(42, 3, 0) == by_hand
    assert candidate_seed(42, 3, 1) != by_hand


def test_seat_seeds_are_deterministic_and_differ_by_drill_seed() -> None:
    sc = scenario("stale-feature-cache")
    assert seat_seeds(sc, 42, 6) == seat_seeds(sc, 42, 6)
    assert seat_seeds(sc, 42, 6) != seat_seeds(sc, 43, 6)
    assert seat_seeds(sc, 42, 3) == seat_seeds(sc, 42, 6)[:3], "adding seats must not change the first ones"


def test_seats_hold_distinct_variants_and_a_larger_room_goes_round_again() -> None:
    sc = scenario("wrong-model-version")
    assert variant_count(sc) == 2
    for drill_seed in range(20):
        drawn = [draw(sc, s)["archived_version"] for s in seat_seeds(sc, drill_seed, 5)]
        assert drawn[0] != drawn[1] and drawn[2] != drawn[3], (drill_seed, drawn)
        assert sorted(drawn[:4]) == ["1", "1", "2", "2"], (drill_seed, drawn)
    big = scenario("stale-feature-cache")
    values = [json.dumps(draw(big, s), sort_keys=True) for s in seat_seeds(big, 7, 12)]
    assert len(set(values)) == 12


def test_a_scenario_without_parameters_has_no_seat_seeds() -> None:
    with pytest.raises(ValueError, match="declares no parameters"):
        seat_seeds(scenario("bad-canary"), 1, 2)


@pytest.fixture()
def per_seat(tmp_path):
    """A two-seat wrong-model-version drill with seed_per_seat, as create_drill stores it, seats 'provisioned'."""
    sc = scenario("wrong-model-version")
    store = DrillStore(tmp_path / "drills")
    seeds = seat_seeds(sc, 1234, 2)
    drill = store.create(sc.id, 2, 20, "namespaces", 1234, seeds)
    for seat in drill.seats:  # what seats.provision records from the engine's session
        seat.state, seat.values = "ready", draw(sc, seat.seed)
    store.save(drill)
    return store, drill


def test_each_seat_is_stored_with_its_seed_and_graded_as_its_own_variant(per_seat) -> None:
    store, drill = per_seat
    again = DrillStore(store.root).drills[drill.id]  # what a restarted server reads back
    assert again.seed_per_seat and [s.seed for s in again.seats] == [s.seed for s in drill.seats]
    one, two = again.seats
    assert one.values != two.values
    for seat in again.seats:
        sc = drill_scenario(again, seat)
        assert sc.variant.seed == seat.seed and sc.variant.values == seat.values
        assert sc.faults[0].params["version"] == seat.values["archived_version"]
        assert sc.time_limit_minutes == 20


def test_old_drills_without_seat_seeds_give_every_seat_the_drills_seed(tmp_path) -> None:
    raw = {"id": "abc123", "scenario": "wrong-model-version", "time_limit_minutes": 20, "created_at": 0.0,
           "isolation": "namespaces", "seed": 5,
           "seats": [{"n": 1, "cluster": "s", "code": "AAAA-BBBB", "token": "t"}]}
    drill = Drill.model_validate(raw)
    assert not drill.seed_per_seat and drill.seat_seed(drill.seats[0]) == 5
    assert drill_scenario(drill, drill.seats[0]).variant.values == draw(scenario("wrong-model-version"), 5)


def test_the_instructor_sees_each_seats_seed_and_values(per_seat) -> None:
    store, drill = per_seat
    board = dashboard(store, drill)
    assert board["seed"] == 1234 and board["seed_per_seat"] is True
    assert [(r["seed"], r["values"]) for r in board["seats"]] == [(s.seed, s.values) for s in drill.seats]
    cell = seat_cells(board["seats"][0])["variant"]
    assert cell == f"seed {drill.seats[0].seed}: archived_version={drill.seats[0].values['archived_version']}"
    page = drill_page(board, debrief(store, drill))
    assert cell in page and "each seat its own variant" in page
    assert [s["id"] for s in debrief(store, drill)["steps"]] == \
        [s.id for p in scenario("wrong-model-version").expected.phases for s in p.steps]


def test_the_candidate_never_sees_a_seed_or_value_and_the_instructor_api_does(per_seat) -> None:
    store, drill = per_seat
    app = create_app(store.root, instructor_token=TOKEN)
    with TestClient(app) as http:
        board = http.get(f"/api/drills/{drill.id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert [r["seed"] for r in board["seats"]] == [s.seed for s in drill.seats]
        for seat in drill.seats:
            joined = http.post("/api/join", json={"code": seat.code})
            briefing = http.get("/api/seat/briefing", headers={"Authorization": f"Bearer {seat.token}"})
            assert briefing.status_code == 200
            told = joined.text + briefing.text
            assert str(seat.seed) not in told and "1234" not in told
            assert "archived_version" not in told and "seed" not in told.lower()
            assert briefing.json()["briefing"] == drill_scenario(drill, seat).briefing
            denied = http.get(f"/api/drills/{drill.id}", headers={"Authorization": f"Bearer {seat.token}"})
            assert denied.status_code == 403


def test_seed_per_seat_for_a_scenario_without_parameters_is_refused_in_one_line(tmp_path) -> None:
    app = create_app(tmp_path / "drills", instructor_token=TOKEN)
    with TestClient(app) as http:
        answer = http.post("/api/drills", json={"scenario": "bad-canary", "seats": 2, "seed_per_seat": True},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert detail.startswith("seed_per_seat: scenario bad-canary declares no parameters") and "\n" not in detail
    assert not list((tmp_path / "drills").glob("*/drill.json")), "a drill was created anyway"
