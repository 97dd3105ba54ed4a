"""The training Job's data loading: shards from a bucket, a local cache, and what the logs say about both.

No cluster: the dataset module and the Job's program run here with tmp folders. The bucket
itself is the boundary that cannot be reached (no cloud); its throughput is the figure the
module gives a read from that region, scaled like the rest of the run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mlops_drill.mlplatform import dataset_cache as dc

CENTRAL = "gs://fraud-datasets-us-central1/fraud/2024-09/"
EAST = "gs://fraud-datasets-us-east1/fraud/2024-09/"


def _dataset(uri: str, cache: Path | None, region: str | None = "us-central1"):
    X = np.arange(600, dtype=np.float64).reshape(200, 3)
    y = (np.arange(200) % 2).astype(np.int8)
    logs: list[tuple[str, str, dict]] = []
    ds = dc.ShardedDataset(uri, X, y, shards=4, shard_mb=2048, cache_dir=cache, region=region,
                           time_scale=1e6, log=lambda level, msg, **kw: logs.append((level, msg, kw)))
    return ds, X, y, logs


def test_a_miss_downloads_and_fills_the_cache_then_the_next_epoch_hits(tmp_path: Path) -> None:
    ds, X, y, logs = _dataset(CENTRAL, tmp_path / "cache")
    first = ds.load_epoch(1, threading.Event())
    assert first is not None
    Xe, ye, reads = first
    assert np.array_equal(Xe, X) and np.array_equal(ye, y), "an epoch sees exactly the training data"
    assert [r.cache for r in reads] == ["miss"] * 4
    assert logs[0][1].startswith(f"loading shard 1/4 from {CENTRAL}shard-00001-of-00004.npz (cache miss, ")
    assert "region us-central1)" in logs[0][1] and "remote region" not in logs[0][1]
    assert 720 <= logs[0][2]["mb_per_s"] <= 880
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.npz")) == [ds.shard_name(i) for i in range(1, 5)]

    logs.clear()
    second = ds.load_epoch(2, threading.Event())
    assert second is not None and np.array_equal(second[0], X)
    assert [r.cache for r in second[2]] == ["hit"] * 4
    assert logs[2][1] == (f"loading shard 3/4 from {CENTRAL}shard-00003-of-00004.npz "
                          f"(cache hit, local copy {ds.cache_path(3)})")
    assert all(r.egress_gb == 0 for r in first[2] + second[2])


def test_without_a_cache_every_epoch_reads_the_far_bucket_again(tmp_path: Path) -> None:
    ds, X, _, logs = _dataset(EAST, None, region="us-central1")
    assert ds.cross_region
    for epoch in (1, 2, 3):
        got = ds.load_epoch(epoch, threading.Event())
        assert got is not None and np.array_equal(got[0], X)
        assert [r.cache for r in got[2]] == ["off"] * 4
        assert sum(r.egress_gb for r in got[2]) == pytest.approx(4 * 2.048)
    assert len(logs) == 12 and all("(cache miss, " in m and m.endswith(", remote region us-east1)") for _, m, _ in logs)
    assert all(36 <= kw["mb_per_s"] <= 44 for _, _, kw in logs)
    assert not any(tmp_path.rglob("*.npz"))


def test_a_shard_cut_short_in_the_cache_is_downloaded_again(tmp_path: Path) -> None:
    ds, X, _, logs = _dataset(CENTRAL, tmp_path)
    ds.load_epoch(1, threading.Event())
    ds.cache_path(2).write_bytes(b"PK\x03\x04 cut short")
    logs.clear()
    got = ds.load_epoch(2, threading.Event())
    assert got is not None and np.array_equal(got[0], X)
    assert [r.cache for r in got[2]] == ["hit", "miss", "hit", "hit"]


def test_a_stop_while_waiting_on_the_bucket_ends_the_epoch() -> None:
    X, y = np.zeros((10, 2)), np.zeros(10)
    ds = dc.ShardedDataset(EAST, X, y, shards=2, time_scale=1.0, region="us-central1")
    stop = threading.Event()
    stop.set()
    assert ds.load_epoch(1, stop) is None


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(dc.DatasetError, match=r"invalid value for env DATASET_URI: 'fraud/2024-09' \(use gs://"):
        dc.parse_uri("fraud/2024-09")
    with pytest.raises(dc.DatasetError, match="bucket 'fraud-datasets-mars' not found"):
        dc.parse_uri("gs://fraud-datasets-mars/x/")
    assert dc.node_region("gpu-node-1") == "us-central1"
    assert dc.node_region("s3-gpu-node-0") == "us-central1", "a seat's node, named with its prefix"
    assert dc.node_region("laptop") is None


def _run(env: dict[str, str]) -> list[dict]:
    full = {**os.environ, "EPOCHS": "2", "EPOCH_SECONDS": "0.2", "NVIDIA_VISIBLE_DEVICES": "GPU-0",
            "DATASET_SHARDS": "3", "DATA_TIME_SCALE": "2000", "NODE_NAME": "gpu-node-0", **env}
    proc = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.training"], env=full,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_the_job_logs_cache_hits_after_its_first_epoch(tmp_path: Path) -> None:
    records = _run({"DATASET_URI": CENTRAL, "DATA_CACHE_DIR": str(tmp_path / "cache")})
    epochs = [r for r in records if r["msg"].startswith("epoch ")]
    assert [(e["cache_hits"], e["cache_misses"]) for e in epochs] == [(0, 3), (3, 0)]
    assert not [r for r in records if r["level"] == "warning" and "CHECKPOINT_DIR" not in r["msg"]]
    started = next(r for r in records if r["msg"] == "training started")
    assert started["bucket_region"] == started["node_region"] == "us-central1"


def test_the_job_without_cache_in_another_region_says_so_and_bills_the_wait(tmp_path: Path) -> None:
    records = _run({"DATASET_URI": EAST, "DATA_CACHE_DIR": "", "COST_LEDGER": str(tmp_path / "ledger.jsonl")})
    warnings = [r["msg"] for r in records if r["level"] == "warning"]
    assert "no DATA_CACHE_DIR set: every epoch reads all 3 shards from the bucket again" in warnings
    assert "dataset bucket is in another region than this node: reads are cross-region" in warnings
    epochs = [r for r in records if r["msg"].startswith("epoch ")]
    assert [(e["cache_hits"], e["cache_misses"]) for e in epochs] == [(0, 3), (0, 3)]
    # 3 shards x 2048 MB at ~40 MB/s, /2000: ~0.077 s of loading against 0.2 s of compute.
    assert all(e["data_loading_seconds"] >= 0.06 and e["gpu_busy_pct"] < 85 for e in epochs)
    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert all(e["gpu_hours"] > 0.5 and e["egress_gb"] == pytest.approx(3 * 2.048) for e in ledger)


def test_without_a_dataset_uri_the_job_trains_from_memory_as_before(tmp_path: Path) -> None:
    records = _run({"DATASET_URI": "", "COST_LEDGER": str(tmp_path / "ledger.jsonl")})
    assert not [r for r in records if r["msg"].startswith("loading shard")]
    epochs = [r for r in records if r["msg"].startswith("epoch ")]
    assert len(epochs) == 2 and "cache_hits" not in epochs[0]
    ledger = [json.loads(line) for line in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    assert [e["gpu_hours"] for e in ledger] == [0.5, 0.5]
