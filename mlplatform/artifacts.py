"""Model artifacts for every registered version, built deterministically from the seed.

One call trains all versions and writes, per version: weights (``.npz``), the
transform config, training statistics (the drift baseline), metrics and
lineage. Same code and seed give byte-identical files, so the data version and
transform hashes in lineage are reproducible facts. The registry, the inference
service and the tests all read the same directory, built once on first need.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_drill.mlplatform import data, transforms
from mlops_drill.mlplatform.model import Model, auc, fit, log_loss

MODEL_NAME = "fraud-model"
#: The commit the training code is recorded at in lineage (a fixed string: the drill has no CI).
CODE_COMMIT = "4be1c0d7a9f3e2b8c6d5a4f3e2b1c0d9e8f7a6b5"
TRAIN_ROWS = 20_000
HOLDOUT_ROWS = 5_000
THRESHOLD = 0.5
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class VersionSpec:
    version: int
    stage: str
    period: str
    features: tuple[str, ...]
    arch: str
    hidden: int
    serving_size_gib: float
    epochs: int
    created: str  # ISO date the version was registered
    description: str


VERSIONS: tuple[VersionSpec, ...] = (
    VersionSpec(1, "Archived", "2023-09", data.FEATURES_V1, "logreg", 0, 3.0, 15, "2023-10-02",
                "Logistic regression on the first card feature set"),
    VersionSpec(2, "Archived", "2023-12", data.FEATURES, "logreg", 0, 3.0, 15, "2024-01-15",
                "Adds card_present and velocity_ratio"),
    VersionSpec(3, "Production", "2024-03", data.FEATURES, "mlp", 16, 6.0, 8, "2024-04-08",
                "MLP, 16 hidden units"),
    VersionSpec(4, "Staging", "2024-09", data.FEATURES, "mlp", 16, 6.0, 8, "2024-10-07",
                "Retrained on 2024-09 transactions"),
    VersionSpec(5, "None", "2024-09", data.FEATURES, "mlp", 64, 24.0, 8, "2024-11-04",
                "MLP, 64 hidden units (4x wider)"),
)

#: What the registry's audit log starts with: how the versions got their stages.
HISTORY: tuple[tuple[str, int, str, str], ...] = (
    ("2023-10-03", 1, "None", "Production"),
    ("2024-01-16", 2, "None", "Staging"),
    ("2024-01-22", 2, "Staging", "Production"),
    ("2024-01-22", 1, "Production", "Archived"),
    ("2024-04-09", 3, "None", "Staging"),
    ("2024-04-15", 3, "Staging", "Production"),
    ("2024-04-15", 2, "Production", "Archived"),
    ("2024-10-08", 4, "None", "Staging"),
)


def build_artifacts(out_dir: Path | str, seed: int = data.SEED) -> dict[str, Any]:
    """Train every version and write its artifacts under ``out_dir``; returns the manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    versions = [_build_version(out, spec, seed) for spec in VERSIONS]
    manifest = {
        "seed": seed,
        "code_commit": CODE_COMMIT,
        "models": [{"name": MODEL_NAME, "description": "Card-not-present fraud scoring",
                    "created": VERSIONS[0].created, "versions": versions}],
        "history": [{"date": d, "name": MODEL_NAME, "version": str(v), "from_stage": a, "to_stage": b,
                     "user": "ml-platform-ci"} for d, v, a, b in HISTORY],
    }
    _write_json(out / MANIFEST, manifest)
    return manifest


def _build_version(out: Path, spec: VersionSpec, seed: int) -> dict[str, Any]:
    train = data.labelled_sample(spec.period, TRAIN_ROWS, seed, salt=spec.version, features=spec.features)
    holdout = data.labelled_sample(spec.period, HOLDOUT_ROWS, seed, salt=100 + spec.version, features=spec.features)
    config = transforms.fit(spec.features, train.X)
    model = fit(spec.arch, spec.hidden, transforms.apply(config, spec.features, train.X), train.y,
                spec.epochs, seed + spec.version)

    vdir = out / MODEL_NAME / str(spec.version)
    vdir.mkdir(parents=True, exist_ok=True)
    _write_npz(vdir / "weights.npz", model.params)
    _write_json(vdir / "transform.json", config)
    hold_scores = model.predict_proba(transforms.apply(config, spec.features, holdout.X))
    _write_json(vdir / "training_stats.json", _training_stats(train, hold_scores))
    metrics = _metrics(model, config, spec, holdout, hold_scores, seed)
    _write_json(vdir / "metrics.json", metrics)
    run_id = hashlib.sha256(f"{seed}/{MODEL_NAME}/{spec.version}/{spec.period}".encode()).hexdigest()[:32]
    lineage = {
        "training_run_id": run_id,
        "data_version": train.version_hash(),
        "training_period": spec.period,
        "code_commit": CODE_COMMIT,
        "feature_list": list(spec.features),
        "transform_config_hash": transforms.config_hash(config),
        "seed": seed,
    }
    _write_json(vdir / "lineage.json", lineage)
    card = {"arch": spec.arch, "hidden_units": spec.hidden, "features": list(spec.features),
            "n_parameters": model.n_parameters, "serving_size_gib": spec.serving_size_gib,
            "threshold": THRESHOLD}
    _write_json(vdir / "model.json", card)
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(vdir.iterdir())}
    return {"version": str(spec.version), "stage": spec.stage, "description": spec.description,
            "created": spec.created, "path": f"{MODEL_NAME}/{spec.version}", "lineage": lineage,
            "metrics": metrics, "model": card, "files": files}


def _metrics(model: Model, config: dict, spec: VersionSpec, holdout: data.Dataset,
             scores: np.ndarray, seed: int) -> dict[str, float]:
    out = {
        "auc": round(auc(holdout.y, scores), 6),
        "log_loss": round(log_loss(holdout.y, scores), 6),
        "accuracy": round(float(np.mean((scores >= THRESHOLD) == (holdout.y == 1))), 6),
        "base_rate": round(float(holdout.y.mean()), 6),
        "mean_score": round(float(scores.mean()), 6),
    }
    for name in (data.BASELINE_PERIOD, data.RECENT_PERIOD):
        other = data.labelled_sample(name, HOLDOUT_ROWS, seed, salt=200, features=spec.features)
        s = model.predict_proba(transforms.apply(config, spec.features, other.X))
        out[f"auc_{name.replace('-', '_')}"] = round(auc(other.y, s), 6)
    return out


def _training_stats(train: data.Dataset, scores: np.ndarray) -> dict[str, Any]:
    """Per-feature summary and histograms: the baseline a drift check compares live inputs to."""
    feats = {}
    for i, name in enumerate(train.features):
        col = train.X[:, i]
        lo, hi = np.percentile(col, [0.5, 99.5])
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, 21)
        counts, _ = np.histogram(np.clip(col, lo, hi), bins=edges)
        feats[name] = {
            "mean": _r(col.mean()), "std": _r(col.std()), "min": _r(col.min()), "max": _r(col.max()),
            "p50": _r(np.percentile(col, 50)), "p99": _r(np.percentile(col, 99)), "null_count": 0,
            "histogram": {"edges": [_r(e) for e in edges], "counts": [int(c) for c in counts]},
        }
    score_counts, score_edges = np.histogram(scores, bins=np.linspace(0.0, 1.0, 21))
    confidence = np.maximum(scores, 1 - scores)
    conf_counts, conf_edges = np.histogram(confidence, bins=np.linspace(0.5, 1.0, 11))
    return {
        "rows": int(len(train.y)), "label_rate": _r(train.y.mean()), "features": feats,
        "prediction": {
            "score_histogram": {"edges": [_r(e) for e in score_edges], "counts": score_counts.tolist()},
            "confidence_histogram": {"edges": [_r(e) for e in conf_edges], "counts": conf_counts.tolist()},
        },
    }


# ---------------------------------------------------------------- the on-disk cache

def code_hash(seed: int = data.SEED) -> str:
    """Names the cache folder: changes whenever the code that produces artifacts changes."""
    h = hashlib.sha256(str(seed).encode())
    here = Path(__file__).parent
    for name in ("data.py", "model.py", "transforms.py", "artifacts.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def artifact_dir() -> Path:
    """``$ARTIFACT_DIR``, else ``<cache>/artifacts/<code hash>``."""
    explicit = os.environ.get("ARTIFACT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    from mlops_drill.paths import cache_dir
    return cache_dir() / "artifacts" / code_hash()


def ensure_artifacts(target: Path | None = None) -> Path:
    """The artifact directory, built first if missing.

    Every platform process calls this at start-up, often at the same moment, so
    the build runs under a file lock into a temporary folder that is renamed
    into place: readers never see a half-written directory.
    """
    target = target or artifact_dir()
    if (target / MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / MANIFEST).is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            build_artifacts(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / MANIFEST).read_text())


@dataclass
class LoadedVersion:
    """Everything the inference service needs from one version's artifact folder."""

    name: str
    version: str
    model: Model
    transform: dict[str, Any]
    lineage: dict[str, Any]
    card: dict[str, Any]
    stats: dict[str, Any]
    path: Path

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.card["features"])


def version_dir(root: Path, name: str, version: str) -> Path:
    return root / name / str(version)


def load_version(root: Path, name: str, version: str) -> LoadedVersion:
    """Read a version's files; FileNotFoundError when the version was never built and cannot be.

    A version the CT pipeline registered after the artifact folder was built is
    not in it; when the registry records how it was trained, it is trained again
    from that record (same code, data and seed: the same bytes, checked against
    the registered hash), as this folder was built from the seed.
    """
    vdir = version_dir(root, name, version)
    if not (vdir / "model.json").is_file():
        rebuilt = _rebuild_registered(name, str(version))
        if rebuilt is None:
            raise FileNotFoundError(f"no artifacts for {name} version {version} under {root}")
        vdir = rebuilt
    card = json.loads((vdir / "model.json").read_text())
    with np.load(vdir / "weights.npz") as npz:
        params = {k: npz[k] for k in npz.files}
    return LoadedVersion(
        name=name, version=str(version), model=Model(card["arch"], params),
        transform=json.loads((vdir / "transform.json").read_text()),
        lineage=json.loads((vdir / "lineage.json").read_text()), card=card,
        stats=json.loads((vdir / "training_stats.json").read_text()), path=vdir)


def _rebuild_registered(name: str, version: str) -> Path | None:
    """The folder of a registered version rebuilt from its lineage tags, or None (unknown, unreachable, or
    registered without a training record)."""
    from mlops_drill.mlplatform import appkit, retrain
    from mlops_drill.mlplatform.discovery import service_url

    try:
        mv = appkit.http_json("GET", service_url("model-registry", "registry")
                              + f"/api/2.0/mlflow/model-versions/get?name={name}&version={version}",
                              timeout=5.0)["model_version"]
    except (appkit.UpstreamError, KeyError):
        return None
    tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
    if retrain.SPEC_TAG not in tags:
        return None
    # keyed by what was registered: another drill's version of the same number is another folder
    key = hashlib.sha256((tags[retrain.SPEC_TAG] + tags.get(retrain.WEIGHTS_TAG, "")).encode()).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / "mlops-drill-rebuilt" / key
    if (root / name / version / "model.json").is_file():
        return root / name / version
    return retrain.rebuild(name, version, tags, root)


# ---------------------------------------------------------------- byte-stable writers

def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``.npz`` numpy can load, without the wall-clock timestamps ``np.savez`` writes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def _r(x: float) -> float:
    return round(float(x), 6)
