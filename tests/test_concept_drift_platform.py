"""The platform parts behind concept-drift-delayed-labels: delayed labels, the model monitor, the CT pipeline's
gate, reproducible rebuilds of what it registers, and serving's input PSI.

No cluster: the registry, the monitor and the pipeline run as their own processes on local ports (as in their
pods, configured by env, finding each other through the same services table the process kubelet writes), called
over real HTTP. What is asserted is what an engineer sees: answers, logs, the registry's versions.
"""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest

from mlops_drill.mlplatform import data, input_drift, outcomes, retrain, transforms
from mlops_drill.mlplatform.artifacts import ensure_artifacts, load_version

CAMPAIGN = outcomes.CAMPAIGNS["pos-skimming"]
WINDOW = 14


def feed_during_campaign(matured: int = 20, window: int = WINDOW) -> outcomes.LabelFeed:
    return outcomes.LabelFeed(as_of=CAMPAIGN.start + timedelta(days=window + matured), window_days=window)


def score_v3(X: np.ndarray) -> np.ndarray:
    v = load_version(ensure_artifacts(), "fraud-model", "3")
    return v.model.predict_proba(transforms.apply(v.transform, v.features, X))


# ---------------------------------------------------------------- labels and the world

def test_a_campaign_changes_the_labels_not_the_inputs() -> None:
    stats = load_version(ensure_artifacts(), "fraud-model", "3").stats["features"]
    before = outcomes.day_rows(CAMPAIGN.start - timedelta(days=30))
    during = outcomes.day_rows(CAMPAIGN.start + timedelta(days=10))
    for i, f in enumerate(data.FEATURES):
        hist = stats[f]["histogram"]
        assert input_drift.psi(during.X[:, i], hist["edges"], hist["counts"]) < 0.1, f
        assert input_drift.psi(before.X[:, i], hist["edges"], hist["counts"]) < 0.1, f
    days = lambda first: [outcomes.day_rows(CAMPAIGN.start + timedelta(days=first + k)) for k in range(14)]
    recall = {}
    for name, rows in (("before", days(-40)), ("during", days(5))):
        y, X = np.concatenate([r.y for r in rows]), np.vstack([r.X for r in rows])
        recall[name] = outcomes.quality(y, score_v3(X))["recall"]
    assert recall["before"] - recall["during"] >= 0.15, recall


def test_a_day_is_the_same_rows_for_every_feed_and_process() -> None:
    a, b = outcomes.day_rows(CAMPAIGN.start), outcomes.day_rows(CAMPAIGN.start)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    short, long = outcomes.LabelFeed(window_days=7), outcomes.LabelFeed(window_days=21)
    assert np.array_equal(short.rows(3).X, long.rows(3).X), "the feed's window decides what is known, not the rows"


def test_chargebacks_arrive_within_the_window_and_only_matured_days_are_labels() -> None:
    feed = outcomes.LabelFeed(window_days=WINDOW)
    for age in (0, 1, 5, WINDOW - 1, WINDOW, WINDOW + 5):
        k = feed.known(age)
        frauds = int(k["rows"].y.sum())
        assert k["matured"] == (age >= WINDOW)
        assert int(k["chargebacks"].sum()) <= frauds
        if age >= WINDOW:
            assert int(k["chargebacks"].sum()) == frauds, "every chargeback is in once the window closed"
        if age == 0:
            assert int(k["chargebacks"].sum()) == 0 and int(k["reports"].sum()) == 0
    X, y = feed.training_rows(range(0, WINDOW + 2))
    assert len(y) == 2 * outcomes.PER_DAY, "immature days are left out, never guessed"


def test_the_report_shows_the_drop_where_labels_are_final_and_in_the_proxy_where_not() -> None:
    base = outcomes.report(outcomes.LabelFeed(window_days=WINDOW), score_v3)
    drift = outcomes.report(feed_during_campaign(), score_v3)
    assert [w["labels"] for w in drift["weeks"][:3]] == ["pending", "pending", "final"]
    assert all(w["recall"] is None for w in drift["weeks"][:2]), "no recall without final labels"
    assert base["summary"]["latest_final_week"]["recall"] - drift["summary"]["latest_final_week"]["recall"] >= 0.15
    assert drift["summary"]["oldest_final_week"]["recall"] >= 0.4, "before the pattern the model was fine"
    proxy = lambda r: np.mean([w["reported_fraud_caught"] for w in r["weeks"][:2]])
    assert proxy(base) - proxy(drift) >= 0.08, (proxy(base), proxy(drift))


# ---------------------------------------------------------------- reproducible CT versions

def test_a_registered_version_is_rebuilt_byte_for_byte_and_a_wrong_hash_is_refused(tmp_path: Path) -> None:
    feed = feed_during_campaign()
    ages = (WINDOW + 4, WINDOW + 17)
    X, y = feed.training_rows(range(ages[0], ages[1] + 1))
    spec = retrain.spec_for(feed.as_of.isoformat(), WINDOW, ages)
    built = retrain.build(spec, X, y, tmp_path / "a" / "fraud-model" / "6")
    tags = {retrain.SPEC_TAG: json.dumps(spec), retrain.WEIGHTS_TAG: retrain.weights_hash(built.path)}
    again = retrain.rebuild("fraud-model", "6", tags, tmp_path / "b")
    assert again is not None and retrain.weights_hash(again) == tags[retrain.WEIGHTS_TAG]
    assert load_version(tmp_path / "b", "fraud-model", "6").lineage == built.lineage
    with pytest.raises(FileNotFoundError, match="do not match"):
        retrain.rebuild("fraud-model", "6", {**tags, retrain.WEIGHTS_TAG: "0" * 64}, tmp_path / "c")
    assert retrain.rebuild("fraud-model", "3", {}, tmp_path / "d") is None, "no record: not a CT version"


# ---------------------------------------------------------------- input PSI on serving's requests

def test_psi_reads_stable_for_the_training_period_and_large_for_the_drifted_one() -> None:
    v = load_version(ensure_artifacts(), "fraud-model", "3")
    window = input_drift.DriftWindow(size=500)
    rng = np.random.default_rng(3)
    rows = lambda period, n: np.column_stack([
        {**data.sample_transactions(rng, n, data.period(period).transactions), **data.sample_accounts(rng, n)}[f]
        for f in v.features])
    amount = v.features.index("amount")
    for row in rows(data.BASELINE_PERIOD, input_drift.MIN_ROWS - 1):
        window.observe(v.features, v.stats, row)
    assert math.isnan(window.psi(amount, "amount")), "too few requests: no reading"
    for row in rows(data.BASELINE_PERIOD, 500):
        window.observe(v.features, v.stats, row)
    assert all(window.psi(i, f) < 0.1 for i, f in enumerate(v.features)), \
        {f: window.psi(i, f) for i, f in enumerate(v.features)}
    for row in rows(data.RECENT_PERIOD, 500):
        window.observe(v.features, v.stats, row)
    assert window.psi(amount, "amount") > 0.25
    row = rows(data.BASELINE_PERIOD, 1)[0].copy()
    row[amount] = np.nan
    window.observe(v.features, v.stats, row)  # a missing value is a null, not a shift
    assert window.psi(amount, "amount") > 0.25


# ---------------------------------------------------------------- the services over HTTP

def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _platform(tmp_path: Path, as_of: str, window: int) -> Iterator[dict]:
    """The registry and the model monitor as processes; the services table the pipeline and loaders read."""
    ensure_artifacts()
    ports = {"registry/model-registry": _port(), "serving/model-monitor": _port()}
    table = tmp_path / "services.json"
    table.write_text(json.dumps({k: f"127.0.0.1:{p}" for k, p in ports.items()}))
    env = {**os.environ, "MLOPS_DRILL_SERVICES": str(table), "TMPDIR": str(tmp_path)}
    env.pop("POD_NAMESPACE", None)
    procs = [subprocess.Popen([sys.executable, "-m", mod], env={**env, "PORT": str(port), **extra},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for mod, port, extra in (
                 ("mlops_drill.mlplatform.registry", ports["registry/model-registry"], {}),
                 ("mlops_drill.mlplatform.model_monitor", ports["serving/model-monitor"],
                  {"LABEL_FEED_AS_OF": as_of, "CHARGEBACK_WINDOW_DAYS": str(window)}))]
    urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    try:
        deadline = time.monotonic() + 60
        for url in urls.values():
            while True:
                try:
                    if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, [p.stderr.read() for p in procs if p.poll() is not None]
                time.sleep(0.2)
        yield {"env": env, "registry": urls["registry/model-registry"], "monitor": urls["serving/model-monitor"]}
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def _pipeline(env: dict) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.retrain"], env=env, capture_output=True,
                          text=True, timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _versions(registry: str) -> dict[str, str]:
    got = httpx.get(registry + "/api/2.0/mlflow/model-versions/search?filter=name%3D%27fraud-model%27").json()
    return {v["version"]: v["current_stage"] for v in got["model_versions"]}


def test_during_a_campaign_the_monitor_shows_it_and_the_gated_challenger_is_registered_and_loadable(
        tmp_path: Path) -> None:
    feed = feed_during_campaign()
    with _platform(tmp_path, feed.as_of.isoformat(), WINDOW) as p:
        report = httpx.get(p["monitor"] + "/report", timeout=30).json()
        assert report["model_version"] == "3" and report["summary"]["latest_final_week"]["recall"] < 0.35
        labels = httpx.get(p["monitor"] + "/labels").json()
        assert labels["as_of"] == feed.as_of.isoformat() and sum(d["matured"] for d in labels["days"]) == \
            outcomes.HISTORY_DAYS - WINDOW
        code, logs = _pipeline(p["env"])
        gate = next(line for line in logs if line["msg"].startswith("evaluation gate"))
        assert code == 0 and gate["msg"] == "evaluation gate passed", logs
        assert gate["challenger"]["auc"] >= gate["champion"]["auc"] + 0.02
        assert _versions(p["registry"])["6"] == "Staging"
        challenger = httpx.get(p["monitor"] + "/report?version=6", timeout=30).json()
        assert challenger["summary"]["latest_final_week"]["recall"] >= 0.4
        # a fresh process (a serving pod) loads version 6, which is in no artifact folder: rebuilt and hash-checked
        loaded = subprocess.run([sys.executable, "-c", (
            "from mlops_drill.mlplatform.artifacts import ensure_artifacts, load_version\n"
            "v = load_version(ensure_artifacts(), 'fraud-model', '6')\n"
            "print(v.version, v.lineage['training_period'])")], env=p["env"], capture_output=True, text=True,
            timeout=60)
        assert loaded.returncode == 0 and loaded.stdout.split()[0] == "6", loaded.stderr


def test_without_a_campaign_the_gate_fails_and_nothing_is_registered(tmp_path: Path) -> None:
    with _platform(tmp_path, outcomes.BASELINE_AS_OF.isoformat(), WINDOW) as p:
        code, logs = _pipeline(p["env"])
        assert code == 0 and any(line["msg"] == "evaluation gate failed" for line in logs), logs
        assert set(_versions(p["registry"])) == {"1", "2", "3", "4", "5"}
