"""Per scenario: start time, fault-to-symptom time and reset time on a warm embedded (or kind) cluster.

Targets (embedded): reset < 2 s, symptom < 3 s. One cluster and one baseline for all scenarios, as in a drill.
With --backend kind the cluster is a kind cluster (real kubelets, built and cached by the kind backend).

    python bench/scenario_cycle.py [--only ID ...] [--backend kind]
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--backend", choices=("embedded", "kind"), default="embedded")
    args = parser.parse_args()
    from scratch import scratch_cluster, scratch_kind_cluster

    import mlops_drill.injector.faults  # noqa: F401
    from mlops_drill.injector import baseline, engine
    from mlops_drill.injector.context import context_for
    from mlops_drill.injector.fault import REGISTRY
    from mlops_drill.scenarios.loader import load_catalogue

    catalogue = load_catalogue()
    ids = args.only or sorted(catalogue)
    scratch = scratch_kind_cluster if args.backend == "kind" else scratch_cluster
    with scratch("bench-scenarios") as backend:
        ctx = context_for(backend)
        deployed = baseline.deploy(ctx, timeout=600 if args.backend == "kind" else 120)
        print(f"baseline deployed in {deployed:.1f} s ({args.backend})")
        print(f"{'scenario':<28} {'start s':>8} {'inject s':>9} {'symptom s':>10} {'reset s':>8}")
        for sid in ids:
            missing = [f.name for f in catalogue[sid].faults if f.name not in REGISTRY]
            if missing:
                print(f"{sid:<28} {'(fault not implemented: ' + ', '.join(missing) + ')'}")
                continue
            started = time.monotonic()
            try:
                report = engine.start(ctx, sid)
            except Exception as exc:  # report and go on: one broken scenario must not hide the others
                print(f"{sid:<28} start failed: {str(exc).splitlines()[0]}")
                engine.reset(ctx)
                continue
            start_s = time.monotonic() - started
            reset_s = engine.reset(ctx)
            print(f"{sid:<28} {start_s:8.2f} {report.seconds['inject']:9.2f} "
                  f"{report.seconds['symptom']:10.2f} {reset_s:8.2f}")


if __name__ == "__main__":
    main()
