"""Feature transforms shared by training and serving, driven by one JSON config.

Serving re-applies the scaling that training fitted, from a config file (a
ConfigMap in the cluster). Its content hash is recorded in the model's lineage,
so a config that drifted from training (training/serving skew) shows up as a
hash that disagrees with the registry, and as different scores.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

#: How each feature is scaled; fixed per feature so configs differ only in fitted numbers.
FEATURE_OPS: dict[str, str] = {
    "amount": "log1p_standardize",
    "merchant_risk": "standardize",
    "hour_of_day": "standardize",
    "distance_km": "log1p_standardize",
    "txn_count_24h": "standardize",
    "account_age_days": "log1p_standardize",
    "card_present": "identity",
    "velocity_ratio": "standardize",
}
OPS = ("identity", "standardize", "log1p_standardize")


def fit(features: tuple[str, ...], X: np.ndarray) -> dict[str, Any]:
    """Fit per-feature scaling on training data; ``fill`` is the raw mean used for nulls."""
    specs = []
    for i, name in enumerate(features):
        raw = X[:, i]
        op = FEATURE_OPS[name]
        pre = np.log1p(raw) if op == "log1p_standardize" else raw
        mean, std = (0.0, 1.0) if op == "identity" else (float(pre.mean()), float(pre.std()) or 1.0)
        specs.append({"name": name, "op": op, "mean": round(mean, 6), "std": round(std, 6),
                      "fill": round(float(raw.mean()), 6)})
    return {"schema_version": 1, "features": specs}


def config_hash(config: dict[str, Any]) -> str:
    """Stable content hash (key order and whitespace do not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def validate(config: dict[str, Any], features: tuple[str, ...]) -> None:
    """Raise ValueError naming the first problem: a config must cover the model's features."""
    specs = config.get("features")
    if not isinstance(specs, list):
        raise ValueError("transform config: 'features' must be a list")
    by_name = {s.get("name"): s for s in specs if isinstance(s, dict)}
    for name in features:
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"transform config: no entry for feature {name!r}")
        if spec.get("op") not in OPS:
            raise ValueError(f"transform config: feature {name!r} has unknown op {spec.get('op')!r}")
        for key in ("mean", "std", "fill"):
            if not isinstance(spec.get(key), (int, float)):
                raise ValueError(f"transform config: feature {name!r} field {key!r} must be a number")


def apply(config: dict[str, Any], features: tuple[str, ...], X: np.ndarray) -> np.ndarray:
    """Scale raw columns (NaN = missing, filled with the training mean first)."""
    by_name = {s["name"]: s for s in config["features"]}
    out = np.empty_like(X, dtype=np.float64)
    for i, name in enumerate(features):
        spec = by_name[name]
        col = np.where(np.isnan(X[:, i]), spec["fill"], X[:, i])
        if spec["op"] == "log1p_standardize":
            col = np.log1p(np.maximum(col, 0.0))
        if spec["op"] != "identity":
            col = (col - spec["mean"]) / (spec["std"] if spec["std"] else 1.0)
        out[:, i] = col
    return out
