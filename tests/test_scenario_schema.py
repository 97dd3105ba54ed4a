"""Scenario files: the catalogue loads, authoring mistakes get one precise line, never a traceback."""
from __future__ import annotations

import copy
import json
import random
import shlex
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from reference_walk import steps_done_in_order
from scenario_files import line_of, load_error

from mlops_drill.errors import DrillError
from mlops_drill.scenarios.jsonschema import SCHEMA_PATH, render_json_schema, write_json_schema
from mlops_drill.scenarios.loader import catalogue_dir, load_catalogue, load_scenario
from mlops_drill.scenarios.schema import CORE_TOPICS, Matcher, Scenario

ISSUE_5_SCENARIOS = {
    "gpu-missing-toleration", "gpu-insufficient-capacity", "gpu-device-plugin-crash",
    "gpu-driver-cuda-mismatch", "stale-feature-cache", "skewed-transform", "schema-drift",
    "wrong-model-version", "data-drift", "cold-start-regression", "cpu-fallback", "bad-canary",
    "training-no-checkpoint", "secret-in-env",
}
ISSUE_20_SCENARIOS = {"gpu-allocated-idle"}  # GPU cost, evidence in dcgm-exporter's metrics
# Issue 19 item 2: compound incidents (a base plus red herrings, or two incidents at once)
COMPOUND_SCENARIOS = {"gpu-toleration-noisy-node", "bad-canary-registry-restart", "training-spot-noisy",
                      "canary-and-lost-checkpoints"}
# Issue 19 item 3: the rest of the playbook
PLAYBOOK_SCENARIOS = {"training-cold-cache", "batch-concurrency-latency", "async-scoring-backlog",
                      "concept-drift-delayed-labels", "training-data-version-moved", "training-sweep-unpruned"}
VALID = catalogue_dir() / "gpu-missing-toleration.yaml"


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Scenario]:
    """Parameterised scenarios as their first variant (tests/test_scenario_variants.py walks every value)."""
    from mlops_drill.scenarios.variants import first_variant

    return {sid: first_variant(sc) for sid, sc in load_catalogue().items()}


def _write(tmp_path: Path, text: str, name: str = "broken.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the catalogue

def test_catalogue_holds_every_issue_scenario(catalogue: dict[str, Scenario]) -> None:
    assert set(catalogue) == ISSUE_5_SCENARIOS | ISSUE_20_SCENARIOS | COMPOUND_SCENARIOS | PLAYBOOK_SCENARIOS


def test_catalogue_covers_the_playbook(catalogue: dict[str, Scenario]) -> None:
    covered = {t for sc in catalogue.values() for t in sc.topics}
    assert CORE_TOPICS <= covered, sorted(CORE_TOPICS - covered)


@pytest.mark.parametrize("scenario_id", sorted(ISSUE_5_SCENARIOS))
def test_scenario_is_well_formed(catalogue: dict[str, Scenario], scenario_id: str) -> None:
    sc = catalogue[scenario_id]
    assert 3 <= len(sc.expected.phases) <= 5
    assert sc.anti_patterns and sc.hints and sc.fix.checks
    # The briefing is symptoms only: it must not already state an accepted diagnosis or the fault.
    assert not sc.accepts_diagnosis(sc.briefing)
    for fault in sc.faults:
        assert fault.name not in sc.briefing
    assert sc.root_cause not in sc.briefing
    # Progressive hints: each reveals a step no earlier than the previous hint's.
    phases = [sc.phase_of[h.reveals_step] for h in sc.hints]
    assert phases == sorted(phases)
    verbs = [shlex.split(line)[:2] for line in sc.reference_solution]
    assert ["mlops-drill", "hypothesize"] in verbs and ["mlops-drill", "diagnose"] in verbs


@pytest.mark.parametrize("scenario_id", sorted(ISSUE_5_SCENARIOS))
def test_reference_solution_walks_every_required_step_in_order(catalogue: dict[str, Scenario],
                                                               scenario_id: str) -> None:
    """With the real command parser: the reference reaches each required step only after its
    required predecessors, and never trips an anti-pattern."""
    sc = catalogue[scenario_id]
    required = {s.id for s in sc.required_steps()}
    done = steps_done_in_order(sc)
    assert required <= done, sorted(required - done)


@pytest.mark.parametrize("scenario_id", sorted(ISSUE_5_SCENARIOS))
def test_fix_first_is_out_of_order(catalogue: dict[str, Scenario], scenario_id: str) -> None:
    """The first mutation of the reference, typed first, cannot count as its step yet."""
    parse = pytest.importorskip("mlops_drill.grader.parse").parse_command
    sc = catalogue[scenario_id]
    fix = next(c for c in map(parse, sc.reference_solution)
               if (c.is_mutation or c.http_mutation) and c.tool != "mlops-drill")
    matched = [s for s in sc.steps.values() if s.matches(fix)]
    assert matched, fix.raw
    required = {s.id for s in sc.required_steps()}
    # Typed first, nothing is done yet: any matching anti-pattern fires, whatever its unless_after.
    flagged = any(ap.matches(fix) for ap in sc.anti_patterns)
    assert flagged or all(sc.predecessors(s.id) & required for s in matched)


def test_precedence_includes_phase_order(catalogue: dict[str, Scenario]) -> None:
    sc = catalogue["gpu-missing-toleration"]
    assert {"see-pending-pods", "read-scheduler-events", "compare-tolerations"} <= sc.predecessors("restore-toleration")
    assert sc.predecessors("see-pending-pods") == frozenset()


# --------------------------------------------------------------------------- matchers

def test_matcher_fields() -> None:
    parse = pytest.importorskip("mlops_drill.grader.parse").parse_command
    cases: list[tuple[dict[str, Any], str, bool]] = [
        ({"verb": "get", "resource": "pods", "namespace": "serving"}, "kubectl -n serving get po", True),
        ({"verb": "get", "resource": "pods", "namespace": "serving"}, "kubectl get pods -A", True),
        ({"verb": "get", "resource": "pods", "namespace": "serving"}, "kubectl get pods -n training", False),
        ({"resource": "replicasets"}, "kubectl get deploy,rs -n serving", True),
        ({"name": "fraud-model*"}, "kubectl logs -n serving deploy/fraud-model-canary", True),
        ({"output": ["yaml", "jsonpath*"]}, "kubectl get deploy x -o jsonpath='{.spec}'", True),
        ({"output": ["yaml", "jsonpath*"]}, "kubectl get deploy x -o wide", False),
        ({"flag": "--sort-by"}, "kubectl get events --sort-by=.lastTimestamp", True),
        ({"exec": "nvidia-smi"}, "kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi -q", True),
        ({"url_path": "/api/2.0/mlflow/*", "http_method": "GET"},
         "curl -s 'localhost:8081/api/2.0/mlflow/model-versions/get?name=fraud-model&version=3'", True),
        ({"url_path": "/predict", "http_method": "get"}, "curl -X POST localhost:8080/predict -d '{}'", False),
        ({"verb": "patch", "mutation": True}, "kubectl patch deploy x -p '{}'", True),
        ({"verb": "patch", "mutation": True}, "kubectl patch deploy x --dry-run=server -p '{}'", False),
        ({"subverb": ["undo", "restart"]}, "kubectl rollout undo deploy/fraud-model -n serving", True),
        ({"raw_regex": "--from=secret/"}, "kubectl set env deploy/x --from=secret/creds", True),
        ({"tool": "mlops-drill", "verb": "diagnose"}, 'mlops-drill diagnose "stale features"', True),
    ]
    for fields, line, expected in cases:
        assert Matcher(**fields).matches(parse(line)) is expected, (fields, line)


def test_matcher_tolerates_partial_commands() -> None:
    """The grader may hand over anything shaped like a parsed command; missing fields never match."""
    assert Matcher(verb="get").matches(object()) is False
    assert Matcher(mutation=False).matches(object()) is True


def test_empty_matcher_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Matcher()


def test_diagnosis_keywords_accept_alternatives(catalogue: dict[str, Scenario]) -> None:
    sc = catalogue["gpu-missing-toleration"]
    assert sc.accepts_diagnosis("The pod does not TOLERATE the nvidia.com/gpu taint")
    assert not sc.accepts_diagnosis("GPU capacity is exhausted")


# --------------------------------------------------------------------------- one-line errors

def test_unknown_key_names_file_line_and_field(tmp_path: Path) -> None:
    text = VALID.read_text().replace("          required: false\n", "          reqired: false\n", 1)
    path = _write(tmp_path, text)
    message = load_error(path)
    line = line_of(text, "reqired: false")
    assert message.startswith(f"{path}:{line}:11: expected.phases.1.steps.2.reqired: unknown key 'reqired'")
    assert "did you mean 'required'?" in message


def test_wrong_type_names_the_value(tmp_path: Path) -> None:
    text = VALID.read_text().replace("time_limit_minutes: 15", "time_limit_minutes: soon")
    path = _write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line_of(text, 'time_limit_minutes')}:1: time_limit_minutes: ")
    assert "'soon'" in message


def test_unquoted_colon_is_explained(tmp_path: Path) -> None:
    text = VALID.read_text().replace(
        '  - mlops-drill hypothesize "the new', '  - mlops-drill hypothesize: "the new', 1)
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'hypothesize: ')}:" in message
    assert "quote text that contains ': '" in message


def test_bad_yaml_gives_the_syntax_position(tmp_path: Path) -> None:
    text = VALID.read_text().replace("difficulty: easy", "difficulty: [easy")
    path = _write(tmp_path, text)
    message = load_error(path)
    broken = line_of(text, "difficulty: [easy")
    # libyaml notices an unclosed flow sequence at the next token: the line after at worst.
    assert any(message.startswith(f"{path}:{n}:") for n in (broken, broken + 1)), message
    assert "<yaml>: " in message and "flow sequence" in message


def test_dangling_after_points_at_the_reference(tmp_path: Path) -> None:
    text = VALID.read_text().replace("after: [restore-toleration]", "after: [restore-toleraton]", 1)
    path = _write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}:{line_of(text, 'restore-toleraton')}:19: expected.phases.3.steps.0.after.0: ")
    assert "unknown step 'restore-toleraton' (did you mean 'restore-toleration'?)" in message


def test_after_a_later_phase_is_a_cycle(tmp_path: Path) -> None:
    text = VALID.read_text().replace("after: [see-pending-pods]", "after: [watch-rollout]", 1)
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'after: [watch-rollout]')}:" in message
    assert "cannot come after 'watch-rollout' of the later phase 'verify'" in message


def test_cycle_within_a_phase(tmp_path: Path) -> None:
    text = VALID.read_text().replace(
        "          title: Inspect the GPU nodes' taints and free GPU capacity\n",
        "          title: Inspect the GPU nodes' taints and free GPU capacity\n"
        "          after: [compare-tolerations]\n", 1)
    text = text.replace("after: [read-scheduler-events]", "after: [read-scheduler-events, inspect-gpu-node]", 1)
    message = load_error(_write(tmp_path, text))
    assert "precedence cycle" in message and "inspect-gpu-node" in message


def test_duplicate_step_id(tmp_path: Path) -> None:
    text = VALID.read_text().replace("- id: check-serving-after-fix", "- id: watch-rollout", 1)
    path = _write(tmp_path, text)
    second = max(i for i, line in enumerate(text.splitlines(), 1) if "- id: watch-rollout" in line)
    assert load_error(path).startswith(f"{path}:{second}:")
    assert "step id 'watch-rollout' is used twice" in load_error(path)


def test_hint_must_reveal_an_existing_step(tmp_path: Path) -> None:
    text = VALID.read_text().replace("reveals_step: read-scheduler-events", "reveals_step: look-around", 1)
    message = load_error(_write(tmp_path, text))
    assert "hints.0.reveals_step: unknown step 'look-around'" in message


def test_reference_diagnosis_must_be_accepted(tmp_path: Path) -> None:
    text = VALID.read_text().replace("  - [toleration|tolerate, taint]\n  - [toleration|tolerate, gpu node]\n",
                                     "  - [capacity]\n")
    message = load_error(_write(tmp_path, text))
    assert "reference_solution." in message and "not accepted by accepted_diagnoses" in message


def test_missing_field_is_named(tmp_path: Path) -> None:
    text = "\n".join(l for l in VALID.read_text().splitlines() if not l.startswith("root_cause:"))
    message = load_error(_write(tmp_path, text))
    assert ": root_cause: required field is missing" in message


def test_duplicate_key_is_reported(tmp_path: Path) -> None:
    text = VALID.read_text().replace("difficulty: easy", "difficulty: easy\ndifficulty: hard")
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'difficulty: hard')}:1: difficulty: duplicate key" in message


def test_unknown_fault_name(tmp_path: Path) -> None:
    text = VALID.read_text().replace("  - name: remove-toleration", "  - name: remove-tolerations")
    message = load_error(_write(tmp_path, text))
    assert f":{line_of(text, 'remove-tolerations')}:" in message and "faults.0.name" in message


def test_empty_and_unreadable_files(tmp_path: Path) -> None:
    assert "file is empty" in load_error(_write(tmp_path, ""))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"id: \xff\xfe\n")
    assert "not UTF-8" in load_error(binary)
    assert "cannot read" in load_error(tmp_path / "absent.yaml")


def test_catalogue_file_name_must_match_id(tmp_path: Path) -> None:
    _write(tmp_path, VALID.read_text(), name="renamed.yaml")
    with pytest.raises(DrillError, match=r"renamed\.yaml:\d+:1: id: 'gpu-missing-toleration' does not match"):
        load_catalogue(tmp_path)


# --------------------------------------------------------------------------- fuzzing

SLUG_KEYS = {"id", "root_cause", "reveals_step", "difficulty", "kind", "op"}
FREE_FORM = {"params", "body", "labels", "value", "equals"}  # Any-typed: anything is valid there


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every location in the document, skipping free-form (Any-typed) subtrees."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in FREE_FORM:
                out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _mutate(doc: dict, rnd: random.Random, junk: str) -> str:
    """A document that is invalid by construction (one of several kinds of damage)."""
    paths = _paths(doc)
    kind = rnd.choice(["unknown-key", "wrong-type", "junk-slug", "drop-required", "broken-yaml", "truncate"])
    if kind == "unknown-key":
        target = rnd.choice([p for p in paths if isinstance(_get(doc, p), dict)])
        _get(doc, target)[f"zz{junk}"] = junk
    elif kind == "wrong-type":
        target = rnd.choice([p for p in paths if p])
        _get(doc, target[:-1])[target[-1]] = rnd.choice([{"x": [1]}, {junk: None}])
    elif kind == "junk-slug":
        target = rnd.choice([p for p in paths if p and p[-1] in SLUG_KEYS]
                            + [p for p in paths if len(p) > 1 and p[-2] in {"topics", "after"}])
        _get(doc, target[:-1])[target[-1]] = f"Not A Slug {junk}!"
    elif kind == "drop-required":
        required = ["id", "title", "briefing", "faults", "expected", "fix", "reference_solution",
                    "reason", "match", "signal", "penalty", "text", "reveals_step", "kind"]
        target = rnd.choice([p for p in paths if p and p[-1] in required])
        del _get(doc, target[:-1])[target[-1]]
    # One scalar per line (double-quoted, never folded), so an inserted line never lands
    # inside a multi-line string where it would be harmless text.
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=float("inf"), default_style='"')
    if kind == "broken-yaml":
        lines = text.splitlines()
        at = rnd.randrange(len(lines) + 1)
        lines.insert(at, rnd.choice(["- [unclosed", "key: 'unterminated", "  - {a: b", "\tkey: x"]))
        text = "\n".join(lines)
    elif kind == "truncate":
        text = text[: rnd.randrange(1, text.index("\"reference_solution\":"))]
    return text


# Whole scenarios only: a compound file leaves out what its base gives (tests/test_compound_scenarios.py)
BASES = [d for d in (yaml.safe_load(p.read_text()) for p in sorted(catalogue_dir().glob("*.yaml")))
         if "extends" not in d]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), junk=st.text(min_size=1, max_size=12))
def test_invalid_documents_always_give_one_line(seed: int, junk: str) -> None:
    rnd = random.Random(seed)
    text = _mutate(copy.deepcopy(rnd.choice(BASES)), rnd, junk)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with pytest.raises(DrillError) as info:
            load_scenario(path)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}:")


# --------------------------------------------------------------------------- published JSON Schema

def test_committed_json_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render_json_schema(), \
        "regenerate: python -c 'from mlops_drill.scenarios.jsonschema import write_json_schema; write_json_schema()'"


def test_write_json_schema(tmp_path: Path) -> None:
    target = write_json_schema(tmp_path / "s.json")
    schema = json.loads(target.read_text())
    assert schema["title"] == "Scenario" and "expected" in schema["required"]
