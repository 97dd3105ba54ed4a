"""Versioned training data: immutable snapshots of a transactions table, and aliases that move.

Why: a run is reproducible only when it names the exact data it read. The
data pipeline publishes a new snapshot of a month's transactions every few
days, because rows arrive late (settlement files, offline terminals) and fraud
labels arrive later still (a chargeback comes weeks after the purchase). An
alias such as ``latest`` follows the newest snapshot; a snapshot id never
changes. A training job that reads ``...@latest`` today reads other rows and
other labels than it did last month, with the same code and the same
hyperparameters.

A dataset reference is ``gs://<bucket>/fraud/transactions/<period>@<ref>``,
where ``<ref>`` is a snapshot id (a publication date, immutable) or an alias
that the data catalogue maps to one (the catalogue: a JSON file, in the
cluster the data team's ConfigMap mounted into the Job).

Every snapshot is materialised for real from the period's seeded data: one
table of ``TABLE_ROWS`` transactions, each with the day its row arrives and, for
fraud, the day its chargeback arrives; a snapshot holds the rows that had
arrived by its date, labelled fraud only where the chargeback had too. Same
snapshot, same bytes, same content hash (the ``data_version``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from mlops_drill.mlplatform import data

TABLE = "fraud/transactions"
TABLE_ROWS = 30_000
#: Publication dates of the snapshots of a month's table, oldest first (the data pipeline's schedule).
SNAPSHOTS: tuple[str, ...] = (
    "2024-10-01", "2024-10-04", "2024-10-08", "2024-10-11", "2024-10-15", "2024-10-18",
    "2024-10-22", "2024-10-25", "2024-10-29", "2024-11-01", "2024-11-05", "2024-11-08",
)
#: Share of a month's rows already in the table when the month closes; the rest trickles in.
ON_TIME_SHARE = 0.8
#: The day the month's table was first written (the day after the month closed plus settlement).
TABLE_OPENED = "2024-09-26"
LATE_ROW_DAYS = 6.0  # mean delay of a late row after the table opened
CHARGEBACK_DAYS = 12.0  # mean delay of a fraud label after its row arrived
#: Every fifth row of the table (by row id) is validation data, in every snapshot.
VALIDATION_EVERY = 5


class DatasetRefError(ValueError):
    """A dataset reference that cannot be read (one line, as the bucket or the catalogue answers)."""


@dataclass(frozen=True)
class DatasetRef:
    bucket: str
    table: str  # "fraud/transactions"
    period: str  # "2024-09"
    ref: str  # snapshot id or alias

    @property
    def base(self) -> str:
        return f"gs://{self.bucket}/{self.table}/{self.period}"


@dataclass(frozen=True)
class Snapshot:
    """The rows of one snapshot, split into training and validation data."""

    uri: str  # the immutable reference: ...@<snapshot id>
    snapshot: str
    alias: str | None  # the alias it was reached through, if any
    train: data.Dataset
    val: data.Dataset

    @property
    def label_rate(self) -> float:
        return float(self.train.y.mean())

    def fields(self) -> dict[str, Any]:
        """What a run records about its data: enough to read exactly these rows again."""
        return {"dataset_snapshot": self.snapshot, "dataset_snapshot_uri": self.uri,
                "dataset_alias": self.alias, "data_version": self.train.version_hash(),
                "train_rows": int(len(self.train.y)), "val_rows": int(len(self.val.y)),
                "label_rate": round(self.label_rate, 5)}


def is_versioned(uri: str) -> bool:
    """A reference to the versioned table (``...@ref``), as opposed to a plain bucket prefix."""
    return "@" in uri


def parse(uri: str) -> DatasetRef:
    """``gs://bucket/fraud/transactions/2024-09@latest`` -> its parts; DatasetRefError names the env var."""
    text = uri.strip().rstrip("/")
    scheme, sep, rest = text.partition("://")
    path, at, ref = rest.partition("@")
    bucket, _, prefix = path.partition("/")
    table, _, period = prefix.rpartition("/")
    if scheme != "gs" or not sep or not at or not bucket or table != TABLE or not period or not ref:
        raise DatasetRefError(f"invalid value for env DATASET_URI: {uri!r} "
                              f"(use gs://BUCKET/{TABLE}/PERIOD@SNAPSHOT or @ALIAS)")
    return DatasetRef(bucket, table, period, ref)


def load_catalog(path: Path | None) -> dict[str, Any]:
    """The data catalogue (``{"<table>/<period>": {"snapshots": [...], "aliases": {...}}}``); empty without one."""
    if path is None:
        return {}
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise DatasetRefError(f"data catalogue {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise DatasetRefError(f"data catalogue {path}: not JSON ({exc})") from None


def resolve(ref: DatasetRef, catalog: dict[str, Any]) -> tuple[str, str | None]:
    """(snapshot id, alias or None): an alias is looked up in the catalogue, a snapshot must be published."""
    entry = catalog.get(f"{ref.table}/{ref.period}") or {}
    aliases = entry.get("aliases") or {}
    published = entry.get("snapshots") or list(SNAPSHOTS)
    if ref.ref in aliases:
        return str(aliases[ref.ref]), ref.ref
    if ref.ref in SNAPSHOTS and ref.ref in published:
        return ref.ref, None
    known = ", ".join(sorted(aliases)) or "none"
    raise DatasetRefError(f"{ref.base}@{ref.ref}: no such snapshot or alias (404); aliases: {known}; "
                          f"snapshots: {published[0]} .. {published[-1]}")


def _days(snapshot: str) -> int:
    return (date.fromisoformat(snapshot) - date.fromisoformat(TABLE_OPENED)).days


def table(period: str) -> tuple[data.Dataset, np.ndarray, np.ndarray]:
    """The period's whole table: the rows, the day each arrives, the day each fraud label arrives."""
    full = data.labelled_sample(period, TABLE_ROWS, salt=910)
    rng = np.random.default_rng([data.SEED, 910, int(period.replace("-", ""))])
    late = rng.random(TABLE_ROWS) >= ON_TIME_SHARE
    arrives = np.where(late, rng.exponential(LATE_ROW_DAYS, TABLE_ROWS), 0.0)
    labelled = arrives + rng.exponential(CHARGEBACK_DAYS, TABLE_ROWS)
    return full, arrives, labelled


def materialise(ref: DatasetRef, snapshot: str, alias: str | None = None) -> Snapshot:
    """The rows of ``snapshot``: those arrived by its date, fraud where the chargeback had arrived too."""
    if snapshot not in SNAPSHOTS:
        raise DatasetRefError(f"{ref.base}@{snapshot}: no such snapshot (404)")
    try:
        full, arrives, labelled = table(ref.period)
    except ValueError as exc:  # an unknown period
        raise DatasetRefError(f"{ref.base}: {exc}") from None
    day = _days(snapshot)
    present = arrives <= day
    y = np.where(labelled <= day, full.y, 0.0)
    rows = np.flatnonzero(present)
    val_rows = rows[rows % VALIDATION_EVERY == 0]
    train_rows = rows[rows % VALIDATION_EVERY != 0]

    def part(index: np.ndarray) -> data.Dataset:
        return data.Dataset(features=full.features, X=full.X[index], y=y[index], period=ref.period)

    return Snapshot(uri=f"{ref.base}@{snapshot}", snapshot=snapshot, alias=alias,
                    train=part(train_rows), val=part(val_rows))


def open_snapshot(uri: str, catalog_path: Path | None) -> Snapshot:
    """Resolve ``uri`` (through the catalogue for an alias) and read that snapshot."""
    ref = parse(uri)
    snapshot, alias = resolve(ref, load_catalog(catalog_path))
    return materialise(ref, snapshot, alias)


def catalog_for(period: str, alias: str, snapshot: str) -> dict[str, Any]:
    """The catalogue the data pipeline leaves after publishing ``snapshot`` and pointing ``alias`` at it."""
    published = list(SNAPSHOTS[:SNAPSHOTS.index(snapshot) + 1])
    return {f"{TABLE}/{period}": {"snapshots": published, "aliases": {alias: snapshot}}}
