"""The benchmark's table: one row per graded run, and with ``--seeds K`` the spread per scenario.

Why the population standard deviation: the K runs are every variant the
benchmark drew, not a sample to estimate a wider spread from, and K is small
(2-5), where the sample formula would inflate the figure by up to 40 %.
Why min-max beside it: with two runs the deviation is half the range, and a
reader comparing agents wants the worst run more than a formula.
"""
from __future__ import annotations

import io
import json
import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlops_drill.errors import DrillError

if TYPE_CHECKING:
    from mlops_drill.server.benchmark import Row

FORMATS = ("rich", "md", "json")


@dataclass
class Spread:
    """Every run of one agent on one scenario."""

    agent: str
    scenario: str
    runs: list["Row"]

    @property
    def graded(self) -> list["Row"]:
        return [r for r in self.runs if r.score is not None]

    @property
    def scores(self) -> list[float]:
        return [float(r.score) for r in self.graded]  # type: ignore[arg-type]

    @property
    def parameterised(self) -> bool:
        return any(r.seed is not None for r in self.runs)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def sd(self) -> float | None:
        """Population standard deviation of the graded runs' scores (0 for one run)."""
        return statistics.pstdev(self.scores) if self.scores else None

    @property
    def variants(self) -> int:
        """Distinct incidents among the graded runs (two seeds may draw the same values)."""
        return len({json.dumps(r.values or {}, sort_keys=True) for r in self.graded})

    @property
    def note(self) -> str:
        if not self.parameterised:
            return "no parameters: one incident, run once"
        return ""

    def as_dict(self) -> dict[str, Any]:
        scores = self.scores
        return {"agent": self.agent, "scenario": self.scenario, "parameterised": self.parameterised,
                "runs": [{"seed": r.seed, "score": r.score, "values": r.values, "fixed": r.fixed,
                          "error": r.error} for r in self.runs],
                "graded": len(scores), "mean": _round(self.mean), "sd": _round(self.sd),
                "min": min(scores) if scores else None, "max": max(scores) if scores else None,
                "variants": self.variants, "note": self.note}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def spreads(rows: list["Row"]) -> list[Spread]:
    """Runs grouped by (agent, scenario), in the order they ran."""
    groups: dict[tuple[str, str], Spread] = {}
    for row in rows:
        groups.setdefault((row.agent, row.scenario), Spread(row.agent, row.scenario, [])).runs.append(row)
    return list(groups.values())


def _mmss(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _columns(rows: list["Row"]) -> list[str]:
    """The rubric's dimensions in the grader's order (first row that has them)."""
    for row in rows:
        if row.dimensions:
            return list(row.dimensions)
    return []


def _run_cells(rows: list["Row"], with_agent: bool, with_seed: bool) -> tuple[list[str], list[list[str]]]:
    """One row per run, then per agent the mean of its runs (the table from before ``--seeds``)."""
    dims = _columns(rows)
    seed_col = ["seed"] if with_seed else []
    header = (["agent"] if with_agent else []) + ["scenario", *seed_col, "score", *dims, "fixed", "commands",
                                                  "elapsed", "wall"]
    body = []
    for r in rows:
        lead = ([r.agent] if with_agent else []) + [r.scenario] + (["-" if r.seed is None else str(r.seed)]
                                                                  if with_seed else [])
        if r.score is None:
            body.append(lead + ["-", *["-"] * len(dims), "-", "-", "-", _mmss(r.wall_s)])
            continue
        body.append(lead + [f"{r.score:g}", *[f"{r.dimensions.get(d, 0):g}" for d in dims],
                            "yes" if r.fixed else "no", str(r.commands), _mmss(r.elapsed_s), _mmss(r.wall_s)])
    for agent in sorted({r.agent for r in rows}):
        mine = [r for r in rows if r.agent == agent and r.score is not None]
        if not mine:
            continue
        lead = ([agent] if with_agent else []) + [f"mean of {len(mine)}"] + ([""] if with_seed else [])
        body.append(lead + [f"{_mean([r.score for r in mine]):.1f}",
                            *[f"{_mean([r.dimensions.get(d, 0) for r in mine]):.1f}" for d in dims],
                            f"{sum(r.fixed for r in mine)}/{len(mine)}",
                            f"{_mean([r.commands for r in mine]):.0f}", _mmss(_mean([r.elapsed_s for r in mine])),
                            _mmss(sum(r.wall_s for r in mine))])
    return header, body


SPREAD_HEADER = ["scenario", "runs", "variants", "mean", "sd", "min-max", "fixed", "commands", "elapsed", "wall"]


def _spread_cells(groups: list[Spread], with_agent: bool) -> tuple[list[str], list[list[str]]]:
    """Per scenario: runs graded, distinct variants, mean score, population sd, min-max, fixed, means."""
    header = (["agent"] if with_agent else []) + SPREAD_HEADER
    body = []
    for g in groups:
        lead = [g.agent] if with_agent else []
        graded, total = len(g.graded), len(g.runs)
        runs = str(total) if graded == total else f"{graded}/{total} graded"
        variants = str(g.variants) if g.parameterised else "1 (no parameters, run once)"
        if not graded:
            body.append(lead + [g.scenario, runs, variants, "-", "-", "-", "-", "-", "-",
                                _mmss(sum(r.wall_s for r in g.runs))])
            continue
        body.append(lead + [g.scenario, runs, variants, f"{g.mean:.1f}", f"{g.sd:.1f}",
                            f"{min(g.scores):g}-{max(g.scores):g}",
                            f"{sum(r.fixed for r in g.graded)}/{graded}",
                            f"{_mean([r.commands for r in g.graded]):.0f}",
                            _mmss(_mean([r.elapsed_s for r in g.graded])), _mmss(sum(r.wall_s for r in g.runs))])
    for agent in sorted({g.agent for g in groups}):
        mine = [g for g in groups if g.agent == agent and g.graded]
        if not mine:
            continue
        lead = [agent] if with_agent else []
        repeated = [g.sd for g in mine if len(g.graded) > 1]  # a single run's 0 is no spread to average in
        body.append(lead + [f"mean of {len(mine)} scenarios", str(sum(len(g.graded) for g in mine)),
                            str(sum(g.variants for g in mine)), f"{_mean([g.mean for g in mine]):.1f}",
                            f"{_mean(repeated):.1f}" if repeated else "-", "", "", "", "",
                            _mmss(sum(r.wall_s for g in mine for r in g.runs))])
    return header, body


def _md(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h in ("agent", "scenario", "variants") else "---:" for h in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def _rich(title: str, header: list[str], body: list[list[str]], lead: int) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, justify="left" if h in ("agent", "scenario", "variants") else "right")
    for cells in body:
        table.add_row(*cells, end_section=cells[lead].startswith("mean"))
    buf = io.StringIO()
    Console(file=buf, width=200, highlight=False, color_system=None).print(table)
    return buf.getvalue()


def rows_table(rows: list["Row"], fmt: str = "rich", spread: bool | None = None) -> str:
    """The benchmark table: rich (terminal), md, or json.

    ``spread`` (default: when some scenario ran more than once; ``benchmark --seeds K`` with K > 1 asks for
    it): the runs with their seeds, then per scenario the mean, spread and distinct variants. Without it the
    table is the one from before ``--seeds``, and json the list of runs.
    """
    if fmt not in FORMATS:
        raise DrillError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    groups = spreads(rows)
    if spread is None:
        spread = any(len(g.runs) > 1 for g in groups)
    if fmt == "json":
        runs = [asdict(r) for r in rows]
        out: Any = {"runs": runs, "scenarios": [g.as_dict() for g in groups]} if spread else runs
        return json.dumps(out, indent=1) + "\n"
    with_agent = len({r.agent for r in rows}) > 1
    header, body = _run_cells(rows, with_agent, with_seed=spread)
    if not spread:
        if fmt == "md":
            return _md(header, body)
        return _rich("Graded runs (same rubric as for people)", header, body, 1 if with_agent else 0)
    s_header, s_body = _spread_cells(groups, with_agent)
    if fmt == "md":
        return _md(header, body) + "\n" + _md(s_header, s_body)
    lead = 1 if with_agent else 0
    return (_rich("Graded runs (same rubric as for people)", header, body, lead)
            + _rich("Per scenario: mean and spread over its variants (sd: population)", s_header, s_body, lead))
