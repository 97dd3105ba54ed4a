"""Input drift of the live requests against the served version's training data (PSI per feature).

The statistical comparison against the training baseline that tells data drift
from everything else: each served request's raw feature values go into a rolling
window, and on a scrape every feature's population stability index is computed
against the histogram the version's ``training_stats.json`` recorded (the same
bins, values outside them counted in the outer bins). The usual reading: below
0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a large one. A window of 500
requests keeps the noise of a stable input near 0.04.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import Gauge

WINDOW = 500
MIN_ROWS = 50  # fewer requests than this: no reading (NaN) rather than noise
EPS = 1e-4

PSI = Gauge("feature_drift_psi", f"Population stability index of the last {WINDOW} requests' feature against "
            "the served version's training data (<0.1 stable, >0.25 large shift)", ["feature"])
WINDOW_ROWS = Gauge("feature_drift_window_requests", "Requests in the input drift window")


def psi(values: np.ndarray, edges: list[float], base_counts: list[int]) -> float:
    """PSI of ``values`` against a histogram (``edges`` has one more entry than ``base_counts``)."""
    lo, hi = edges[0], edges[-1]
    live, _ = np.histogram(np.clip(values, lo, hi), bins=np.asarray(edges))
    p = live / max(live.sum(), 1)
    q = np.asarray(base_counts, dtype=np.float64) / max(sum(base_counts), 1)
    p, q = np.maximum(p, EPS), np.maximum(q, EPS)
    return float(np.sum((p - q) * np.log(p / q)))


class DriftWindow:
    """The last ``WINDOW`` rows a pod scored, and their PSI per feature against one version's baseline."""

    def __init__(self, size: int = WINDOW):
        self.rows: deque[np.ndarray] = deque(maxlen=size)
        self.lock = threading.Lock()
        self.features: tuple[str, ...] = ()
        self.baseline: dict[str, Any] = {}
        WINDOW_ROWS.set_function(lambda: float(len(self.rows)))

    def observe(self, features: tuple[str, ...], stats: dict[str, Any], row: np.ndarray) -> None:
        """One scored request (``row`` in ``features`` order, NaN where missing)."""
        with self.lock:
            if features != self.features:  # the first request, or another version: a new baseline
                self.features, self.baseline = features, stats.get("features", {})
                self.rows.clear()
                for i, name in enumerate(features):
                    if name in self.baseline:
                        PSI.labels(name).set_function(lambda i=i, name=name: self.psi(i, name))
            self.rows.append(np.asarray(row, dtype=np.float64))

    def psi(self, index: int, name: str) -> float:
        with self.lock:
            if len(self.rows) < MIN_ROWS or index >= len(self.features) or self.features[index] != name:
                return math.nan
            column = np.array([r[index] for r in self.rows])
        column = column[~np.isnan(column)]
        if len(column) < MIN_ROWS:
            return math.nan
        hist = self.baseline[name]["histogram"]
        return round(psi(column, hist["edges"], hist["counts"]), 4)
