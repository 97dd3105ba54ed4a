"""How fast the GPU drills break, and whether their reference solutions fix them.

For each scenario: start it on a throwaway embedded cluster (baseline + fault), the
seconds until the engine saw the symptom, the reference solution typed as the
candidate (seconds, score, fix checks), and the seconds `reset` took.

    python bench/gpu_fault_symptoms.py [scenario ...]
"""
from __future__ import annotations

import argparse
import time

GPU_SCENARIOS = ("gpu-insufficient-capacity", "gpu-device-plugin-crash", "gpu-driver-cuda-mismatch",
                 "cpu-fallback")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenarios", nargs="*", default=list(GPU_SCENARIOS))
    args = parser.parse_args()
    from scratch import scratch_cluster

    from mlops_drill.injector import baseline, engine
    from mlops_drill.injector.context import context_for
    from mlops_drill.scenarios.loader import load_catalogue

    catalogue = load_catalogue()
    with scratch_cluster("gpu-bench") as backend:
        ctx = context_for(backend)
        baseline.deploy(ctx, timeout=120)
        print(f"{'scenario':<28} {'symptom s':>9} {'fix s':>6} {'score':>5} {'checks':>7} {'reset s':>7}")
        for sid in args.scenarios:
            report = engine.start(ctx, sid)
            t0 = time.monotonic()
            engine.run_as_candidate(ctx, engine.session_scenario(report.session).reference_solution)
            graded = engine.finish(ctx)
            fix_s = time.monotonic() - t0
            results = engine.verify(ctx, record=False, wait=False)
            passed = sum(r.passed for r in results)
            reset_s = engine.reset(ctx)
            print(f"{sid:<28} {report.seconds['symptom']:>9.1f} {fix_s:>6.1f} {graded.score:>5.0f} "
                  f"{passed:>3}/{len(results):<3} {reset_s:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
