"""Delayed ground truth: the transactions of past days and what has been learnt about them since.

A fraud label is not known when a transaction is scored. A cardholder reports
some frauds within a day (``REPORT_SHARE`` of them), the card network sends a
chargeback for every fraud at most ``window_days`` later, and only once that
window has closed is "no chargeback" a label too. So on any day the newest
``window_days`` of traffic cannot be evaluated yet, and what the platform knows
about them is a proxy: the early reports, and the model's own outputs.

Every past day is drawn from the same generators as the traffic replay
(``data.sample_transactions`` with the baseline period's profile, accounts as
the feature store has them), seeded by its date: the input distribution does not
move. What can move is the world's fraud mechanism. ``CAMPAIGNS`` lists fraud
patterns that ran for a while, each a changed relation between the same inputs
and fraud; a day's labels follow the concept of its date. Two processes asked
about the same day agree on every row, like ``data.account_snapshot``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import numpy as np

from mlops_drill.mlplatform import data
from mlops_drill.mlplatform.model import auc

#: Share of frauds a cardholder reports within a day (the rest surface only as chargebacks).
REPORT_SHARE = 0.35
#: Scores at or above this go to the analysts' review queue: the operating point the business runs.
REVIEW_THRESHOLD = 0.1
#: The date the platform's clock stood at in the baseline (v3, trained on 2024-03, serves since 2024-04-15).
BASELINE_AS_OF = date(2024, 5, 27)
DEFAULT_WINDOW_DAYS = 14
PER_DAY = 1000
HISTORY_DAYS = 63


@dataclass(frozen=True)
class Campaign:
    """A fraud pattern: from ``start`` for ``days`` days, labels follow ``concept`` instead of the baseline's."""

    name: str
    start: date
    concept: data.Concept
    days: int = 90


_BASE = data.Concept()
#: Same inputs, another relation. Starts are 150 days apart, so a history of 63 days never sees two.
CAMPAIGNS: dict[str, Campaign] = {c.name: c for c in (
    # cloned cards used at terminals: a card-present purchase stops meaning a safe one
    Campaign("pos-skimming", date(2024, 6, 10), replace(_BASE, card_present=2.2, intercept=-8.69)),
    # card testing: many small purchases, so a small amount is now the risk
    Campaign("card-testing", date(2024, 11, 7), replace(_BASE, log_amount=-0.65, intercept=-2.05)),
    # account takeover: long-standing accounts are the target
    Campaign("account-takeover", date(2025, 4, 6), replace(_BASE, log_account_age=0.8, intercept=-13.5)),
    # low and slow: ordinary merchants, few transactions a day, away from what the model learnt to watch
    Campaign("merchant-shift", date(2025, 9, 3), replace(_BASE, merchant_risk=-5.0, txn_count=-0.4, intercept=-3.15)),
    # travel fraud: far-from-home purchases at an even pace, velocity no longer gives it away
    Campaign("travel-fraud", date(2026, 1, 31), replace(_BASE, velocity_ratio=-1.5, log_distance=1.8,
                                                          txn_count=-0.3, intercept=-6.58)),
)}


def concept_on(day: date) -> data.Concept:
    """The fraud mechanism on ``day``."""
    for c in CAMPAIGNS.values():
        if c.start <= day < c.start + timedelta(days=c.days):
            return c.concept
    return _BASE


@dataclass(frozen=True)
class DayRows:
    """One day's transactions (``X`` in ``data.FEATURES`` order), their true labels and when those arrive."""

    day: date
    X: np.ndarray
    y: np.ndarray
    chargeback_delay: np.ndarray  # days after the transaction its chargeback arrives (frauds only)
    reported: np.ndarray  # the cardholder reported it within a day (frauds only)


def day_rows(day: date, n: int = PER_DAY, seed: int = data.SEED) -> DayRows:
    rng = np.random.default_rng([seed, 17, day.toordinal()])
    cols = {**data.sample_transactions(rng, n, data.period(data.BASELINE_PERIOD).transactions),
            **data.sample_accounts(rng, n)}
    prob = 1.0 / (1.0 + np.exp(-data.fraud_logit(cols, concept_on(day))))
    y = (rng.random(n) < prob).astype(np.float64)
    delay = rng.integers(2, 61, n)  # rescaled below to the feed's window; drawn here so rows never depend on it
    reported = (rng.random(n) < REPORT_SHARE) & (y == 1)
    return DayRows(day, np.column_stack([cols[f] for f in data.FEATURES]), y, delay, reported)


@dataclass(frozen=True)
class LabelFeed:
    """What is known on ``as_of``: chargebacks arrive within ``window_days`` of the transaction."""

    as_of: date = BASELINE_AS_OF
    window_days: int = DEFAULT_WINDOW_DAYS
    per_day: int = PER_DAY
    history_days: int = HISTORY_DAYS
    seed: int = data.SEED

    def day(self, age: int) -> date:
        return self.as_of - timedelta(days=age)

    def rows(self, age: int) -> DayRows:
        return day_rows(self.day(age), self.per_day, self.seed)

    def chargeback_after(self, rows: DayRows) -> np.ndarray:
        """Days each fraud's chargeback takes under this feed's window (1 .. window)."""
        return np.maximum(1, np.ceil(rows.chargeback_delay / 60.0 * self.window_days)).astype(int)

    def matured(self, age: int) -> bool:
        """Every chargeback of that day has arrived: 'no chargeback' now means legitimate."""
        return age >= self.window_days

    def known(self, age: int) -> dict[str, Any]:
        """A day's rows with what has arrived by ``as_of``: labels when matured, else reports and chargebacks so far."""
        r = self.rows(age)
        arrived = (r.y == 1) & (self.chargeback_after(r) <= age)
        return {"rows": r, "matured": self.matured(age), "chargebacks": arrived,
                "reports": r.reported & (age >= 1)}

    def training_rows(self, ages: range) -> tuple[np.ndarray, np.ndarray]:
        """Labelled rows of the matured days among ``ages`` (immature days are left out, never guessed)."""
        days = [self.rows(a) for a in ages if self.matured(a)]
        if not days:
            return np.empty((0, len(data.FEATURES))), np.empty(0)
        return np.vstack([d.X for d in days]), np.concatenate([d.y for d in days])


def quality(y: np.ndarray, score: np.ndarray, threshold: float = REVIEW_THRESHOLD) -> dict[str, float | None]:
    """Precision and recall of the review queue, and AUC, on final labels."""
    flagged = score >= threshold
    frauds = int(y.sum())
    return {"frauds": frauds,
            "precision": _r(y[flagged].mean()) if flagged.any() else None,
            "recall": _r(flagged[y == 1].mean()) if frauds else None,
            "auc": _r(auc(y, score)) if 0 < frauds < len(y) else None}


def report(feed: LabelFeed, score_fn: Any, group_days: int = 7) -> dict[str, Any]:
    """The model's quality per group of days, newest first: final labels where matured, proxies everywhere.

    ``score_fn`` maps rows in ``data.FEATURES`` order to fraud probabilities.
    Where labels are not final, the proxy is the share of cardholder-reported
    frauds the model sent to review (a partial, early label), beside the
    chargebacks received so far. The model's own outputs (score distribution,
    review rate) are what serving's /metrics show on the live traffic.
    """
    groups = []
    for start in range(0, feed.history_days, group_days):
        ages = range(start, min(start + group_days, feed.history_days))
        known = [feed.known(a) for a in ages]
        X = np.vstack([k["rows"].X for k in known])
        score = np.asarray(score_fn(X))
        flagged = score >= REVIEW_THRESHOLD
        reports = np.concatenate([k["reports"] for k in known])
        matured = np.concatenate([np.full(len(k["rows"].y), k["matured"]) for k in known])
        chargebacks = np.concatenate([k["chargebacks"] for k in known])
        n_matured = sum(k["matured"] for k in known)
        labels = "final" if n_matured == len(known) else "partial" if n_matured else "pending"
        group: dict[str, Any] = {
            "from": feed.day(ages[-1]).isoformat(), "to": feed.day(ages[0]).isoformat(),
            "age_days": [ages[0], ages[-1]], "transactions": int(len(score)),
            "labels": labels, "matured_days": n_matured,
            "chargebacks_received": int(chargebacks.sum()),
            "reported_frauds": int(reports.sum()),
            "reported_fraud_caught": _r(flagged[reports].mean()) if reports.any() else None,
        }
        if n_matured:
            y = np.concatenate([k["rows"].y for k in known])
            group.update(quality(y[matured], score[matured]))
        else:
            group.update({"frauds": None, "precision": None, "recall": None, "auc": None})
        groups.append(group)
    final = [g for g in groups if g["labels"] == "final"]
    return {"as_of": feed.as_of.isoformat(), "chargeback_window_days": feed.window_days,
            "review_threshold": REVIEW_THRESHOLD, "report_share": REPORT_SHARE,
            "summary": {"latest_final_week": final[0] if final else None,
                        "oldest_final_week": final[-1] if final else None},
            "weeks": groups}


def _r(x: float) -> float:
    return round(float(x), 4)
