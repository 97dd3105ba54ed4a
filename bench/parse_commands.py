"""How fast the grader's command-line model parses: lines/second over the test corpus.

Why it matters: grading a 10,000-command transcript must take under a second
end to end (issue 8), and parsing every line is the first thing grading does.
The corpus (tests/data/command_corpus.tsv, real-world kubectl/curl/nvidia-smi
lines) is repeated to 10,000 lines so the mix matches what candidates type.

    .venv/bin/python bench/parse_commands.py [--lines 10000] [--repeats 5]

Prints the best of the repeats for each entry point, so noise from other
processes on a shared machine inflates nothing.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from mlops_drill.grader.parse import parse_command, parse_commands

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "command_corpus.tsv"


def _lines(n: int) -> list[str]:
    with CORPUS.open(newline="") as f:
        base = [row["line"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return [base[i % len(base)] for i in range(n)]


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    lines = _lines(args.lines)
    text = "\n".join(lines)
    cases: dict[str, Callable[[], object]] = {
        "parse_command, one call per line": lambda: [parse_command(x) for x in lines],
        "parse_commands, one call per line": lambda: [parse_commands(x) for x in lines],
        "parse_commands, whole text at once": lambda: parse_commands(text),
    }
    print(f"{len(lines)} lines ({len(text)} characters) from {CORPUS.name}, "
          f"best and median of {args.repeats}")
    for label, fn in cases.items():
        runs = _time(fn, args.repeats)
        best, median = min(runs), statistics.median(runs)
        print(f"  {label:38s} {len(lines) / best:>10,.0f} lines/s  "
              f"(best {best * 1000:7.1f} ms, median {median * 1000:7.1f} ms)")


if __name__ == "__main__":
    main()
