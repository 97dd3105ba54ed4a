"""Run an agent across scenarios through the API and tabulate the graded results.

Why every figure comes from the graded transcript JSON: it is what the API
returns for agents and what ``mlops-drill finish --format json`` writes for
people, so :func:`rows_table` tabulates either, and an agent's row means what a
person's row means (same rubric, same dimensions, "fixed" = the end-state
dimension at 100, i.e. every fix check passed and the symptom was re-checked).

Why ``--seeds K`` runs a scenario without parameters once only: K runs of one
fixed incident measure the agent's own randomness, not whether it generalises;
the table says so instead of averaging repeats. A parameterised scenario gets K
distinct seeds (``--seed BASE``: BASE, BASE+1, ...; else fresh random ones), and
the table reports the mean, the population standard deviation, min-max and how
many distinct variants the seeds drew (two seeds may draw the same incident).
"""
from __future__ import annotations

import importlib
import secrets
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from mlops_drill.errors import DrillError
from mlops_drill.server.benchmark_table import rows_table, spreads  # noqa: F401  (the table, as before)
from mlops_drill.server.client import ApiError, Client, Session

__all__ = ["Row", "load_agent", "resolve_scenarios", "check_seeds", "plan_seeds", "run_benchmark", "rows_table",
           "spreads", "stderr_log"]

TOOLS = frozenset({"kubectl", "curl", "nvidia-smi"})
Agent = Callable[[Session], None]
MAX_SEED = 2**63 - 1            # what the API's start accepts
FRESH_SEED_SPACE = 2**31        # where fresh seeds come from (as `mlops-drill start` draws them)


@dataclass
class Row:
    scenario: str
    agent: str
    score: float | None
    dimensions: dict[str, float] = field(default_factory=dict)
    fixed: bool = False
    commands: int = 0
    elapsed_s: float = 0.0       # the session clock the grade uses (first to last action)
    wall_s: float = 0.0          # start (fault + symptom) to graded, as the benchmark waited
    error: str | None = None
    seed: int | None = None      # the variant's seed (None: the scenario has no parameters)
    values: dict[str, Any] | None = None  # what the seed drew, from the graded report


def load_agent(spec: str) -> Agent:
    """``package.module:callable`` -> the callable (a one-line DrillError when it is not one)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise DrillError(f"--agent {spec!r}: expected MODULE:CALLABLE, e.g. mlops_drill.agents.baseline:agent")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DrillError(f"--agent {spec!r}: cannot import {module_name} ({exc})") from None
    agent = getattr(module, attr, None)
    if not callable(agent):
        raise DrillError(f"--agent {spec!r}: {module_name} has no callable {attr}")
    return agent


def resolve_scenarios(spec: str, catalogue: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(ids to run, ids skipped because a fault is not implemented yet) for ``all`` or ``id,id``."""
    available = {s["id"]: s.get("available", True) for s in catalogue}
    if spec.strip() == "all":
        wanted = sorted(available)
    else:
        wanted = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in available]
        if unknown or not wanted:
            raise DrillError(f"--scenarios {spec!r}: unknown scenario {unknown[0] if unknown else '(none)'} "
                             f"(known: {', '.join(sorted(available))})")
    return [s for s in wanted if available[s]], [s for s in wanted if not available[s]]


def row_from_graded(graded: dict[str, Any], agent: str, wall_s: float) -> Row:
    dims = {d["name"]: d["score"] for d in graded.get("dimensions", [])}
    commands = sum(1 for c in graded.get("commands", []) if c.get("tool") in TOOLS)
    return Row(scenario=graded["scenario"], agent=agent, score=graded["score"], dimensions=dims,
               fixed=graded.get("outcome") == "resolved", commands=commands,
               elapsed_s=float((graded.get("times") or {}).get("elapsed") or 0.0), wall_s=round(wall_s, 1),
               seed=graded.get("seed"), values=graded.get("values"))


def check_seeds(runs: int, base: int | None) -> None:
    """``--seeds`` and ``--seed`` as the API can take them, else a one-line DrillError naming the option."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise DrillError(f"--seeds {runs}: expected a whole number >= 1 (variants per parameterised scenario)")
    if base is not None:
        if isinstance(base, bool) or not isinstance(base, int) or base < 0:
            raise DrillError(f"--seed {base}: expected a whole number >= 0")
        if base + runs - 1 > MAX_SEED:
            raise DrillError(f"--seed {base}: with --seeds {runs} the last seed would pass {MAX_SEED}")


def plan_seeds(runs: int, base: int | None, variants: int,
               fresh: Callable[[], int] = lambda: secrets.randbelow(FRESH_SEED_SPACE)) -> list[int | None]:
    """The seeds to start one scenario with: ``variants`` is how many incidents it can yield (1 without
    parameters, which runs once with no seed). None lets the server draw a fresh seed, as a plain start
    does: that keeps one run without ``--seed`` exactly what it was before ``--seeds``."""
    check_seeds(runs, base)
    if variants <= 1:
        return [None]
    if base is not None:
        return [base + i for i in range(runs)]
    if runs == 1:
        return [None]
    chosen: list[int] = []
    while len(chosen) < runs:  # distinct: K runs of one seed would report a spread of nothing
        seed = fresh()
        if seed not in chosen:
            chosen.append(seed)
    return chosen


def _one_run(client: Client, agent: Agent, name: str, scenario: str, seed: int | None, reset: bool,
             log: Callable[[str], None]) -> Row:
    started = time.monotonic()
    label = scenario if seed is None else f"{scenario} (seed {seed})"
    try:
        session = client.start(scenario, seed=seed)
    except ApiError as exc:
        log(f"{label}: could not start ({exc})")
        return Row(scenario, name, None, error=f"start: {exc}", seed=seed)
    error = None
    try:
        agent(session)
    except Exception as exc:  # noqa: BLE001 - the agent's bug is part of its result, not ours
        error = f"agent raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log(traceback.format_exc())
    try:
        graded = session.finish(reset=reset)
    except ApiError as exc:
        log(f"{label}: could not grade ({exc})")
        return Row(scenario, name, None, error=f"finish: {exc}", seed=seed)
    row = row_from_graded(graded, name, time.monotonic() - started)
    row.error = error
    drawn = f" (seed {row.seed})" if row.seed is not None else ""
    log(f"{scenario}{drawn}: {name} scored {row.score:g} in {row.wall_s:.0f}s" + (f" ({error})" if error else ""))
    return row


def run_benchmark(client: Client, agent: Agent, scenarios: Iterable[str], *, agent_name: str = "",
                  reset: bool = True, log: Callable[[str], None] = lambda _m: None, seeds: int = 1,
                  base_seed: int | None = None) -> list[Row]:
    """start -> agent(session) -> finish (-> reset) per scenario and seed; one failing run never stops the rest.

    ``seeds``: variants per parameterised scenario (see :func:`plan_seeds`); ``base_seed``: the first seed.
    """
    check_seeds(seeds, base_seed)
    name = agent_name or getattr(agent, "__module__", "agent").rsplit(".", 1)[-1]
    space: dict[str, int] = {}
    if seeds > 1 or base_seed is not None:  # only then does it matter which scenarios have parameters
        space = {s["id"]: int(s.get("variants", 1)) for s in client.scenarios()}
    rows: list[Row] = []
    for scenario in scenarios:
        planned = plan_seeds(seeds, base_seed, space.get(scenario, 2)) if space else [None]
        if seeds > 1 and len(planned) == 1:
            log(f"{scenario}: no parameters, one incident: run once ({seeds} runs of it would measure nothing new)")
        for seed in planned:
            rows.append(_one_run(client, agent, name, scenario, seed, reset, log))
    return rows


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
