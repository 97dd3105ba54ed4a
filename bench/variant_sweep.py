"""Seeded variants on a throwaway embedded cluster: per scenario and seed, the draw, the symptom and reset
times, and the grade of the reference solution typed as the candidate (must be >= 90, fix checks passing).

Prints per scenario how many distinct variants the seeds drew (of how many it has), and the number of
distinct incidents the whole catalogue yields. Exits 1 when any seed fails.

    python bench/variant_sweep.py [--seeds 50] [--first-seed 0] [--scenarios ID ...]

Default scenarios: every one that declares parameters. Issue 19's done-when asks for 50 seeds; each seed
is a full drill (start, reference solution, finish, reset), about half a minute on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=50, help="seeds per parameterised scenario")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="*", default=None,
                        help="ids (default: every scenario with parameters; a plain one runs once)")
    args = parser.parse_args()
    from scratch import scratch_cluster

    from mlops_drill.errors import DrillError
    from mlops_drill.injector import baseline, engine
    from mlops_drill.injector.context import context_for
    from mlops_drill.scenarios.loader import load_catalogue
    from mlops_drill.scenarios.variants import variant_count

    catalogue = load_catalogue()
    unknown = sorted(set(args.scenarios or ()) - set(catalogue))
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    ids = args.scenarios or sorted(sid for sid, sc in catalogue.items() if sc.parameters)
    total = sum(variant_count(sc) for sc in catalogue.values())
    failed = 0
    summary = []
    with scratch_cluster("bench-variants") as backend:
        ctx = context_for(backend)
        print(f"baseline deployed in {baseline.deploy(ctx, timeout=120):.1f} s")
        print(f"{'scenario':<26} {'seed':>6} {'symptom s':>10} {'reset s':>8} {'grade':>6}  variant")
        for sid in ids:
            sc = catalogue[sid]
            seeds = range(args.first_seed, args.first_seed + args.seeds) if sc.parameters else [None]
            drawn, symptoms, resets, grades = set(), [], [], []
            for seed in seeds:
                try:
                    report = engine.start(ctx, sid, seed=seed)
                except DrillError as exc:  # report and go on: one broken variant must not hide the others
                    failed += 1
                    print(f"{sid:<26} {seed!s:>6} start failed: {str(exc).splitlines()[0]}", flush=True)
                    engine.reset(ctx)
                    continue
                variant = engine.session_scenario(report.session)
                values = variant.variant.values if variant.variant else {}
                drawn.add(json.dumps(values, sort_keys=True))
                engine.run_as_candidate(ctx, variant.reference_solution)
                graded = engine.finish(ctx)
                unfixed = [r.id for r in engine.verify(ctx, record=False, wait=False) if not r.passed]
                reset_s = engine.reset(ctx)
                ok = graded.score >= 90 and not unfixed
                failed += not ok
                symptoms.append(report.seconds["symptom"])
                resets.append(reset_s)
                grades.append(graded.score)
                shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "-"
                flag = "" if ok else f"  FAIL{' (fix checks: ' + ', '.join(unfixed) + ')' if unfixed else ''}"
                print(f"{sid:<26} {seed!s:>6} {report.seconds['symptom']:10.2f} {reset_s:8.2f} "
                      f"{graded.score:6.1f}  {shown}{flag}", flush=True)
            summary.append((sid, len(drawn), variant_count(sc), symptoms, resets, grades))
    print()
    print(f"{'scenario':<26} {'drawn':>11} {'symptom s (med/max)':>20} {'reset s (med/max)':>18} {'min grade':>9}")
    for sid, n_drawn, n_all, symptoms, resets, grades in summary:
        def medmax(xs: list[float]) -> str:
            return f"{statistics.median(xs):.1f}/{max(xs):.1f}" if xs else "-"

        print(f"{sid:<26} {f'{n_drawn}/{n_all}':>11} {medmax(symptoms):>20} {medmax(resets):>18} "
              f"{min(grades) if grades else float('nan'):9.1f}")
    print(f"\ncatalogue: {len(catalogue)} scenarios, {sum(1 for s in catalogue.values() if s.parameters)} "
          f"parameterised, {total} distinct incidents")
    print(f"{'all seeds passed' if not failed else f'{failed} run(s) failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
