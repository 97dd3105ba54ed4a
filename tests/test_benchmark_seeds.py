"""`mlops-drill benchmark --seeds K`: which seeds run, the spread statistics, the table, bad input.

No cluster here: the seed plan, the statistics and the table are pure functions of
the graded rows, and a bad ``--seeds`` is refused before any cluster is touched (the
runs themselves are tested on the session cluster in tests/test_agent_api.py).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlops_drill.errors import DrillError
from mlops_drill.server.benchmark import Row, check_seeds, plan_seeds, rows_table, spreads

DIMS = {"coverage": 80.0, "order": 70.0, "efficiency": 60.0, "end_state": 100.0, "diagnosis": 50.0, "time": 90.0}


def _row(scenario: str, score: float | None, seed: int | None = None, values: dict | None = None,
         agent: str = "baseline", fixed: bool = True) -> Row:
    return Row(scenario, agent, score, dict(DIMS) if score is not None else {}, fixed, 12, 65.0, 80.0,
               None if score is not None else "start: HTTP 503: could not start", seed, values)


def test_a_base_seed_gives_consecutive_seeds_for_a_parameterised_scenario() -> None:
    assert plan_seeds(3, 40, variants=2) == [40, 41, 42]
    assert plan_seeds(1, 40, variants=36) == [40]


def test_a_scenario_without_parameters_runs_once_whatever_k() -> None:
    assert plan_seeds(5, None, variants=1) == [None]
    assert plan_seeds(5, 40, variants=1) == [None]


def test_one_run_without_a_base_lets_the_server_draw_as_before() -> None:
    assert plan_seeds(1, None, variants=2) == [None]


def test_fresh_seeds_are_distinct_even_when_the_source_repeats() -> None:
    source = iter([7, 7, 9, 7, 3])
    assert plan_seeds(3, None, variants=2, fresh=lambda: next(source)) == [7, 9, 3]


@pytest.mark.parametrize("runs, base, message", [
    (0, None, "--seeds 0: expected a whole number >= 1"),
    (-3, None, "--seeds -3: expected a whole number >= 1"),
    (2, -1, "--seed -1: expected a whole number >= 0"),
    (3, 2**63 - 2, "--seed 9223372036854775806: with --seeds 3 the last seed would pass"),
])
def test_bad_seed_options_are_one_line_errors(runs: int, base: int | None, message: str) -> None:
    with pytest.raises(DrillError) as err:
        check_seeds(runs, base)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "error: --seeds 0: expected a whole number >= 1 (variants per parameterised scenario)"),
    (["--seeds", "-2"], "error: --seeds -2: expected a whole number >= 1 (variants per parameterised scenario)"),
    (["--seeds", "2", "--seed", "-5"], "error: --seed -5: expected a whole number >= 0"),
])
def test_the_cli_refuses_bad_seeds_in_one_line_before_any_cluster(argv: list[str], message: str,
                                                                  tmp_path) -> None:
    env = {"MLOPS_DRILL_STATE": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "benchmark", "--agent",
                           "mlops_drill.agents.baseline:agent", *argv], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == message, done.stderr
    assert not (tmp_path / "state").exists(), "a cluster was looked for before the options were checked"


def test_spread_is_the_population_deviation_min_max_and_distinct_variants() -> None:
    rows = [_row("wrong-model-version", 90, 7, {"archived_version": "1"}),
            _row("wrong-model-version", 80, 8, {"archived_version": "2"}),
            _row("wrong-model-version", 70, 9, {"archived_version": "2"})]
    (group,) = spreads(rows)
    assert group.mean == pytest.approx(80.0)
    assert group.sd == pytest.approx((200 / 3) ** 0.5)   # population: divide by 3, not 2
    assert (min(group.scores), max(group.scores)) == (70, 90)
    assert group.variants == 2, "seeds 8 and 9 drew the same incident"


def test_a_failed_run_is_kept_but_not_averaged() -> None:
    rows = [_row("stale-feature-cache", 60, 1, {"bad_table": "a", "age_minutes": 720}),
            _row("stale-feature-cache", None, 2)]
    summary = spreads(rows)[0].as_dict()
    assert (summary["graded"], summary["mean"], summary["sd"]) == (1, 60.0, 0.0)
    assert [r["seed"] for r in summary["runs"]] == [1, 2] and summary["runs"][1]["score"] is None
    md = rows_table(rows, "md", spread=True)
    assert "| stale-feature-cache | 1/2 graded | 1 | 60.0 | 0.0 | 60-60 | 1/1 |" in md, md


def test_one_run_per_scenario_keeps_the_table_from_before_seeds() -> None:
    rows = [_row("bad-canary", 95), _row("wrong-model-version", 85, 7, {"archived_version": "1"})]
    md = rows_table(rows, "md")
    assert md.splitlines()[0] == ("| scenario | score | coverage | order | efficiency | end_state | diagnosis | "
                                  "time | fixed | commands | elapsed | wall |")
    assert "seed" not in md and "variants" not in md
    assert isinstance(json.loads(rows_table(rows, "json")), list), "json stays the list of runs"
    rich = rows_table(rows, "rich")
    assert "Graded runs" in rich and "seed" not in rich


def test_spread_table_shows_every_seed_and_says_which_scenario_ran_once() -> None:
    rows = [_row("wrong-model-version", 90, 7, {"archived_version": "1"}),
            _row("wrong-model-version", 80, 8, {"archived_version": "2"}),
            _row("bad-canary", 95)]
    md = rows_table(rows, "md", spread=True)
    runs, summary = md.split("\n\n")
    assert runs.splitlines()[0].startswith("| scenario | seed | score |")
    assert "| wrong-model-version | 7 | 90 |" in runs and "| wrong-model-version | 8 | 80 |" in runs
    assert "| bad-canary | - | 95 |" in runs
    assert "| wrong-model-version | 2 | 2 | 85.0 | 5.0 | 80-90 | 2/2 |" in summary, summary
    assert "| bad-canary | 1 | 1 (no parameters, run once) | 95.0 | 0.0 | 95-95 | 1/1 |" in summary, summary
    # The mean spread leaves out the scenario that ran once (its 0 is no spread).
    assert "| mean of 2 scenarios | 3 | 3 | 90.0 | 5.0 |" in summary, summary
    rich = rows_table(rows, "rich", spread=True)
    assert "Per scenario" in rich and "1 (no parameters, run once)" in rich and "80-90" in rich


def test_spread_json_lists_each_runs_seed_and_score() -> None:
    rows = [_row("wrong-model-version", 90, 7, {"archived_version": "1"}),
            _row("wrong-model-version", 80, 8, {"archived_version": "2"}),
            _row("wrong-model-version", 60, 5, {"archived_version": "1"}, agent="random")]
    out = json.loads(rows_table(rows, "json", spread=True))
    assert [r["seed"] for r in out["runs"]] == [7, 8, 5]
    base, rand = out["scenarios"]
    assert (base["agent"], base["scenario"], base["parameterised"]) == ("baseline", "wrong-model-version", True)
    assert [(r["seed"], r["score"]) for r in base["runs"]] == [(7, 90), (8, 80)]
    assert (base["mean"], base["sd"], base["min"], base["max"], base["variants"]) == (85.0, 5.0, 80, 90, 2)
    assert (rand["agent"], rand["graded"], rand["sd"]) == ("random", 1, 0.0)


def test_an_unknown_format_is_a_one_line_error() -> None:
    with pytest.raises(DrillError, match=r"^--format 'csv': expected one of rich, md, json$"):
        rows_table([_row("bad-canary", 95)], "csv")
