"""Model-quality monitor (Deployment ``model-monitor``): delayed labels joined to the served model's scores.

Serving's /metrics can only say what the model did with its inputs; whether it
was right is known days later, when chargebacks arrive. This service holds the
label feed (``outcomes.LabelFeed``: the date the feed stands at and the
chargeback window, from ConfigMap ``label-feed``) and answers, for the version
the registry has in Production (or any version asked for):

* ``/report``: per week, newest first, precision / recall / AUC of the review
  queue where labels are final, and the early proxy (share of cardholder-reported
  frauds the model sent to review) where they are not;
* ``/labels``: what has arrived per day (chargebacks, reports, which days matured);
* ``/labels/rows``: the labelled rows of matured days, the CT pipeline's training data.

The version is resolved per request, so a promotion shows on the next report.
"""
from __future__ import annotations

import os
import threading
from datetime import date
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from mlops_drill.mlplatform import appkit, data, outcomes, transforms
from mlops_drill.mlplatform.artifacts import LoadedVersion, ensure_artifacts, load_version
from mlops_drill.mlplatform.discovery import service_url

APP = "model-monitor"
REPORTS = Counter("model_monitor_reports_total", "Quality reports computed", ["version"])


def feed_from_env() -> outcomes.LabelFeed:
    """The label feed this pod serves; a bad value stops the process with one line naming it."""
    raw = os.environ.get("LABEL_FEED_AS_OF", "").strip()
    try:
        as_of = date.fromisoformat(raw) if raw else outcomes.BASELINE_AS_OF
    except ValueError:
        raise SystemExit(f"invalid value for env LABEL_FEED_AS_OF: {raw!r} is not a date (YYYY-MM-DD)") from None
    window = appkit.env_float("CHARGEBACK_WINDOW_DAYS", outcomes.DEFAULT_WINDOW_DAYS)
    if window < 1 or window != int(window):
        raise SystemExit(f"invalid value for env CHARGEBACK_WINDOW_DAYS: {window:g} must be a whole number >= 1")
    return outcomes.LabelFeed(as_of=as_of, window_days=int(window))


def registry_api() -> str:
    return service_url("model-registry", "registry") + "/api/2.0/mlflow"


def production_version(name: str) -> str:
    found = appkit.http_json("POST", f"{registry_api()}/registered-models/get-latest-versions",
                             {"name": name, "stages": ["Production"]}, timeout=5.0)["model_versions"]
    if not found:
        raise LookupError(f"registered model {name} has no version in stage Production")
    return str(found[0]["version"])


class Monitor:
    def __init__(self, feed: outcomes.LabelFeed, model_name: str):
        self.feed, self.model_name = feed, model_name
        self.lock = threading.Lock()
        self.versions: dict[str, LoadedVersion] = {}
        self.reports: dict[str, dict[str, Any]] = {}

    def version(self, version: str) -> LoadedVersion:
        with self.lock:
            if version not in self.versions:
                self.versions[version] = load_version(ensure_artifacts(), self.model_name, version)
            return self.versions[version]

    def report(self, version: str) -> dict[str, Any]:
        with self.lock:
            cached = self.reports.get(version)
        if cached is not None:
            return cached
        v = self.version(version)
        scored = outcomes.report(self.feed, lambda X: v.model.predict_proba(
            transforms.apply(v.transform, v.features, X[:, [data.FEATURES.index(f) for f in v.features]])))
        out = {"model_name": v.name, "model_version": v.version,
               "training_period": v.lineage.get("training_period"), **scored}
        REPORTS.labels(version).inc()
        with self.lock:
            self.reports[version] = out
        return out

    def labels(self) -> dict[str, Any]:
        days = []
        for age in range(self.feed.history_days):
            k = self.feed.known(age)
            days.append({"date": self.feed.day(age).isoformat(), "age_days": age, "matured": k["matured"],
                         "transactions": int(len(k["rows"].y)), "chargebacks_received": int(k["chargebacks"].sum()),
                         "reported_frauds": int(k["reports"].sum())})
        return {"as_of": self.feed.as_of.isoformat(), "chargeback_window_days": self.feed.window_days,
                "report_share": outcomes.REPORT_SHARE, "days": days}

    def rows(self, from_age: int, to_age: int) -> dict[str, Any]:
        ages = range(from_age, to_age + 1)
        X, y = self.feed.training_rows(ages)
        return {"as_of": self.feed.as_of.isoformat(), "chargeback_window_days": self.feed.window_days,
                "features": list(data.FEATURES), "ages": [a for a in ages if self.feed.matured(a)],
                "skipped_immature_ages": [a for a in ages if not self.feed.matured(a)],
                "X": X.tolist(), "y": y.tolist()}


def create_app(monitor: Monitor) -> FastAPI:
    app = FastAPI(title=APP, docs_url=None, redoc_url=None)

    @app.get("/report")
    def report(version: str | None = None) -> dict[str, Any]:
        try:
            chosen = version or production_version(monitor.model_name)
            return monitor.report(chosen)
        except appkit.UpstreamError as err:
            raise HTTPException(503, f"model registry: {err.reason}") from None
        except (LookupError, FileNotFoundError) as err:
            raise HTTPException(404, str(err)) from None

    @app.get("/labels")
    def labels() -> dict[str, Any]:
        return monitor.labels()

    @app.get("/labels/rows")
    def rows(from_age: int, to_age: int) -> dict[str, Any]:
        if not 0 <= from_age <= to_age < monitor.feed.history_days:
            raise HTTPException(400, f"ages must satisfy 0 <= from_age <= to_age < {monitor.feed.history_days}")
        return monitor.rows(from_age, to_age)

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


def main() -> None:
    appkit.set_app_name(APP)
    feed = feed_from_env()
    monitor = Monitor(feed, os.environ.get("MODEL_NAME", "fraud-model"))
    appkit.log("info", "label feed loaded", as_of=feed.as_of.isoformat(), chargeback_window_days=feed.window_days,
               history_days=feed.history_days, matured_days=sum(feed.matured(a) for a in range(feed.history_days)))
    appkit.serve(create_app(monitor))


if __name__ == "__main__":
    main()
