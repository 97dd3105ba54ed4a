"""The baseline and the random agent across the catalogue, through the agent API, as one table.

One throwaway embedded cluster, one in-process API; per scenario and agent:
start (fault + symptom), the agent, finish (fix checks + grade), reset. The
issue's acceptance is read off this table: the baseline fixes at least half
the catalogue and outscores the random agent on every scenario.

    python bench/agents_table.py [--only ID ...] [--format rich|md|json]
"""
from __future__ import annotations

import argparse
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=None, help="scenario ids (default: every available one)")
    parser.add_argument("--format", default="md", choices=("rich", "md", "json"))
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
            rows = []
            for sid in ids:  # per scenario both agents, so both meet the same cluster history
                rows += run_benchmark(client, baseline.agent, [sid], agent_name="baseline", log=stderr_log)
                rows += run_benchmark(client, random_agent.agent, [sid], agent_name="random", log=stderr_log)
    sys.stdout.write(rows_table(rows, args.format))
    base = {r.scenario: r for r in rows if r.agent == "baseline" and r.score is not None}
    rand = {r.scenario: r for r in rows if r.agent == "random" and r.score is not None}
    beaten = sum(1 for s in base if s in rand and base[s].score > rand[s].score)
    fixed = sum(r.fixed for r in base.values())
    print(f"\nbaseline fixed {fixed}/{len(ids)}, outscored random on {beaten}/{len(ids)}; "
          f"{time.monotonic() - started:.0f}s in all")


if __name__ == "__main__":
    main()
