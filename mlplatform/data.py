"""Seeded synthetic card-fraud data: the only data the platform ever sees.

Everything downstream (training, drift baselines, the feature store's offline
table, the traffic replay) draws from these generators, so a data-drift fault is
a real change of the distribution a model was trained on, not a printed claim.

Features split the way a payments system splits them: *transaction* features
arrive with each request (amount, time, distance, card present), *account*
features are looked up by entity id in the feature store. Periods name the month
the data was collected; the account population is stable across periods, the
transactions are not (inflation, more e-commerce, more travel).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

SEED = 20240301

#: Every feature a model may use, in the column order of all arrays here.
FEATURES: tuple[str, ...] = (
    "amount", "merchant_risk", "hour_of_day", "distance_km",
    "txn_count_24h", "account_age_days", "card_present", "velocity_ratio",
)
#: The schema of the first model generation (before card-present and velocity were logged).
FEATURES_V1: tuple[str, ...] = FEATURES[:6]
#: Sent with each transaction; everything else comes from the feature store.
TRANSACTION_FEATURES: tuple[str, ...] = ("amount", "hour_of_day", "distance_km", "card_present")
ACCOUNT_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in TRANSACTION_FEATURES)

#: Entities in the feature store; traffic picks ids from the same range.
ENTITY_COUNT = 1000
BASELINE_PERIOD = "2024-03"
RECENT_PERIOD = "2024-09"


@dataclass(frozen=True)
class TransactionProfile:
    """Parameters of the per-transaction distributions of one period."""

    amount_log_mean: float = 3.6  # lognormal: median ~ $37
    amount_log_sigma: float = 1.0
    night_share: float = 0.12  # share of transactions between 00:00 and 05:59
    distance_scale_km: float = 12.0  # exponential
    card_present_p: float = 0.6


@dataclass(frozen=True)
class Concept:
    """The true fraud mechanism (logit coefficients); shifts slowly between periods."""

    intercept: float = -6.6
    log_amount: float = 0.55
    merchant_risk: float = 4.0
    night: float = 1.0
    log_distance: float = 0.45
    txn_count: float = 0.22
    log_account_age: float = -0.35
    card_present: float = -1.3
    velocity_ratio: float = 0.9


@dataclass(frozen=True)
class Period:
    name: str
    transactions: TransactionProfile = field(default_factory=TransactionProfile)
    concept: Concept = field(default_factory=Concept)


PERIODS: dict[str, Period] = {
    "2023-09": Period("2023-09", TransactionProfile(amount_log_mean=3.45, card_present_p=0.68)),
    "2023-12": Period("2023-12", TransactionProfile(amount_log_mean=3.55, card_present_p=0.64)),
    "2024-03": Period("2024-03"),
    "2024-09": Period(
        "2024-09",
        TransactionProfile(amount_log_mean=4.3, amount_log_sigma=1.15, night_share=0.22,
                           distance_scale_km=30.0, card_present_p=0.35),
        Concept(intercept=-7.6, log_amount=0.75, card_present=-0.7, log_distance=0.3),
    ),
}


def period(name: str) -> Period:
    """The named period; a ValueError lists the known ones (config typos are common)."""
    try:
        return PERIODS[name]
    except KeyError:
        raise ValueError(f"unknown data period {name!r}; known: {', '.join(PERIODS)}") from None


def with_overrides(profile: TransactionProfile, overrides: dict[str, float]) -> TransactionProfile:
    """A profile with some parameters replaced (the traffic replay's fine-grained knob)."""
    unknown = set(overrides) - set(TransactionProfile.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown transaction profile parameter(s): {', '.join(sorted(unknown))}")
    return replace(profile, **{k: float(v) for k, v in overrides.items()})


def sample_transactions(rng: np.random.Generator, n: int, profile: TransactionProfile) -> dict[str, np.ndarray]:
    """Per-request features; all four depend on the period's profile."""
    amount = np.round(rng.lognormal(profile.amount_log_mean, profile.amount_log_sigma, n), 2)
    night = rng.random(n) < profile.night_share
    hour = np.where(night, rng.integers(0, 6, n), rng.integers(6, 24, n)).astype(np.float64)
    distance = np.round(rng.exponential(profile.distance_scale_km, n), 1)
    card_present = (rng.random(n) < profile.card_present_p).astype(np.float64)
    return {"amount": amount, "hour_of_day": hour, "distance_km": distance, "card_present": card_present}


def sample_accounts(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Account-level features (the feature store's columns); stable across periods."""
    return {
        "merchant_risk": np.round(rng.beta(2.0, 8.0, n), 4),
        "txn_count_24h": rng.poisson(2.5, n).astype(np.float64),
        "account_age_days": np.floor(rng.exponential(700.0, n)),
        "velocity_ratio": np.round(rng.gamma(2.0, 0.5, n), 3),
    }


def fraud_logit(cols: dict[str, np.ndarray], concept: Concept) -> np.ndarray:
    c = concept
    night = (cols["hour_of_day"] < 6).astype(np.float64)
    return (c.intercept + c.log_amount * np.log1p(cols["amount"]) + c.merchant_risk * cols["merchant_risk"]
            + c.night * night + c.log_distance * np.log1p(cols["distance_km"])
            + c.txn_count * cols["txn_count_24h"] + c.log_account_age * np.log1p(cols["account_age_days"])
            + c.card_present * cols["card_present"] + c.velocity_ratio * cols["velocity_ratio"])


@dataclass(frozen=True)
class Dataset:
    """A labelled sample: X columns follow ``features``."""

    features: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    period: str

    def version_hash(self) -> str:
        """Content hash of the exact training data: the 'data version' in lineage."""
        h = hashlib.sha256()
        h.update(",".join(self.features).encode())
        h.update(np.ascontiguousarray(self.X, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.y, dtype="<f8").tobytes())
        return h.hexdigest()[:16]


def labelled_sample(period_name: str, n: int, seed: int = SEED, salt: int = 0,
                    features: tuple[str, ...] = FEATURES) -> Dataset:
    """``n`` labelled transactions of one period; same arguments, same bytes."""
    p = period(period_name)
    rng = np.random.default_rng([seed, _period_key(period_name), salt])
    cols = {**sample_transactions(rng, n, p.transactions), **sample_accounts(rng, n)}
    prob = 1.0 / (1.0 + np.exp(-fraud_logit(cols, p.concept)))
    y = (rng.random(n) < prob).astype(np.float64)
    X = np.column_stack([cols[f] for f in features])
    return Dataset(features=features, X=X, y=y, period=period_name)


def account_snapshot(bucket: int, n_entities: int = ENTITY_COUNT, seed: int = SEED) -> dict[str, np.ndarray]:
    """Account features of every entity as the upstream reported them in one time bucket.

    Profile features (merchant risk, account age) are fixed per entity; activity
    features (transactions in the last 24 h, velocity) are redrawn per bucket, so
    an online store that stopped refreshing really serves outdated activity.
    Deterministic per (seed, bucket): the offline table can be regenerated at any
    time and two processes agree on every row without sharing storage.
    """
    base = sample_accounts(np.random.default_rng([seed, 7]), n_entities)
    rng = np.random.default_rng([seed, 7, bucket])
    activity = sample_accounts(rng, n_entities)
    return {"merchant_risk": base["merchant_risk"], "account_age_days": base["account_age_days"],
            "txn_count_24h": activity["txn_count_24h"], "velocity_ratio": activity["velocity_ratio"]}


def entity_id(index: int) -> str:
    return f"acct-{index:06d}"


def entity_index(entity: str) -> int | None:
    """Index of an entity id, None when it is not one of ours."""
    if not entity.startswith("acct-"):
        return None
    try:
        index = int(entity[5:])
    except ValueError:
        return None
    return index if 0 <= index < ENTITY_COUNT else None


def _period_key(name: str) -> int:
    return int(name.replace("-", ""))
