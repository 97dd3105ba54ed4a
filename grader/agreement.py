"""How far the grader agrees with experts: Kendall's tau against ranked transcript sets.

Why it lives in the package and not only in the bench: the calibration tests and
``bench/grading_agreement.py`` must read the corpus and compute agreement the
same way, and instructors can run it on their own ranked sets. A corpus folder
holds one folder per scenario with plain command lists and a ``ranking.yaml``
(``scenario``, ``ranking: [{file, reason}, ...]`` best first).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from mlops_drill.errors import DrillError
from mlops_drill.grader.grade import grade
from mlops_drill.grader.importers import load_recording
from mlops_drill.grader.report import GradedTranscript
from mlops_drill.scenarios.schema import Scenario

Scorer = Callable[[GradedTranscript], float]


@dataclass(frozen=True)
class RankedSet:
    """One scenario's transcripts, best first, with the expert's reason for each place."""

    scenario: str
    folder: Path
    files: tuple[str, ...]
    reasons: tuple[str, ...]

    def paths(self) -> list[Path]:
        return [self.folder / name for name in self.files]


def load_ranked_sets(root: Path) -> list[RankedSet]:
    """Every ``<root>/<scenario>/ranking.yaml``, in folder-name order."""
    sets: list[RankedSet] = []
    for ranking in sorted(root.glob("*/ranking.yaml")):
        try:
            data = yaml.safe_load(ranking.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise DrillError(f"{ranking}{line}: not valid YAML") from None
        if not isinstance(data, dict) or not isinstance(data.get("ranking"), list):
            raise DrillError(f"{ranking}: expected a mapping with a 'ranking' list")
        files = tuple(str(r.get("file", "")) for r in data["ranking"])
        missing = [f for f in files if not (ranking.parent / f).is_file()]
        if missing:
            raise DrillError(f"{ranking}: field ranking.file: no such transcript {missing[0]!r}")
        sets.append(RankedSet(scenario=str(data.get("scenario", ranking.parent.name)),
                              folder=ranking.parent, files=files,
                              reasons=tuple(str(r.get("reason", "")) for r in data["ranking"])))
    return sets


def rubric_score(graded: GradedTranscript) -> float:
    return graded.score


def outcome_only_score(graded: GradedTranscript) -> float:
    """Fixed or not, as AIOpsLab-style and practice-platform graders score: 100 or 0."""
    return 100.0 if graded.outcome in ("resolved", "fixed-unchecked") else 0.0


def kendall_tau_b(scores: list[float], expert_best_first: bool = True) -> float:
    """Tau-b between the scores and the expert's order (index 0 is the expert's best).

    Ties in the scores count as neither agreement nor disagreement (tau-b), so a
    grader that gives everything the same score has tau 0, not 1.
    """
    n = len(scores)
    concordant = discordant = tied = 0
    for i in range(n):
        for j in range(i + 1, n):
            diff = scores[i] - scores[j]  # expert says i is better than j
            if diff == 0:
                tied += 1
            elif (diff > 0) == expert_best_first:
                concordant += 1
            else:
                discordant += 1
    pairs = n * (n - 1) // 2
    if pairs == 0 or pairs == tied:
        return 0.0
    return (concordant - discordant) / ((pairs * (pairs - tied)) ** 0.5)


def grade_set(ranked: RankedSet, scenario: Scenario) -> list[GradedTranscript]:
    return [grade(load_recording(p), scenario) for p in ranked.paths()]
