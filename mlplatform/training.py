"""The ``fraud-train`` Job: retrains the fraud model epoch by epoch and prices the run.

Really trains (numpy MLP on the period's data) and really waits ``EPOCH_SECONDS``
per epoch, standing for ``GPU_HOURS_PER_EPOCH`` of GPU time. With
``CHECKPOINT_DIR`` set it saves model and optimiser state after every epoch and
resumes from there after a restart; without it, a preempted spot pod starts
again at epoch 1 and the GPU-hours already spent are lost. Every epoch is
appended to a cost ledger (``COST_LEDGER``) that survives restarts, so the cost
of repeated preemptions is visible in the logs.

With ``DATASET_URI`` set the epochs read the training data as shards from that
bucket (``dataset_cache``), through a local cache when ``DATA_CACHE_DIR`` is set:
the GPU waits while shards load, and the ledger bills the GPU for the whole
epoch, waiting included, plus cross-region egress.

A ``DATASET_URI`` of the versioned table (``gs://BUCKET/fraud/transactions/PERIOD@REF``,
``dataset_versions``) trains on one snapshot: ``REF`` is an immutable snapshot id or
an alias the data catalogue (``DATASET_CATALOG``) maps to one. The run logs the
snapshot it read, its content hash (``data_version``) and row counts, and with
``REGISTER_MODEL`` set registers its model with that lineage and its validation
metrics in the model registry. ``RANDOM_STATE``, ``LEARNING_RATE`` and
``HIDDEN_UNITS`` are the rest of what a rerun needs to be the same run.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # A spot reclaim may stop the pod while numpy and the model code still load (a second and more on a
    # busy node): from the first line on, that stop is caught and reported like any other, instead of
    # Python's default ending the process with nothing in its log.
    STOP_SIGNAL = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: STOP_SIGNAL.set())

import numpy as np  # noqa: E402

from mlops_drill.cluster.gpu.activity import DeviceClock
from mlops_drill.mlplatform import appkit, data, dataset_cache, dataset_versions, loadtime, transforms
from mlops_drill.mlplatform.discovery import service_url
from mlops_drill.mlplatform.model import Adam, Model, auc, init_model, train_epoch

#: Assumed list prices per H100 GPU-hour (override with PRICE_ON_DEMAND / PRICE_SPOT).
PRICE_PER_GPU_HOUR = {"on-demand": 6.88, "spot": 2.75}
CHECKPOINT_FILE = "checkpoint.npz"


def price(capacity_type: str) -> float:
    if capacity_type not in PRICE_PER_GPU_HOUR:
        raise SystemExit(f"invalid value for env CAPACITY_TYPE: {capacity_type!r} (use spot or on-demand)")
    env = "PRICE_SPOT" if capacity_type == "spot" else "PRICE_ON_DEMAND"
    return appkit.env_float(env, PRICE_PER_GPU_HOUR[capacity_type])


def save_checkpoint(directory: Path, epoch: int, model: Model, opt: Adam, run_key: str = "") -> None:
    """Atomic: a preemption mid-write leaves the previous checkpoint intact.

    ``run_key`` names the data and settings the state was trained with, so a
    later run on other data does not resume from it (see ``load_checkpoint``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"param.{k}": v for k, v in model.params.items()}
    arrays.update({f"m.{k}": v for k, v in opt.m.items()})
    arrays.update({f"v.{k}": v for k, v in opt.v.items()})
    arrays["meta"] = np.array([epoch, opt.step], dtype=np.int64)
    if run_key:
        arrays["run_key"] = np.array(run_key)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, directory / CHECKPOINT_FILE)


def load_checkpoint(directory: Path, arch: str, run_key: str = "") -> tuple[int, Model, Adam] | None:
    """The saved state, or None; also None (logged) when it was trained on other data or settings."""
    path = directory / CHECKPOINT_FILE
    if not path.is_file():
        return None
    with np.load(path) as npz:
        saved_key = str(npz["run_key"]) if "run_key" in npz.files else ""
        if saved_key != run_key:
            appkit.log("warning", "checkpoint is from a run on other data or settings: starting from epoch 1",
                       checkpoint=str(path), checkpoint_run=saved_key or None, this_run=run_key or None)
            return None
        epoch, step = (int(x) for x in npz["meta"])
        params = {k[6:]: npz[k] for k in npz.files if k.startswith("param.")}
        opt = Adam(step=step, m={k[2:]: npz[k] for k in npz.files if k.startswith("m.")},
                   v={k[2:]: npz[k] for k in npz.files if k.startswith("v.")})
    return epoch, Model(arch, params), opt


class Ledger:
    """Append-only JSON lines of GPU time spent, across every attempt of the Job."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: list[dict[str, Any]] = []
        if path and path.is_file():
            self.entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @property
    def attempts(self) -> int:
        return len({e["attempt"] for e in self.entries})

    def totals(self) -> tuple[float, float]:
        return (sum(e["gpu_hours"] for e in self.entries), sum(e["cost_usd"] for e in self.entries))

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry) + "\n")


def main() -> int:
    appkit.set_app_name("fraud-train")
    # First thing: a stop that comes while the data is still being built is a stop like any other
    # (run as the Job's program, the handler is in place before the imports already).
    stop = globals().get("STOP_SIGNAL") or threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    epochs = int(appkit.env_float("EPOCHS", 20))
    epoch_seconds = appkit.env_float("EPOCH_SECONDS", 3.0)
    gpu_hours_per_epoch = appkit.env_float("GPU_HOURS_PER_EPOCH", 0.5)
    capacity = os.environ.get("CAPACITY_TYPE", "on-demand").strip().lower()
    unit_price = price(capacity)
    ckpt_env = os.environ.get("CHECKPOINT_DIR", "").strip()
    ckpt_dir = Path(ckpt_env) if ckpt_env else None
    ledger_env = os.environ.get("COST_LEDGER", "").strip()
    ledger = Ledger(Path(ledger_env) if ledger_env else None)
    attempt = ledger.attempts + 1
    period = os.environ.get("TRAIN_PERIOD", data.RECENT_PERIOD)
    gpus = [g for g in os.environ.get("NVIDIA_VISIBLE_DEVICES", "").split(",") if g and g.lower() not in ("void", "none")]
    if not gpus:
        appkit.log("warning", "CUDA not available, training on CPU", slowdown=loadtime.CPU_SLOWDOWN)
        epoch_seconds *= loadtime.CPU_SLOWDOWN

    random_state = int(appkit.env_float("RANDOM_STATE", data.SEED))
    learning_rate = appkit.env_float("LEARNING_RATE", Adam.lr)
    hidden = int(appkit.env_float("HIDDEN_UNITS", 16))
    snapshot = _snapshot()
    if snapshot is None:
        train = data.labelled_sample(period, 20_000, salt=900)
        val = data.labelled_sample(period, 5_000, salt=901)
    else:
        train, val, period = snapshot.train, snapshot.val, snapshot.train.period
    config = transforms.fit(train.features, train.X)
    Xs, Xv = transforms.apply(config, train.features, train.X), transforms.apply(config, val.features, val.X)

    dataset = _dataset(Xs, train.y, None if snapshot is None else snapshot.uri)
    settings = {"epochs": epochs, "learning_rate": learning_rate, "random_state": random_state,
                "hidden_units": hidden}
    # Without a snapshot the data never changes between runs: checkpoints stay as they were (no key).
    run_key = "" if snapshot is None else ",".join(
        [train.version_hash(), *(f"{k}={v}" for k, v in sorted(settings.items()) if k != "epochs")])
    start_epoch, model, opt = 0, init_model("mlp", Xs.shape[1], hidden, random_state), Adam(lr=learning_rate)
    if ckpt_dir is None:
        appkit.log("warning", "no CHECKPOINT_DIR set: progress is lost if this pod is stopped")
    else:
        restored = load_checkpoint(ckpt_dir, "mlp", run_key)
        if restored:
            start_epoch, model, opt = restored
            opt.lr = learning_rate
            appkit.log("info", "resuming from checkpoint", checkpoint=str(ckpt_dir / CHECKPOINT_FILE),
                       completed_epochs=start_epoch)
    spent_h, spent_usd = ledger.totals()
    appkit.log("info", "training started", attempt=attempt, epochs=epochs, start_epoch=start_epoch + 1,
               capacity_type=capacity, price_per_gpu_hour=unit_price, devices=gpus or ["cpu"],
               data_period=period, data_version=train.version_hash(),
               gpu_hours_so_far=round(spent_h, 2), cost_usd_so_far=round(spent_usd, 2),
               **_dataset_fields(dataset), **_without(snapshot.fields() | settings if snapshot else {},
                                                      "data_version", "epochs"))

    val_auc: float | None = None
    gpu_busy = DeviceClock()  # inert without a GPU
    for epoch in range(start_epoch + 1, epochs + 1):
        epoch_started = time.monotonic()
        X_epoch, y_epoch, reads = Xs, train.y, []
        if dataset is not None:
            loaded = dataset.load_epoch(epoch, stop)
            if loaded is None:
                return _preempted(epoch - 1, ckpt_dir)
            X_epoch, y_epoch, reads = loaded
        started = time.monotonic()
        data_seconds = started - epoch_started
        loss = train_epoch(model, opt, X_epoch, y_epoch, batch=1024, seed=random_state + epoch)
        val_auc = auc(val.y, model.predict_proba(Xv))
        preempted = stop.wait(max(0.0, epoch_seconds - (time.monotonic() - started)))
        compute_seconds = time.monotonic() - started
        gpu_busy.add(compute_seconds)  # the epoch stands for GPU time: nvidia-smi / dcgm see it
        if preempted:
            return _preempted(epoch - 1, ckpt_dir)
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir, epoch, model, opt, run_key)
        # The GPU is allocated while the loader waits too: with a dataset the epoch bills its whole wall time.
        gpu_hours = gpu_hours_per_epoch if dataset is None else \
            gpu_hours_per_epoch * (data_seconds + compute_seconds) / max(compute_seconds, 1e-9)
        egress_gb = sum(r.egress_gb for r in reads)
        ledger.add({"attempt": attempt, "pod": os.environ.get("POD_NAME", ""), "epoch": epoch,
                    "gpu_hours": round(gpu_hours, 4),
                    "cost_usd": round(gpu_hours * unit_price + egress_gb * dataset_cache.EGRESS_USD_PER_GB, 4),
                    "capacity_type": capacity, **({"egress_gb": round(egress_gb, 3)} if reads else {})})
        total_h, total_usd = ledger.totals()
        appkit.log("info", f"epoch {epoch}/{epochs}", epoch=epoch, epochs=epochs, loss=round(loss, 5),
                   val_auc=round(val_auc, 4), checkpointed=ckpt_dir is not None,
                   gpu_hours_total=round(total_h, 2), cost_usd_total=round(total_usd, 2),
                   **_epoch_data_fields(reads, data_seconds, compute_seconds))
        if stop.is_set():
            return _preempted(epoch, ckpt_dir)
    total_h, total_usd = ledger.totals()
    useful_h = epochs * gpu_hours_per_epoch
    lineage: dict[str, Any] = {}
    if snapshot is not None:
        if val_auc is None:  # resumed from a finished run's checkpoint: the model is that run's
            val_auc = auc(val.y, model.predict_proba(Xv))
        lineage = {**snapshot.fields(), **settings, "val_auc_exact": round(val_auc, 6),
                   "transform_config_hash": transforms.config_hash(config)}
    appkit.log("info", "training finished", epochs=epochs, val_auc=None if val_auc is None else round(val_auc, 4),
               gpu_hours_total=round(total_h, 2), cost_usd_total=round(total_usd, 2),
               gpu_hours_wasted=round(max(0.0, total_h - useful_h), 2),
               cost_usd_wasted=round(max(0.0, total_h - useful_h) * unit_price, 2), attempts=attempt,
               **_without(lineage, "epochs"))
    name = os.environ.get("REGISTER_MODEL", "").strip()
    if name and snapshot is not None:
        return _register(name, lineage, val)
    return 0


def _without(fields: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k not in keys}


def _snapshot() -> dataset_versions.Snapshot | None:
    """The snapshot a versioned ``DATASET_URI`` names (resolved through the catalogue), else None."""
    uri = os.environ.get("DATASET_URI", "").strip()
    if not dataset_versions.is_versioned(uri):
        return None
    catalog = os.environ.get("DATASET_CATALOG", "").strip()
    try:
        snap = dataset_versions.open_snapshot(uri, Path(catalog) if catalog else None)
    except dataset_versions.DatasetRefError as exc:
        raise SystemExit(str(exc)) from None
    if snap.alias is not None:
        appkit.log("info", f"dataset alias '{snap.alias}' resolved to snapshot {snap.snapshot}",
                   dataset_uri=uri, dataset_snapshot=snap.snapshot, dataset_snapshot_uri=snap.uri)
    appkit.log("info", f"dataset snapshot {snap.snapshot} loaded", **snap.fields())
    return snap


def _register(name: str, lineage: dict[str, Any], val: data.Dataset) -> int:
    """Register this run's model with its lineage and validation metrics (MLflow's create calls)."""
    api = service_url("model-registry", "registry") + "/api/2.0/mlflow"
    run_id = hashlib.sha256(json.dumps(lineage, sort_keys=True).encode()).hexdigest()[:32]
    tags = [{"key": k, "value": str(v)} for k, v in sorted(lineage.items())
            if k != "val_auc_exact" and v is not None]
    tags += [{"key": "dataset_uri", "value": os.environ.get("DATASET_URI", "").strip()},
             {"key": "metric.val_auc", "value": str(lineage["val_auc_exact"])},
             {"key": "metric.val_base_rate", "value": str(round(float(val.y.mean()), 6))}]
    try:
        try:
            appkit.http_json("POST", f"{api}/registered-models/create", {"name": name}, timeout=10)
        except appkit.UpstreamError as err:
            if err.status != 400:  # RESOURCE_ALREADY_EXISTS: later versions of the same model
                raise
        made = appkit.http_json("POST", f"{api}/model-versions/create",
                                {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id, "tags": tags},
                                timeout=10)
    except appkit.UpstreamError as err:
        appkit.log("error", "model registration failed", model=name, url=err.url, error=err.reason)
        return 1
    appkit.log("info", "model registered", model=name, version=made["model_version"]["version"], run_id=run_id,
               dataset_snapshot=lineage["dataset_snapshot"], data_version=lineage["data_version"])
    return 0


def _dataset(X: np.ndarray, y: np.ndarray, uri: str | None = None) -> dataset_cache.ShardedDataset | None:
    """The bucket the epochs read from (``DATASET_URI``, or a snapshot's own URI), or None: the data is in memory."""
    uri = uri or os.environ.get("DATASET_URI", "").strip()
    if not uri:
        return None
    cache_env = os.environ.get("DATA_CACHE_DIR", "").strip()
    node = os.environ.get("NODE_NAME", "").strip()
    try:
        ds = dataset_cache.ShardedDataset(
            uri, X, y, shards=int(appkit.env_float("DATASET_SHARDS", 12)),
            shard_mb=appkit.env_float("DATASET_SHARD_MB", 2048), cache_dir=Path(cache_env) if cache_env else None,
            region=dataset_cache.node_region(node), time_scale=appkit.env_float("DATA_TIME_SCALE", 60),
            log=appkit.log)
    except dataset_cache.DatasetError as exc:
        raise SystemExit(str(exc)) from None
    if ds.cache_dir is None:
        appkit.log("warning", f"no DATA_CACHE_DIR set: every epoch reads all {ds.shards} shards from the bucket again",
                   dataset_uri=ds.uri)
    if ds.cross_region:
        appkit.log("warning", "dataset bucket is in another region than this node: reads are cross-region",
                   dataset_uri=ds.uri, bucket_region=ds.bucket_region, node=node, node_region=ds.region)
    return ds


def _dataset_fields(ds: dataset_cache.ShardedDataset | None) -> dict[str, Any]:
    if ds is None:
        return {}
    return {"dataset_uri": ds.uri, "dataset_shards": ds.shards, "dataset_gb": round(ds.shards * ds.shard_mb / 1000, 1),
            "data_cache_dir": None if ds.cache_dir is None else str(ds.cache_dir),
            "bucket_region": ds.bucket_region, "node_region": ds.region}


def _epoch_data_fields(reads: list[dataset_cache.ShardRead], data_seconds: float,
                       compute_seconds: float) -> dict[str, Any]:
    """Where the epoch's time went: loading shards (the GPU waits) or computing."""
    if not reads:
        return {}
    hits = sum(r.cache == "hit" for r in reads)
    total = data_seconds + compute_seconds
    return {"epoch_seconds": round(total, 2), "data_loading_seconds": round(data_seconds, 2),
            "compute_seconds": round(compute_seconds, 2), "gpu_busy_pct": round(100 * compute_seconds / total),
            "cache_hits": hits, "cache_misses": len(reads) - hits}


def _preempted(completed: int, ckpt_dir: Path | None) -> int:
    if ckpt_dir is not None:
        appkit.log("warning", "SIGTERM received, stopping", completed_epochs=completed,
                   checkpoint=str(ckpt_dir / CHECKPOINT_FILE), resume="next attempt continues from the checkpoint")
    else:
        appkit.log("warning", "SIGTERM received, stopping", completed_epochs=completed,
                   checkpoint=None, resume=f"no checkpoint: {completed} completed epoch(s) will be redone")
    return 143


if __name__ == "__main__":
    sys.exit(main())
