"""The ``feature-refresh`` CronJob: materialise the offline table into the online store.

One attempt per run, like a typical batch job: when the feature store or its
upstream is broken the job prints the real error and exits non-zero, so the
CronJob's Jobs show failures and the online store's age keeps growing. Only a
store that gives no answer at all (still starting, e.g. the run the CronJob
fires while the platform comes up) is retried with back-off, for up to
``UPSTREAM_WAIT_S`` seconds (default 20), as an HTTP client's connect retries do.

The job's env is its pipeline config, as in most teams: ``SOURCE_TABLE`` (the
offline table to read; default: the store's own), ``COLUMN_MAP``
(``upstream_column:feature,...`` for renamed upstream columns) and
``STRICT_SCHEMA`` (fail instead of materialising nulls when a source column is
missing). Without the strict check a missing column is only a warning line.
"""
from __future__ import annotations

import os
import sys
import time

from mlops_drill.mlplatform import appkit
from mlops_drill.mlplatform.discovery import service_url


def parse_column_map(text: str) -> dict[str, str]:
    """``src:dst,src2:dst2`` -> {src: dst}; a malformed pair is a config error worth failing on."""
    mapping: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        src, sep, dst = pair.partition(":")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"invalid COLUMN_MAP entry {pair!r}: expected upstream_column:feature")
        mapping[src.strip()] = dst.strip()
    return mapping


def request_body() -> dict:
    views = [v.strip() for v in os.environ.get("FEATURE_VIEWS", "").split(",") if v.strip()] or None
    body: dict = {"feature_views": views}
    table = os.environ.get("SOURCE_TABLE", "").strip()
    if table:
        body["source_table"] = table
    column_map = parse_column_map(os.environ.get("COLUMN_MAP", ""))
    if column_map:
        body["column_map"] = column_map
    if appkit.env_flag("STRICT_SCHEMA"):
        body["strict_schema"] = True
    return body


def materialize_url() -> str:
    return service_url("feature-store", os.environ.get("FEATURE_STORE_NAMESPACE", "features")) + "/materialize"


def post_when_reachable(body: dict, timeout: float, wait_s: float) -> dict:
    """POST ``body`` to the store; while nothing answers at all, retry with back-off until ``wait_s`` has passed.

    The address is looked up again on every try: a Service that is only being
    created has no entry in the process kubelet's table yet. An HTTP error answer
    is the store's verdict and is raised at once; so is the last connection
    failure once the wait is used up.
    """
    deadline = time.monotonic() + wait_s
    backoff = 0.5
    while True:
        try:
            return appkit.http_json("POST", materialize_url(), body, timeout=timeout)
        except appkit.UpstreamError as err:
            if err.status is not None or time.monotonic() + backoff > deadline:
                raise
            appkit.log("warning", "feature store not reachable yet; retrying", url=err.url, error=err.reason,
                       retry_in_s=backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def main() -> int:
    appkit.set_app_name("feature-refresh")
    try:
        body = request_body()
    except ValueError as err:
        appkit.log("error", "invalid configuration", error=str(err))
        print(f"Error: {err}", file=sys.stderr, flush=True)
        return 1
    url = materialize_url()
    timeout = appkit.env_float("MATERIALIZE_TIMEOUT_S", 30.0)
    appkit.log("info", "materialization started", url=url, feature_views=body["feature_views"] or "all",
               **{k: v for k, v in body.items() if k != "feature_views"})
    started = time.perf_counter()
    try:
        result = post_when_reachable(body, timeout, appkit.env_float("UPSTREAM_WAIT_S", 20.0))
    except appkit.UpstreamError as err:
        appkit.log("error", "materialization failed", url=err.url, error=err.reason)
        print(f"Error: materialize failed: {err.reason} ({err.url})", file=sys.stderr, flush=True)
        return 1
    for view, info in sorted(result.get("materialized", {}).items()):
        for feature, source in sorted(info.get("missing_source_columns", {}).items()):
            appkit.log("warning", "source column not found upstream; feature materialized as null",
                       feature_view=view, feature=feature, source_column=source)
        appkit.log("info", "feature view materialized", feature_view=view, rows=info.get("rows"),
                   newest_event_timestamp=info.get("newest_event_timestamp"))
    appkit.log("info", "materialization finished", seconds=round(time.perf_counter() - started, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
