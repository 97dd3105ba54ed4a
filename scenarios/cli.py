"""`mlops-drill scenario new | validate | selftest | faults`: writing scenarios outside the package.

Each problem is one line naming the file, line, field and what is wrong, so an
instructor can fix a pack without reading our code or running our test suite.
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from mlops_drill.errors import DrillError

scenario_app = typer.Typer(no_args_is_help=True, help="Write, check and self-test scenario files (scenario packs).")

ScenariosOpt = typer.Option(None, "--scenarios", help="a folder of scenario YAML to add (repeatable)")


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                raise DrillError(f"{path}: no *.yaml scenario files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DrillError(f"{path}: no such file or folder")
    return files


@scenario_app.command("new")
def new(scenario_id: str = typer.Argument(..., help="id of the new scenario (also its file name)"),
        source: str = typer.Option(..., "--from", help="an existing scenario id or file to start from"),
        folder: Path = typer.Option(Path("."), "--dir", "-d", help="where to write <id>.yaml"),
        scenarios: Optional[List[Path]] = ScenariosOpt) -> None:
    """Write <dir>/<id>.yaml: a copy of --from with a comment on every key; it validates as written."""
    from mlops_drill.scenarios.packs import add_pack_dirs, find_scenario
    from mlops_drill.scenarios.starter import write_starter

    add_pack_dirs(scenarios or [])
    origin = Path(source) if source.endswith((".yaml", ".yml")) else find_scenario(source)
    if not origin.is_file():
        raise DrillError(f"--from {source}: no such scenario file")
    target = write_starter(origin, scenario_id, folder)
    print(f"wrote {target} (from {origin.stem}); next: mlops-drill scenario validate {target}")


@scenario_app.command("validate")
def validate(paths: List[Path] = typer.Argument(..., help="scenario files or folders of them"),
             scenarios: Optional[List[Path]] = ScenariosOpt) -> None:
    """Check files against the schema, their faults' params, and id clashes; one line per problem."""
    from mlops_drill.scenarios.packs import add_pack_dirs

    add_pack_dirs(scenarios or [])
    failed = 0
    for file in _files(paths):
        try:
            print(f"{file}: ok ({_check(file)})")
        except DrillError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
    if failed:
        raise typer.Exit(1)


def _check(file: Path) -> str:
    """Everything that can be known without a cluster; a summary when it holds."""
    from pydantic import ValidationError

    import mlops_drill.injector.faults  # noqa: F401  (registers every fault, plugins included)
    from mlops_drill.injector.fault import REGISTRY
    from mlops_drill.scenarios.compound import fault_origin
    from mlops_drill.scenarios.loader import _read_data, load_scenario_file, located
    from mlops_drill.scenarios.packs import scenario_files

    from mlops_drill.scenarios.variants import probe_values, render

    sc = load_scenario_file(file)
    # A template's params hold placeholders: check the faults of the draws that use every value instead.
    for values in probe_values(sc) if sc.parameters else [None]:
        variant = render(sc, values) if values is not None else sc
        drawn = f" (in the variant {', '.join(f'{k}={v!r}' for k, v in values.items())})" if values else ""
        for i, fault in enumerate(variant.faults):
            cls = REGISTRY.get(fault.name)
            where, at = fault_origin(file, i, _read_data)  # a compound's fault may come from its base's file
            if cls is None:  # listed in some package's metadata, yet its class did not register
                raise DrillError(located(where, ("faults", at, "name"), f"fault {fault.name!r} is not importable"))
            try:
                cls.Params.model_validate(fault.params)
            except ValidationError as err:
                first = err.errors(include_url=False)[0]
                problem = first["msg"]
                if first["type"] == "extra_forbidden":
                    key = str(first["loc"][-1])
                    close = difflib.get_close_matches(key, list(cls.Params.model_fields), n=1)
                    problem = f"unknown param {key!r} of fault {fault.name}" + (f"; did you mean {close[0]!r}?"
                                                                               if close else "")
                raise DrillError(located(where, ("faults", at, "params", *first["loc"]), problem + drawn)) from None
    offered = scenario_files().get(sc.id)
    if offered is not None and offered.resolve() != file.resolve():
        raise DrillError(located(file, ("id",), f"{sc.id!r} is already the id of {offered}"))
    from mlops_drill.scenarios.variants import variant_count

    variants = f", {variant_count(sc)} variants" if sc.parameters else ""
    herrings = f" ({len(sc.red_herrings)} red herring(s))" if sc.red_herrings else ""
    return (f"{sc.id}: {len(sc.faults)} fault(s) {', '.join(f.name for f in sc.faults)}{herrings}, "
            f"{len(sc.steps)} steps{variants}")


@scenario_app.command("selftest")
def selftest(paths: List[Path] = typer.Argument(..., help="scenario files or folders of them"),
             backend: str = typer.Option("embedded", "--backend", "-b", help="embedded | kind | existing"),
             name: str = typer.Option("mlops-drill", "--name", help="cluster name"),
             seeds: Optional[List[int]] = typer.Option(None, "--seed", help="variant(s) of a parameterised "
                                                       "scenario to test (repeatable; default: one fresh draw)")) -> None:
    """On the running cluster: start, symptom, reference solution, fix checks, grade >= 90, reset."""
    from mlops_drill.injector.cli import _ctx
    from mlops_drill.injector.selftest import Stage, selftest as run_selftest
    from mlops_drill.scenarios.packs import add_pack_dirs

    files = _files(paths)
    add_pack_dirs(sorted({f.resolve().parent for f in files}), option="selftest")
    ctx = _ctx(backend, name)

    def show(stage: Stage) -> None:
        print(f"  {'ok  ' if stage.ok else 'FAIL'} {stage.name:<19} {stage.seconds:6.1f}s  {stage.detail}", flush=True)

    failed = []
    runs = 0
    for file in files:
        for seed in seeds or [None]:
            print(f"{file}" + (f" --seed {seed}" if seed is not None else ""), flush=True)
            runs += 1
            if not run_selftest(ctx, file, show, seed=seed):
                failed.append(file)
    print(f"{runs - len(failed)}/{runs} " + ("self-test run(s) passed" if seeds else "scenario(s) passed their self-test"))
    if failed:
        raise typer.Exit(1)


@scenario_app.command("faults")
def faults() -> None:
    """Every fault a scenario can name, built-in or from an installed package, with its params."""
    import mlops_drill.injector.faults  # noqa: F401
    from mlops_drill.injector.fault import REGISTRY

    for fname, cls in sorted(REGISTRY.items()):
        origin = "" if cls.__module__.startswith("mlops_drill.") else f"  [{cls.__module__}]"
        params = ", ".join(f"{k}={v.default!r}" if not v.is_required() else k
                           for k, v in cls.Params.model_fields.items())
        print(f"{fname:<26} {params}{origin}")


def register(app: typer.Typer, context: Any = None) -> None:
    app.add_typer(scenario_app, name="scenario")
