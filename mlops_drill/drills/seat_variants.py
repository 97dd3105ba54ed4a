"""One variant per seat of a group drill, every one of them replayable from the drill's seed.

Why derive the seats' seeds instead of drawing fresh ones: the instructor keeps a
single number (the drill's seed) and can rebuild every seat's incident from it,
and a second drill with the same seed hands the same seat the same incident.

Why seats skip variants an earlier seat already holds: neighbours who compare
notes should find different incidents. Two seats of wrong-model-version (two
variants) drawing independently would share one half the time; here they never
do, and a room larger than the scenario's variant space goes round again, so
every variant is held by about as many seats as any other.

The derivation (documented in docs/architecture.md, "Group drills"): seat ``n``'s
seed is the first ``k = 0, 1, ...`` of::

    int(sha256(f"{drill_seed}:seat:{n}:{k}").hexdigest()[:16], 16) % SEED_SPACE

whose variant (``variants.draw``) no earlier seat of the current round holds. A
round ends when every variant of the scenario is held; then the next seat starts
a new one. After ``MAX_TRIES`` candidates without a free variant (a variant space
far larger than the room makes that practically impossible) ``k = 0`` is taken.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from mlops_drill.scenarios.schema import Scenario
from mlops_drill.scenarios.variants import SEED_SPACE, draw, variant_count

MAX_TRIES = 10_000


def candidate_seed(drill_seed: int, seat: int, k: int) -> int:
    """The ``k``-th candidate seed of seat ``seat`` (1-based) for a drill seeded with ``drill_seed``."""
    digest = hashlib.sha256(f"{drill_seed}:seat:{seat}:{k}".encode()).hexdigest()
    return int(digest[:16], 16) % SEED_SPACE


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def seat_seeds(sc: Scenario, drill_seed: int, seats: int) -> list[int]:
    """The seed of seats 1..``seats``: deterministic from the scenario's parameters, the drill seed and the
    seat number, and spread over distinct variants while the scenario has enough of them."""
    if not sc.parameters:
        raise ValueError(f"scenario {sc.id} declares no parameters: its seats have no variant to differ by")
    space = variant_count(sc)
    held: set[str] = set()
    out: list[int] = []
    for n in range(1, seats + 1):
        if len(held) >= space:
            held.clear()  # every variant is held: a new round
        chosen = None
        for k in range(MAX_TRIES):
            seed = candidate_seed(drill_seed, n, k)
            key = _key(draw(sc, seed))
            if key not in held:
                chosen = (seed, key)
                break
        if chosen is None:
            seed = candidate_seed(drill_seed, n, 0)
            chosen = (seed, _key(draw(sc, seed)))
        held.add(chosen[1])
        out.append(chosen[0])
    return out
