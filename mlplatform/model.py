"""Fraud models in plain numpy: logistic regression and a one-hidden-layer MLP.

Small on purpose: training every registered version takes well under a second,
so artifacts can be rebuilt on demand and byte-compared. Parameters live in a
flat dict of arrays so they save to, and load from, an ``.npz`` unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Bucket bounds of the serving pods' ``prediction_score`` histogram (monitoring reads medians off them).
SCORE_BUCKETS: tuple[float, ...] = (.01, .02, .05, .1, .2, .3, .5, .7, .9, 1.0)


@dataclass
class Model:
    """``arch`` is "logreg" or "mlp"; ``params`` holds every array the forward pass needs."""

    arch: str
    params: dict[str, np.ndarray]

    @property
    def n_inputs(self) -> int:
        return int(self.params["w1"].shape[0])

    @property
    def n_parameters(self) -> int:
        return int(sum(a.size for a in self.params.values()))

    def predict_proba(self, Xs: np.ndarray) -> np.ndarray:
        """Fraud probability for already-transformed rows."""
        return _sigmoid(self._logits(Xs)[0])

    def _logits(self, Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        p = self.params
        if self.arch == "logreg":
            return Xs @ p["w1"][:, 0] + p["b1"][0], None
        hidden = np.maximum(Xs @ p["w1"] + p["b1"], 0.0)
        return hidden @ p["w2"][:, 0] + p["b2"][0], hidden

    def gradients(self, Xs: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean log-loss and its gradient (backprop written out; no autograd here)."""
        logits, hidden = self._logits(Xs)
        prob = _sigmoid(logits)
        eps = 1e-12
        loss = float(-np.mean(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps)))
        d_logit = (prob - y) / len(y)
        p = self.params
        if self.arch == "logreg":
            return loss, {"w1": (Xs.T @ d_logit)[:, None], "b1": np.array([d_logit.sum()])}
        d_hidden = np.outer(d_logit, p["w2"][:, 0]) * (hidden > 0)
        return loss, {
            "w2": (hidden.T @ d_logit)[:, None], "b2": np.array([d_logit.sum()]),
            "w1": Xs.T @ d_hidden, "b1": d_hidden.sum(axis=0),
        }


def init_model(arch: str, n_inputs: int, hidden: int, seed: int) -> Model:
    """He-initialised weights from ``seed``: same seed, same starting point, same result."""
    rng = np.random.default_rng(seed)
    if arch == "logreg":
        return Model(arch, {"w1": np.zeros((n_inputs, 1)), "b1": np.zeros(1)})
    if arch != "mlp":
        raise ValueError(f"unknown model architecture {arch!r}")
    return Model(arch, {
        "w1": rng.normal(0.0, np.sqrt(2.0 / n_inputs), (n_inputs, hidden)),
        "b1": np.zeros(hidden),
        "w2": rng.normal(0.0, np.sqrt(1.0 / hidden), (hidden, 1)),
        "b2": np.zeros(1),
    })


@dataclass
class Adam:
    """Adam optimiser state; part of a training checkpoint."""

    lr: float = 0.02
    step: int = 0
    m: dict[str, np.ndarray] = field(default_factory=dict)
    v: dict[str, np.ndarray] = field(default_factory=dict)

    def update(self, model: Model, grads: dict[str, np.ndarray]) -> None:
        self.step += 1
        b1, b2 = 0.9, 0.999
        for key, g in grads.items():
            m = self.m.get(key, np.zeros_like(g)) * b1 + (1 - b1) * g
            v = self.v.get(key, np.zeros_like(g)) * b2 + (1 - b2) * g * g
            self.m[key], self.v[key] = m, v
            m_hat = m / (1 - b1 ** self.step)
            v_hat = v / (1 - b2 ** self.step)
            model.params[key] = model.params[key] - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


def train_epoch(model: Model, opt: Adam, Xs: np.ndarray, y: np.ndarray, batch: int, seed: int) -> float:
    """One pass over shuffled minibatches; returns the mean batch loss."""
    order = np.random.default_rng(seed).permutation(len(y))
    losses = []
    for start in range(0, len(y), batch):
        idx = order[start:start + batch]
        loss, grads = model.gradients(Xs[idx], y[idx])
        opt.update(model, grads)
        losses.append(loss)
    return float(np.mean(losses))


def fit(arch: str, hidden: int, Xs: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Model:
    model = init_model(arch, Xs.shape[1], hidden, seed)
    opt = Adam()
    for epoch in range(epochs):
        train_epoch(model, opt, Xs, y, batch=1024, seed=seed + epoch)
    return model


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, prob: np.ndarray) -> float:
    eps = 1e-12
    return float(-np.mean(y * np.log(prob + eps) + (1 - y) * np.log(1 - prob + eps)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
