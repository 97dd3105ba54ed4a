"""Seeded variants: one scenario file, many incidents that cannot be memorised.

A scenario that declares ``parameters`` is a template. A draw picks one value per
parameter from ``random.Random(f"{id}:{seed}")``: seeding with a string hashes it
with SHA-512, so the same id and seed give the same variant on every machine and
Python run, and two scenarios with the same seed draw independently. The draw fills
``{{ name }}`` in the templated fields and validates the result as an ordinary
scenario, so the engine, the fix checks and the grader never see a placeholder.

Why plain ``{{ name }}`` substitution and not a template language: scenario files
come from instructors' packs, and substitution cannot run code, loop or fail half-way;
every name is checked when the file loads (:func:`schema._check_placeholders`).
A string that is one placeholder and nothing else takes the value's own type, so a
numeric fault parameter stays a number.
"""
from __future__ import annotations

import math
import random
import secrets
from typing import Any

from pydantic import BaseModel, Field

from mlops_drill.errors import DrillError
from mlops_drill.scenarios.schema import PLACEHOLDER, TEMPLATED_FIELDS, Parameter, Scenario, _normalise

#: Seeds a fresh draw picks from when none is given (any int is accepted from a user).
SEED_SPACE = 2**31


class Variant(BaseModel):
    """What identifies one incident of a parameterised scenario: enough to replay its grade."""

    scenario: str
    seed: int
    values: dict[str, Any] = Field(description="the drawn value of every parameter")


def fresh_seed() -> int:
    """An unpredictable seed, for a drill started without ``--seed``."""
    return secrets.randbelow(SEED_SPACE)


def draw(sc: Scenario, seed: int) -> dict[str, Any]:
    """One value per parameter, in name order, from a generator seeded by the scenario id and ``seed``."""
    rng = random.Random(f"{sc.id}:{seed}")
    return {name: rng.choice(sc.parameters[name].values()) for name in sorted(sc.parameters)}


def variant_count(sc: Scenario) -> int:
    """How many distinct incidents the scenario can yield (1 without parameters)."""
    return math.prod(len(p.values()) for p in sc.parameters.values())


def render_value(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with every placeholder filled; a string that is exactly one placeholder takes the value's type."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole is not None and whole.group(1) in values:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: _text(values[m.group(1)]) if m.group(1) in values else m.group(0), value)
    if isinstance(value, dict):
        return {k: render_value(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, values) for v in value]
    return value


def _text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def check_names(sc: Scenario, values: dict[str, Any], where: str) -> None:
    """``values`` name exactly the scenario's parameters, else a one-line DrillError that starts with ``where``.

    Why: :func:`render_value` leaves a placeholder it has no value for as text, so values drawn from an
    older version of the file (a parameter added since the session started) would put a literal
    ``{{ name }}`` into a fault's params or a matcher instead of failing.
    """
    declared, given = set(sc.parameters), set(values)
    if declared == given:
        return
    problems = []
    if declared - given:
        problems.append(f"no value for parameter {', '.join(map(repr, sorted(declared - given)))}")
    if given - declared:
        problems.append(f"a value for {', '.join(map(repr, sorted(given - declared)))}, which scenario {sc.id} "
                        "does not declare")
    raise DrillError(f"{where}: {' and '.join(problems)}: the variant was drawn from another version of "
                     f"scenario {sc.id} (parameters now: {', '.join(sorted(declared)) or 'none'})")


def check_values(sc: Scenario, values: dict[str, Any], where: str) -> None:
    """``values`` are a variant the scenario can draw today: every parameter present and each value one of its
    choices or in its range (type included: the choice "2" is not the number 2). One-line DrillError otherwise."""
    check_names(sc, values, where)
    for name in sorted(sc.parameters):
        param, value = sc.parameters[name], values[name]
        if not any(type(value) is type(v) and value == v for v in param.values()):
            raise DrillError(f"{where}: parameter {name!r}: value {value!r} is not allowed by scenario {sc.id} "
                             f"now ({_allowed(param)})")


def _allowed(param: Parameter) -> str:
    if param.choices is not None:
        shown = ", ".join(repr(v) for v in param.choices[:10])
        return f"choices: {shown}{', ...' if len(param.choices) > 10 else ''}"
    r = param.range
    return f"range {r.min}..{r.max} step {r.step}"  # type: ignore[union-attr]


def rendered_data(sc: Scenario, values: dict[str, Any]) -> dict[str, Any]:
    """The scenario as plain data with ``values`` filled in and no parameter space left."""
    check_names(sc, values, f"scenario {sc.id}")
    data = sc.model_dump(exclude_unset=True, exclude={"parameters"})
    for key in TEMPLATED_FIELDS:
        if key in data:
            data[key] = render_value(data[key], values)
    return data


def render(sc: Scenario, values: dict[str, Any], seed: int | None = None) -> Scenario:
    """The scenario ``values`` make; raises pydantic's ValidationError when the filled-in file is invalid, and
    a one-line DrillError when ``values`` do not name exactly the scenario's parameters."""
    out = Scenario.model_validate(rendered_data(sc, values))
    out._rival_diagnoses = rival_diagnoses(sc, values, out.accepted_diagnoses)
    out._undrawn_sets = tuple(i for i, kws in enumerate(sc.accepted_diagnoses)
                              if not any(n in sc.parameters for kw in kws for n in PLACEHOLDER.findall(kw)))
    if seed is not None:
        out._variant = Variant(scenario=sc.id, seed=seed, values=values)
    return out


def rival_diagnoses(sc: Scenario, values: dict[str, Any],
                    own: list[list[str]]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Per keyword of the accepted diagnoses that a draw fills in: the alternatives only this variant has, and
    those only its siblings have (every other value of each parameter in it; a word they share, such as
    "shadow" or "copy", is neither)."""
    out = []
    for i, template in enumerate(sc.accepted_diagnoses):
        for k, keyword in enumerate(template):
            names = [n for n in PLACEHOLDER.findall(keyword) if n in sc.parameters]
            if not names:
                continue
            mine = own[i][k].split("|")
            theirs: list[str] = []
            for name in names:
                for other in sc.parameters[name].values():
                    if type(other) is type(values[name]) and other == values[name]:
                        continue
                    theirs += str(render_value(keyword, {**values, name: other})).split("|")
            mine_n, theirs_n = {_normalise(a) for a in mine}, {_normalise(a) for a in theirs}
            only_mine = tuple(dict.fromkeys(a for a in mine if a.strip() and _normalise(a) not in theirs_n))
            only_theirs = tuple(dict.fromkeys(a for a in theirs if a.strip() and _normalise(a) not in mine_n))
            if only_mine and only_theirs:
                out.append((only_mine, only_theirs))
    return out


def variant(sc: Scenario, seed: int | None) -> Scenario:
    """The incident ``seed`` draws (a fresh seed when None); a scenario without parameters is returned as is."""
    if not sc.parameters:
        return sc
    if seed is None:
        seed = fresh_seed()
    return render(sc, draw(sc, seed), seed)


def probe_values(sc: Scenario) -> list[dict[str, Any]]:
    """Draws that together use every choice and both ends of every range (the other parameters at their
    first value): what the loader validates, so a value that breaks the file is found before any drill."""
    firsts = {name: p.values()[0] for name, p in sc.parameters.items()}
    probes = [firsts]
    for name, p in sc.parameters.items():
        values = p.values()
        for value in (values[1:] if p.choices is not None else values[-1:] if len(values) > 1 else ()):
            probes.append({**firsts, name: value})
    return probes


def first_variant(sc: Scenario) -> Scenario:
    """The draw of every parameter's first value (the scenario itself when it has none).

    Why it exists: material written for one fixed incident (the calibration transcripts, offline
    grading tests) is graded against this variant, so authors list the original incident first.
    """
    return render(sc, probe_values(sc)[0]) if sc.parameters else sc
