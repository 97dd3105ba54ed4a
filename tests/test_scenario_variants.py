"""Seeded variants without a cluster: the parameter space's types, {{ name }} templating, the draw, one-line
errors, every value of the catalogue's parameterised scenarios, and `grade-transcript` replaying a variant.

The cluster half (each parameterised scenario's self-test for three seeds, the candidate-view sweep of a
seeded start) is in tests/test_scenarios.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from reference_walk import steps_done_in_order
from scenario_files import line_of, load_error

from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.grader.transcript import write_transcript
from mlops_drill.scenarios.loader import catalogue_dir, load_catalogue, load_scenario
from mlops_drill.scenarios.schema import Parameter
from mlops_drill.scenarios.variants import (draw, first_variant, probe_values, render, render_value, variant,
                                            variant_count)

CATALOGUE = load_catalogue()
PARAMETERISED = sorted(sid for sid, sc in CATALOGUE.items() if sc.parameters)
WRONG_VERSION = catalogue_dir() / "wrong-model-version.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wrong-model-version.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the parameter space's types

def test_parameter_kinds_and_their_values() -> None:
    assert Parameter.model_validate({"choices": ["a", 2, 0.5]}).values() == ("a", 2, 0.5)
    ints = Parameter.model_validate({"range": {"min": 720, "max": 1200, "step": 60}})
    assert ints.values() == tuple(range(720, 1201, 60)) and all(type(v) is int for v in ints.values())
    floats = Parameter.model_validate({"range": {"min": 0.1, "max": 1.0, "step": 0.1}})
    assert floats.values()[-1] == 1.0 and len(floats.values()) == 10  # no value lost to rounding
    mixed = Parameter.model_validate({"range": {"min": 1, "max": 2.5, "step": 0.5}})
    assert mixed.values() == (1.0, 1.5, 2.0, 2.5)


@pytest.mark.parametrize("spec, problem", [
    ({}, "give either `choices` or `range`"),
    ({"choices": ["a"], "range": {"min": 1, "max": 2}}, "give either `choices` or `range`"),
    ({"choices": ["a", "a"]}, "listed twice"),
    ({"choices": []}, "at least 1 item"),
    ({"choices": [True]}, "Input should be a valid"),
    ({"range": {"min": 5, "max": 1}}, "range is empty"),
    ({"range": {"min": 0, "max": 100000}}, "more than 1000 values"),
    ({"range": {"min": 0, "max": 10, "step": 0}}, "greater than or equal to 1"),
    ({"choices": ["a"], "colour": "red"}, "Extra inputs are not permitted"),
])
def test_a_bad_parameter_is_refused(spec: dict, problem: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        Parameter.model_validate(spec)
    assert problem in str(info.value)


# --------------------------------------------------------------------------- templating

def test_render_fills_text_and_keeps_the_type_of_a_whole_placeholder() -> None:
    values = {"node": "gpu-node-0", "age": 780, "ratio": 2.5}
    assert render_value("{{ age }}", values) == 780
    assert render_value("{{node}}", values) == "gpu-node-0"
    assert render_value("cordon {{ node }} after {{ age }} min at x{{ ratio }}", values) == \
        "cordon gpu-node-0 after 780 min at x2.5"
    assert render_value({"args": ["get", "node", "{{ node }}"], "n": 3}, values) == \
        {"args": ["get", "node", "gpu-node-0"], "n": 3}


def test_a_scenario_without_parameters_is_unchanged() -> None:
    sc = CATALOGUE["gpu-missing-toleration"]
    assert not sc.parameters and variant_count(sc) == 1
    assert variant(sc, 7) is sc and variant(sc, None) is sc and sc.variant is None
    assert first_variant(sc) is sc


def test_a_variant_leaves_no_placeholder_and_names_its_draw() -> None:
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    drawn = variant(sc, 11)
    assert "{{" not in json.dumps(drawn.model_dump()) and not drawn.parameters
    assert drawn.variant.scenario == sc.id and drawn.variant.seed == 11
    node = drawn.variant.values["node"]
    assert next(f for f in drawn.faults if f.name == "driver-library-mismatch").params["node"] == node
    # the board is the whole GPU pool's, so no node stands out by it
    boards = {f.params["node"]: f.params["product"] for f in drawn.faults if f.name == "gpu-node-product"}
    assert boards == {"gpu-node-0": drawn.variant.values["product"], "gpu-node-1": drawn.variant.values["product"]}
    assert drawn.fix.checks[0].args[2] == node
    assert f"kubectl cordon {node}" in drawn.reference_solution
    assert "{{ node }}" in sc.fix.checks[0].args[2]  # the template itself is untouched


# --------------------------------------------------------------------------- the draw

def test_the_draw_is_the_same_in_another_python_process() -> None:
    """random.Random(str) hashes the string with SHA-512: no PYTHONHASHSEED or process state leaks in."""
    sc = CATALOGUE["stale-feature-cache"]
    code = ("import json; from mlops_drill.scenarios.loader import load_catalogue; "
            "from mlops_drill.scenarios.variants import draw; sc = load_catalogue()['stale-feature-cache']; "
            "print(json.dumps([draw(sc, s) for s in range(20)]))")
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert json.loads(theirs) == [draw(sc, s) for s in range(20)]


def test_seeds_reach_every_value_and_scenarios_draw_independently() -> None:
    assert len(PARAMETERISED) >= 3
    for sid in PARAMETERISED:
        sc = CATALOGUE[sid]
        # enough seeds that a space of a hundred or more incidents is covered too (each missed with p ~ e^-12)
        seen = {json.dumps(draw(sc, s), sort_keys=True) for s in range(max(400, 12 * variant_count(sc)))}
        assert len(seen) == variant_count(sc), sid
    # Same seed, two scenarios: not one shared sequence (the id is part of the generator's seed).
    a, b = CATALOGUE["wrong-model-version"], CATALOGUE["gpu-driver-cuda-mismatch"]
    firsts = [(draw(a, s)["archived_version"], draw(b, s)["node"]) for s in range(200)]
    assert len(set(firsts)) == 4


@pytest.mark.parametrize("scenario_id", PARAMETERISED)
def test_every_value_makes_a_drill_whose_reference_solution_walks_in_order(scenario_id: str) -> None:
    """Each probed variant (every choice, both ends of each range): the reference, parsed for real, does each
    required step after its predecessors, trips no anti-pattern, and grades >= 90 against its own variant."""
    sc = CATALOGUE[scenario_id]
    for values in probe_values(sc):
        v = render(sc, values)
        required = {s.id for s in v.required_steps()}
        done = steps_done_in_order(v, where=str(values))
        assert required <= done, (values, sorted(required - done))
        events = transcript_from_lines(v.reference_solution, checks=passing_checks(len(v.fix.checks)))
        assert grade(events, v).score >= 90, values


def test_a_mismatched_variant_does_not_grade_as_the_drawn_one() -> None:
    """The drawn value is in the matchers: cordoning the other node is not the remedy of this variant."""
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    same = {"library_version": "580.173.02", "product": "NVIDIA H200"}
    on_0 = render(sc, {"node": "gpu-node-0", **same})
    on_1 = render(sc, {"node": "gpu-node-1", **same})
    events = transcript_from_lines(on_1.reference_solution, checks=passing_checks(len(on_1.fix.checks)))
    assert grade(events, on_1).score >= 90
    assert grade(events, on_0).score < grade(events, on_1).score - 10


# --------------------------------------------------------------------------- one-line errors at load

def test_unknown_parameter_names_file_line_and_field(tmp_path: Path) -> None:
    text = WRONG_VERSION.read_text().replace('version: "{{ archived_version }}"', 'version: "{{ archived_verison }}"')
    path = _write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "archived_verison")
    assert message.startswith(f"{path}:{line}:7: faults.0.params.version: unknown parameter 'archived_verison'")
    assert "did you mean 'archived_version'?" in message and "\n" not in message


def test_without_parameters_braces_are_text_as_before(tmp_path: Path) -> None:
    """A scenario without a parameter space is not templated at all: it loads and means what it says."""
    valid = catalogue_dir() / "gpu-missing-toleration.yaml"
    text = valid.read_text().replace("briefing: |\n", "briefing: |\n  {{ node }} is down.\n", 1)
    sc = load_scenario(_write(tmp_path, text))
    assert sc.briefing.startswith("{{ node }} is down.") and variant(sc, 1) is sc


def test_placeholder_in_hints_is_refused(tmp_path: Path) -> None:
    text = WRONG_VERSION.read_text()
    first_hint = text[text.index("  - text: ", text.index("hints:")):].split("\n", 1)[0]
    text = text.replace(first_hint, first_hint + " Is it {{ archived_version }}?")
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'Is it {{ archived_version }}')}:" in message
    assert "hints is not templated" in message


def test_go_templates_survive_a_render(tmp_path: Path) -> None:
    """Only {{ name }} is a placeholder: kubectl's go-template actions stay as written in every variant."""
    line = "  - kubectl get pods -n serving -o go-template='{{range .items}}{{.metadata.name}} {{- end}}'\n"
    text = WRONG_VERSION.read_text().replace("reference_solution:\n", "reference_solution:\n" + line, 1)
    sc = load_scenario(_write(tmp_path, text))
    for seed in range(5):
        assert variant(sc, seed).reference_solution[0] == line.strip()[2:]


def test_parameter_no_fault_uses(tmp_path: Path) -> None:
    text = WRONG_VERSION.read_text().replace('version: "{{ archived_version }}"', 'version: "2"')
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, '  archived_version:')}:" in message
    assert "parameters.archived_version: parameter 'archived_version' is used in no fault's params" in message


def test_a_value_that_breaks_the_file_is_named(tmp_path: Path) -> None:
    """A choice that makes a templated matcher invalid fails at load, at the template's line, naming the value."""
    text = WRONG_VERSION.read_text()
    text = text.replace('      - {tool: curl, url_path: "/api/2.0/mlflow/model-versions/transition-stage*"}\n',
                        '      - {tool: curl, url_path: "/api/2.0/mlflow/model-versions/transition-stage*"}\n'
                        '      - {raw_regex: "transition.*version={{ archived_version }}"}\n', 1)
    text = text.replace('choices: ["2", "1"]', 'choices: ["2", "1", "(3"]')
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'raw_regex')}:" in message
    assert "anti_patterns.0.match.1.raw_regex: not a valid regular expression" in message
    assert message.endswith("(in the variant archived_version='(3')") and "\n" not in message


def test_bad_parameter_spec_points_at_its_line(tmp_path: Path) -> None:
    text = WRONG_VERSION.read_text().replace('choices: ["2", "1"]', 'choices: ["2", "1"]\n    range: {min: 1, max: 2}')
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, '  archived_version:')}:" in message and "give either `choices` or `range`" in message


# --------------------------------------------------------------------------- replaying a grade

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlops_drill.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_grade_transcript_replays_the_recorded_variant(tmp_path: Path) -> None:
    """`finish` appends the draw; `grade-transcript` grades against that variant, or the one --seed names."""
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    seed = next(s for s in range(100) if draw(sc, s)["node"] == "gpu-node-0")
    other = next(s for s in range(100) if draw(sc, s)["node"] == "gpu-node-1")
    drawn = variant(sc, seed)
    events = [e.model_dump() for e in transcript_from_lines(drawn.reference_solution,
                                                            checks=passing_checks(len(drawn.fix.checks)))]
    plain = tmp_path / "plain.jsonl"
    write_transcript(plain, events)
    refused = _cli("grade-transcript", str(plain), "--scenario", sc.id, "-f", "json")
    assert refused.returncode != 0
    assert "has variants and this transcript records none: pass --seed N" in refused.stderr

    events.append({"ts": events[-1]["ts"] + 1, "kind": "session",
                   "data": {"action": "variant", **drawn.variant.model_dump()}})
    recorded = tmp_path / "recorded.jsonl"
    write_transcript(recorded, events)
    replay = json.loads(_cli("grade-transcript", str(recorded), "--scenario", sc.id, "-f", "json").stdout)
    assert replay["seed"] == seed and replay["values"] == drawn.variant.values and replay["score"] >= 90
    wrong = json.loads(_cli("grade-transcript", str(recorded), "--scenario", sc.id, "-f", "json",
                            "--seed", str(other)).stdout)
    assert wrong["seed"] == other and wrong["values"]["node"] == "gpu-node-1" and wrong["score"] < replay["score"]
    md = _cli("grade-transcript", str(recorded), "--scenario", sc.id, "-f", "md").stdout
    assert f"Variant seed {seed}: library_version=" in md and "node=gpu-node-0" in md

    fixed = _cli("grade-transcript", str(plain), "--scenario", "gpu-missing-toleration", "--seed", "3")
    assert fixed.returncode != 0 and "declares no parameters, so it has no variants" in fixed.stderr



def _recorded_transcript(tmp_path: Path, drawn, values: dict | None = None, with_values: bool = True) -> Path:
    """The reference solution of ``drawn`` plus the `variant` event `finish` appends (``values`` overriding;
    none at all without ``with_values``, as a transcript written before values were recorded)."""
    events = [e.model_dump() for e in transcript_from_lines(drawn.reference_solution,
                                                            checks=passing_checks(len(drawn.fix.checks)))]
    data = {"action": "variant", **drawn.variant.model_dump()}
    if values is not None:
        data["values"] = values
    if not with_values:
        del data["values"]
    events.append({"ts": events[-1]["ts"] + 1, "kind": "session", "data": data})
    path = tmp_path / "recorded.jsonl"
    write_transcript(path, events)
    return path


def _edited_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The catalogue's gpu-driver-cuda-mismatch with its node choices edited after the drill (as an author might)."""
    text = (catalogue_dir() / "gpu-driver-cuda-mismatch.yaml").read_text()
    assert old in text
    path = tmp_path / "gpu-driver-cuda-mismatch.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_grade_transcript_grades_the_recorded_values_when_the_file_changed_since(tmp_path: Path) -> None:
    """Choices reordered since the drill: the seed would draw the other node today, the recorded values win."""
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    edited_file = _edited_copy(tmp_path, "choices: [gpu-node-1, gpu-node-0]", "choices: [gpu-node-0, gpu-node-1]")
    edited = load_scenario(edited_file)
    seed = next(s for s in range(100) if draw(sc, s)["node"] != draw(edited, s)["node"])
    drawn = variant(sc, seed)
    assert draw(edited, seed)["node"] != drawn.variant.values["node"]  # a re-draw would grade another incident
    recorded = _recorded_transcript(tmp_path, drawn)

    replay = json.loads(_cli("grade-transcript", str(recorded), "--scenario", str(edited_file), "-f", "json").stdout)
    assert replay["seed"] == seed and replay["values"] == drawn.variant.values and replay["score"] >= 90
    # --seed still asks for a fresh draw from today's file: the other node, and the reference no longer fits.
    redrawn = json.loads(_cli("grade-transcript", str(recorded), "--scenario", str(edited_file), "-f", "json",
                              "--seed", str(seed)).stdout)
    assert redrawn["values"] == draw(edited, seed) and redrawn["score"] < replay["score"]


def test_grade_transcript_without_recorded_values_replays_the_seed(tmp_path: Path) -> None:
    """An older transcript that recorded only the seed is graded as before: the seed's draw from the file."""
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    path = _recorded_transcript(tmp_path, variant(sc, 5), with_values=False)
    replay = json.loads(_cli("grade-transcript", str(path), "--scenario", sc.id, "-f", "json").stdout)
    assert replay["seed"] == 5 and replay["values"] == draw(sc, 5)


H200 = {"product": "NVIDIA H200"}


@pytest.mark.parametrize("values, problem", [
    ({"node": "gpu-node-7", "library_version": "580.173.02", **H200},
     "parameter 'node': value 'gpu-node-7' is not allowed by scenario gpu-driver-cuda-mismatch now (choices: "),
    ({"node": "gpu-node-0", "library_version": 580, **H200},
     "parameter 'library_version': value 580 is not allowed"),
    ({"node": "gpu-node-0", **H200}, "no value for parameter 'library_version'"),
    ({"node": "gpu-node-0", "library_version": "580.173.02", **H200, "zone": "b"},
     "a value for 'zone', which scenario gpu-driver-cuda-mismatch does not declare"),
])
def test_a_recorded_value_no_longer_allowed_is_one_line_naming_file_and_parameter(
        tmp_path: Path, values: dict, problem: str) -> None:
    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    recorded = _recorded_transcript(tmp_path, variant(sc, 3), values=values)
    refused = _cli("grade-transcript", str(recorded), "--scenario", sc.id, "-f", "json")
    assert refused.returncode != 0 and refused.stdout == ""
    message = refused.stderr.strip()
    assert "\n" not in message and "Traceback" not in message
    assert str(recorded) in message and problem in message


def test_values_that_do_not_match_the_parameters_are_a_one_line_error(tmp_path: Path) -> None:
    """A parameter added to the file after the session drew its values: no literal {{ name }} reaches a fault."""
    from mlops_drill.errors import DrillError
    from mlops_drill.injector.engine import Session, session_scenario

    sc = CATALOGUE["gpu-driver-cuda-mismatch"]
    with pytest.raises(DrillError) as info:
        render(sc, {"node": "gpu-node-0", **H200})
    assert str(info.value) == ("scenario gpu-driver-cuda-mismatch: no value for parameter 'library_version': the "
                               "variant was drawn from another version of scenario gpu-driver-cuda-mismatch "
                               "(parameters now: library_version, node, product)")

    drawn = variant(sc, 4)
    # The running session's file grows a parameter (used in a fault) after `start` drew its values.
    edited = _edited_copy(tmp_path, 'library_version: "{{ library_version }}"',
                             'library_version: "{{ library_version }}{{ build_suffix }}"')
    edited.write_text(edited.read_text().replace("parameters:\n", "parameters:\n  build_suffix:\n"
                                                 "    choices: [\"-1\", \"-2\"]\n", 1), encoding="utf-8")
    assert "build_suffix" in load_scenario(edited).parameters
    session = Session(scenario=sc.id, scenario_file=str(edited), started_at=0.0, faults=[],
                      transcript=str(tmp_path / "t.jsonl"), candidate_kubeconfig=str(tmp_path / "kc"),
                      seed=4, values=drawn.variant.values)
    with pytest.raises(DrillError) as info:
        session_scenario(session)
    message = str(info.value)
    assert "\n" not in message and "no value for parameter 'build_suffix'" in message


@pytest.mark.parametrize("scenario_id, values, diagnosis, rivals", [
    ("wrong-model-version", {"archived_version": "2"},
     "serving is pinned to v2 while Production is v3 (the registry archived v1 and v2 when v3 went live): "
     "a version mismatch", []),
    ("wrong-model-version", {"archived_version": "2"},
     "serving is pinned to an archived version, v1 or v2, not the registry's Production", ["v1"]),
    ("skewed-transform", {"feature": "amount", "scaling": "identity"},
     "amount skips log1p at serving, unlike distance_km and account_age_days which keep log1p_standardize", []),
    ("skewed-transform", {"feature": "amount", "scaling": "identity"},
     "amount or distance_km is served without its log1p", ["distance_km"]),
    ("skewed-transform", {"feature": "amount", "scaling": "identity"},
     "serving's transform differs from training's for amount or distance_km", []),  # accepted by a set without the feature
])
def test_a_diagnosis_that_offers_sibling_causes_as_alternatives_is_told_apart_from_one_that_mentions_them(
        scenario_id: str, values: dict, diagnosis: str, rivals: list[str]) -> None:
    sc = render(CATALOGUE[scenario_id], values)
    assert sc.accepts_diagnosis(diagnosis)
    assert sc.rival_causes_named(diagnosis) == rivals
