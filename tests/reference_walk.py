"""Walk a scenario's reference solution through the real command parser, as the grader's matching would."""
from __future__ import annotations


def steps_done_in_order(sc, where: str = "") -> set[str]:
    """The step ids the reference reaches, each only after its required predecessors.

    Fails (naming ``where`` and the line) on a line the parser rejects or one that trips an
    anti-pattern before its ``unless_after`` steps are done.
    """
    from mlops_drill.grader.parse import parse_command

    required = {s.id for s in sc.required_steps()}
    done: set[str] = set()
    for line in sc.reference_solution:
        cmd = parse_command(line)
        assert cmd.error is None, f"{where} {line}"
        for ap in sc.anti_patterns:
            assert not (ap.matches(cmd) and not set(ap.unless_after) <= done), f"{where} {ap.id}: {line}"
        for step in sc.steps.values():
            if step.id not in done and step.matches(cmd) and not (sc.predecessors(step.id) & required) - done:
                done.add(step.id)
    return done
