"""The inference service (Deployment ``fraud-model``): scores transactions over HTTP.

Configuration comes from env like any twelve-factor service: which model
(``MODEL_VERSION`` pin, else the registry's ``MODEL_STAGE``), the transform
config (``TRANSFORM_CONFIG``, a ConfigMap), payload logging, and the release in
the image tag. Symptoms are consequences, not flags: a skewed transform config
really changes scores and its hash, a GPU-less pod really computes 10x slower, a
larger model really takes longer to load, and release 1.5.0's readiness really
answers before the model is there, so early requests queue behind the load.

Throughput knobs are real too: ``MAX_CONCURRENT_REQUESTS`` inferences run at once
per pod (the rest wait in its queue), and ``BATCH_SIZE`` / ``BATCH_TIMEOUT_MS``
turn on micro-batching, where a request waits up to the timeout for others to
share its forward pass. The defaults (64, 1, 0) never queue the traffic replay and
never batch. /metrics shows what an engineer reads to tune them: queue wait,
in-flight and queued requests, batch sizes, the time spent waiting for a batch,
and the configured limits.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlops_drill.cluster.gpu.activity import DeviceClock
from mlops_drill.mlplatform import appkit, cudainit, data, input_drift, loadtime, transforms
from mlops_drill.mlplatform.artifacts import LoadedVersion, ensure_artifacts, load_version
from mlops_drill.mlplatform.discovery import service_url
from mlops_drill.mlplatform.model import SCORE_BUCKETS

APP = "fraud-model"
DEFAULT_RELEASE = "1.4.0"
NULL_WINDOW = 200  # requests the feature null rate is computed over
DEFAULT_MAX_CONCURRENT = 64  # above the replay's peak in flight per pod, so the baseline never queues


@dataclass(frozen=True)
class Behaviour:
    """What a release does differently (the code shipped in that image)."""

    ready_before_model_loaded: bool = False  # 1.5.0: readiness only checks that HTTP is up
    derives_amount_per_txn: bool = False  # 1.6.0-rc1: new derived feature, unguarded division


RELEASE_BEHAVIOUR: dict[str, Behaviour] = {
    "1.3.2": Behaviour(),
    "1.4.0": Behaviour(),
    "1.4.1": Behaviour(),  # same code path; the release ships micro-batching env (see MicroBatcher)
    "1.5.0": Behaviour(ready_before_model_loaded=True),
    "1.6.0-rc1": Behaviour(derives_amount_per_txn=True),
}

# ---------------------------------------------------------------- metrics

LATENCY = Histogram("inference_request_duration_seconds", "HTTP request latency", ["endpoint"],
                    buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
REQUESTS = Counter("inference_requests_total", "HTTP requests", ["endpoint", "code"])
ERRORS = Counter("inference_errors_total", "Failed predictions", ["reason"])
DEVICE_TIME = Histogram("model_inference_seconds", "Forward-pass time on the inference device", ["device"],
                        buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5))
GPU_BUSY = DeviceClock()  # inert without a GPU
CONFIDENCE = Histogram("prediction_confidence", "max(p, 1-p) of each prediction",
                       buckets=(.5, .6, .7, .8, .85, .9, .925, .95, .975, .99, 1.0))
SCORE = Histogram("prediction_score", "Predicted fraud probability", buckets=SCORE_BUCKETS)
NULL_RATE = Gauge("feature_null_rate", f"Share of the last {NULL_WINDOW} requests with the feature missing",
                  ["feature"])
FRESHNESS = Gauge("feature_freshness_seconds", "Age of the online features used by the last entity request",
                  ["feature_view"])
LOAD_SECONDS = Gauge("model_load_seconds", "Time the model took to load")
LOADED = Gauge("model_loaded", "1 once the model is loaded and serving")
INPUT_DRIFT = input_drift.DriftWindow()  # feature_drift_psi{feature} against the served version's training data
QUEUE_WAIT = Histogram("inference_queue_wait_seconds",
                       "Time a request waited for an inference slot (MAX_CONCURRENT_REQUESTS)",
                       buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
IN_FLIGHT = Gauge("inference_requests_in_flight", "Requests holding an inference slot now")
QUEUED = Gauge("inference_requests_queued", "Requests waiting for an inference slot now")
BATCH_SIZE = Histogram("inference_batch_size", "Requests per forward pass",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_WAIT = Histogram("inference_batch_wait_seconds",
                       "Time a request waited in the batcher for its forward pass to start",
                       buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5))
MAX_CONCURRENT = Gauge("inference_max_concurrent_requests", "Configured MAX_CONCURRENT_REQUESTS")
MAX_BATCH = Gauge("inference_max_batch_size", "Configured BATCH_SIZE (1: no batching)")
BATCH_TIMEOUT = Gauge("inference_batch_timeout_seconds",
                      "Longest wait for a batch to fill: BATCH_TIMEOUT_MS in seconds (0 when BATCH_SIZE is 1)")
ASYNC_ROWS = Counter("inference_async_rows_total", "Rows scored through /batch-predict (the async scorer)")
INFO = Gauge("model_info", "The model this pod serves",
             ["name", "version", "stage", "release", "device", "transform_config_hash"])


# ---------------------------------------------------------------- request schema

class TransactionFeatures(BaseModel):
    """Raw feature values; any left out are looked up by ``entity_id`` or treated as missing."""

    model_config = ConfigDict(extra="forbid")
    amount: float | None = Field(None, ge=0)
    merchant_risk: float | None = Field(None, ge=0, le=1)
    hour_of_day: float | None = Field(None, ge=0, le=23)
    distance_km: float | None = Field(None, ge=0)
    txn_count_24h: float | None = Field(None, ge=0)
    account_age_days: float | None = Field(None, ge=0)
    card_present: float | None = Field(None, ge=0, le=1)
    velocity_ratio: float | None = Field(None, ge=0)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str | None = None
    entity_id: str | None = None
    features: TransactionFeatures | None = None
    card_number: str | None = None  # transaction context; PII, never a model input

    @model_validator(mode="after")
    def _needs_input(self) -> "PredictRequest":
        if self.entity_id is None and self.features is None:
            raise ValueError("give entity_id, features, or both")
        return self


class BatchPredictRequest(BaseModel):
    """The async scorer's call (``/batch-predict``): rows with their features inline, one forward pass."""

    model_config = ConfigDict(extra="forbid")
    instances: list[PredictRequest] = Field(..., min_length=1, max_length=1000)


# ---------------------------------------------------------------- settings and model slot

@dataclass
class Settings:
    model_name: str
    model_version: str | None
    model_stage: str
    release: str
    image: str
    device: str
    gpus: list[str]
    load_scale: float
    inference_scale: float
    pin_memory: bool
    log_payloads: bool
    transform_override: Any
    pod: str
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    batch_size: int = 1
    batch_timeout_ms: float = 0.0

    @property
    def behaviour(self) -> Behaviour:
        return RELEASE_BEHAVIOUR.get(self.release, Behaviour())

    @classmethod
    def from_env(cls) -> "Settings":
        visible = os.environ.get("NVIDIA_VISIBLE_DEVICES", "").strip()
        gpus = [] if visible.lower() in ("", "void", "none") else [g for g in visible.split(",") if g]
        return cls(
            model_name=os.environ.get("MODEL_NAME", APP),
            model_version=os.environ.get("MODEL_VERSION", "").strip() or None,
            model_stage=os.environ.get("MODEL_STAGE", "").strip() or "Production",
            release=appkit.release(DEFAULT_RELEASE),
            image=os.environ.get("CONTAINER_IMAGE", f"mlops-drill/{APP}:{DEFAULT_RELEASE}"),
            device="cuda" if gpus else "cpu", gpus=gpus,
            load_scale=appkit.env_float("MODEL_LOAD_TIME_SCALE", loadtime.DEFAULT_LOAD_SCALE),
            inference_scale=appkit.env_float("INFERENCE_TIME_SCALE", 1.0),
            pin_memory=appkit.env_flag("PIN_MEMORY"),
            log_payloads=appkit.env_flag("LOG_PAYLOADS"),
            transform_override=appkit.env_json_or_file("TRANSFORM_CONFIG"),
            pod=os.environ.get("POD_NAME", ""),
            max_concurrent=env_int("MAX_CONCURRENT_REQUESTS", DEFAULT_MAX_CONCURRENT, minimum=1),
            batch_size=env_int("BATCH_SIZE", 1, minimum=1),
            batch_timeout_ms=_env_non_negative("BATCH_TIMEOUT_MS", 0.0),
        )


def env_int(name: str, default: int, minimum: int) -> int:
    """A whole-number env knob; a bad value stops the process with one line naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SystemExit(f"invalid value for env {name}: {value!r} is not a whole number") from None
    if number < minimum:
        raise SystemExit(f"invalid value for env {name}: {value!r} must be >= {minimum}")
    return number


def _env_non_negative(name: str, default: float) -> float:
    number = appkit.env_float(name, default)
    if number < 0:
        raise SystemExit(f"invalid value for env {name}: {number:g} must be >= 0")
    return number


@dataclass
class Slot:
    """The loaded model and everything derived from it; filled once by the loader thread."""

    loaded: threading.Event = field(default_factory=threading.Event)
    version: LoadedVersion | None = None
    stage_at_load: str = ""
    transform: dict[str, Any] = field(default_factory=dict)
    transform_hash: str = ""
    transform_source: str = ""
    load_seconds: float = 0.0
    size_gib: float = 0.0


def registry_url() -> str:
    return service_url("model-registry", "registry") + "/api/2.0/mlflow"


def resolve_version(s: Settings) -> tuple[str, str]:
    """(version, stage) from the registry; waits while it is unreachable, raises on a real 'no'."""
    attempt = 0
    while True:
        try:
            if s.model_version:
                mv = appkit.http_json("GET", f"{registry_url()}/model-versions/get?name={s.model_name}"
                                             f"&version={s.model_version}")["model_version"]
                return mv["version"], mv["current_stage"]
            found = appkit.http_json("POST", f"{registry_url()}/registered-models/get-latest-versions",
                                     {"name": s.model_name, "stages": [s.model_stage]})["model_versions"]
            if not found:
                raise LookupError(f"registered model {s.model_name} has no version in stage {s.model_stage}")
            return found[0]["version"], found[0]["current_stage"]
        except appkit.UpstreamError as err:
            if err.status is not None and 400 <= err.status < 500:
                raise LookupError(f"model registry: {err.reason}") from None
            if attempt % 5 == 0:
                appkit.log("warning", "model registry unreachable, retrying", url=err.url, error=err.reason)
            attempt += 1
            time.sleep(1.0)


def select_transform(s: Settings, v: LoadedVersion) -> tuple[dict[str, Any], str]:
    """The transform config serving applies: TRANSFORM_CONFIG when it covers this version."""
    raw = s.transform_override
    if raw is None:
        return v.transform, "artifact"
    if isinstance(raw, dict) and "features" in raw:
        return raw, "TRANSFORM_CONFIG"
    entry = raw.get(v.name, {}).get(v.version) if isinstance(raw, dict) else None
    if entry is None:
        appkit.log("warning", "TRANSFORM_CONFIG has no entry for this model version; using the artifact's",
                   model=v.name, version=v.version)
        return v.transform, "artifact"
    return entry, "TRANSFORM_CONFIG"


def load_model(s: Settings, slot: Slot) -> None:
    """Resolve, read and 'move to the device' the model; exits the process on a permanent error."""
    started = time.perf_counter()
    try:
        version, stage = resolve_version(s)
        v = load_version(ensure_artifacts(), s.model_name, version)
        config, source = select_transform(s, v)
        transforms.validate(config, v.features)
    except (LookupError, FileNotFoundError, ValueError) as err:
        appkit.log("error", "model load failed", error=str(err))
        os._exit(1)
    size = float(v.card["serving_size_gib"])
    appkit.log("info", "loading model", model=s.model_name, version=version, stage=stage, device=s.device,
               serving_size_gib=size, pinned_memory=s.pin_memory)
    time.sleep(loadtime.load_seconds(size, s.device, s.pin_memory, s.load_scale))
    slot.version, slot.stage_at_load, slot.size_gib = v, stage, size
    slot.transform, slot.transform_source = config, source
    slot.transform_hash = transforms.config_hash(config)
    slot.load_seconds = time.perf_counter() - started
    LOAD_SECONDS.set(slot.load_seconds)
    LOADED.set(1)
    INFO.labels(s.model_name, version, stage, s.release, s.device, slot.transform_hash).set(1)
    slot.loaded.set()
    appkit.log("info", "model loaded", model=s.model_name, version=version, load_seconds=round(slot.load_seconds, 3),
               transform_config_hash=slot.transform_hash, transform_config_source=source)


# ---------------------------------------------------------------- prediction

class MicroBatcher:
    """Collects rows until ``max_size`` are waiting or ``timeout`` has passed since the oldest, then runs one pass.

    Why a thread of its own: the requests that share a batch each wait on a
    Future while one forward pass serves them all, as a dynamic batcher in a
    model server does. A batch that never fills costs every request the full
    timeout, which is the trade-off this knob exists for.
    """

    def __init__(self, forward: Any, max_size: int, timeout: float):
        self.forward, self.max_size, self.timeout = forward, max_size, timeout
        self.cond = threading.Condition()
        self.pending: list[tuple[float, np.ndarray, Future]] = []
        threading.Thread(target=self._loop, name="micro-batcher", daemon=True).start()

    def submit(self, row: np.ndarray) -> float:
        done: Future = Future()
        with self.cond:
            self.pending.append((time.perf_counter(), row, done))
            self.cond.notify()
        return done.result()

    def _next_batch(self) -> list[tuple[float, np.ndarray, Future]]:
        with self.cond:
            while not self.pending:
                self.cond.wait()
            deadline = self.pending[0][0] + self.timeout
            while len(self.pending) < self.max_size and (left := deadline - time.perf_counter()) > 0:
                self.cond.wait(left)
            batch, self.pending = self.pending[:self.max_size], self.pending[self.max_size:]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            started = time.perf_counter()
            for queued_at, _, _ in batch:
                BATCH_WAIT.observe(started - queued_at)
            try:
                probs = self.forward(np.vstack([row for _, row, _ in batch]))
            except Exception as err:  # noqa: BLE001 - each request of the batch gets the error, as alone
                for _, _, done in batch:
                    done.set_exception(err)
                continue
            for (_, _, done), prob in zip(batch, probs):
                done.set_result(float(prob))


class Scorer:
    """Turns a request into a score on the (single) inference device."""

    def __init__(self, s: Settings, slot: Slot):
        self.s, self.slot = s, slot
        self.device_lock = threading.Lock()
        self.null_window: deque[frozenset[str]] = deque(maxlen=NULL_WINDOW)
        self.null_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(s.max_concurrent)
        self.batcher = MicroBatcher(self.forward, s.batch_size, s.batch_timeout_ms / 1000.0) \
            if s.batch_size > 1 else None
        MAX_CONCURRENT.set(s.max_concurrent)
        MAX_BATCH.set(s.batch_size)
        BATCH_TIMEOUT.set(s.batch_timeout_ms / 1000.0 if self.batcher is not None else 0.0)

    def forward(self, rows: np.ndarray, online: bool = True) -> np.ndarray:
        """One forward pass over ``rows`` on the device: a batch costs one pass's device time.

        ``online``: a pass of the online path, counted in ``inference_batch_size`` (the micro-batcher's
        evidence); the async scorer's batches are counted in ``inference_async_rows_total`` instead.
        """
        v = self.slot.version
        assert v is not None
        with self.device_lock:
            started = time.perf_counter()
            probs = v.model.predict_proba(transforms.apply(self.slot.transform, v.features, rows))
            budget = loadtime.inference_seconds(self.slot.size_gib, self.s.device, self.s.inference_scale)
            remaining = budget - (time.perf_counter() - started)
            if remaining > 0:
                time.sleep(remaining)
            DEVICE_TIME.labels(self.s.device).observe(time.perf_counter() - started)
            GPU_BUSY.add(time.perf_counter() - started)  # what nvidia-smi / dcgm-exporter count as GPU time
        if online:
            BATCH_SIZE.observe(len(rows))
        else:
            ASYNC_ROWS.inc(len(rows))
        return np.atleast_1d(probs)

    def infer(self, row: np.ndarray) -> float:
        """The score of one row, once an inference slot is free (and, when batching, its batch has run)."""
        queued_at = time.perf_counter()
        QUEUED.inc()
        try:
            self.slots.acquire()
        finally:
            QUEUED.dec()
        QUEUE_WAIT.observe(time.perf_counter() - queued_at)
        IN_FLIGHT.inc()
        try:
            if self.batcher is not None:
                return self.batcher.submit(row)
            return float(self.forward(row[np.newaxis, :])[0])
        finally:
            IN_FLIGHT.dec()
            self.slots.release()

    def score_batch(self, instances: list[PredictRequest]) -> list[dict[str, Any]]:
        """Scores of the async scorer's rows: one inference slot, one forward pass, no online-store lookups.

        Why apart from ``score``: the online path's monitoring (score and confidence histograms, the
        feature null window) describes the live requests; the async rows are other traffic.
        """
        v = self.slot.version
        assert v is not None
        rows = []
        for req in instances:
            values = req.features.model_dump(exclude_none=True) if req.features else {}
            if self.s.behaviour.derives_amount_per_txn and values.get("amount") is not None \
                    and values.get("txn_count_24h") is not None:
                values["amount_per_txn"] = float(values["amount"]) / float(values["txn_count_24h"])
            rows.append([np.nan if values.get(f) is None else float(values[f]) for f in v.features])
        self.slots.acquire()
        IN_FLIGHT.inc()
        try:
            probs = self.forward(np.array(rows, dtype=float), online=False)
        finally:
            IN_FLIGHT.dec()
            self.slots.release()
        threshold = float(v.card.get("threshold", 0.5))
        return [{"request_id": req.request_id, "score": round(float(p), 6), "is_fraud": bool(p >= threshold)}
                for req, p in zip(instances, probs)]

    def features_for(self, req: PredictRequest, v: LoadedVersion) -> tuple[dict[str, float | None], dict[str, float]]:
        given = req.features.model_dump(exclude_none=True) if req.features else {}
        values: dict[str, float | None] = dict(given)
        stamps: dict[str, float] = {}
        if req.entity_id is not None and any(f not in given for f in v.features):
            url = service_url("feature-store", "features") + f"/features/{req.entity_id}"
            online = appkit.http_json("GET", url, timeout=2.0)
            for name, value in online.get("features", {}).items():
                values.setdefault(name, value)
            stamps = online.get("feature_timestamps", {})
        return values, stamps

    def score(self, req: PredictRequest) -> dict[str, Any]:
        v = self.slot.version
        assert v is not None
        values, stamps = self.features_for(req, v)
        now = time.time()
        for view, ts in stamps.items():
            FRESHNESS.labels(view).set(max(0.0, now - float(ts)))
        missing = frozenset(f for f in v.features if values.get(f) is None)
        self._record_nulls(v.features, missing)
        if self.s.behaviour.derives_amount_per_txn and values.get("amount") is not None \
                and values.get("txn_count_24h") is not None:
            values["amount_per_txn"] = float(values["amount"]) / float(values["txn_count_24h"])
        row = np.array([np.nan if values.get(f) is None else float(values[f]) for f in v.features])
        INPUT_DRIFT.observe(v.features, v.stats, row)
        prob = self.infer(row)
        CONFIDENCE.observe(max(prob, 1.0 - prob))
        SCORE.observe(prob)
        threshold = float(v.card.get("threshold", 0.5))
        return {"model_name": v.name, "model_version": v.version, "score": round(prob, 6),
                "is_fraud": prob >= threshold, "threshold": threshold, "imputed": len(missing)}

    def _record_nulls(self, features: tuple[str, ...], missing: frozenset[str]) -> None:
        with self.null_lock:
            self.null_window.append(missing)
            n = len(self.null_window)
            for f in features:
                NULL_RATE.labels(f).set(sum(1 for m in self.null_window if f in m) / n)


# ---------------------------------------------------------------- the app

def create_app(s: Settings, slot: Slot) -> FastAPI:
    app = FastAPI(title=APP, docs_url=None, redoc_url=None)
    scorer = Scorer(s, slot)
    quiet = {"/healthz", "/readyz", "/metrics"}

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        path = request.url.path
        endpoint = path if path in ("/predict", "/batch-predict", "/metadata", "/healthz", "/readyz", "/metrics") \
            else "other"
        LATENCY.labels(endpoint).observe(elapsed)
        REQUESTS.labels(endpoint, str(response.status_code)).inc()
        if path not in quiet:
            extra = getattr(request.state, "log", {})
            appkit.log("error" if response.status_code >= 500 else "info", "request", method=request.method,
                       path=path, status=response.status_code, latency_ms=round(elapsed * 1000, 2),
                       release=s.release, pod=s.pod, **extra)
        return response

    @app.post("/predict")
    def predict(req: PredictRequest, request: Request) -> Response:
        request_id = req.request_id or uuid.uuid4().hex[:16]
        log: dict[str, Any] = {"request_id": request_id, "entity_id": req.entity_id}
        if s.log_payloads:
            log["payload"] = req.model_dump(exclude_none=True)
        request.state.log = log
        if not slot.loaded.is_set():
            if not s.behaviour.ready_before_model_loaded:
                ERRORS.labels("model_not_loaded").inc()
                return JSONResponse({"detail": "model not loaded yet"}, status_code=503)
            slot.loaded.wait()  # 1.5.0: traffic was let in early; it queues behind the load
        try:
            result = scorer.score(req)
        except appkit.UpstreamError as err:
            if err.status == 404:
                ERRORS.labels("unknown_entity").inc()
                return JSONResponse({"detail": f"unknown entity_id {req.entity_id}"}, status_code=404)
            ERRORS.labels("feature_store").inc()
            log["error"] = f"feature store: {err.reason}"
            return JSONResponse({"detail": "feature store unavailable"}, status_code=503)
        except Exception as err:  # noqa: BLE001 - a bug must become a 500, not a dead worker
            ERRORS.labels("exception").inc()
            log["error"] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        log.update(model_version=result["model_version"], score=result["score"], imputed=result.pop("imputed"))
        return JSONResponse({"request_id": request_id, **result})

    @app.post("/batch-predict")
    def batch_predict(req: BatchPredictRequest, request: Request) -> Response:
        request.state.log = {"instances": len(req.instances)}
        if not slot.loaded.is_set():
            ERRORS.labels("model_not_loaded").inc()
            return JSONResponse({"detail": "model not loaded yet"}, status_code=503)
        try:
            predictions = scorer.score_batch(req.instances)
        except Exception as err:  # noqa: BLE001 - a bug must become a 500, not a dead worker
            ERRORS.labels("exception").inc()
            request.state.log["error"] = f"{type(err).__name__}: {err}"
            return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
        v = slot.version
        return JSONResponse({"model_version": v.version if v else None, "predictions": predictions})

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        v = slot.version
        out: dict[str, Any] = {"model_name": s.model_name, "release": s.release, "image": s.image,
                               "device": s.device, "loaded": slot.loaded.is_set(), "pod": s.pod}
        if v is None:
            out.update(model_version=s.model_version, requested_stage=None if s.model_version else s.model_stage)
            return out
        try:
            mv = appkit.http_json("GET", f"{registry_url()}/model-versions/get?name={v.name}&version={v.version}")
            stage = mv["model_version"]["current_stage"]
        except appkit.UpstreamError as err:
            stage = "unknown"
            out["registry_error"] = err.reason
        out.update(
            model_version=v.version, stage=stage, stage_at_load=slot.stage_at_load,
            selected_by=f"MODEL_VERSION={s.model_version}" if s.model_version else f"MODEL_STAGE={s.model_stage}",
            lineage={k: v.lineage[k] for k in ("training_run_id", "data_version", "training_period",
                                                "code_commit", "transform_config_hash")},
            transform_config_hash=slot.transform_hash, transform_config_source=slot.transform_source,
            feature_schema={"features": list(v.features),
                            "request_features": [f for f in data.TRANSACTION_FEATURES if f in v.features],
                            "entity_features": [f for f in data.ACCOUNT_FEATURES if f in v.features]},
            model={"arch": v.card["arch"], "n_parameters": v.card["n_parameters"],
                   "serving_size_gib": v.card["serving_size_gib"]},
            load_seconds=round(slot.load_seconds, 3),
        )
        return out

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        if slot.loaded.is_set() or s.behaviour.ready_before_model_loaded:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "loading model"}, status_code=503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def main() -> None:
    appkit.set_app_name(APP)
    s = Settings.from_env()
    if s.gpus:
        # CUDA initialisation: a broken driver or a lost GPU ends the process here, as with torch.
        cudainit.require_cuda(s.gpus)
    if s.device == "cuda":
        appkit.log("info", "CUDA available", devices=s.gpus)
    else:
        appkit.log("warning", "CUDA not available, using CPU", hint="inference runs on CPU, expect higher latency")
    if not os.environ.get("DB_PASSWORD"):
        appkit.log("warning", "DB_PASSWORD not set; prediction log store disabled")
    appkit.log("info", "starting", release=s.release, image=s.image, model=s.model_name,
               selector=f"version {s.model_version}" if s.model_version else f"stage {s.model_stage}",
               log_payloads=s.log_payloads, max_concurrent_requests=s.max_concurrent, batch_size=s.batch_size,
               batch_timeout_ms=s.batch_timeout_ms)
    LOADED.set(0)
    slot = Slot()
    threading.Thread(target=load_model, args=(s, slot), name="model-loader", daemon=True).start()
    appkit.serve(create_app(s, slot))


if __name__ == "__main__":
    main()
