"""Versioned training data: snapshots, moving aliases, and a training run that records and reproduces them.

No cluster: the dataset module, the Job's program and the model registry run here as real
processes on local ports, configured by env as in their pods. The bucket is the boundary that
cannot be reached (no cloud); a snapshot's rows are materialised from the period's seeded data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from service_process import service_process

from mlops_drill.mlplatform import dataset_versions as dv

TABLE = "gs://fraud-datasets-us-central1/fraud/transactions/2024-09"


def test_a_reference_names_bucket_table_period_and_ref() -> None:
    ref = dv.parse(f"{TABLE}@latest")
    assert (ref.bucket, ref.table, ref.period, ref.ref) == ("fraud-datasets-us-central1", dv.TABLE, "2024-09", "latest")
    assert dv.is_versioned(f"{TABLE}@2024-10-04")
    assert not dv.is_versioned("gs://fraud-datasets-us-central1/fraud/2024-09/")
    for bad in ("s3://b/fraud/transactions/2024-09@latest", f"{TABLE}", "gs://b/other/2024-09@latest",
                f"{TABLE}@"):
        with pytest.raises(dv.DatasetRefError, match=r"^invalid value for env DATASET_URI: .* \(use gs://"):
            dv.parse(bad)


def test_an_alias_resolves_through_the_catalogue_and_a_snapshot_id_never_moves() -> None:
    ref = dv.parse(f"{TABLE}@latest")
    old, new = dv.catalog_for("2024-09", "latest", "2024-10-04"), dv.catalog_for("2024-09", "latest", "2024-10-15")
    assert dv.resolve(ref, old) == ("2024-10-04", "latest")
    assert dv.resolve(ref, new) == ("2024-10-15", "latest")
    pinned = dv.parse(f"{TABLE}@2024-10-04")
    assert dv.resolve(pinned, old) == dv.resolve(pinned, new) == ("2024-10-04", None)
    with pytest.raises(dv.DatasetRefError, match=r"@2024-10-08: no such snapshot or alias \(404\); aliases: latest"):
        dv.resolve(dv.parse(f"{TABLE}@2024-10-08"), old)  # not published yet then
    with pytest.raises(dv.DatasetRefError, match="no such snapshot or alias"):
        dv.resolve(dv.parse(f"{TABLE}@stable"), new)


def test_a_later_snapshot_has_late_rows_and_late_labels_and_another_hash() -> None:
    ref = dv.parse(f"{TABLE}@x")
    early, again, late = (dv.materialise(ref, "2024-10-04"), dv.materialise(ref, "2024-10-04"),
                          dv.materialise(ref, "2024-10-18"))
    assert early.fields() == again.fields(), "same snapshot, same bytes"
    assert np.array_equal(early.train.X, again.train.X) and np.array_equal(early.train.y, again.train.y)
    e, l = early.fields(), late.fields()
    assert l["train_rows"] > e["train_rows"] and l["val_rows"] > e["val_rows"]
    assert l["label_rate"] > e["label_rate"] > 0, "chargebacks arrive after the rows"
    assert l["data_version"] != e["data_version"]
    assert e["dataset_snapshot_uri"] == f"{TABLE}@2024-10-04"
    # Every snapshot's rows are the table's; none is in both training and validation data.
    train_rows = {r.tobytes() for r in late.train.X}
    assert not [r for r in late.val.X if r.tobytes() in train_rows]


def _run(tmp_path: Path, uri: str, catalog: dict | None = None, **env: str) -> list[dict]:
    full = {**os.environ, "EPOCHS": "3", "EPOCH_SECONDS": "0", "NVIDIA_VISIBLE_DEVICES": "GPU-0",
            "DATASET_SHARDS": "3", "DATA_TIME_SCALE": "100000", "NODE_NAME": "gpu-node-0",
            "DATASET_URI": uri, **env}
    if catalog is not None:
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps(catalog))
        full["DATASET_CATALOG"] = str(path)
    proc = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.training"], env=full,
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _finished(records: list[dict]) -> dict:
    return next(r for r in records if r["msg"] == "training finished")


def test_the_run_logs_the_snapshot_an_alias_resolved_to_and_a_pinned_rerun_reproduces_it(tmp_path: Path) -> None:
    month_ago = _run(tmp_path, f"{TABLE}@latest", dv.catalog_for("2024-09", "latest", "2024-10-04"))
    assert [r["msg"] for r in month_ago if "resolved" in r["msg"]] == \
        ["dataset alias 'latest' resolved to snapshot 2024-10-04"]
    recorded = _finished(month_ago)
    assert recorded["dataset_snapshot"] == "2024-10-04" and recorded["dataset_alias"] == "latest"

    today = _finished(_run(tmp_path, f"{TABLE}@latest", dv.catalog_for("2024-09", "latest", "2024-10-15")))
    assert today["dataset_snapshot"] == "2024-10-15"
    assert today["data_version"] != recorded["data_version"] and today["train_rows"] != recorded["train_rows"]
    assert today["val_auc_exact"] != recorded["val_auc_exact"]

    pinned = _finished(_run(tmp_path, f"{TABLE}@2024-10-04", dv.catalog_for("2024-09", "latest", "2024-10-15")))
    for key in ("data_version", "train_rows", "val_rows", "label_rate", "val_auc_exact", "transform_config_hash"):
        assert pinned[key] == recorded[key], key
    assert pinned["dataset_alias"] is None

    reseeded = _finished(_run(tmp_path, f"{TABLE}@2024-10-04", RANDOM_STATE="7"))
    assert reseeded["data_version"] == recorded["data_version"]
    assert reseeded["val_auc_exact"] != recorded["val_auc_exact"], "another seed is another run, not a reproduction"


def test_a_checkpoint_of_a_run_on_other_data_is_not_resumed(tmp_path: Path) -> None:
    ckpt = str(tmp_path / "ckpt")
    first = _finished(_run(tmp_path, f"{TABLE}@2024-10-15", CHECKPOINT_DIR=ckpt))
    other = _run(tmp_path, f"{TABLE}@2024-10-04", CHECKPOINT_DIR=ckpt)
    assert [r for r in other if r["msg"].startswith("checkpoint is from a run on other data")]
    assert not [r for r in other if r["msg"] == "resuming from checkpoint"]
    assert [r["epoch"] for r in other if r["msg"].startswith("epoch ")] == [1, 2, 3]
    same = _run(tmp_path, f"{TABLE}@2024-10-04", CHECKPOINT_DIR=ckpt)  # a finished run on the same data
    assert [r for r in same if r["msg"] == "resuming from checkpoint"]
    assert _finished(same)["val_auc_exact"] == _finished(other)["val_auc_exact"] != first["val_auc_exact"]


def test_an_unknown_alias_stops_the_run_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DATASET_URI": f"{TABLE}@stable", "EPOCHS": "1", "EPOCH_SECONDS": "0"}
    proc = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.training"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{TABLE}@stable: no such snapshot or alias (404)")


@contextmanager
def _registry(tmp_path: Path) -> Iterator[str]:
    from mlops_drill.mlplatform.artifacts import ensure_artifacts

    ensure_artifacts()  # built once here, not raced by the service's start
    with service_process([sys.executable, "-m", "mlops_drill.mlplatform.registry"], {}, "the registry") as (base, _):
        yield base


def test_the_run_registers_its_lineage_and_metrics_in_the_registry(tmp_path: Path) -> None:
    api = "/api/2.0/mlflow"
    with _registry(tmp_path) as base:
        env = {"MODEL_REGISTRY_URL": base, "REGISTER_MODEL": "fraud-cnp"}
        first = _finished(_run(tmp_path, f"{TABLE}@latest", dv.catalog_for("2024-09", "latest", "2024-10-08"), **env))
        second = _finished(_run(tmp_path, f"{TABLE}@2024-10-08", **env))
        got = httpx.get(f"{base}{api}/model-versions/search", params={"filter": "name='fraud-cnp'"}).json()
        versions = {v["version"]: {t["key"]: t["value"] for t in v["tags"]} for v in got["model_versions"]}
        assert sorted(versions) == ["1", "2"]
        one = versions["1"]
        assert one["dataset_uri"] == f"{TABLE}@latest" and one["dataset_snapshot"] == "2024-10-08"
        assert one["data_version"] == first["data_version"] and one["train_rows"] == str(first["train_rows"])
        assert one["metric.val_auc"] == str(first["val_auc_exact"]) == str(second["val_auc_exact"])
        assert versions["2"]["data_version"] == one["data_version"]
        again = httpx.post(f"{base}{api}/registered-models/create", json={"name": "fraud-cnp"})
        assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
        moved = httpx.post(f"{base}{api}/model-versions/transition-stage",
                           json={"name": "fraud-cnp", "version": "1", "stage": "Production"})
        assert moved.json()["model_version"]["current_stage"] == "Production"
        assert httpx.post(f"{base}{api}/registered-models/delete", json={"name": "fraud-cnp"}).status_code == 200
        gone = httpx.get(f"{base}{api}/registered-models/get", params={"name": "fraud-cnp"})
        assert gone.status_code == 404
        assert httpx.get(f"{base}{api}/registered-models/get", params={"name": "fraud-model"}).status_code == 200
