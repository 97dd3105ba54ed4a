"""Red herrings in the grade: ruled out with evidence is credited, "fixed" is penalised, noise is never progress.

The scenario is the real gpu-missing-toleration with one harmless fact added beside the cause, as a
compound catalogue scenario adds it: the model registry restarted once. The transcripts are a
candidate's lines, graded by the real walk and rubric.
"""
from __future__ import annotations

import pytest

from mlops_drill.grader.grade import grade
from mlops_drill.grader.render import render
from mlops_drill.grader.synthetic import passing_checks, transcript_from_lines
from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
from mlops_drill.scenarios.schema import Scenario

BASE = load_scenario(catalogue_dir() / "gpu-missing-toleration.yaml")
HERRING = {"name": "restart-container-once",
           "params": {"namespace": "registry", "workload": "deployment/model-registry"},
           "red_herring": {"id": "registry-restarted",
                           "signal": "model-registry shows one restart",
                           "reason": "it restarted once before the rollout and has served every request since",
                           "rule_out": [{"tool": "kubectl", "verb": ["describe", "logs"], "namespace": "registry"}],
                           "touch": [{"tool": "kubectl", "namespace": "registry", "mutation": True}],
                           "penalty": 10}}


def with_herring(**changes) -> Scenario:
    data = BASE.model_dump(exclude_unset=True)
    data["faults"] = [*data["faults"], {**HERRING, "red_herring": {**HERRING["red_herring"], **changes}}]
    return Scenario.model_validate(data)


SC = with_herring()
SOLVE = ["kubectl get pods -n serving", "kubectl describe pod -n serving -l app=fraud-model",
         "kubectl describe node gpu-node-0", "kubectl get deploy fraud-model -n serving -o yaml",
         "kubectl patch deploy fraud-model -n serving --type=json -p "
         "'[{\"op\":\"add\",\"path\":\"/spec/template/spec/tolerations\",\"value\":[]}]'",
         "kubectl rollout status deploy/fraud-model -n serving",
         'mlops-drill diagnose "the new revision lost its toleration for the GPU taint"']
RULE_OUT = "kubectl describe pod -n registry -l app=model-registry"
TOUCH = "kubectl rollout restart deployment/model-registry -n registry"


def graded(*lines: str, live: bool = True, scenario: Scenario = SC):
    checks = passing_checks(len(scenario.fix.checks)) if live else None
    return grade(list(transcript_from_lines(lines, checks=checks)), scenario)


def herring(g, hid: str = "registry-restarted"):
    return next(h for h in g.red_herrings if h.id == hid)


def test_ruling_a_herring_out_scores_above_leaving_it_and_far_above_fixing_it() -> None:
    ruled = graded(SOLVE[0], RULE_OUT, *SOLVE[1:])
    ignored = graded(*SOLVE)
    touched = graded(SOLVE[0], TOUCH, *SOLVE[1:])
    assert herring(ruled).treatment == "ruled-out" and herring(ruled).ruled_out_at == 2
    assert herring(ignored).treatment == "ignored"
    assert herring(touched).treatment == "touched" and herring(touched).touched_at == 2
    assert ruled.outcome == ignored.outcome == touched.outcome == "resolved"
    assert ruled.score > ignored.score > touched.score
    assert ruled.dimension("red_herrings").score == 100 and ignored.dimension("red_herrings").score == 50
    assert touched.dimension("red_herrings").score == 0
    assert [d.id for d in touched.deductions if d.kind == "red-herring"] == ["red-herring-registry-restarted"]


def test_looking_at_a_herring_is_neither_waste_nor_a_step() -> None:
    g = graded(SOLVE[0], RULE_OUT, *SOLVE[1:])
    row = g.commands[1]
    assert row.status == "ruled-out" and row.step is None
    assert any("rules out a red herring: model-registry shows one restart" in n for n in row.notes)
    assert g.dimension("efficiency").score == graded(*SOLVE).dimension("efficiency").score


def test_a_fix_to_the_herring_is_deducted_once_and_says_why() -> None:
    g = graded(SOLVE[0], TOUCH, TOUCH, *SOLVE[1:])
    herring_cuts = [d for d in g.deductions if d.kind == "red-herring"]
    assert len(herring_cuts) == 1 and herring_cuts[0].points == 10
    assert "'fixed' a red herring: model-registry shows one restart, which is harmless" in herring_cuts[0].why


def test_a_failed_change_or_a_look_after_the_fix_is_not_a_touch() -> None:
    from mlops_drill.grader.transcript import Event

    events = list(transcript_from_lines([SOLVE[0], TOUCH, *SOLVE[1:]], checks=passing_checks(len(SC.fix.checks))))
    failing = [Event(**{**e.model_dump(), "exit_code": 1}) if e.kind == "shell" and e.line == TOUCH else e
               for e in events]
    assert failing != events and herring(grade(failing, SC)).treatment == "ignored"
    after_fix = graded(*SOLVE, RULE_OUT)
    assert herring(after_fix).treatment == "ruled-out" and not [d for d in after_fix.deductions
                                                                 if d.kind == "red-herring"]


def test_noise_is_never_progress_ruling_out_only_noise_stays_near_the_bottom() -> None:
    """Herring credit is scaled by progress, as efficiency is: a look at the noise is not a search for the cause."""
    only_noise = graded("kubectl get pods -n serving", RULE_OUT, live=False)
    same_progress = graded("kubectl get pods -n serving", live=False)
    found_cause = graded(*SOLVE[:3], live=False)
    assert only_noise.outcome == "open" and only_noise.score < 10
    assert only_noise.dimension("red_herrings").score < 50  # x progress / 50 %
    assert same_progress.score <= only_noise.score < found_cause.score < graded(*SOLVE).score


def test_scenarios_without_herrings_keep_their_report_unchanged() -> None:
    g = grade(list(transcript_from_lines(SOLVE, checks=passing_checks(len(BASE.fix.checks)))), BASE)
    assert "red_herrings" not in [d.name for d in g.dimensions] and g.red_herrings == []
    assert "Red herrings" not in render(g, "md")


@pytest.mark.parametrize("fmt", ["md", "html", "rich"])
def test_every_report_format_explains_each_herring(fmt: str) -> None:
    text = render(graded(SOLVE[0], TOUCH, *SOLVE[1:]), fmt)
    assert "Red herrings" in text and "model-registry shows one restart" in text
    assert "it restarted once before the rollout" in text


def test_a_scenario_of_herrings_only_or_a_reused_id_is_refused_with_its_place() -> None:
    data = BASE.model_dump(exclude_unset=True)
    with pytest.raises(ValueError, match="every fault is a red herring"):
        Scenario.model_validate({**data, "faults": [HERRING]})
    with pytest.raises(ValueError, match="red herring id 'registry-restarted' is used twice"):
        Scenario.model_validate({**data, "faults": [*data["faults"], HERRING, HERRING]})
    step = BASE.required_steps()[0].id
    with pytest.raises(ValueError, match=f"red herring id '{step}' is used twice"):
        with_herring(id=step)


PIPED_TOUCH = "kubectl get deploy model-registry -n registry -o yaml | sed s/replicas:.1/replicas:\\ 2/ | kubectl replace -f -"


def test_a_herring_changed_through_a_pipe_is_a_touch() -> None:
    """The change reads the object from stdin and names none itself; the reading stage names it."""
    g = graded(SOLVE[0], PIPED_TOUCH, *SOLVE[1:])
    assert herring(g).treatment == "touched" and herring(g).touched_at == 2
    assert g.commands[1].mutation


def test_a_recorded_change_fed_from_stdin_is_read_from_what_kubectl_printed() -> None:
    """Live, the recorder sees `kubectl delete -f -` as its own argv; kubectl's own output names the object."""
    from mlops_drill.grader.synthetic import DEFAULT_START
    from mlops_drill.grader.transcript import chain

    def events(deleted_line: str):
        lines = [SOLVE[0], *SOLVE[1:]]
        evs = [{"ts": DEFAULT_START, "kind": "session",
                "data": {"action": "shell-start", "scenario": "synthetic", "started_at": DEFAULT_START}}]
        evs.append({"ts": DEFAULT_START + 10, "kind": "command", "line": "kubectl delete -f -",
                    "argv": ["kubectl", "delete", "-f", "-"], "exit_code": 0, "duration_s": 0.4,
                    "stdout": deleted_line})
        evs += [{"ts": DEFAULT_START + 20 * (i + 1), "kind": "shell", "line": line, "exit_code": 0,
                 "duration_s": 1.0} for i, line in enumerate(lines, 1)]
        evs.append({"ts": DEFAULT_START + 20 * (len(lines) + 2), "kind": "verification",
                    "data": {"results": passing_checks(len(SC.fix.checks))}})
        return chain(evs)

    touched = grade(list(events('pod "model-registry-7d9f" deleted from registry namespace\n')), SC)
    elsewhere = grade(list(events('pod "scratch" deleted from default namespace\n')), SC)
    assert herring(touched).treatment == "touched"
    assert herring(elsewhere).treatment == "ignored"


def test_a_recorded_apply_from_stdin_takes_its_namespace_from_the_typed_pipeline() -> None:
    """`kubectl apply -f -` prints `deployment.apps/model-registry configured` without a namespace; the
    typed line that fed it names one, and the herring's matcher needs it."""
    from mlops_drill.grader.synthetic import DEFAULT_START
    from mlops_drill.grader.transcript import chain

    def events(namespace: str):
        typed = (f"kubectl get deploy model-registry -n {namespace} -o yaml | sed s/1/2/ | kubectl apply -f -")
        evs = [{"ts": DEFAULT_START, "kind": "session",
                "data": {"action": "shell-start", "scenario": "synthetic", "started_at": DEFAULT_START}},
               {"ts": DEFAULT_START + 5, "kind": "command", "argv": ["kubectl", "get", "deploy", "model-registry",
                                                                    "-n", namespace, "-o", "yaml"],
                "line": f"kubectl get deploy model-registry -n {namespace} -o yaml", "exit_code": 0,
                "duration_s": 0.3, "stdout": "kind: Deployment\n"},
               {"ts": DEFAULT_START + 6, "kind": "command", "argv": ["kubectl", "apply", "-f", "-"],
                "line": "kubectl apply -f -", "exit_code": 0, "duration_s": 0.4,
                "stdout": "deployment.apps/model-registry configured\n"},
               {"ts": DEFAULT_START + 7, "kind": "shell", "line": typed, "exit_code": 0, "duration_s": 1.0}]
        evs += [{"ts": DEFAULT_START + 20 * (i + 1), "kind": "shell", "line": line, "exit_code": 0,
                 "duration_s": 1.0} for i, line in enumerate(SOLVE, 1)]
        evs.append({"ts": DEFAULT_START + 20 * (len(SOLVE) + 2), "kind": "verification",
                    "data": {"results": passing_checks(len(SC.fix.checks))}})
        return chain(evs)

    assert herring(grade(list(events("registry")), SC)).treatment == "touched"
    assert herring(grade(list(events("staging")), SC)).treatment == "ignored"


def test_two_changes_from_stdin_on_one_typed_line_each_take_their_own_namespace() -> None:
    """The second recorded `kubectl apply -f -` of a line is the second one typed on it."""
    from mlops_drill.grader.synthetic import DEFAULT_START
    from mlops_drill.grader.transcript import chain

    typed = ("kubectl get deploy fraud-model -n serving -o yaml | kubectl apply -f - ; "
             "kubectl get deploy model-registry -n registry -o yaml | kubectl apply -f -")
    evs = [{"ts": DEFAULT_START, "kind": "session",
            "data": {"action": "shell-start", "scenario": "synthetic", "started_at": DEFAULT_START}}]
    for i, (name, ns) in enumerate((("fraud-model", "serving"), ("model-registry", "registry"))):
        evs += [{"ts": DEFAULT_START + 1 + 2 * i, "kind": "command", "line": f"kubectl get deploy {name} -n {ns} -o yaml",
                 "argv": ["kubectl", "get", "deploy", name, "-n", ns, "-o", "yaml"], "exit_code": 0,
                 "duration_s": 0.2, "stdout": "kind: Deployment\n"},
                {"ts": DEFAULT_START + 2 + 2 * i, "kind": "command", "line": "kubectl apply -f -",
                 "argv": ["kubectl", "apply", "-f", "-"], "exit_code": 0, "duration_s": 0.3,
                 "stdout": f"deployment.apps/{name} configured\n"}]
    evs.append({"ts": DEFAULT_START + 6, "kind": "shell", "line": typed, "exit_code": 0, "duration_s": 1.0})
    evs += [{"ts": DEFAULT_START + 20 * (i + 1), "kind": "shell", "line": line, "exit_code": 0, "duration_s": 1.0}
            for i, line in enumerate(SOLVE, 1)]
    evs.append({"ts": DEFAULT_START + 20 * (len(SOLVE) + 2), "kind": "verification",
                "data": {"results": passing_checks(len(SC.fix.checks))}})
    live = grade(list(chain(evs)), SC)
    typed_only = graded(typed, *SOLVE)
    assert herring(live).treatment == herring(typed_only).treatment == "touched"


def test_a_herring_deleted_through_xargs_is_a_touch_typed_as_live() -> None:
    g = graded(SOLVE[0], "kubectl get pods -n registry -l app=model-registry -o name | xargs kubectl delete -n registry",
               *SOLVE[1:])
    assert herring(g).treatment == "touched"
