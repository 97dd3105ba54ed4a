"""Where mlops-drill keeps things on disk.

Binaries are expensive to build and shared by every checkout, so they live in
the user's cache directory; cluster state (kubeconfigs, kwok work dirs) lives in
the state directory, never in ``~/.kube``.
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Root of the build cache (``$MLOPS_DRILL_CACHE`` or ``$XDG_CACHE_HOME/mlops-drill``)."""
    explicit = os.environ.get("MLOPS_DRILL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlops-drill"


def state_dir() -> Path:
    """Root of runtime state (``$MLOPS_DRILL_STATE`` or ``$XDG_STATE_HOME/mlops-drill``)."""
    explicit = os.environ.get("MLOPS_DRILL_STATE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mlops-drill"


def cluster_dir(name: str) -> Path:
    """Directory holding one named cluster's kubeconfigs and kwok work dir."""
    return state_dir() / "clusters" / name
