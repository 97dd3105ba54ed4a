"""The CT pipeline's retraining run (CronJob ``fraud-retrain``, suspended: started on a trigger).

One run: read the labelled rows of the most recent *matured* days from the
model monitor (days whose chargeback window has closed; newer days have no
final labels and are never guessed), hold out the newest ``EVAL_DAYS`` of them,
train a challenger on the ``TRAIN_DAYS`` before, and score champion (the
registry's Production version) and challenger on the same held-out days. The
evaluation gate passes only when the challenger's AUC beats the champion's by
``MIN_AUC_GAIN`` and its review-queue recall is not lower; then the challenger
is registered and moved to Staging with its lineage and gate metrics as tags,
awaiting a person's promotion. A run whose gate fails registers nothing.

The build is reproducible: the tags record the exact label window, seed and
code, and the weights' hash. A process that needs the version's files and does
not have them (``artifacts.load_version``) trains it again from that record and
checks the hash, as the artifact folder itself is built from the seed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from mlops_drill.mlplatform import appkit, data, outcomes, transforms
from mlops_drill.mlplatform.artifacts import (CODE_COMMIT, THRESHOLD, LoadedVersion, _training_stats, _write_json,
                                              _write_npz, ensure_artifacts, load_version)
from mlops_drill.mlplatform.discovery import service_url
from mlops_drill.mlplatform.model import fit

ARCH, HIDDEN, EPOCHS, SERVING_SIZE_GIB = "mlp", 16, 8, 6.0
SPEC_TAG, WEIGHTS_TAG = "training_spec", "weights_sha256"


def spec_for(feed_as_of: str, window_days: int, ages: tuple[int, int]) -> dict[str, Any]:
    """Everything that decides the challenger's bytes (with the code at CODE_COMMIT)."""
    return {"label_feed_as_of": feed_as_of, "chargeback_window_days": window_days, "train_ages": list(ages),
            "features": list(data.FEATURES), "arch": ARCH, "hidden": HIDDEN, "epochs": EPOCHS,
            "seed": data.SEED, "per_day": outcomes.PER_DAY}


def build(spec: dict[str, Any], X: np.ndarray, y: np.ndarray, out: Path) -> LoadedVersion:
    """Train on ``X, y`` as ``spec`` says and write a version folder at ``out`` (the artifact layout)."""
    features = tuple(spec["features"])
    ds = data.Dataset(features=features, X=X, y=y, period="labels")
    config = transforms.fit(features, X)
    model = fit(spec["arch"], spec["hidden"], transforms.apply(config, features, X), y, spec["epochs"],
                spec["seed"] + 6)
    as_of = date.fromisoformat(spec["label_feed_as_of"])
    lo, hi = spec["train_ages"]
    period = f"{(as_of - timedelta(days=hi)).isoformat()}..{(as_of - timedelta(days=lo)).isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    _write_npz(out / "weights.npz", model.params)
    _write_json(out / "transform.json", config)
    _write_json(out / "training_stats.json", _training_stats(ds, model.predict_proba(transforms.apply(config, features, X))))
    _write_json(out / "metrics.json", {})
    _write_json(out / "lineage.json", {
        "training_run_id": hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32],
        "data_version": ds.version_hash(), "training_period": period, "code_commit": CODE_COMMIT,
        "feature_list": list(features), "transform_config_hash": transforms.config_hash(config),
        "seed": spec["seed"]})
    _write_json(out / "model.json", {"arch": spec["arch"], "hidden_units": spec["hidden"], "features": list(features),
                                     "n_parameters": model.n_parameters, "serving_size_gib": SERVING_SIZE_GIB,
                                     "threshold": THRESHOLD})
    return load_version(out.parent.parent, out.parent.name, out.name)


def weights_hash(folder: Path) -> str:
    return hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest()


def rebuild(name: str, version: str, tags: dict[str, str], root: Path) -> Path | None:
    """The folder of a registered CT version, trained again from its recorded spec; None when it has none.

    Raises FileNotFoundError when the rebuilt weights differ from the registered hash
    (the code or the data changed since: the version cannot be reproduced).
    """
    if SPEC_TAG not in tags:
        return None
    spec = json.loads(tags[SPEC_TAG])
    feed = outcomes.LabelFeed(as_of=date.fromisoformat(spec["label_feed_as_of"]),
                              window_days=int(spec["chargeback_window_days"]), per_day=int(spec["per_day"]))
    lo, hi = spec["train_ages"]
    X, y = feed.training_rows(range(lo, hi + 1))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=root))  # renamed into place: readers never see half
    built = staging / name / str(version)
    build(spec, X, y, built)
    if tags.get(WEIGHTS_TAG) and weights_hash(built) != tags[WEIGHTS_TAG]:
        shutil.rmtree(staging, ignore_errors=True)
        raise FileNotFoundError(f"{name} version {version}: rebuilt weights do not match {WEIGHTS_TAG} "
                                f"(the training code or data changed since it was registered)")
    folder = root / name / str(version)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(built, folder)
    except OSError:  # another process put the same bytes there first
        pass
    shutil.rmtree(staging, ignore_errors=True)
    return folder


# ---------------------------------------------------------------- the Job

def _get_rows(monitor: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    got = appkit.http_json("GET", f"{monitor}/labels/rows?from_age={lo}&to_age={hi}", timeout=30.0)
    return np.asarray(got["X"], dtype=np.float64).reshape(-1, len(got["features"])), \
        np.asarray(got["y"], dtype=np.float64), got["ages"]


def _score(v: LoadedVersion, X: np.ndarray) -> np.ndarray:
    cols = [data.FEATURES.index(f) for f in v.features]
    return v.model.predict_proba(transforms.apply(v.transform, v.features, X[:, cols]))


def main() -> int:
    appkit.set_app_name("fraud-retrain")
    name = os.environ.get("MODEL_NAME", "fraud-model")
    train_days = int(appkit.env_float("TRAIN_DAYS", 14))
    eval_days = int(appkit.env_float("EVAL_DAYS", 4))
    min_gain = appkit.env_float("MIN_AUC_GAIN", 0.02)
    monitor = service_url("model-monitor", os.environ.get("MONITOR_NAMESPACE", "serving"))
    api = service_url("model-registry", "registry") + "/api/2.0/mlflow"
    try:
        feed = appkit.http_json("GET", f"{monitor}/labels", timeout=10.0)
        window = int(feed["chargeback_window_days"])
        eval_ages, train_ages = (window, window + eval_days - 1), (window + eval_days, window + eval_days + train_days - 1)
        appkit.log("info", "retraining started", label_feed_as_of=feed["as_of"], chargeback_window_days=window,
                   note=f"days newer than {window} days have no final labels and are left out",
                   train_ages=list(train_ages), eval_ages=list(eval_ages))
        X, y, _ = _get_rows(monitor, *train_ages)
        Xe, ye, _ = _get_rows(monitor, *eval_ages)
        champion_version = str(appkit.http_json(
            "POST", f"{api}/registered-models/get-latest-versions", {"name": name, "stages": ["Production"]},
            timeout=10.0)["model_versions"][0]["version"])
    except (appkit.UpstreamError, KeyError, IndexError) as err:
        appkit.log("error", "retraining aborted: inputs unavailable", error=str(err))
        return 1
    appkit.log("info", "training data", rows=int(len(y)), frauds=int(y.sum()), holdout_rows=int(len(ye)),
               holdout_frauds=int(ye.sum()))
    spec = spec_for(feed["as_of"], window, train_ages)
    workdir = Path(tempfile.mkdtemp(prefix="fraud-retrain-"))
    challenger = build(spec, X, y, workdir / name / "candidate")
    champion = load_version(ensure_artifacts(), name, champion_version)
    champ_q, chall_q = outcomes.quality(ye, _score(champion, Xe)), outcomes.quality(ye, _score(challenger, Xe))
    passed = (chall_q["auc"] or 0) >= (champ_q["auc"] or 0) + min_gain and \
        (chall_q["recall"] or 0) >= (champ_q["recall"] or 0)
    appkit.log("info", "evaluation gate " + ("passed" if passed else "failed"),
               rule=f"challenger AUC >= champion AUC + {min_gain:g} and recall not lower, on the newest "
                    f"{eval_days} matured days",
               champion={"version": champion_version, **champ_q}, challenger=chall_q)
    if not passed:
        appkit.log("info", "nothing registered: the champion stays", champion_version=champion_version)
        return 0
    lineage = challenger.lineage
    tags = {SPEC_TAG: json.dumps(spec, sort_keys=True), WEIGHTS_TAG: weights_hash(challenger.path),
            "training_period": lineage["training_period"], "data_version": lineage["data_version"],
            "code_commit": CODE_COMMIT, "feature_list": ",".join(data.FEATURES),
            "transform_config_hash": lineage["transform_config_hash"], "training_run_id": lineage["training_run_id"],
            "serving_size_gib": str(SERVING_SIZE_GIB), "pipeline": "fraud-retrain",
            **{f"metric.gate_{k}": str(v) for k, v in chall_q.items()},
            **{f"metric.gate_champion_{k}": str(v) for k, v in champ_q.items()},
            "gate.champion_version": champion_version}
    try:
        made = appkit.http_json("POST", f"{api}/model-versions/create", {
            "name": name, "source": f"runs:/{lineage['training_run_id']}/model", "run_id": lineage["training_run_id"],
            "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]}, timeout=10.0)["model_version"]
        appkit.http_json("POST", f"{api}/model-versions/transition-stage",
                         {"name": name, "version": made["version"], "stage": "Staging"}, timeout=10.0)
    except appkit.UpstreamError as err:
        appkit.log("error", "model registration failed", url=err.url, error=err.reason)
        return 1
    appkit.log("info", "model registered", model=name, version=made["version"], stage="Staging",
               training_period=lineage["training_period"], awaiting="promotion to Production by a person")
    return 0


if __name__ == "__main__":
    sys.exit(main())
