"""Feature store: an offline table fed by an upstream source, and an online store.

The offline table is the upstream's account snapshot, one row per entity per
time bucket with event timestamps; its column names come from the upstream's
published schema (``UPSTREAM_SCHEMA``, a ConfigMap). Feature views read fixed
source columns out of it. ``POST /materialize`` (what the ``feature-refresh``
CronJob calls) copies the newest complete bucket into the online store, which
serving reads by entity id. As in many real pipelines, a source column that is
missing is filled with nulls rather than failing the job: a renamed upstream
column therefore goes unnoticed here (the run only reports it as a warning) and
shows up downstream as a null rate. The refresh job's own config can name the
table it reads, map renamed upstream columns onto features, and ask for a strict
schema check that fails the run instead of writing nulls.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from mlops_drill.mlplatform import appkit, data

#: Feature view -> {feature name: source column in the upstream table}.
FEATURE_VIEWS: dict[str, dict[str, str]] = {
    "account_activity": {"txn_count_24h": "txn_cnt_24h", "velocity_ratio": "velocity_ratio_1h"},
    "account_profile": {"account_age_days": "acct_age_days"},
    "merchant_risk": {"merchant_risk": "merchant_risk_score"},
}
#: The upstream's published schema: its column names and what each carries.
DEFAULT_UPSTREAM_SCHEMA: dict[str, Any] = {
    "table": "payments.account_snapshot",
    "columns": {
        "account_id": "entity_id",
        "event_timestamp": "event_timestamp",
        "txn_cnt_24h": "txn_count_24h",
        "velocity_ratio_1h": "velocity_ratio",
        "acct_age_days": "account_age_days",
        "merchant_risk_score": "merchant_risk",
    },
}
ENTITY_COLUMN = "account_id"

FRESHNESS = Gauge("feature_freshness_seconds", "Age of the newest event in the online store", ["feature_view"])
MATERIALIZATIONS = Counter("feature_store_materializations_total", "Materialisation runs", ["status"])
LOOKUPS = Counter("feature_store_online_lookups_total", "Online feature lookups", ["status"])
ONLINE_ENTITIES = Gauge("feature_store_online_entities", "Entities in the online store", ["feature_view"])


class UpstreamSchemaError(Exception):
    """The upstream table cannot be read at all (materialisation fails loudly)."""


class UnknownTableError(LookupError):
    """The run asked for an offline table this store does not have."""


class SchemaContractError(Exception):
    """A strict run found feature source columns missing upstream (instead of writing nulls)."""


def upstream_schema() -> dict[str, Any]:
    """Re-read on every run: a file-mounted ConfigMap changes under a running process."""
    loaded = appkit.env_json_or_file("UPSTREAM_SCHEMA")
    schema = loaded if loaded is not None else DEFAULT_UPSTREAM_SCHEMA
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), dict):
        raise UpstreamSchemaError("upstream schema has no 'columns' mapping")
    return schema


def offline_rows(bucket: int, interval_s: float, schema: dict[str, Any]) -> dict[str, np.ndarray]:
    """The upstream table's rows for one time bucket, named the way the upstream names them."""
    by_quantity = {quantity: column for column, quantity in schema["columns"].items()}
    if "entity_id" not in by_quantity:
        raise UpstreamSchemaError(f"upstream table {schema.get('table', '?')} exposes no entity id column")
    values = data.account_snapshot(bucket)
    ids = np.arange(data.ENTITY_COUNT)
    rows: dict[str, np.ndarray] = {by_quantity["entity_id"]: ids}
    # each entity's snapshot lands at its own moment inside the bucket
    offsets = (ids * 7919) % max(int(interval_s), 1)
    rows[by_quantity.get("event_timestamp", "event_timestamp")] = bucket * interval_s + offsets
    for quantity, col in values.items():
        if quantity in by_quantity:
            rows[by_quantity[quantity]] = col
    return rows


def latest_rows(now: float, interval_s: float, schema: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per entity, the newest upstream row with an event timestamp at or before ``now``."""
    bucket = math.floor(now / interval_s)
    current, previous = offline_rows(bucket, interval_s, schema), offline_rows(bucket - 1, interval_s, schema)
    ts_col = next((c for c, q in schema["columns"].items() if q == "event_timestamp"), "event_timestamp")
    arrived = current[ts_col] <= now
    return {col: np.where(arrived, current[col], previous[col]) for col in current}


@dataclass
class OnlineView:
    values: dict[str, np.ndarray]  # feature -> per-entity value, NaN = null
    event_ts: np.ndarray  # per entity
    materialized_at: float


class FeatureStore:
    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self.online: dict[str, OnlineView] = {}
        self.lock = threading.Lock()

    def materialize(self, views: list[str] | None = None, end_ts: float | None = None,
                    source_table: str | None = None, column_map: dict[str, str] | None = None,
                    strict: bool = False) -> dict[str, Any]:
        """Copy every entity's newest upstream row at or before ``end_ts`` into the online store.

        ``end_ts`` replays a run at that moment (a backfill): the view then looks
        exactly as that run left it, materialisation time included. ``column_map``
        (upstream column -> feature) overrides a feature view's source column, so
        a renamed upstream column can be mapped back without a code change.
        """
        unknown = [v for v in views or [] if v not in FEATURE_VIEWS]
        if unknown:
            raise KeyError(f"feature view {unknown[0]!r} not found; known: {', '.join(FEATURE_VIEWS)}")
        now = time.time() if end_ts is None else end_ts
        schema = upstream_schema()
        table = schema.get("table", DEFAULT_UPSTREAM_SCHEMA["table"])
        if source_table is not None and source_table != table:
            raise UnknownTableError(f"offline table {source_table!r} not found (available: {table})")
        sources = {feature: upstream for upstream, feature in (column_map or {}).items()}
        rows = latest_rows(now, self.interval_s, schema)
        entity_col = next(c for c, q in schema["columns"].items() if q == "entity_id")
        ts_col = next((c for c, q in schema["columns"].items() if q == "event_timestamp"), "event_timestamp")
        wanted = views or list(FEATURE_VIEWS)
        missing = {view: {f: sources.get(f, src) for f, src in FEATURE_VIEWS[view].items()
                          if sources.get(f, src) not in rows} for view in wanted}
        if strict and any(missing.values()):
            gaps = ", ".join(f"{src} (feature {f})" for m in missing.values() for f, src in m.items())
            raise SchemaContractError(f"source column(s) missing in {table}: {gaps}; "
                                      f"upstream columns: {', '.join(sorted(rows))}")
        order = np.argsort(rows[entity_col])
        result = {}
        for view in wanted:
            values = {}
            for feature, source in FEATURE_VIEWS[view].items():
                col = rows.get(sources.get(feature, source))
                values[feature] = (np.full(data.ENTITY_COUNT, np.nan) if col is None
                                   else np.asarray(col, dtype=np.float64)[order])
            online = OnlineView(values, np.asarray(rows[ts_col], dtype=np.float64)[order], now)
            with self.lock:
                self.online[view] = online
            result[view] = {"rows": int(len(order)), "newest_event_timestamp": float(online.event_ts.max())}
            if missing[view]:
                result[view]["missing_source_columns"] = missing[view]
        return result

    def lookup(self, entity: str) -> dict[str, Any] | None:
        index = data.entity_index(entity)
        if index is None:
            return None
        with self.lock:
            online = dict(self.online)
        if not online:
            return None
        features: dict[str, float | None] = {}
        stamps: dict[str, float] = {}
        for view, ov in online.items():
            for feature, col in ov.values.items():
                v = float(col[index])
                features[feature] = None if math.isnan(v) else v
            stamps[view] = float(ov.event_ts[index])
        return {"entity_id": entity, "features": features, "feature_timestamps": stamps}

    def freshness(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        with self.lock:
            online = dict(self.online)
        return {view: {"age_seconds": round(now - float(ov.event_ts.max()), 3),
                       "oldest_entity_age_seconds": round(now - float(ov.event_ts.min()), 3),
                       "last_materialized_at": ov.materialized_at, "entities": int(len(ov.event_ts))}
                for view, ov in online.items()}


def create_app(store: FeatureStore) -> FastAPI:
    app = FastAPI(title="feature-store", docs_url=None, redoc_url=None)

    for view in FEATURE_VIEWS:
        FRESHNESS.labels(view).set_function(lambda v=view: _age(store, v))
        ONLINE_ENTITIES.labels(view).set_function(
            lambda v=view: float(len(store.online[v].event_ts)) if v in store.online else 0.0)

    @app.get("/features/{entity_id}")
    def features(entity_id: str) -> dict[str, Any]:
        found = store.lookup(entity_id)
        if found is None:
            LOOKUPS.labels("not_found").inc()
            raise HTTPException(404, f"entity {entity_id} not found in the online store")
        LOOKUPS.labels("ok").inc()
        return found

    @app.post("/materialize")
    async def materialize(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if await request.body():
            try:
                body = await request.json()
            except ValueError:
                raise HTTPException(400, "request body is not valid JSON") from None
        started = time.perf_counter()
        try:
            result = store.materialize(body.get("feature_views"), body.get("end_ts"), body.get("source_table"),
                                       body.get("column_map"), bool(body.get("strict_schema", False)))
        except KeyError as err:
            MATERIALIZATIONS.labels("error").inc()
            raise HTTPException(400, str(err.args[0])) from None
        except UnknownTableError as err:
            MATERIALIZATIONS.labels("error").inc()
            appkit.log("error", "materialization failed", error=str(err))
            raise HTTPException(404, str(err)) from None
        except SchemaContractError as err:
            MATERIALIZATIONS.labels("error").inc()
            appkit.log("error", "materialization failed", error=str(err))
            raise HTTPException(422, str(err)) from None
        except (UpstreamSchemaError, OSError, ValueError) as err:
            MATERIALIZATIONS.labels("error").inc()
            appkit.log("error", "materialization failed", error=f"{type(err).__name__}: {err}")
            raise HTTPException(502, f"reading upstream failed: {type(err).__name__}: {err}") from None
        MATERIALIZATIONS.labels("ok").inc()
        ms = round((time.perf_counter() - started) * 1000, 1)
        for view, info in sorted(result.items()):
            for feature, source in sorted(info.get("missing_source_columns", {}).items()):
                appkit.log("warning", "source column missing upstream, feature materialized as null",
                           feature_view=view, feature=feature, source_column=source)
        appkit.log("info", "materialized", feature_views=sorted(result), duration_ms=ms)
        return {"materialized": result, "duration_ms": ms}

    @app.get("/freshness")
    def freshness() -> dict[str, Any]:
        return {"now": time.time(), "feature_views": store.freshness()}

    @app.get("/feature-views")
    def feature_views() -> dict[str, Any]:
        return {"entity": {"name": "account", "join_key": ENTITY_COLUMN},
                "source": DEFAULT_UPSTREAM_SCHEMA["table"],
                "feature_views": {v: {"features": [{"name": f, "source_column": c} for f, c in cols.items()]}
                                  for v, cols in FEATURE_VIEWS.items()}}

    @app.get("/offline/{entity_id}")
    def offline(entity_id: str, limit: int = 5) -> dict[str, Any]:
        """The upstream rows for one entity, newest first, with the upstream's own column names."""
        index = data.entity_index(entity_id)
        if index is None:
            raise HTTPException(404, f"entity {entity_id} not found in the offline table")
        try:
            schema = upstream_schema()
            return {"table": schema.get("table"), "rows": _offline_history(store, schema, entity_id, index, limit)}
        except (UpstreamSchemaError, OSError, ValueError) as err:
            raise HTTPException(502, f"reading upstream failed: {err}") from None

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _offline_history(store: FeatureStore, schema: dict[str, Any], entity: str, index: int,
                     limit: int) -> list[dict[str, Any]]:
    now = time.time()
    entity_col = next((c for c, q in schema["columns"].items() if q == "entity_id"), None)
    out: list[dict[str, Any]] = []
    bucket = math.floor(now / store.interval_s)
    while len(out) < max(1, min(limit, 50)):
        rows = offline_rows(bucket, store.interval_s, schema)
        row = {col: _plain(vals[index]) for col, vals in rows.items()}
        bucket -= 1
        if _row_ts(row, schema) > now:
            continue  # this entity's row for the current bucket has not arrived yet
        if entity_col:
            row[entity_col] = entity
        out.append(row)
    return out


def _age(store: FeatureStore, view: str) -> float:
    ov = store.online.get(view)
    return float("nan") if ov is None else time.time() - float(ov.event_ts.max())


def _row_ts(row: dict[str, Any], schema: dict[str, Any]) -> float:
    ts_col = next((c for c, q in schema["columns"].items() if q == "event_timestamp"), "event_timestamp")
    return float(row.get(ts_col, 0.0))


def _plain(v: Any) -> Any:
    f = float(v)
    return int(f) if f.is_integer() else f


def main() -> None:
    appkit.set_app_name("feature-store")
    store = FeatureStore(appkit.env_float("OFFLINE_EVENT_INTERVAL_S", 60.0))
    try:  # the online store starts warm, as after the deploy-time backfill
        store.materialize()
    except Exception as err:  # noqa: BLE001 - a broken upstream must not stop the server
        appkit.log("error", "initial materialization failed", error=f"{type(err).__name__}: {err}")
    appkit.log("info", "feature store started", release=appkit.release("1.1.0"), entities=data.ENTITY_COUNT,
               feature_views=sorted(FEATURE_VIEWS), interval_s=store.interval_s)
    appkit.serve(create_app(store))


if __name__ == "__main__":
    main()
