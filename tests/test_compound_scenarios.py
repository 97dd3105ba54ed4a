"""Compound scenarios (``extends``): what the merge makes of the catalogue's own compound files, and one-line errors.

No cluster: the files are loaded as the engine loads them and graded with transcripts typed from their lines
(tests/test_scenarios.py runs each on the embedded cluster).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mlops_drill.errors import DrillError
from mlops_drill.grader.grade import grade
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_catalogue, load_scenario

CATALOGUE = load_catalogue()
COMPOUND = {"gpu-toleration-noisy-node": "gpu-missing-toleration", "bad-canary-registry-restart": "bad-canary",
            "training-spot-noisy": "training-no-checkpoint"}
DOUBLE = CATALOGUE["canary-and-lost-checkpoints"]
#: A change a candidate who took the noise for the cause would type.
TOUCH = {"gpu-toleration-noisy-node": "kubectl cordon gpu-node-1",
         "bad-canary-registry-restart": "kubectl rollout restart deployment/model-registry -n registry",
         "training-spot-noisy": "kubectl delete configmap fraud-train-hparams -n training"}


def run(sc, lines, failing: tuple[int, ...] = ()):
    checks = {k: i not in failing for i, k in enumerate(passing_checks(len(sc.fix.checks)))}
    return grade(list(transcript_from_lines(lines, checks=checks)), sc)


@pytest.mark.parametrize("sid, base", sorted(COMPOUND.items()))
def test_a_base_plus_noise_keeps_the_base_and_adds_only_herrings(sid: str, base: str) -> None:
    sc, b = CATALOGUE[sid], CATALOGUE[base]
    assert [f.name for f in sc.faults][:len(b.faults)] == [f.name for f in b.faults]
    assert [f for f in sc.faults[len(b.faults):] if f.red_herring is None] == [], "only herrings are added"
    assert len(sc.red_herrings) >= 2 and sc.expected == b.expected and sc.fix == b.fix
    assert sc.briefing != b.briefing and sc.id == sid


@pytest.mark.parametrize("sid", sorted(COMPOUND))
def test_the_base_answer_without_ruling_out_scores_less_and_fixing_the_noise_less_still(sid: str) -> None:
    sc, base = CATALOGUE[sid], CATALOGUE[COMPOUND[sid]]
    careful = run(sc, sc.reference_solution)
    plain = run(sc, base.reference_solution)
    touch = TOUCH[sid]
    reckless = run(sc, [*sc.reference_solution[:-1], touch, *sc.reference_solution[-1:]])
    assert careful.score >= 90 and careful.outcome == "resolved"
    assert careful.score > plain.score > reckless.score, (careful.score, plain.score, reckless.score)
    assert any(d.kind == "red-herring" for d in reckless.deductions)


@pytest.mark.parametrize("sid", sorted(COMPOUND))
def test_the_base_answer_rules_no_herring_out_by_accident(sid: str) -> None:
    """rule_out is a look at the herring itself, never a command every answer to the base types anyway."""
    plain = run(CATALOGUE[sid], CATALOGUE[COMPOUND[sid]].reference_solution)
    assert {h.id: h.treatment for h in plain.red_herrings} == {h.id: "ignored" for h in CATALOGUE[sid].red_herrings}


def test_looks_across_all_namespaces_repeats_and_failures_rule_nothing_out() -> None:
    sc = CATALOGUE["bad-canary-registry-restart"]
    base = CATALOGUE["bad-canary"].reference_solution
    broad = run(sc, [*base[:-1], "kubectl describe pods -A", "kubectl get events -A", base[-1]])
    assert [h.treatment for h in broad.red_herrings] == ["ignored", "ignored"]
    look = "kubectl describe pod -n registry -l app=model-registry"
    probing = run(sc, [*base[:-1], *[look] * 12, base[-1]])
    assert [c.status for c in probing.commands if c.line == look][:2] == ["ruled-out", "redundant"]
    assert probing.score < run(sc, [*base[:-1], look, base[-1]]).score
    noisy = CATALOGUE["gpu-toleration-noisy-node"]
    wrong_ns = run(noisy, [*CATALOGUE["gpu-missing-toleration"].reference_solution[:-1],
                           "kubectl get configmap fraud-model-batching", noisy.reference_solution[-1]])
    assert herring_of(wrong_ns, "unused-batching-config") == "ignored"


def herring_of(graded, hid: str) -> str:
    return next(h.treatment for h in graded.red_herrings if h.id == hid)


@pytest.mark.parametrize("delete", ["kubectl delete configmap -n serving -l app=fraud-model",
                                    "kubectl delete cm --all -n serving",
                                    "kubectl delete -n serving -f batching.yaml"])
def test_deleting_the_herring_in_bulk_is_touching_it(delete: str) -> None:
    sc = CATALOGUE["gpu-toleration-noisy-node"]
    lines = sc.reference_solution
    graded = run(sc, [*lines[:-1], delete, lines[-1]])
    assert herring_of(graded, "unused-batching-config") == "touched"
    assert any(d.kind == "red-herring" for d in graded.deductions)


def test_in_two_incidents_a_change_needs_evidence_of_its_own_incidents_cause() -> None:
    """Evidence of the canary does not excuse re-creating the training Job blind."""
    lines = DOUBLE.reference_solution
    canary, training, diagnosis = lines[:11], lines[11:-1], lines[-1]
    fix_at = next(i for i, line in enumerate(training) if line.startswith("kubectl replace"))
    blind = [*canary, training[fix_at - 1], training[fix_at], *training[:fix_at - 1], *training[fix_at + 1:],
             diagnosis]
    graded = run(DOUBLE, blind)
    assert any(d.kind == "blind-change" for d in graded.deductions), graded.deductions
    assert graded.score < run(DOUBLE, lines).score - 15


def test_two_incidents_need_both_fixed_and_both_named() -> None:
    lines = DOUBLE.reference_solution
    canary_half = lines[:11]
    both = run(DOUBLE, lines)
    assert both.score >= 90 and both.outcome == "resolved"
    one_named = run(DOUBLE, [*lines[:-1], 'mlops-drill diagnose "the canary 1.6.0-rc1 answers 500"'])
    assert one_named.dimension("diagnosis").score == 0 and one_named.score < both.score
    training_checks = tuple(range(3, len(DOUBLE.fix.checks)))
    half = run(DOUBLE, [*canary_half, lines[-1]], failing=training_checks)
    assert half.outcome == "open" and half.score <= 38


def test_one_incident_worked_to_the_end_before_the_other_is_not_out_of_order() -> None:
    lines = DOUBLE.reference_solution
    training_first = [*lines[11:-1], *lines[:11], lines[-1]]
    graded = run(DOUBLE, training_first)
    assert graded.dimension("order").score == 100 and graded.score == run(DOUBLE, lines).score
    assert [p.id for p in DOUBLE.expected.phases] == ["triage", "localise", "artifacts", "validate", "mitigate",
                                                      "verify"]


def test_each_bases_own_order_still_counts() -> None:
    lines = DOUBLE.reference_solution
    scale_first = [lines[8], *lines[:8], *lines[9:]]  # the canary scaled before anything was looked at
    assert run(DOUBLE, scale_first).dimension("order").score < 100


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, problem", [
    ("extends: no-such-scenario\nid: x\n", "extends: unknown scenario 'no-such-scenario'"),
    ("extends: [bad-canary, training-no-checkpoint]\nid: x\ntitle: t\n",
     "extends several scenarios, so it needs its own briefing, root_cause, reference_solution"),
    ("extends: x\nid: x\n", "extends: a scenario cannot extend itself"),
    ("extends: 3\nid: x\n", "extends: expected a scenario id or a list of scenario ids"),
    ("extends: [bad-canary, bad-canary]\nid: x\n", "extends: 'bad-canary' is named twice"),
    ("extends: [bad-canary, batch-concurrency-latency]\nid: x\ntitle: t\nroot_cause: r\nbriefing: b\n"
     "reference_solution: [x]\n", "extends: bad-canary and batch-concurrency-latency both define anti-pattern "
                                   "'restart-pods'; a compound of several needs distinct ids (rename it in one of them)"),
])
def test_bad_extends_is_one_line_naming_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, "x", text)
    with pytest.raises(DrillError) as info:
        load_scenario(path)
    assert str(info.value) == f"{path}: {problem}"


def test_a_pack_extends_its_own_scenario_and_errors_in_added_faults_point_at_the_file(tmp_path: Path) -> None:
    base = (catalogue_dir() / "gpu-missing-toleration.yaml").read_text()
    _write(tmp_path, "my-base", base.replace("id: gpu-missing-toleration", "id: my-base"))
    ok = _write(tmp_path, "my-noisy", "extends: my-base\nid: my-noisy\n")
    assert load_scenario(ok).faults == load_scenario(tmp_path / "my-base.yaml").faults
    broken = _write(tmp_path, "my-broken", "extends: my-base\nid: my-broken\nfaults:\n"
                                           "  - name: no-such-fault\n")
    with pytest.raises(DrillError) as info:
        load_scenario(broken)
    assert str(info.value).startswith(f"{broken}:4:") and "no-such-fault" in str(info.value)


def test_validate_points_a_bad_param_of_an_added_fault_at_the_compound_files_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    text = (catalogue_dir() / "training-spot-noisy.yaml").read_text()
    text = text.replace("id: training-spot-noisy", "id: my-spot-noisy").replace("      age_minutes: 45",
                                                                                  "      age_minutes: 90")
    broken = _write(tmp_path, "my-spot-noisy", text)
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if "age_minutes: 90" in line)
    result = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "scenario", "validate", str(broken)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"{broken}:{line_no}:") and "faults.0.params.age_minutes" in result.stderr


def test_a_cycle_is_named(tmp_path: Path) -> None:
    _write(tmp_path, "cyc-b", "extends: cyc-a\nid: cyc-b\n")
    first = _write(tmp_path, "cyc-a", "extends: cyc-b\nid: cyc-a\n")
    with pytest.raises(DrillError) as info:
        load_scenario(first)
    assert str(info.value) == f"{first}: extends: cycle cyc-a -> cyc-b -> cyc-a"


def test_a_schema_error_in_an_added_fault_points_at_its_own_line(tmp_path: Path) -> None:
    text = (catalogue_dir() / "gpu-toleration-noisy-node.yaml").read_text().replace(
        "id: gpu-toleration-noisy-node", "id: badpen")
    at = text.index("      penalty: 10")
    text = text[:at] + "      penalty: 100" + text[at + len("      penalty: 10"):]
    path = _write(tmp_path, "badpen", text)
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if "penalty: 100" in line)
    with pytest.raises(DrillError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:{line_no}:7: faults.0.red_herring.penalty: "), info.value


def test_an_error_in_an_inherited_fault_points_at_the_bases_file(tmp_path: Path) -> None:
    base = (catalogue_dir() / "bad-canary.yaml").read_text().replace("id: bad-canary", "id: b1")
    base = base.replace("      canary_replicas: 1", "      canary_replicas: one")
    base_path = _write(tmp_path, "b1", base)
    line_no = next(i for i, line in enumerate(base.splitlines(), 1) if "canary_replicas: one" in line)
    path = _write(tmp_path, "c1", "extends: b1\nid: c1\nfaults:\n  - {name: warning-event, params: {object: node/x,"
                                  " reason: R, message: M}, red_herring: {id: h, signal: s, reason: r, rule_out: "
                                  "[{tool: kubectl}], touch: [{tool: kubectl}], penalty: 99}}\n")
    with pytest.raises(DrillError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:4:"), info.value  # the compound's own error comes first
    ok_own = path.read_text().replace("penalty: 99", "penalty: 9")
    path.write_text(ok_own)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "scenario", "validate", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith(f"{base_path}:{line_no}:"), result.stderr
