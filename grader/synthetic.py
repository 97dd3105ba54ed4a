"""Transcripts built from command lines: reference answers, test variants, benchmarks.

Why here and not in the tests: the grader's claim "the reference solution grades
>= 90" is checked by tests, the bench and the catalogue's own tooling, and all of
them must build the transcript the same way (one typed line every ``spacing_s``
seconds, then the engine's verification event).
"""
from __future__ import annotations

from typing import Iterable

from mlops_drill.grader.transcript import Event, chain

DEFAULT_START = 1_700_000_000.0


def transcript_from_lines(lines: Iterable[str], *, start: float = DEFAULT_START,
                          spacing_s: float = 20.0,
                          checks: dict[str, bool] | None = None,
                          scenario_id: str = "synthetic") -> list[Event]:
    """A chained transcript: session start, one ``shell`` event per line, optional verification."""
    events: list[dict] = [{"ts": start, "kind": "session",
                           "data": {"action": "shell-start", "scenario": scenario_id,
                                    "started_at": start}}]
    t = start
    for line in lines:
        t += spacing_s
        events.append({"ts": t, "kind": "shell", "line": " ".join(line.split()), "exit_code": 0,
                       "duration_s": 1.0})
    if checks is not None:
        events.append({"ts": t + spacing_s, "kind": "verification",
                       "data": {"results": dict(checks)}})
    return chain(events)


def passing_checks(n: int) -> dict[str, bool]:
    """Results of a fix verification where all ``n`` checks hold."""
    return {f"check-{i}": True for i in range(n)}
