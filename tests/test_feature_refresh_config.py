"""The refresh job's pipeline config as a data engineer meets it: table, column mapping, strict schema.

The store is exercised in-process (materialise, then read what serving would
read); the job runs as the real ``python -m`` process against a real store
process, so its exit code and stderr are what ``kubectl logs`` would show.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from mlops_drill.mlplatform.featurestore import (DEFAULT_UPSTREAM_SCHEMA, FeatureStore, SchemaContractError,
                                                 UnknownTableError)


def renamed_schema(old: str, new: str) -> dict:
    schema = json.loads(json.dumps(DEFAULT_UPSTREAM_SCHEMA))
    schema["columns"][new] = schema["columns"].pop(old)
    return schema


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The upstream renamed merchant_risk_score to mrch_risk_score in its published schema."""
    monkeypatch.setenv("UPSTREAM_SCHEMA", json.dumps(renamed_schema("merchant_risk_score", "mrch_risk_score")))


def test_renamed_column_is_materialised_as_null_and_reported(renamed: None) -> None:
    store = FeatureStore(60.0)
    result = store.materialize()
    assert result["merchant_risk"]["missing_source_columns"] == {"merchant_risk": "merchant_risk_score"}
    assert "missing_source_columns" not in result["account_activity"]
    assert store.lookup("acct-000007")["features"]["merchant_risk"] is None


def test_column_map_reads_the_renamed_column(renamed: None) -> None:
    store = FeatureStore(60.0)
    result = store.materialize(column_map={"mrch_risk_score": "merchant_risk"})
    assert "missing_source_columns" not in result["merchant_risk"]
    value = store.lookup("acct-000007")["features"]["merchant_risk"]
    assert value is not None and 0.0 <= value <= 1.0


def test_strict_schema_fails_instead_of_writing_nulls(renamed: None) -> None:
    store = FeatureStore(60.0)
    store.materialize(column_map={"mrch_risk_score": "merchant_risk"})
    with pytest.raises(SchemaContractError, match=r"merchant_risk_score \(feature merchant_risk\)"):
        store.materialize(strict=True)
    # the failed run left the online store as it was
    assert store.lookup("acct-000007")["features"]["merchant_risk"] is not None


def test_unknown_source_table_names_the_available_one() -> None:
    with pytest.raises(UnknownTableError, match=r"'payments.account_snapshot_v2' not found "
                                                r"\(available: payments.account_snapshot\)"):
        FeatureStore(60.0).materialize(source_table="payments.account_snapshot_v2")


def test_backfill_leaves_the_view_as_of_its_end_time() -> None:
    store = FeatureStore(60.0)
    end = time.time() - 3600
    store.materialize(end_ts=end)
    view = store.freshness()["account_activity"]
    assert view["last_materialized_at"] == end
    assert 3600 <= view["age_seconds"] < 3600 + 120


# --------------------------------------------------------------------------- the job as a process

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("store") / "store.log"
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_DRILL_SERVICES"}
    env.update(PORT=str(port), UPSTREAM_SCHEMA=json.dumps(renamed_schema("merchant_risk_score", "mrch_risk_score")))
    proc = subprocess.Popen([sys.executable, "-m", "mlops_drill.mlplatform.featurestore"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/readyz", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"feature store did not start: {Path(log).read_text()[-500:]}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def refresh(store_url: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "MLOPS_DRILL_SERVICES"}
    full.update(FEATURE_STORE_URL=store_url, **env)
    return subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.feature_refresh"], env=full,
                          capture_output=True, text=True, timeout=60)


def online_merchant_risk(store_url: str) -> float | None:
    body = json.loads(urllib.request.urlopen(store_url + "/features/acct-000007", timeout=5).read())
    return body["features"]["merchant_risk"]


def test_job_fails_with_the_missing_table_in_its_error(store_url: str) -> None:
    run = refresh(store_url, SOURCE_TABLE="payments.account_snapshot_v2")
    assert run.returncode == 1
    assert "offline table 'payments.account_snapshot_v2' not found (available: payments.account_snapshot)" \
        in run.stderr


def test_job_warns_on_a_missing_column_and_maps_it_when_told(store_url: str) -> None:
    run = refresh(store_url)
    assert run.returncode == 0  # a silent-ish success: only a warning line
    warnings = [json.loads(line) for line in run.stdout.splitlines() if '"warning"' in line]
    assert [w["source_column"] for w in warnings] == ["merchant_risk_score"]
    assert online_merchant_risk(store_url) is None

    strict = refresh(store_url, STRICT_SCHEMA="true")
    assert strict.returncode == 1 and "HTTP 422" in strict.stderr

    mapped = refresh(store_url, COLUMN_MAP="mrch_risk_score:merchant_risk", STRICT_SCHEMA="true")
    assert mapped.returncode == 0, mapped.stderr
    assert online_merchant_risk(store_url) is not None


def test_malformed_column_map_is_a_config_error(store_url: str) -> None:
    run = refresh(store_url, COLUMN_MAP="mrch_risk_score")
    assert run.returncode == 1
    assert "invalid COLUMN_MAP entry 'mrch_risk_score'" in run.stderr
