"""The platform apps as real processes over real HTTP (uvicorn on 127.0.0.1, ephemeral ports).

Registry, feature store and inference service start as subprocesses exactly as
the process kubelet starts them (``python -m mlops_drill.mlplatform.<app>`` with
``PORT``, ``CONTAINER_IMAGE``, ``NVIDIA_VISIBLE_DEVICES``); they find each other
through the ``*_URL`` variables of the discovery contract.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops_drill.mlplatform.artifacts import ensure_artifacts
from mlops_drill.mlplatform.featurestore import DEFAULT_UPSTREAM_SCHEMA
from mlops_drill.mlplatform.manifests import transforms_configmap

MLFLOW = "/api/2.0/mlflow"
RAW = {"amount": 80.0, "merchant_risk": 0.3, "hour_of_day": 2, "distance_km": 35.0,
       "txn_count_24h": 4, "account_age_days": 40, "card_present": 0, "velocity_ratio": 1.8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, url: str, body: Any = None, timeout: float = 15.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus-client's own parser."""
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class App:
    """One platform process, started like the process kubelet starts a pod's container."""

    def __init__(self, module: str, env: dict[str, str], logdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = logdir / f"{module}-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if k not in ("NVIDIA_VISIBLE_DEVICES", "MLOPS_DRILL_SERVICES")}
        full_env.update(PORT=str(self.port), PYTHONUNBUFFERED="1", **env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", f"mlops_drill.mlplatform.{module}"], env=full_env,
                                     stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def wait(self, path: str = "/readyz", timeout: float = 60.0) -> "App":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.log_path.name} exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.log_path.name} not answering {path}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def log_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlplatform")


@pytest.fixture(scope="module")
def artifact_env(workdir: Path) -> dict[str, str]:
    root = ensure_artifacts(workdir / "artifacts")
    return {"ARTIFACT_DIR": str(root)}


@pytest.fixture(scope="module")
def apps(workdir: Path) -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def start(apps: list[App], workdir: Path, artifact_env: dict[str, str]):
    def _start(module: str, wait: str | None = "/readyz", **env: str) -> App:
        app = App(module, {**artifact_env, **env}, workdir)
        apps.append(app)
        return app.wait(wait) if wait else app
    return _start


@pytest.fixture(scope="module")
def registry(start, workdir: Path) -> App:
    return start("registry", REGISTRY_STATE=str(workdir / "registry-state.json"))


@pytest.fixture(scope="module")
def store(start) -> App:
    return start("featurestore")


@pytest.fixture(scope="module")
def baseline_transforms(workdir: Path) -> str:
    return transforms_configmap(workdir / "artifacts")["data"]["transforms.json"]


@pytest.fixture(scope="module")
def serving_env(registry: App, store: App, baseline_transforms: str) -> dict[str, str]:
    """What the baseline Deployment gives a fraud-model pod on a GPU node."""
    return {"MODEL_REGISTRY_URL": registry.url, "FEATURE_STORE_URL": store.url, "MODEL_STAGE": "Production",
            "TRANSFORM_CONFIG": baseline_transforms, "CONTAINER_IMAGE": "mlops-drill/fraud-model:1.4.0",
            "NVIDIA_VISIBLE_DEVICES": "GPU-5f1c7a2e-0000-0000-0000-000000000000", "DB_PASSWORD": "s3cret"}


@pytest.fixture(scope="module")
def serving(start, serving_env: dict[str, str]) -> App:
    return start("serving", **serving_env)


def predict(app: App, body: dict[str, Any]) -> tuple[int, Any]:
    return call("POST", app.url + "/predict", body)


def registry_version(registry: App, version: str) -> dict[str, Any]:
    _, body = call("GET", f"{registry.url}{MLFLOW}/model-versions/get?name=fraud-model&version={version}")
    mv = body["model_version"]
    mv["tag_map"] = {t["key"]: t["value"] for t in mv["tags"]}
    return mv


# ---------------------------------------------------------------- baseline behaviour

def test_predict_by_entity_and_by_raw_features(serving: App) -> None:
    status, by_entity = predict(serving, {"entity_id": "acct-000042",
                                          "features": {"amount": 120.5, "hour_of_day": 3, "distance_km": 40,
                                                       "card_present": 0}})
    assert status == 200, by_entity
    assert by_entity["model_version"] == "3" and 0.0 <= by_entity["score"] <= 1.0
    status, by_raw = predict(serving, {"features": RAW})
    assert status == 200 and 0.0 <= by_raw["score"] <= 1.0
    bigger = predict(serving, {"features": {**RAW, "amount": 5000.0}})[1]
    assert bigger["score"] != by_raw["score"]


def test_predict_rejects_bad_payloads(serving: App) -> None:
    assert predict(serving, {})[0] == 422  # neither entity nor features
    assert predict(serving, {"features": {**RAW, "txn_cnt": 3}})[0] == 422  # unknown field
    assert predict(serving, {"entity_id": "acct-999999999"})[0] == 404


def test_metadata_agrees_with_registry_production(serving: App, registry: App) -> None:
    _, latest = call("POST", f"{registry.url}{MLFLOW}/registered-models/get-latest-versions",
                     {"name": "fraud-model", "stages": ["Production"]})
    prod = latest["model_versions"][0]
    tags = {t["key"]: t["value"] for t in prod["tags"]}
    _, meta = call("GET", serving.url + "/metadata")
    assert meta["model_version"] == prod["version"] == "3"
    assert meta["stage"] == "Production"
    assert meta["lineage"]["training_run_id"] == prod["run_id"]
    assert meta["lineage"]["data_version"] == tags["data_version"]
    assert meta["transform_config_hash"] == tags["transform_config_hash"]
    assert meta["release"] == "1.4.0" and meta["device"] == "cuda"
    assert meta["feature_schema"]["features"] == tags["feature_list"].split(",")


def test_metrics_parse_with_prometheus_parser(serving: App, store: App) -> None:
    predict(serving, {"entity_id": "acct-000007", "features": {"amount": 10, "hour_of_day": 12,
                                                                "distance_km": 1, "card_present": 1}})
    samples = metrics(serving.url)
    names = {name for name, _ in samples}
    for expected in ("inference_request_duration_seconds_bucket", "prediction_confidence_bucket",
                     "feature_null_rate", "feature_freshness_seconds", "model_load_seconds", "model_loaded"):
        assert expected in names
    assert samples[("model_loaded", ())] == 1.0
    assert samples[("feature_null_rate", (("feature", "txn_count_24h"),))] == 0.0
    store_samples = metrics(store.url)
    ages = {dict(labels)["feature_view"]: v for (n, labels), v in store_samples.items()
            if n == "feature_freshness_seconds"}
    assert set(ages) == {"account_activity", "account_profile", "merchant_risk"}
    assert all(a >= 0 for a in ages.values())


def test_every_request_is_one_json_log_line(serving: App) -> None:
    predict(serving, {"features": RAW, "request_id": "log-line-check", "card_number": "4111111111111111"})
    lines = [r for r in serving.log_records() if r.get("request_id") == "log-line-check"]
    assert len(lines) == 1
    assert lines[0]["status"] == 200 and lines[0]["path"] == "/predict" and lines[0]["model_version"] == "3"
    assert "4111111111111111" not in serving.log()  # payload logging is off by default


def test_log_payloads_writes_card_numbers_to_the_log(start, serving_env: dict[str, str]) -> None:
    leaky = start("serving", **serving_env, LOG_PAYLOADS="true")
    predict(leaky, {"features": RAW, "card_number": "5500005555555559"})
    assert "5500005555555559" in leaky.log()


# ---------------------------------------------------------------- registry

def test_registry_promotion_archives_production_audits_and_survives_restart(start, workdir: Path) -> None:
    state = workdir / "promotion-state.json"
    reg = start("registry", REGISTRY_STATE=str(state))
    status, body = call("POST", f"{reg.url}{MLFLOW}/model-versions/transition-stage",
                        {"name": "fraud-model", "version": "4", "stage": "production",
                         "archive_existing_versions": True})
    assert status == 200 and body["model_version"]["current_stage"] == "Production"
    assert registry_version(reg, "3")["current_stage"] == "Archived"
    reg.stop()

    again = start("registry", REGISTRY_STATE=str(state))
    assert registry_version(again, "4")["current_stage"] == "Production"
    call("POST", f"{again.url}{MLFLOW}/model-versions/transition-stage",
         {"name": "fraud-model", "version": "3", "stage": "Production", "archive_existing_versions": True})
    _, audit = call("GET", again.url + "/audit")
    recent = [(e["action"], e["version"], e["to_stage"]) for e in audit["events"][-4:]]
    assert recent == [("promote", "4", "Production"), ("archive", "3", "Archived"),
                      ("rollback", "3", "Production"), ("archive", "4", "Archived")]


def test_registry_answers_like_mlflow(registry: App) -> None:
    status, body = call("GET", f"{registry.url}{MLFLOW}/registered-models/get?name=nope")
    assert status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    status, body = call("POST", f"{registry.url}{MLFLOW}/model-versions/transition-stage",
                        {"name": "fraud-model", "version": "4", "stage": "Prod"})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE"
    _, found = call("GET", f"{registry.url}{MLFLOW}/model-versions/search?filter=name%3D%27fraud-model%27")
    assert [v["version"] for v in found["model_versions"]] == ["5", "4", "3", "2", "1"]
    _, models = call("GET", f"{registry.url}{MLFLOW}/registered-models/search?filter=name%20LIKE%20%27fraud%25%27")
    assert [m["name"] for m in models["registered_models"]] == ["fraud-model"]
    _, uri = call("GET", f"{registry.url}{MLFLOW}/model-versions/get-download-uri?name=fraud-model&version=3")
    assert uri["artifact_uri"].startswith("file://") and uri["artifact_uri"].endswith("fraud-model/3")


# ---------------------------------------------------------------- faults the platform must support

def test_skewed_transform_changes_scores_and_hash(start, serving: App, serving_env: dict[str, str],
                                                  baseline_transforms: str, registry: App) -> None:
    configs = json.loads(baseline_transforms)
    for spec in configs["fraud-model"]["3"]["features"]:
        if spec["name"] == "amount":  # serving forgot the log: raw dollars scaled by log-space stats
            spec["op"] = "standardize"
    skewed = start("serving", **{**serving_env, "TRANSFORM_CONFIG": json.dumps(configs)})
    good, bad = predict(serving, {"features": RAW})[1], predict(skewed, {"features": RAW})[1]
    assert bad["score"] != pytest.approx(good["score"], abs=1e-3)
    expected = registry_version(registry, "3")["tag_map"]["transform_config_hash"]
    assert call("GET", serving.url + "/metadata")[1]["transform_config_hash"] == expected
    assert call("GET", skewed.url + "/metadata")[1]["transform_config_hash"] != expected


def test_renamed_upstream_field_raises_null_rate(start, serving_env: dict[str, str]) -> None:
    schema = json.loads(json.dumps(DEFAULT_UPSTREAM_SCHEMA))
    schema["columns"]["txn_count_24h"] = schema["columns"].pop("txn_cnt_24h")  # upstream renamed its column
    renamed_store = start("featurestore", UPSTREAM_SCHEMA=json.dumps(schema))
    status, _ = call("POST", renamed_store.url + "/materialize", {})
    assert status == 200  # materialisation does not notice
    _, online = call("GET", renamed_store.url + "/features/acct-000001")
    assert online["features"]["txn_count_24h"] is None and online["features"]["merchant_risk"] is not None
    app = start("serving", **{**serving_env, "FEATURE_STORE_URL": renamed_store.url})
    for i in range(10):
        status, _ = predict(app, {"entity_id": f"acct-{i:06d}", "features": {"amount": 25, "hour_of_day": 13,
                                                                              "distance_km": 3, "card_present": 1}})
        assert status == 200  # and still 200 OK
    samples = metrics(app.url)
    assert samples[("feature_null_rate", (("feature", "txn_count_24h"),))] == 1.0
    assert samples[("feature_null_rate", (("feature", "merchant_risk"),))] == 0.0


def test_release_150_is_ready_before_the_model_is_loaded(start, serving_env: dict[str, str]) -> None:
    slow = {**serving_env, "MODEL_LOAD_TIME_SCALE": "2.0"}  # v3 takes ~4 s to load
    buggy = start("serving", wait="/readyz", **{**slow, "CONTAINER_IMAGE": "mlops-drill/fraud-model:1.5.0"})
    assert metrics(buggy.url)[("model_loaded", ())] == 0.0  # ready, yet nothing loaded
    status, body = predict(buggy, {"features": RAW})  # queues behind the load instead of failing
    assert status == 200 and body["model_version"] == "3"

    healthy = start("serving", wait="/healthz", **slow)
    status, body = call("GET", healthy.url + "/readyz")
    assert status == 503 and metrics(healthy.url)[("model_loaded", ())] == 0.0


def test_canary_release_fails_on_accounts_without_recent_transactions(start, serving: App,
                                                                     serving_env: dict[str, str]) -> None:
    canary = start("serving", **{**serving_env, "CONTAINER_IMAGE": "mlops-drill/fraud-model:1.6.0-rc1"})
    quiet_account = {"features": {**RAW, "txn_count_24h": 0}}
    assert predict(canary, {"features": RAW})[0] == 200
    assert predict(canary, quiet_account)[0] == 500
    assert predict(serving, quiet_account)[0] == 200
    assert "ZeroDivisionError" in canary.log()


def test_cpu_fallback_is_much_slower(start, serving: App, serving_env: dict[str, str]) -> None:
    env = {k: v for k, v in serving_env.items() if k != "NVIDIA_VISIBLE_DEVICES"}
    cpu = start("serving", **env)
    assert any(r["msg"] == "CUDA not available, using CPU" for r in cpu.log_records())

    def mean_device_seconds(app: App, device: str) -> float:
        for _ in range(15):
            predict(app, {"features": RAW})
        s = metrics(app.url)
        key = (("device", device),)
        return s[("model_inference_seconds_sum", key)] / s[("model_inference_seconds_count", key)]

    gpu_s, cpu_s = mean_device_seconds(serving, "cuda"), mean_device_seconds(cpu, "cpu")
    assert cpu_s > 5 * gpu_s, (gpu_s, cpu_s)


def test_pinned_archived_version_disagrees_with_production(start, serving_env: dict[str, str]) -> None:
    pinned = start("serving", **serving_env, MODEL_VERSION="1")
    _, meta = call("GET", pinned.url + "/metadata")
    assert meta["model_version"] == "1" and meta["stage"] == "Archived"
    assert "card_present" not in meta["feature_schema"]["features"]
    assert predict(pinned, {"features": RAW})[0] == 200


def test_feature_refresh_materializes_or_fails_loudly(store: App, workdir: Path) -> None:
    before = call("GET", store.url + "/freshness")[1]["feature_views"]["account_activity"]["last_materialized_at"]
    env = {**os.environ, "FEATURE_STORE_URL": store.url}
    ok = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.feature_refresh"], env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    after = call("GET", store.url + "/freshness")[1]["feature_views"]["account_activity"]["last_materialized_at"]
    assert after > before

    env["FEATURE_STORE_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env["UPSTREAM_WAIT_S"] = "1"
    broken = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.feature_refresh"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0
    assert "Connection refused" in broken.stderr
    assert "feature store not reachable yet; retrying" in broken.stdout  # it did wait before giving up


def test_feature_refresh_waits_for_a_store_that_is_still_starting(store: App, workdir: Path) -> None:
    """The run the CronJob fires while the platform comes up must not fail: no answer yet is not an error."""
    table = workdir / "services-refresh.json"
    table.write_text(json.dumps({"features/feature-store": f"127.0.0.1:{free_port()}"}))  # no endpoint yet
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL")}
    job = subprocess.Popen([sys.executable, "-m", "mlops_drill.mlplatform.feature_refresh"],
                           env={**env, "MLOPS_DRILL_SERVICES": str(table)}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert job.poll() is None, job.communicate()
    table.write_text(json.dumps({"features/feature-store": store.url.removeprefix("http://")}))  # endpoint ready
    out, err = job.communicate(timeout=60)
    assert job.returncode == 0, err
    assert "feature store not reachable yet; retrying" in out and "materialization finished" in out


def test_traffic_replay_waits_for_the_model_instead_of_crashing(start, serving: App, workdir: Path) -> None:
    """Started before fraud-model has a ready endpoint (a fresh baseline), the replay waits and never exits."""
    def served() -> float:
        return metrics(serving.url).get(("inference_requests_total", (("code", "200"), ("endpoint", "/predict"))), 0.0)

    table = workdir / "services-replay.json"
    table.write_text(json.dumps({"serving/fraud-model": f"127.0.0.1:{free_port()}"}))  # no endpoint yet
    replay = start("traffic", wait="/readyz", MLOPS_DRILL_SERVICES=str(table), RATE="20")
    time.sleep(2.0)
    assert replay.proc.poll() is None, replay.log()
    waiting = [r for r in replay.log_records() if r["msg"].startswith("fraud-model not reachable yet")]
    assert waiting and "replay started" not in replay.log(), replay.log()
    assert not any(name == "traffic_requests_total" for name, _ in metrics(replay.url)), "sent while waiting"

    before = served()
    table.write_text(json.dumps({"serving/fraud-model": serving.url.removeprefix("http://")}))  # endpoint ready
    deadline = time.monotonic() + 20
    while served() < before + 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    replay.stop()
    assert served() >= before + 10, replay.log()
    assert "replay started" in replay.log()


def test_traffic_replay_drives_the_model(start, serving: App) -> None:
    def served() -> float:
        return metrics(serving.url).get(("inference_requests_total", (("code", "200"), ("endpoint", "/predict"))), 0.0)

    before = served()
    replay = start("traffic", wait="/readyz", FRAUD_MODEL_URL=serving.url, RATE="20")
    deadline = time.monotonic() + 20
    while served() < before + 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    replay.stop()
    assert served() >= before + 10
