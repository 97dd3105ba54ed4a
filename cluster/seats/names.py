"""How a seat's objects are named on the shared cluster.

Why a prefix with a double dash: it cannot be confused with a platform name
(none has ``--``), one regular expression tells a seat's objects from the
cluster's own, and stripping it is a plain byte replacement that cannot touch
anything else.
"""
from __future__ import annotations

import re

SEAT_NAME = re.compile(r"^s-[0-9a-z]{1,12}-\d{1,4}--")
#: Node label every node of a seat carries; the seat's namespaces select it (PodNodeSelector).
SEAT_LABEL = "mlops-drill.dev/seat"
NODE_SELECTOR_ANNOTATION = "scheduler.alpha.kubernetes.io/node-selector"
#: Cluster roles shipped by Kubernetes: a seat binds to these, it does not get copies of them.
SHARED_CLUSTER_ROLES = frozenset({"cluster-admin", "admin", "edit", "view"})


def seat_prefix(drill: str, seat: int) -> str:
    return f"s-{drill.lower()}-{seat}--"


def seat_id(prefix: str) -> str:
    """The node label value of a seat: its prefix without the trailing dashes."""
    return prefix.rstrip("-")


def split(name: str) -> tuple[str, str]:
    """(prefix, name as the seat knows it); prefix is "" for the cluster's own names."""
    match = SEAT_NAME.match(name)
    return (match.group(0), name[match.end():]) if match else ("", name)


def namespace_prefix(namespace: str) -> str:
    """The seat prefix of a pod's namespace ("" outside seats): how a platform process finds its seat."""
    return split(namespace)[0]
