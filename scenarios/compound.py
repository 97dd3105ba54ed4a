"""Compound scenarios: a file that ``extends`` one or more scenarios and adds faults, red herrings included.

Why composition and not copies: a compound incident is an existing incident plus noise, or two
incidents at once. Copying 150 lines of playbook steps to add one harmless warning event would let
the copies drift apart; naming the base keeps one source of truth and makes the difference the whole
file. The result is plain scenario data, validated like any other file.

The merge, on the raw data before validation:

* one base: the base's data, with the extending file's keys on top; ``faults`` are *added* after the
  base's (they are the point of the file), every other key given replaces the base's;
* several bases (two things broke at once): ``id``, ``title``, ``briefing``, ``root_cause`` and
  ``reference_solution`` must be the file's own (one story, one answer). Faults, anti-patterns, fix
  checks, hints and parameters are concatenated; topics joined; the difficulty is the hardest, the
  time limit the sum. Phases are merged by id, keeping each base's phase order. Each base's steps keep
  exactly their own precedence (phase order turned into explicit ``after`` edges, then ``unordered``),
  and none is imposed across bases: fixing one incident fully before looking at the other is not out
  of order. A diagnosis is accepted when it names both causes: one keyword set of each base, joined.
"""
from __future__ import annotations

import copy
from itertools import product
from pathlib import Path
from typing import Any, Callable

from mlops_drill.errors import DrillError

OWN_KEYS = ("id", "title", "briefing", "root_cause", "reference_solution")
DIFFICULTY = ("easy", "medium", "hard")
MAX_DEPTH = 4


def resolve(path: Path, data: dict[str, Any], read: Callable[[Path], dict[str, Any]],
            chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """``data`` with its ``extends`` merged in (recursively); ``read`` parses another scenario file."""
    ref = data.get("extends")
    if ref is None:
        return data
    names = [ref] if isinstance(ref, str) else ref
    if not (isinstance(names, list) and names and all(isinstance(n, str) and n for n in names)):
        raise DrillError(f"{path}: extends: expected a scenario id or a list of scenario ids")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice:
        raise DrillError(f"{path}: extends: {twice!r} is named twice")
    chain = (*chain, path.resolve())
    if len(chain) > MAX_DEPTH:
        raise DrillError(f"{path}: extends: more than {MAX_DEPTH} levels deep")
    bases = []
    for name in names:
        base_path = _find(path, name)
        if base_path.resolve() == path.resolve():
            raise DrillError(f"{path}: extends: a scenario cannot extend itself")
        if base_path.resolve() in chain:
            loop = " -> ".join(p.stem for p in (*chain, base_path.resolve()))
            raise DrillError(f"{chain[0]}: extends: cycle {loop}")
        bases.append(resolve(base_path, read(base_path), read, chain))
    own = {k: v for k, v in data.items() if k != "extends"}
    if len(bases) == 1:
        merged = copy.deepcopy(bases[0])
        merged.setdefault("faults", [])
        merged["faults"] = [*merged["faults"], *own.pop("faults", [])]
    else:
        missing = [k for k in OWN_KEYS if k not in own]
        if missing:
            raise DrillError(f"{path}: extends several scenarios, so it needs its own {', '.join(missing)}")
        _refuse_shared_ids(path, names, bases)
        merged = _combine(path, bases)
        merged["faults"] = [*merged["faults"], *own.pop("faults", [])]
    merged.update(own)
    return merged


def _find(path: Path, name: str) -> Path:
    """The base beside the file first (a pack extends its own scenarios), else any scenario on offer."""
    beside = path.parent / f"{name}.yaml"
    if beside.is_file():
        return beside
    from mlops_drill.scenarios.packs import scenario_files

    files = scenario_files()
    if name not in files:
        raise DrillError(f"{path}: extends: unknown scenario {name!r}")
    return files[name]


def _combine(path: Path, bases: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "topics": list(dict.fromkeys(t for b in bases for t in b.get("topics", []))),
        "difficulty": max((b.get("difficulty", "medium") for b in bases), key=_hardness),
        "time_limit_minutes": min(240, sum(int(b.get("time_limit_minutes", 0)) for b in bases)),
        "faults": [f for b in bases for f in b.get("faults", [])],
        "anti_patterns": [a for b in bases for a in b.get("anti_patterns", [])],
        "fix": {"checks": [c for b in bases for c in (b.get("fix") or {}).get("checks", [])]},
        "hints": [h for b in bases for h in b.get("hints", [])],
        "accepted_diagnoses": [[kw for s in sets for kw in s] for sets in
                               product(*(b.get("accepted_diagnoses", []) for b in bases))],
        "expected": {"phases": _merge_phases(path, bases)},
    }
    parameters: dict[str, Any] = {}
    for b in bases:
        for name, spec in (b.get("parameters") or {}).items():
            if name in parameters:
                raise DrillError(f"{path}: extends: parameter {name!r} is declared by two bases")
            parameters[name] = spec
    if parameters:
        out["parameters"] = parameters
    return copy.deepcopy(out)


def _refuse_shared_ids(path: Path, names: list[str], bases: list[dict[str, Any]]) -> None:
    """Two bases that define the same step or anti-pattern id cannot be joined: say which, and what."""
    owner: dict[tuple[str, str], str] = {}
    for name, base in zip(names, bases):
        ids = [("step", st["id"]) for ph in (base.get("expected") or {}).get("phases", []) for st in ph["steps"]]
        ids += [("anti-pattern", ap["id"]) for ap in base.get("anti_patterns", [])]
        for what, ident in ids:
            other = owner.setdefault((what, ident), name)
            if other != name:
                raise DrillError(f"{path}: extends: {other} and {name} both define {what} {ident!r}; a compound "
                                 "of several needs distinct ids (rename it in one of them)")


def _hardness(level: str) -> int:
    return DIFFICULTY.index(level) if level in DIFFICULTY else 1


def _merge_phases(path: Path, bases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Phases joined by id in an order every base agrees with; each step keeps only its own base's order."""
    sequences = [[p["id"] for p in (b.get("expected") or {}).get("phases", [])] for b in bases]
    order = _common_order(path, sequences)
    phases: dict[str, dict[str, Any]] = {}
    for b in bases:
        earlier: list[str] = []
        for phase in (b.get("expected") or {}).get("phases", []):
            target = phases.setdefault(phase["id"], {"id": phase["id"], "title": phase["title"], "steps": []})
            for step in phase["steps"]:
                own_before = [] if step.get("unordered") else earlier
                target["steps"].append({**step, "after": list(dict.fromkeys([*own_before, *step.get("after", [])])),
                                        "unordered": True, "incident": step.get("incident") or b.get("id")})
            earlier = earlier + [s["id"] for s in phase["steps"] if not s.get("unordered")]
    return [phases[pid] for pid in order]


def _common_order(path: Path, sequences: list[list[str]]) -> list[str]:
    """Phase ids in an order that keeps every base's own order (first base's order breaks ties)."""
    ids = list(dict.fromkeys(pid for seq in sequences for pid in seq))
    before = {pid: set() for pid in ids}
    for seq in sequences:
        for i, pid in enumerate(seq):
            before[pid] |= set(seq[:i])
    out: list[str] = []
    while len(out) < len(ids):
        ready = [pid for pid in ids if pid not in out and before[pid] <= set(out)]
        if not ready:
            raise DrillError(f"{path}: extends: the bases order their phases differently "
                             f"({' / '.join(' > '.join(s) for s in sequences)}); rename a phase id")
        out.append(ready[0])
    return out


def fault_origin(path: Path, index: int, read: Callable[[Path], dict[str, Any]]) -> tuple[Path, int]:
    """The file and position that wrote fault ``index`` of the merged scenario in ``path``.

    Why: an error in a fault's params must point at the line to fix, which for an inherited fault
    is in the base's file, and for an added one sits at another index of the compound file.
    """
    data = read(path)
    ref = data.get("extends")
    if ref is None:
        return path, index
    counts = []
    names = [ref] if isinstance(ref, str) else ref
    for name in names:
        base = _find(path, name)
        counts.append((base, len(resolve(base, read(base), read).get("faults", []))))
    for base, count in counts:
        if index < count:
            return fault_origin(base, index, read)
        index -= count
    return path, index
