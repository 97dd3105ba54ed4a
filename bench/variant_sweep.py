"""Seeded variants on a throwaway embedded cluster: per scenario and seed, the draw, the symptom and reset
times, and the grade of the reference solution typed as the candidate (must be >= 90, fix checks passing).

Prints per scenario how many distinct variants the seeds drew (of how many it has), and the number of
distinct incidents the whole catalogue yields. Exits 1 when any seed fails.

    python bench/variant_sweep.py [--seeds 50] [--first-seed 0] [--scenarios ID ...]
                                  [--record FILE.jsonl] [--report-only [--any-commit]]

Default scenarios: every one that declares parameters. Issue 19's done-when asks for 50 seeds; each seed
is a full drill (start, reference solution, finish, reset), 10-30 s on 2 cores, so the full sweep takes
hours. `--record` appends one JSON line per run (with the commit it ran on) and skips the (scenario,
seed) pairs the file already holds for the same commit, so an interrupted sweep goes on where it stopped
(a start that failed is tried again);
`--report-only` prints the tables from the record without starting a cluster.

`bench/results/variant-sweep-2026-12-05.jsonl` is the record of issue 19's sweep (12 scenarios x 50
seeds); `--record` on it with `--report-only --any-commit` prints its table. Two sweeps at once on one
machine share the loopback ports the reference solutions forward to (18081 in data-drift and
concept-drift, 8081 in training-data-version-moved): their drills then reach each other's registry.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path


def _commit() -> str:
    """The tree the runs measured: a record from another commit is not this code's result.

    An uncommitted change is named by a hash of the diff and of the untracked files, so two different
    edits on one commit never share a label (and a resume never mixes their runs).
    """
    import hashlib

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        diff = git("diff", "HEAD")
        untracked = git("ls-files", "--others", "--exclude-standard").split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not diff and not untracked:
        return head
    digest = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        digest.update(name.encode() + b"\0")
        try:
            digest.update((root / name).read_bytes())
        except OSError:
            pass
    return f"{head}+dirty-{digest.hexdigest()[:8]}"


def _read_record(path: Path, commit: str | None) -> list[dict]:
    """The earlier runs of ``commit`` (None: of any commit); a malformed line is named and skipped, never
    dropped from the file."""
    if not path.exists():
        return []
    runs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            run = json.loads(line)
        except json.JSONDecodeError as exc:
            print(f"{path}:{number}: not a JSON line ({exc.msg}); skipped", file=sys.stderr)
            continue
        if commit is None or run.get("commit") == commit:
            runs.append(run)
    return runs


def _print_run(run: dict) -> None:
    shown = ", ".join(f"{k}={v}" for k, v in run["values"].items()) or "-"
    if run.get("error"):
        print(f"{run['scenario']:<30} {run['seed']!s:>6} start failed: {run['error']}", flush=True)
        return
    flag = ""
    if not run["ok"]:
        unfixed = run["unfixed"]
        flag = f"  FAIL{' (fix checks: ' + ', '.join(unfixed) + ')' if unfixed else ''}"
    print(f"{run['scenario']:<30} {run['seed']!s:>6} {run['symptom_s']:10.2f} {run['reset_s']:8.2f} "
          f"{run['grade']:6.1f}  {shown}{flag}", flush=True)


def _summary(ids: list[str], runs: list[dict], catalogue: dict) -> int:
    """The per-scenario table; returns how many runs failed."""
    from mlops_drill.scenarios.variants import variant_count

    def medmax(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f}/{max(xs):.1f}" if xs else "-"

    print()
    print(f"{'scenario':<30} {'runs':>5} {'drawn':>9} {'symptom s (med/max)':>20} {'reset s (med/max)':>18} "
          f"{'min grade':>9} {'failed':>6}  commit")
    failed = 0
    for sid in ids:
        mine = [r for r in runs if r["scenario"] == sid]
        done = [r for r in mine if not r.get("error")]
        drawn = {json.dumps(r["values"], sort_keys=True) for r in done}
        bad = sum(1 for r in mine if r.get("error") or not r["ok"])
        failed += bad
        grades = [r["grade"] for r in done]
        print(f"{sid:<30} {len(mine):>5} {f'{len(drawn)}/{variant_count(catalogue[sid])}':>9} "
              f"{medmax([r['symptom_s'] for r in done]):>20} {medmax([r['reset_s'] for r in done]):>18} "
              f"{min(grades) if grades else float('nan'):9.1f} {bad:>6}  "
              f"{','.join(sorted({r.get('commit', '?') for r in mine})) or '-'}")
    total = sum(variant_count(sc) for sc in catalogue.values())
    print(f"\ncatalogue: {len(catalogue)} scenarios, {sum(1 for s in catalogue.values() if s.parameters)} "
          f"parameterised, {total} distinct incidents")
    print(f"{'all seeds passed' if not failed else f'{failed} run(s) failed'}")
    return failed


def _one_run(ctx, sid: str, seed: int | None) -> dict:
    from mlops_drill.errors import DrillError
    from mlops_drill.injector import engine

    try:
        report = engine.start(ctx, sid, seed=seed)
    except DrillError as exc:  # report and go on: one broken variant must not hide the others
        engine.reset(ctx)
        return {"scenario": sid, "seed": seed, "values": {}, "error": str(exc).splitlines()[0], "ok": False}
    variant = engine.session_scenario(report.session)
    values = variant.variant.values if variant.variant else {}
    engine.run_as_candidate(ctx, variant.reference_solution)
    graded = engine.finish(ctx)
    # As `mlops-drill verify` and the self-test run them: each check within its own window (a rolling null
    # rate falls over seconds after the fix; a look right after the last command can come too early).
    unfixed = [r.id for r in engine.verify(ctx, record=False, wait=True) if not r.passed]
    reset_s = engine.reset(ctx)
    return {"scenario": sid, "seed": seed, "values": values, "symptom_s": round(report.seconds["symptom"], 2),
            "reset_s": round(reset_s, 2), "grade": graded.score, "unfixed": unfixed,
            "ok": graded.score >= 90 and not unfixed}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=50, help="seeds per parameterised scenario")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="*", default=None,
                        help="ids (default: every scenario with parameters; a plain one runs once)")
    parser.add_argument("--record", type=Path, default=None,
                        help="JSON-lines file: append each run, skip the runs it holds for this commit")
    parser.add_argument("--report-only", action="store_true", help="print the tables from --record and stop")
    parser.add_argument("--any-commit", action="store_true",
                        help="with --report-only: the record's runs of every commit, the last run of each "
                             "(scenario, seed) counting (a rerun supersedes); the table names the commits")
    args = parser.parse_args()

    from mlops_drill.scenarios.loader import load_catalogue

    catalogue = load_catalogue()
    unknown = sorted(set(args.scenarios or ()) - set(catalogue))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.report_only and args.record is None:
        print("--report-only needs --record FILE", file=sys.stderr)
        return 2
    ids = args.scenarios or sorted(sid for sid, sc in catalogue.items() if sc.parameters)
    commit = _commit()
    if args.any_commit and not args.report_only:
        print("--any-commit only reports: runs go on for the commit checked out", file=sys.stderr)
        return 2
    earlier = _read_record(args.record, None if args.any_commit else commit) if args.record else []
    if args.any_commit:  # the record is append-only: the last run of a (scenario, seed) is the one that counts
        earlier = list({(r["scenario"], r["seed"]): r for r in earlier}.values())
    wanted = {sid: list(range(args.first_seed, args.first_seed + args.seeds)) if catalogue[sid].parameters
              else [None] for sid in ids}
    # A start that failed is tried again on a resume (it may have been the machine, not the variant).
    earlier = [r for r in earlier if not r.get("error")] if not args.report_only else earlier
    done = {(r["scenario"], r["seed"]) for r in earlier}
    runs = [r for r in earlier if r["scenario"] in wanted and r["seed"] in wanted[r["scenario"]]]
    print(f"commit {commit}; {len(runs)} run(s) already recorded")
    header = f"{'scenario':<30} {'seed':>6} {'symptom s':>10} {'reset s':>8} {'grade':>6}  variant"
    print(header)
    for run in runs:
        _print_run(run)
    todo = [(sid, seed) for sid in ids for seed in wanted[sid] if (sid, seed) not in done]
    if todo and not args.report_only:
        from scratch import scratch_cluster

        from mlops_drill.injector import baseline
        from mlops_drill.injector.context import context_for

        with scratch_cluster("bench-variants") as backend:
            ctx = context_for(backend)
            print(f"baseline deployed in {baseline.deploy(ctx, timeout=120):.1f} s; {len(todo)} run(s) to go")
            for sid, seed in todo:
                run = _one_run(ctx, sid, seed)
                run["commit"] = commit
                runs.append(run)
                _print_run(run)
                if args.record:
                    with args.record.open("a") as record:
                        record.write(json.dumps(run, sort_keys=True) + "\n")
    elif todo:
        print(f"{len(todo)} run(s) not recorded yet")
    failed = _summary(ids, runs, catalogue)
    return 1 if failed or (args.report_only and todo) else 0


if __name__ == "__main__":
    sys.exit(main())
