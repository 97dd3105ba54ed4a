"""What must never show through the candidate's kubeconfig: words that name a fault or the answer key."""
from __future__ import annotations

import re

PLATFORM_NAMESPACES = ("serving", "features", "registry", "training", "gpu-operator")
MARKERS = re.compile(
    r"(?<![a-z])(fault|faults|remove-toleration|inject\w*|mlops-drill-system|reference_solution|root_cause|"
    r"accepted_diagnoses|expected_steps|gpu-inventory|kopf\w*)(?![a-z])")


def candidate_view(kubectl) -> str:
    """Everything the candidate can list cluster-wide, plus the platform namespaces' events, lower-cased."""
    everything = kubectl("get", "all,cm,secrets", "-A", "-o", "yaml", check=False)
    per_ns = "".join(kubectl("get", "all,cm,secrets,events", "-n", ns, "-o", "yaml").stdout
                     for ns in PLATFORM_NAMESPACES)
    return (everything.stdout + everything.stderr + per_ns).lower()


def markers_in(text: str) -> list[str]:
    return sorted(set(MARKERS.findall(text)))
