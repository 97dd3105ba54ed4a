"""What must never show through the candidate's kubeconfig (words that name a fault or the answer key), and the
reference-solution check every scenario self-test shares."""
from __future__ import annotations

import re

PLATFORM_NAMESPACES = ("serving", "features", "registry", "training", "gpu-operator")
MARKERS = re.compile(
    r"(?<![a-z])(fault|faults|remove-toleration|inject\w*|mlops-drill-system|reference_solution|root_cause|"
    r"accepted_diagnoses|expected_steps|gpu-inventory|kopf\w*|red.herrings?|herrings?)(?![a-z])")


def candidate_view(kubectl) -> str:
    """Everything the candidate can list cluster-wide, plus the platform namespaces' events, lower-cased."""
    everything = kubectl("get", "all,cm,secrets", "-A", "-o", "yaml", check=False)
    per_ns = "".join(kubectl("get", "all,cm,secrets,events", "-n", ns, "-o", "yaml").stdout
                     for ns in PLATFORM_NAMESPACES)
    return (everything.stdout + everything.stderr + per_ns).lower()


def markers_in(text: str) -> list[str]:
    return sorted(set(MARKERS.findall(text)))


def variant_markers_in(text: str, scenario) -> list[str]:
    """What of a drawn variant's identity shows in ``text`` (lower-cased candidate view): its seed, a parameter's
    name where it is not an ordinary word (``archived_version``), a label of the draw (``variant``, ``seed``), or
    an unfilled placeholder. The drawn values themselves may show only as the symptom does (the node that
    crashes, the table the CronJob reads)."""
    variant = getattr(scenario, "variant", None)
    if variant is None:
        return []
    found = [f"seed {variant.seed}"] if re.search(rf"(?<![0-9]){variant.seed}(?![0-9])", text) else []
    found += [name for name in variant.values
              if "_" in name and re.search(rf"(?<![a-z_]){re.escape(name)}(?![a-z_])", text)]
    found += sorted(set(re.findall(r"(?<![a-z])(variants?|seed)(?![a-z])", text)))
    found += ["{{"] if "{{" in text else []
    return found


def assert_reference_solution_fixes(ctx, scenario) -> None:
    """Type the scenario's reference solution as the candidate; its fix checks must pass and it must grade >= 90.

    One body for the self-tests on a cluster of its own and on a seat of a shared one. A parameterised scenario
    is typed as the variant the running session drew (its template holds placeholders).
    """
    from mlops_drill.injector import engine

    if scenario.parameters:
        session = engine.load_session(ctx)
        assert session is not None and session.scenario == scenario.id, "start the scenario first"
        scenario = engine.session_scenario(session)
    result = engine.run_as_candidate(ctx, scenario.reference_solution)
    graded = engine.finish(ctx)
    assert graded.seed == (scenario.variant.seed if scenario.variant else None), "the report names the draw"
    # As `mlops-drill verify` runs them: each check within its own window (a rolling metric such as a null
    # rate falls over seconds after the fix; one look right after the last command can come too early).
    failed = [r for r in engine.verify(ctx, record=False, wait=True) if not r.passed]
    assert not failed, f"fix checks fail after the reference solution: {failed}\n{result.stderr[-1500:]}"
    assert graded.score >= 90, f"reference solution graded {graded.score}"
