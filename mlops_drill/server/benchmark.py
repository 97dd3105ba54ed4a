"""Run an agent across scenarios through the API and tabulate the graded results.

Why every figure comes from the graded transcript JSON: it is what the API
returns for agents and what ``mlops-drill finish --format json`` writes for
people, so :func:`rows_table` tabulates either, and an agent's row means what a
person's row means (same rubric, same dimensions, "fixed" = the end-state
dimension at 100, i.e. every fix check passed and the symptom was re-checked).
"""
from __future__ import annotations

import importlib
import io
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

from mlops_drill.errors import DrillError
from mlops_drill.server.client import ApiError, Client, Session

TOOLS = frozenset({"kubectl", "curl", "nvidia-smi"})
Agent = Callable[[Session], None]


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
               elapsed_s=float((graded.get("times") or {}).get("elapsed") or 0.0), wall_s=round(wall_s, 1))


def run_benchmark(client: Client, agent: Agent, scenarios: Iterable[str], *, agent_name: str = "",
                  reset: bool = True, log: Callable[[str], None] = lambda _m: None) -> list[Row]:
    """start -> agent(session) -> finish (-> reset) per scenario; one failing scenario never stops the rest."""
    name = agent_name or getattr(agent, "__module__", "agent").rsplit(".", 1)[-1]
    rows: list[Row] = []
    for scenario in scenarios:
        started = time.monotonic()
        try:
            session = client.start(scenario)
        except ApiError as exc:
            rows.append(Row(scenario, name, None, error=f"start: {exc}"))
            log(f"{scenario}: could not start ({exc})")
            continue
        error = None
        try:
            agent(session)
        except Exception as exc:  # noqa: BLE001 - the agent's bug is part of its result, not ours
            error = f"agent raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(traceback.format_exc())
        try:
            graded = session.finish(reset=reset)
        except ApiError as exc:
            rows.append(Row(scenario, name, None, error=f"finish: {exc}"))
            log(f"{scenario}: could not grade ({exc})")
            continue
        row = row_from_graded(graded, name, time.monotonic() - started)
        row.error = error
        rows.append(row)
        log(f"{scenario}: {name} scored {row.score:g} in {row.wall_s:.0f}s" + (f" ({error})" if error else ""))
    return rows


# --------------------------------------------------------------------------- the table

def _mmss(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def _columns(rows: list[Row]) -> list[str]:
    """The rubric's dimensions in the grader's order (first row that has them)."""
    for row in rows:
        if row.dimensions:
            return list(row.dimensions)
    return []


def _cells(rows: list[Row], with_agent: bool) -> tuple[list[str], list[list[str]]]:
    dims = _columns(rows)
    header = (["agent"] if with_agent else []) + ["scenario", "score", *dims, "fixed", "commands", "elapsed",
                                                  "wall"]
    body = []
    for r in rows:
        lead = [r.agent] if with_agent else []
        if r.score is None:
            body.append(lead + [r.scenario, "-", *["-"] * len(dims), "-", "-", "-", _mmss(r.wall_s)])
            continue
        body.append(lead + [r.scenario, f"{r.score:g}", *[f"{r.dimensions.get(d, 0):g}" for d in dims],
                            "yes" if r.fixed else "no", str(r.commands), _mmss(r.elapsed_s), _mmss(r.wall_s)])
    for agent in sorted({r.agent for r in rows}):
        mine = [r for r in rows if r.agent == agent and r.score is not None]
        if not mine:
            continue
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        lead = [agent] if with_agent else []
        body.append(lead + [f"mean of {len(mine)}", f"{mean([r.score for r in mine]):.1f}",
                            *[f"{mean([r.dimensions.get(d, 0) for r in mine]):.1f}" for d in dims],
                            f"{sum(r.fixed for r in mine)}/{len(mine)}",
                            f"{mean([r.commands for r in mine]):.0f}", _mmss(mean([r.elapsed_s for r in mine])),
                            _mmss(sum(r.wall_s for r in mine))])
    return header, body


def rows_table(rows: list[Row], fmt: str = "rich") -> str:
    """The benchmark table: rich (terminal), md, or json (the rows themselves)."""
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1) + "\n"
    with_agent = len({r.agent for r in rows}) > 1
    header, body = _cells(rows, with_agent)
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---:" if h not in ("agent", "scenario") else "---" for h in header) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines) + "\n"
    if fmt != "rich":
        raise DrillError(f"--format {fmt!r}: expected one of rich, md, json")
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Graded runs (same rubric as for people)")
    for h in header:
        table.add_column(h, justify="left" if h in ("agent", "scenario") else "right")
    for cells in body:
        table.add_row(*cells, end_section=cells[1 if with_agent else 0].startswith("mean"))
    buf = io.StringIO()
    Console(file=buf, width=200, highlight=False, color_system=None).print(table)
    return buf.getvalue()


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
