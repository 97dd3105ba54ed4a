"""The grader as a user meets it: reference answers score high, weaker processes score lower.

Transcripts are built from command lines with synthetic timestamps (20 s apart)
and a verification event as the engine would write it; nothing is mocked.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlops_drill.errors import DrillError
from mlops_drill.grader import cli as grader_cli
from mlops_drill.grader.grade import grade
from mlops_drill.grader.parse import parse_commands
from mlops_drill.grader.render import render
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.grader.transcript import (append, chain, read_transcript, write_transcript)
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.schema import Scenario
from mlops_drill.scenarios.variants import first_variant

CATALOGUE = sorted(catalogue_dir().glob("*.yaml"))
SHUFFLE_SEEDS = range(30)


def _grade_lines(sc: Scenario, lines: list[str], *, checks: dict[str, bool] | None = None):
    if checks is None:
        checks = passing_checks(len(sc.fix.checks))
    return grade(transcript_from_lines(lines, checks=checks), sc)


def _is_mutation(line: str) -> bool:
    return any(c.is_mutation or c.http_mutation for c in parse_commands(line))


# --------------------------------------------------------------------------- the catalogue

def test_catalogue_is_not_empty() -> None:
    assert CATALOGUE, "no scenario YAML in the catalogue"


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_reference_solution_grades_at_least_90(path: Path) -> None:
    sc = first_variant(load_scenario(path))  # every value of a parameterised one: tests/test_scenario_variants.py
    graded = _grade_lines(sc, list(sc.reference_solution))
    assert graded.score >= 90, [(d.name, d.score, d.detail) for d in graded.dimensions]


@pytest.mark.parametrize("path", CATALOGUE, ids=lambda p: p.stem)
def test_weaker_variants_of_the_reference_grade_clearly_lower(path: Path) -> None:
    sc = first_variant(load_scenario(path))
    ref = list(sc.reference_solution)
    base = _grade_lines(sc, ref).score
    mutations = [line for line in ref if _is_mutation(line)]
    assert mutations, "the reference solution changes nothing"
    variants = {
        "reversed": ref[::-1],
        "mutation-first": mutations + [line for line in ref if line not in mutations],
        "evidence-free": [line for line in ref
                          if line in mutations or line.startswith("mlops-drill")],
    }
    for name, lines in variants.items():
        score = _grade_lines(sc, lines).score
        assert score <= base - 15, f"{name}: {score} vs reference {base}"
    # A single random shuffle can happen to keep the order that matters; on average it must not.
    shuffled = [_grade_lines(sc, random.Random(seed).sample(ref, len(ref))).score
                for seed in SHUFFLE_SEEDS]
    assert sum(shuffled) / len(shuffled) <= base - 15, (base, shuffled)


# --------------------------------------------------------------------------- rubric details

SCENARIO_YAML = textwrap.dedent("""
    id: unit-rollback
    title: Unit scenario for rubric tests
    topics: [gpu-pods-pending]
    difficulty: easy
    time_limit_minutes: 20
    briefing: A pod is Pending after a release.
    faults: [{name: remove-toleration}]
    root_cause: missing-toleration
    accepted_diagnoses: [[toleration, taint]]
    expected:
      phases:
        - id: triage
          title: Look at the symptom
          steps:
            - id: see-pods
              title: List the serving pods
              reason: Identify whether the problem is in data, training, model, serving, or platform.
              match: [{tool: kubectl, verb: get, resource: pods, namespace: serving}]
        - id: localise
          title: Find the cause
          steps:
            - id: read-events
              title: Read the scheduler events
              reason: kubectl describe pod names the blocking predicate.
              match:
                - {tool: kubectl, verb: describe, resource: pods, namespace: serving}
                - {tool: kubectl, verb: get, resource: events, namespace: serving}
            - id: check-template
              title: Compare the pod template tolerations
              reason: Clarify the artifact versions involved.
              match: [{tool: kubectl, verb: get, resource: deployments, namespace: serving, output: yaml}]
              after: [read-events]
        - id: mitigate
          title: Roll back
          steps:
            - id: rollback
              title: Roll back the release
              reason: Safe rollout and rollback.
              match: [{tool: kubectl, verb: rollout, subverb: undo, namespace: serving}]
        - id: verify
          title: Verify
          steps:
            - id: watch
              title: Watch the rollout and the pods
              reason: Observability after the fix.
              match:
                - {tool: kubectl, verb: rollout, subverb: status, namespace: serving}
                - {tool: kubectl, verb: get, resource: pods, namespace: serving}
    anti_patterns:
      - id: delete-before-evidence
        signal: Treating MLOps as ordinary CI/CD with a notebook attached
        match: [{tool: kubectl, verb: delete, resource: pods}]
        unless_after: [read-events]
        penalty: 10
    fix:
      checks:
        - kind: kubectl
          args: [get, pods, -n, serving]
          expect: {contains: Running}
    hints:
      - {text: "What does the scheduler say?", reveals_step: read-events}
      - {text: Compare the template with the taint., reveals_step: check-template}
    reference_solution:
      - kubectl get pods -n serving
      - kubectl describe pod -n serving -l app=fraud-model
      - kubectl get deploy fraud-model -n serving -o yaml
      - kubectl rollout undo deploy/fraud-model -n serving
      - kubectl rollout status deploy/fraud-model -n serving
      - mlops-drill diagnose "the new template lost the toleration for the GPU taint"
""")
REF = ["kubectl get pods -n serving", "kubectl describe pod -n serving -l app=fraud-model",
       "kubectl get deploy fraud-model -n serving -o yaml",
       "kubectl rollout undo deploy/fraud-model -n serving",
       "kubectl rollout status deploy/fraud-model -n serving",
       'mlops-drill diagnose "the new template lost the toleration for the GPU taint"']
OK = {"pods-running": True}


@pytest.fixture(scope="module")
def unit() -> Scenario:
    return Scenario.model_validate(yaml.safe_load(SCENARIO_YAML))


def test_unit_reference_scores_full_marks_with_every_command_explained(unit: Scenario) -> None:
    graded = _grade_lines(unit, REF, checks=OK)
    assert graded.score == 100
    steps = [c.step for c in graded.commands if c.status == "step"]
    assert steps == ["see-pods", "read-events", "check-template", "rollback", "watch"]
    assert all(c.reason for c in graded.commands if c.status == "step")
    assert graded.missed == [] and graded.diagnosis.accepted


def test_fix_gets_no_end_state_credit_unless_the_symptom_is_rechecked(unit: Scenario) -> None:
    graded = _grade_lines(unit, [REF[0], REF[1], REF[2], REF[3], REF[5]], checks=OK)
    end = graded.dimension("end_state")
    assert end.score == 0 and "not re-checked" in end.detail
    assert any("re-check the symptom" in advice for advice in graded.strong_next)


def test_mutation_before_evidence_is_flagged_on_the_command(unit: Scenario) -> None:
    graded = _grade_lines(unit, [REF[3], *REF[:3], *REF[4:]], checks=OK)
    first = graded.commands[0]
    assert first.step == "rollback" and first.mutation
    assert "mutation before any evidence of the cause" in first.notes
    assert any(n.startswith("out of order") for n in first.notes)
    assert graded.dimension("order").score < 50


def test_anti_pattern_is_deducted_once_and_not_after_the_evidence(unit: Scenario) -> None:
    noisy = [REF[0], "kubectl delete pod -n serving fraud-model-1",
             "kubectl delete pod -n serving fraud-model-2", *REF[1:3],
             "kubectl delete pod -n serving fraud-model-3", *REF[3:]]
    graded = _grade_lines(unit, noisy, checks=OK)
    assert [(d.id, d.points) for d in graded.deductions if d.kind == "anti-pattern"] == [
        ("delete-before-evidence", 10.0)]
    # Each delete before the evidence is also a blind change; the one after it is not.
    assert [d.kind for d in graded.deductions] == ["anti-pattern", "blind-change", "blind-change"]
    notes = {c.line: c.notes for c in graded.commands}
    assert any("already deducted" in n for n in notes["kubectl delete pod -n serving fraud-model-2"])
    assert not any("anti-pattern" in n for n in notes["kubectl delete pod -n serving fraud-model-3"])
    assert graded.dimension("anti_patterns").contribution == -10


def test_earlier_hints_cost_more(unit: Scenario) -> None:
    def with_hint_at(seconds: float):
        events = [e.model_dump() for e in transcript_from_lines(REF, checks=OK)]
        start = events[0]["ts"]
        events.append({"ts": start + seconds, "kind": "hint", "data": {"index": 0}})
        events.sort(key=lambda e: e["ts"])
        return grade(chain(events), unit)

    early, late = with_hint_at(30), with_hint_at(1100)
    assert early.hints[0].reveals_step == "read-events"
    assert early.hints[0].cost > late.hints[0].cost > 0
    assert early.score < late.score < 100


def test_hypotheses_report_time_to_correct_one_and_fixes_before(unit: Scenario) -> None:
    lines = [REF[0], 'mlops-drill hypothesize "the model is too slow"', REF[3],
             'mlops-drill hypothesize "a missing toleration for the taint"', *REF[1:3], *REF[4:]]
    graded = _grade_lines(unit, lines, checks=OK)
    assert [h.correct for h in graded.hypotheses] == [False, True]
    assert graded.times.fixes_before_correct_hypothesis == 1
    assert graded.times.to_first_correct_hypothesis == 80.0
    assert graded.times.to_first_evidence == 20.0
    assert graded.times.to_root_cause == 80.0


def test_failed_fix_is_not_counted(unit: Scenario) -> None:
    events = [e.model_dump() for e in transcript_from_lines(REF, checks=OK)]
    for e in events:
        if "rollout undo" in e["line"]:
            e["exit_code"] = 1
    graded = grade(chain(events), unit)
    undo = next(c for c in graded.commands if "rollout undo" in c.line)
    assert undo.status == "failed"
    assert "rollback" in [m.step for m in graded.missed]


def test_recorded_tool_runs_are_not_counted_twice(unit: Scenario) -> None:
    """A shim's command event and the shell's history line are one action; a bypass still counts."""
    t = 1_700_000_000.0
    events = [
        {"ts": t + 1, "kind": "command", "line": "kubectl get pods -n serving",
         "argv": ["kubectl", "get", "pods", "-n", "serving"], "exit_code": 0},
        {"ts": t + 2, "kind": "shell", "line": "kubectl get pods -n serving | grep Pending",
         "exit_code": 0},
        {"ts": t + 3, "kind": "shell", "line": "/usr/bin/kubectl describe pod -n serving x",
         "exit_code": 0},
    ]
    graded = grade(chain(events), unit)
    assert [(c.line, c.step) for c in graded.commands] == [
        ("kubectl get pods -n serving", "see-pods"),
        ("/usr/bin/kubectl describe pod -n serving x", "read-events")]


def test_diagnosis_stated_before_any_evidence_is_half_credit(unit: Scenario) -> None:
    graded = _grade_lines(unit, [REF[5], *REF[:5]], checks=OK)
    assert graded.dimension("diagnosis").score == 50


def test_random_probes_cost_efficiency_and_are_annotated(unit: Scenario) -> None:
    noise = [f"kubectl get configmaps -n registry cm-{i}" for i in range(20)]
    graded = _grade_lines(unit, [*REF[:2], *noise, *REF[2:]], checks=OK)
    assert graded.dimension("efficiency").score < 50
    assert all("matches no step" in " ".join(c.notes) for c in graded.commands if c.step is None
               and c.status == "unmatched")
    assert graded.score < 100


def test_missed_steps_come_with_what_a_strong_answer_does_next(unit: Scenario) -> None:
    graded = _grade_lines(unit, [REF[0], REF[3], REF[4]], checks=OK)
    assert [m.step for m in graded.missed] == ["read-events", "check-template"]
    assert graded.missed[0].command == "kubectl describe pod -n serving -l app=fraud-model"
    assert any(a.startswith("Next: Read the scheduler events") for a in graded.strong_next)


def test_a_session_that_does_nothing_scores_zero(unit: Scenario) -> None:
    graded = _grade_lines(unit, ["ls", "mlops-drill hint"], checks={"pods-running": False})
    assert graded.score == 0
    assert graded.dimension("time").score == 0 and graded.hints[0].cost == 7.8  # 2 + 6 * (1 - 40 s / 20 min)


# --------------------------------------------------------------------------- determinism

def test_same_transcript_same_grade_in_this_process(unit: Scenario) -> None:
    events = transcript_from_lines(REF[::-1], checks=OK)
    assert render(grade(events, unit), "json") == render(grade(list(events), unit), "json")


def test_same_transcript_same_grade_across_hash_seeds(tmp_path: Path) -> None:
    # A scenario without parameters: a parameterised one is graded as a drawn variant (it needs --seed).
    path = next(p for p in CATALOGUE if not load_scenario(p).parameters)
    sc = load_scenario(path)
    lines = random.Random(3).sample(list(sc.reference_solution), len(sc.reference_solution))
    transcript = tmp_path / "t.jsonl"
    write_transcript(transcript, transcript_from_lines(lines, checks=passing_checks(2)))
    outputs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "grade-transcript",
                              str(transcript), "--scenario", str(path), "--format", "json"],
                             capture_output=True, text=True, env=env, check=True)
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])["score"] >= 0


# --------------------------------------------------------------------------- tamper evidence

def _write(tmp_path: Path, unit_lines: list[str]) -> Path:
    path = tmp_path / "session.jsonl"
    write_transcript(path, transcript_from_lines(unit_lines, checks=OK))
    return path


def test_intact_transcript_reads_back_identically(tmp_path: Path) -> None:
    path = _write(tmp_path, REF)
    read = read_transcript(path)
    assert read.tamper is None and [e.line for e in read.events][1:4] == REF[:3]


def test_edited_event_is_flagged_with_its_seq_but_still_gradeable(tmp_path: Path,
                                                                  unit: Scenario) -> None:
    path = _write(tmp_path, REF)
    lines = path.read_text().splitlines()
    edited = json.loads(lines[3])
    edited["line"] = "kubectl get events -n serving"
    lines[3] = json.dumps(edited)
    path.write_text("\n".join(lines) + "\n")
    read = read_transcript(path)
    assert read.first_broken_seq == 3
    assert "seq 3" in read.tamper and "edited" in read.tamper and "\n" not in read.tamper
    graded = grade(read, unit)
    assert graded.tamper == read.tamper
    assert "edited" in render(graded, "md") and "edited" in render(graded, "html")
    with pytest.raises(DrillError, match="hash chain broken at seq 3"):
        read_transcript(path, strict=True)


def test_removed_event_is_flagged(tmp_path: Path) -> None:
    path = _write(tmp_path, REF)
    lines = path.read_text().splitlines()
    del lines[2]
    path.write_text("\n".join(lines) + "\n")
    read = read_transcript(path)
    assert read.first_broken_seq == 3 and "removed or reordered" in read.tamper


def test_malformed_line_is_a_one_line_error_naming_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, REF)
    with path.open("a") as fh:
        fh.write('{"seq": 99, "kind": \n')
    with pytest.raises(DrillError) as err:
        read_transcript(path)
    assert str(err.value).startswith(f"{path}:{len(REF) + 3}: malformed JSON")
    assert "\n" not in str(err.value)


_APPENDER = """
import sys
from mlops_drill.grader.transcript import append
for i in range(40):
    append(sys.argv[1], "command", line=f"kubectl get pods # writer {sys.argv[2]} {i}",
           argv=["kubectl", "get", "pods"], exit_code=0, stdout="x" * 5000)
"""


def test_concurrent_appends_keep_one_valid_chain(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(path), str(n)])
             for n in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    read = read_transcript(path)
    assert read.tamper is None
    assert [e.seq for e in read.events] == list(range(160))


def test_output_is_capped_and_flagged(tmp_path: Path) -> None:
    event = append(tmp_path / "t.jsonl", "command", line="kubectl logs x", stdout="y" * 70_000)
    assert len(event.stdout) == 64 * 1024 and event.stdout_truncated
    assert read_transcript(tmp_path / "t.jsonl").tamper is None


# --------------------------------------------------------------------------- renderers and CLI

def test_json_has_top_level_score_and_per_dimension_scores(unit: Scenario) -> None:
    graded = _grade_lines(unit, REF[::-1], checks=OK)
    data = json.loads(render(graded, "json"))
    assert data["score"] == graded.score and 0 <= data["score"] <= 100
    assert set(data["dimension_scores"]) == {"coverage", "order", "efficiency", "end_state",
                                             "diagnosis", "time", "anti_patterns", "outcome"}
    assert data["outcome"] == "resolved" and data["offline"] is False
    assert len(data["commands"]) == len(REF) + 1


def test_html_is_self_contained_and_escaped(unit: Scenario) -> None:
    graded = _grade_lines(unit, [*REF, "kubectl get pods -n serving -l 'a=<script>'"], checks=OK)
    page = render(graded, "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "&lt;script&gt;" in page


def test_markdown_and_terminal_show_score_steps_and_advice(unit: Scenario) -> None:
    graded = _grade_lines(unit, [REF[0], REF[3], REF[4]], checks=OK)
    md = render(graded, "md")
    assert f"**Score: {graded.score:g}/100**" in md
    assert "| 1 | 0:20 | `kubectl get pods -n serving` | see-pods (step) |" in md
    assert "## What a strong answer would have done next" in md
    term = render(graded, "rich", width=200)
    assert f"score {graded.score:g}/100" in term and "rollback (step)" in term
    assert "Missed steps" in term


@pytest.fixture()
def app():
    import typer

    application = typer.Typer()
    grader_cli.register(application)
    return application


def test_cli_grades_a_plain_command_list(tmp_path: Path, app, unit: Scenario) -> None:
    scenario_file = tmp_path / "unit-rollback.yaml"
    scenario_file.write_text(SCENARIO_YAML)
    commands = tmp_path / "commands.txt"
    commands.write_text("\n".join(REF) + "\n")
    result = CliRunner().invoke(app, ["grade-transcript", str(commands), "--scenario",
                                      str(scenario_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dimension_scores"]["coverage"] == 100
    # No verification in a plain list: the end state is not verifiable, its weight goes elsewhere,
    # and the fix is inferred from the rollback and the re-check after it.
    end_state = next(d for d in data["dimensions"] if d["name"] == "end_state")
    assert end_state["weight"] == 0 and "not verifiable offline" in end_state["detail"]
    assert data["offline"] is True and data["outcome"] == "resolved" and data["score"] >= 90
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["grade-transcript", str(commands), "--scenario",
                                      str(scenario_file), "--format", "html", "--out", str(out)])
    assert result.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_statements_need_a_session(app, monkeypatch) -> None:
    monkeypatch.delenv("MLOPS_DRILL_TRANSCRIPT", raising=False)
    result = CliRunner().invoke(app, ["diagnose", "it", "is", "the", "taint"])
    assert isinstance(result.exception, DrillError)
    assert "mlops-drill shell" in str(result.exception) and "\n" not in str(result.exception)


def test_cli_statements_append_to_the_session(tmp_path: Path, app, monkeypatch) -> None:
    path = tmp_path / "t.jsonl"
    monkeypatch.setenv("MLOPS_DRILL_TRANSCRIPT", str(path))
    runner = CliRunner()
    assert runner.invoke(app, ["hypothesize", "GPU", "taint"]).exit_code == 0
    result = runner.invoke(app, ["diagnose", "missing toleration for the taint"])
    assert result.exit_code == 0 and "graded at the end" in result.stdout
    events = read_transcript(path).events
    assert [(e.kind, e.data["text"]) for e in events] == [
        ("hypothesis", "GPU taint"), ("diagnosis", "missing toleration for the taint")]


# --------------------------------------------------------------------------- robustness

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_WORDS = st.sampled_from(["kubectl", "k", "curl", "get", "pods", "-n", "serving", "rollout",
                          "undo", "delete", "describe", "|", ";", "&&", "'", '"', "$(", ")",
                          "mlops-drill", "diagnose", "hint", "-o", "yaml", "\\", "\n", "nvidia-smi"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.text(max_size=40), st.lists(_WORDS, max_size=8).map(" ".join)),
                      max_size=12),
       exit_codes=st.lists(st.integers(-1, 255), min_size=12, max_size=12))
def test_any_typed_lines_grade_without_error(unit: Scenario, lines: list[str],
                                             exit_codes: list[int]) -> None:
    events = [e.model_dump() for e in transcript_from_lines(lines, checks=OK)]
    for event, code in zip(events[1:], exit_codes):
        event["exit_code"] = code
    graded = grade(chain(events), unit)
    assert 0 <= graded.score <= 100
    for fmt in ("json", "md", "html", "rich"):
        assert render(graded, fmt)
