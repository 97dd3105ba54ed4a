"""Scenario commands on the `mlops-drill` CLI: platform, scenarios, start, status, verify, reset, stop, finish, demo."""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional

import typer

from mlops_drill.errors import DrillError

platform_app = typer.Typer(no_args_is_help=True, help="The ML platform under test.")

BackendOpt = typer.Option("embedded", "--backend", "-b", help="embedded | kind | existing")
NameOpt = typer.Option("mlops-drill", "--name", help="cluster name")
ScenariosOpt = typer.Option(None, "--scenarios", metavar="DIR",
                            help="a folder of scenario YAML beside the built-in catalogue (repeatable)")


def _packs(dirs: Optional[list[str]]) -> None:
    if dirs:
        from mlops_drill.scenarios.packs import add_pack_dirs

        add_pack_dirs(dirs)


def _ctx(backend: str, name: str, up: bool = False):
    from mlops_drill.cluster.backends import get_backend
    from mlops_drill.injector.context import context_for

    b = get_backend(backend, name=name)
    if up:
        from mlops_drill.interrupts import up_cleaned_on_interrupt

        up_cleaned_on_interrupt(b, progress=True)
    elif backend == "embedded" and not b.status().healthy:
        raise DrillError(f"cluster {name} is not running: `mlops-drill cluster up` first")
    return context_for(b)


@platform_app.command("up")
def platform_up(backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Start the cluster if needed and deploy the healthy baseline (registry, features, serving, training)."""
    from mlops_drill.injector import baseline

    ctx = _ctx(backend, name, up=True)
    seconds = baseline.deploy(ctx)
    print(f"platform healthy in {seconds:.1f}s; candidate kubeconfig: {baseline.candidate_kubeconfig_path(ctx)}")


def scenarios(packs: Optional[list[str]] = ScenariosOpt) -> None:
    """List the scenario catalogue (built-in and scenario packs)."""
    from mlops_drill.scenarios.loader import load_catalogue

    _packs(packs)
    for sid, sc in sorted(load_catalogue().items()):
        print(f"{sid:<28} {sc.difficulty:<7} {sc.time_limit_minutes:>3} min  {sc.title}")


SeedOpt = typer.Option(None, "--seed", help="draw this variant of a parameterised scenario (default: a fresh "
                                            "random one, named in the graded report after `finish`)")


def start(scenario_id: str = typer.Argument(..., help="scenario id (see `mlops-drill scenarios`)"),
          backend: str = BackendOpt, name: str = NameOpt, packs: Optional[list[str]] = ScenariosOpt,
          seed: Optional[int] = SeedOpt) -> None:
    """Bring up the baseline, inject the scenario's fault, wait for the symptom, print the briefing."""
    from mlops_drill.injector import engine

    _packs(packs)
    ctx = _ctx(backend, name, up=True)
    report = engine.start(ctx, scenario_id, seed=seed)
    print(report.briefing.rstrip())
    print()
    print(f"export KUBECONFIG={report.session.candidate_kubeconfig}")
    print("mlops-drill shell    # a recorded shell as the on-call engineer; `mlops-drill finish` to grade")


def status(backend: str = BackendOpt, name: str = NameOpt,
           as_json: bool = typer.Option(False, "--json", help="machine-readable")) -> None:
    """The running scenario: elapsed time, hints used, commands recorded."""
    from mlops_drill.injector import engine

    info = engine.status(_ctx(backend, name))
    if as_json:
        print(json.dumps(info, indent=1))
    elif info["scenario"] is None:
        print("no scenario running")
    else:
        print(f"{info['scenario']}: {info['title']}\n  elapsed {info['elapsed_s'] // 60}m{info['elapsed_s'] % 60:02d}s "
              f"of {info['time_limit_s'] // 60}m, hints {info['hints_used']}/{info['hints_total']}, "
              f"{info['commands']} commands recorded\n  transcript {info['transcript']}")


def verify(backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Run the scenario's fix checks now (recorded in the transcript)."""
    from mlops_drill.injector import engine

    results = engine.verify(_ctx(backend, name))
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.id}: {r.detail}")
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def reset(backend: str = BackendOpt, name: str = NameOpt) -> None:
    """Revert the fault and restore the healthy baseline (the cluster keeps running)."""
    from mlops_drill.injector import engine

    print(f"baseline restored in {engine.reset(_ctx(backend, name)):.1f}s")


def stop(backend: str = BackendOpt, name: str = NameOpt) -> None:
    """End the scenario and restore the baseline."""
    from mlops_drill.injector import engine

    engine.stop(_ctx(backend, name))
    print("scenario stopped; baseline restored")


def finish(backend: str = BackendOpt, name: str = NameOpt,
           fmt: str = typer.Option("rich", "--format", "-f", help="rich | md | html | json"),
           out: Optional[str] = typer.Option(None, "--out", "-o")) -> None:
    """Verify the fix and grade the session's transcript."""
    from mlops_drill.injector import engine

    _emit(engine.finish(_ctx(backend, name)), fmt, out)


def _emit(graded: Any, fmt: str, out: Optional[str]) -> None:
    from mlops_drill.grader.render import print_terminal, render

    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(render(graded, "md" if fmt == "rich" else fmt))
        print(f"score {graded.score:g}/100 written to {out}", file=sys.stderr)
    elif fmt == "rich":
        from rich.console import Console

        print_terminal(graded, Console(highlight=False))
    else:
        sys.stdout.write(render(graded, fmt))


def demo(scenario_id: str = typer.Argument("gpu-missing-toleration"), backend: str = BackendOpt,
         name: str = NameOpt, fmt: str = typer.Option("rich", "--format", "-f"),
         keep: bool = typer.Option(False, "--keep", help="leave the scenario running afterwards"),
         packs: Optional[list[str]] = ScenariosOpt, seed: Optional[int] = SeedOpt) -> None:
    """End to end: cluster, baseline, fault, the reference solution typed as a candidate, verify, grade."""
    from mlops_drill.injector import engine

    _packs(packs)
    started = time.monotonic()
    ctx = _ctx(backend, name, up=True)
    report = engine.start(ctx, scenario_id, seed=seed)
    print(f"== {scenario_id}: fault injected, symptom observable after {report.seconds['symptom']:.1f}s")
    print(report.briefing.rstrip())
    print("== typing the reference solution as the candidate (recorded)")
    sc = engine.session_scenario(report.session)  # the drawn variant's reference solution
    result = engine.run_as_candidate(ctx, sc.reference_solution)
    if result.returncode not in (0,):
        print(result.stderr[-2000:], file=sys.stderr)
    graded = engine.finish(ctx)
    _emit(graded, fmt, None)
    if not keep:
        engine.reset(ctx)
    print(f"== done in {time.monotonic() - started:.1f}s: score {graded.score:g}/100")


def register(app: typer.Typer, context: Any = None) -> None:
    app.add_typer(platform_app, name="platform")
    for fn in (scenarios, start, status, verify, reset, stop, finish, demo):
        app.command(fn.__name__)(fn)
