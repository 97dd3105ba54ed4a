"""`mlops-drill scenario new`: a starter file copied from a working scenario, with a comment on every key.

Why copy a working scenario instead of writing a blank template: a blank file fails
validation on every line, while a copy validates from the first save, so an author
changes one thing at a time and `scenario validate` points at what the last edit broke.
The source file's own comments (its faults' parameters) are kept.
"""
from __future__ import annotations

import re
from pathlib import Path

from mlops_drill.errors import DrillError
from mlops_drill.scenarios.jsonschema import SCHEMA_PATH

#: What each top-level key is for, written above it in the starter file.
KEY_NOTES: dict[str, str] = {
    "id": "the scenario's id: lower-case words joined by '-', equal to the file name",
    "title": "one line a candidate sees in `mlops-drill scenarios`",
    "topics": "playbook sections this drill exercises (see scenario.schema.json for the list)",
    "difficulty": "easy | medium | hard",
    "time_limit_minutes": "the drill's time budget",
    "briefing": "what the pager, a ticket or a colleague says: symptoms only, never the cause",
    "faults": ("what breaks: built-in faults (`mlops-drill scenario faults`) or ones an installed package "
               "registers under the 'mlops_drill.faults' entry points; params as documented above"),
    "root_cause": "a label for the cause (a slug); shown in the graded report",
    "accepted_diagnoses": ("keyword sets: a diagnosis counts when it contains every keyword of one set; "
                           "'a|b' are alternatives"),
    "expected": ("the playbook's order of diagnostics: phases of steps; each step matches commands "
                 "(tool, verb, resource, name, namespace, ...) and may name the steps it must come `after`"),
    "anti_patterns": "commands that are weak signals (acting before looking), with a penalty",
    "fix": "checks that must all pass once the platform is repaired (kubectl, http, metric)",
    "hints": "progressive hints, vaguest first; each reveals a step",
    "parameters": ("the variant space: each drill draws one value per parameter (choices or a range) and fills "
                   "{{ name }} in briefing, faults, expected, anti_patterns, accepted_diagnoses, fix and "
                   "reference_solution (docs/authoring.md, Seeded variants)"),
    "reference_solution": ("what a senior engineer types, top to bottom without a TTY; `mlops-drill scenario "
                           "selftest` types it on the cluster and expects the fix checks to pass and a grade >= 90"),
}

_KEY = re.compile(r"^([a-z_]+):")


def starter_text(source: Path, new_id: str) -> str:
    """The text of a starter file for ``new_id`` made from the scenario file ``source``."""
    lines = source.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("# yaml-language-server:"):
        lines.pop(0)
    out = [f"# yaml-language-server: $schema={SCHEMA_PATH}",
           f"# Starter for scenario {new_id!r}, copied from {source.stem!r}: it validates as it is.",
           "# Change one thing at a time and run `mlops-drill scenario validate <this file>`;",
           "# `mlops-drill scenario selftest <this file>` plays it on the running cluster.",
           "#"]
    seen_id = False
    for line in lines:
        key = _KEY.match(line)
        if key and key.group(1) in KEY_NOTES:
            out.append(f"# {key.group(1)}: {KEY_NOTES[key.group(1)]}")
        if key and key.group(1) == "id" and not seen_id:
            line, seen_id = f"id: {new_id}", True
        out.append(line)
    if not seen_id:
        raise DrillError(f"{source}: no top-level `id:` line to replace")
    return "\n".join(out) + "\n"


def write_starter(source: Path, new_id: str, folder: Path) -> Path:
    """Write ``<folder>/<new_id>.yaml``; never overwrites an author's file."""
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", new_id) or len(new_id) > 63:
        raise DrillError(f"scenario id {new_id!r}: use lower-case words joined by '-' (at most 63 characters)")
    target = folder / f"{new_id}.yaml"
    if target.exists():
        raise DrillError(f"{target}: already exists (pick another id or remove it)")
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(starter_text(source, new_id), encoding="utf-8")
    return target
