"""The baseline and the random agent across the catalogue, through the agent API, as one table.

One throwaway embedded cluster, one in-process API; per scenario and agent:
start (fault + symptom), the agent, finish (fix checks + grade), reset. The
issue's acceptance is read off this table: the baseline fixes at least half
the catalogue and outscores the random agent on every scenario.

    python bench/agents_table.py [--only ID ...] [--seeds K [--seed BASE]] [--format rich|md|json]

``--seeds K`` runs K variants of each parameterised scenario (BASE, BASE+1, ...
with ``--seed``; fresh ones without) for both agents, the same seeds for both, so
the table's mean and spread compare like with like.
"""
from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None, help="scenario ids (default: every available one)")
    parser.add_argument("--format", default="md", choices=("rich", "md", "json"))
    parser.add_argument("--seeds", type=int, default=1, help="variants per parameterised scenario")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: fresh random ones)")
    args = parser.parse_args()
    from scratch import scratch_cluster

    from mlops_drill.agents import baseline, random_agent
    from mlops_drill.injector import baseline as platform
    from mlops_drill.injector.context import context_for
    from mlops_drill.server import create_app, serving
    from mlops_drill.server.benchmark import resolve_scenarios, rows_table, run_benchmark, stderr_log
    from mlops_drill.server.client import Client

    started = time.monotonic()
    with scratch_cluster("bench-agents") as backend:
        ctx = context_for(backend)
        platform.deploy(ctx, timeout=120)
        app = create_app(lambda: ctx)
        with serving(app) as url, Client(url, token=app.state.api_token) as client:
            ids, skipped = resolve_scenarios(",".join(args.only) if args.only else "all", client.scenarios())
            for sid in skipped:
                stderr_log(f"{sid}: skipped, its fault is not implemented yet")
            from mlops_drill.scenarios.variants import fresh_seed

            # One base for both agents: with fresh seeds each would meet other incidents.
            first = args.seed if args.seed is not None else fresh_seed() % 2**30
            rows = []
            for sid in ids:  # per scenario both agents, so both meet the same cluster history
                for name, agent in (("baseline", baseline.agent), ("random", random_agent.agent)):
                    rows += run_benchmark(client, agent, [sid], agent_name=name, log=stderr_log,
                                          seeds=args.seeds, base_seed=first)
    sys.stdout.write(rows_table(rows, args.format))
    base = _means(rows, "baseline")
    rand = _means(rows, "random")
    beaten = sum(1 for s in base if s in rand and base[s][0] > rand[s][0])
    fixed = sum(1 for s in base if base[s][1])
    print(f"\nbaseline fixed {fixed}/{len(ids)}, outscored random on {beaten}/{len(ids)}; "
          f"{time.monotonic() - started:.0f}s in all")


def _means(rows, agent: str) -> dict[str, tuple[float, bool]]:
    """Per scenario: the agent's mean score over its seeds, and whether it fixed every seed."""
    by: dict[str, list] = {}
    for row in rows:
        if row.agent == agent and row.score is not None:
            by.setdefault(row.scenario, []).append(row)
    return {sid: (sum(r.score for r in rs) / len(rs), all(r.fixed for r in rs)) for sid, rs in by.items()}


if __name__ == "__main__":
    main()
