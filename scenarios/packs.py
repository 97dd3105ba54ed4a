"""Scenario packs: folders of scenario YAML that sit beside the built-in catalogue.

Instructors keep their own incidents outside the installed package and name the
folders with ``--scenarios DIR`` or ``MLOPS_DRILL_SCENARIOS=DIR[:DIR...]``. The
CLI option is folded into the environment variable, so the processes a drill
starts (a drill server, a recorded shell's ``mlops-drill diagnose``) find the
same scenarios without being told again.

A scenario's id is its file name, and an id must mean one file: two folders
offering the same id is an error naming both, never a silent override.
"""
from __future__ import annotations

import os
from pathlib import Path

from mlops_drill.errors import DrillError
from mlops_drill.scenarios.loader import catalogue_dir

#: ``DIR[:DIR...]`` (``os.pathsep``-separated) of scenario folders added to the built-in catalogue.
SCENARIOS_ENV = "MLOPS_DRILL_SCENARIOS"


def pack_dirs() -> list[Path]:
    """The folders named in ``MLOPS_DRILL_SCENARIOS``, in order; a missing one is an error."""
    dirs = []
    for entry in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise DrillError(f"{SCENARIOS_ENV}: {entry}: scenario folder does not exist")
        dirs.append(folder.resolve())
    return dirs


def add_pack_dirs(dirs: list[str | Path], option: str = "--scenarios") -> None:
    """Put ``dirs`` first in ``MLOPS_DRILL_SCENARIOS`` for this process and the ones it starts."""
    resolved = []
    for entry in dirs:
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise DrillError(f"{option} {entry}: scenario folder does not exist")
        resolved.append(str(folder.resolve()))
    current = [e for e in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep) if e.strip()]
    os.environ[SCENARIOS_ENV] = os.pathsep.join(dict.fromkeys(resolved + current))


def env_value_with(scenario_file: str | Path | None) -> str:
    """``MLOPS_DRILL_SCENARIOS`` for a process that must find this session's scenario by id too
    (a recorded shell's ``mlops-drill hint``), also when it was started from a pack."""
    current = [e for e in os.environ.get(SCENARIOS_ENV, "").split(os.pathsep) if e.strip()]
    if scenario_file is None:
        return os.pathsep.join(current)
    folder = Path(scenario_file).resolve().parent
    extra = [] if folder == catalogue_dir() else [str(folder)]
    return os.pathsep.join(dict.fromkeys(current + extra))


def scenario_dirs() -> list[Path]:
    """The built-in catalogue, then every pack folder (each once)."""
    return list(dict.fromkeys([catalogue_dir(), *pack_dirs()]))


def scenario_files() -> dict[str, Path]:
    """Every scenario id on offer and the one file that defines it."""
    found: dict[str, Path] = {}
    for folder in scenario_dirs():
        for file in sorted(folder.glob("*.yaml")):
            if file.stem in found:
                raise DrillError(f"scenario id {file.stem!r} is defined twice: {found[file.stem]} and {file} "
                                 "(rename one of them)")
            found[file.stem] = file
    return found


def find_scenario(scenario_id: str) -> Path:
    """The file of ``scenario_id``, or an error that lists what is known and where packs come from."""
    files = scenario_files()
    if scenario_id not in files:
        known = ", ".join(sorted(files)) or "none"
        raise DrillError(f"unknown scenario {scenario_id!r} (known: {known}; add folders with --scenarios DIR "
                         f"or {SCENARIOS_ENV})")
    return files[scenario_id]
