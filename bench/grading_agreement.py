"""Print how well the grader agrees with expert rankings, beside an outcome-only grader.

For every ranked set of the calibration corpus (tests/data/calibration by default):
Kendall's tau-b between our scores and the expert order, the same for a grader that
only asks "fixed or not" (100/0, as AIOpsLab-style graders and practice platforms
score), and the spread between the best and the worst transcript. Overall: the mean
tau over scenarios, and tau over all transcripts pooled (same expert order within a
scenario, compared across scenarios only by rank position).

The default corpora are the tuned one (tests/data/calibration) and the held-out one
(tests/data/calibration-heldout: written after the tuning, never tuned on).

Usage: .venv/bin/python bench/grading_agreement.py [CORPUS_DIR ...] [--scores]
"""
from __future__ import annotations

import sys
from pathlib import Path

from mlops_drill.grader.agreement import (grade_set, kendall_tau_b, load_ranked_sets,
                                          outcome_only_score)
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.variants import first_variant

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
DEFAULT = [DATA / "calibration", DATA / "calibration-heldout"]


def main(argv: list[str]) -> int:
    show = "--scores" in argv
    roots = [Path(a) for a in argv if not a.startswith("--")] or DEFAULT
    for root in roots:
        print(f"\n{root}")
        if report(root, show):
            return 1
    return 0


def report(root: Path, show: bool) -> int:
    sets = load_ranked_sets(root)
    if not sets:
        print(f"no ranked sets under {root}")
        return 1
    print(f"{'scenario':28} {'n':>2} {'tau ours':>9} {'tau outcome-only':>17} {'best':>6} "
          f"{'worst':>6} {'spread':>7}")
    ours_all: list[float] = []
    outcome_all: list[float] = []
    for ranked in sets:
        sc = first_variant(load_scenario(catalogue_dir() / f"{ranked.scenario}.yaml"))
        graded = grade_set(ranked, sc)
        ours = [g.score for g in graded]
        outcome = [outcome_only_score(g) for g in graded]
        t_ours, t_out = kendall_tau_b(ours), kendall_tau_b(outcome)
        ours_all.append(t_ours)
        outcome_all.append(t_out)
        print(f"{ranked.scenario:28} {len(ours):>2} {t_ours:>9.3f} {t_out:>17.3f} "
              f"{ours[0]:>6.1f} {ours[-1]:>6.1f} {max(ours) - min(ours):>7.1f}")
        if show:
            for name, g in zip(ranked.files, graded):
                print(f"    {name:22} {g.score:6.1f}  {g.outcome:16} "
                      + " ".join(f"{d.name}={d.score:g}" for d in g.dimensions if d.weight)
                      + "  " + " ".join(f"-{d.points:g}({d.id})" for d in g.deductions))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{'mean over scenarios':28} {'':>2} {mean(ours_all):>9.3f} {mean(outcome_all):>17.3f}")
    print(f"{'worst scenario':28} {'':>2} {min(ours_all):>9.3f} {min(outcome_all):>17.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
