"""Platform parts that need no server: artifacts, discovery, load-time model, training, manifests."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_drill.mlplatform import data, discovery, loadtime, releases, transforms
from mlops_drill.mlplatform.artifacts import build_artifacts, ensure_artifacts, load_version
from mlops_drill.mlplatform.featurestore import DEFAULT_UPSTREAM_SCHEMA
from mlops_drill.mlplatform.manifests import PROCESS_LABEL, baseline_documents, pod_templates
from mlops_drill.mlplatform.traffic import make_request


def test_same_seed_gives_byte_identical_artifacts(tmp_path: Path) -> None:
    first = build_artifacts(tmp_path / "a")
    second = build_artifacts(tmp_path / "b")
    assert first == second
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 1 + 5 * 6
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_another_seed_gives_other_artifacts(tmp_path: Path) -> None:
    a = build_artifacts(tmp_path / "a")
    b = build_artifacts(tmp_path / "b", seed=7)
    assert a["models"][0]["versions"][2]["lineage"]["data_version"] != \
        b["models"][0]["versions"][2]["lineage"]["data_version"]


def test_versions_stages_and_lineage(tmp_path: Path) -> None:
    manifest = build_artifacts(tmp_path)
    versions = {v["version"]: v for v in manifest["models"][0]["versions"]}
    assert {k: v["stage"] for k, v in versions.items()} == {
        "1": "Archived", "2": "Archived", "3": "Production", "4": "Staging", "5": "None"}
    assert versions["1"]["lineage"]["feature_list"] == list(data.FEATURES_V1)
    assert versions["5"]["model"]["serving_size_gib"] == 4 * versions["3"]["model"]["serving_size_gib"]
    # v4 was retrained on recent data: it beats the production model there
    assert versions["4"]["metrics"]["auc_2024_09"] > versions["3"]["metrics"]["auc_2024_09"]
    loaded = load_version(tmp_path, "fraud-model", "3")
    assert transforms.config_hash(loaded.transform) == versions["3"]["lineage"]["transform_config_hash"]
    stats = loaded.stats["features"]["amount"]["histogram"]
    assert len(stats["edges"]) == len(stats["counts"]) + 1 and sum(stats["counts"]) == loaded.stats["rows"]


def test_ensure_artifacts_builds_once(tmp_path: Path) -> None:
    root = ensure_artifacts(tmp_path / "cache")
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert ensure_artifacts(tmp_path / "cache") == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp


def test_discovery_prefers_env_then_table_then_dns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODEL_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MLOPS_DRILL_SERVICES", raising=False)
    assert discovery.service_url("model-registry", "registry") == \
        "http://model-registry.registry.svc.cluster.local"
    table = tmp_path / "services.json"
    table.write_text(json.dumps({"registry/model-registry": "127.0.0.1:40001"}))
    monkeypatch.setenv("MLOPS_DRILL_SERVICES", str(table))
    assert discovery.service_url("model-registry", "registry") == "http://127.0.0.1:40001"
    table.write_text(json.dumps({"registry/model-registry": "127.0.0.1:40002", "x/y": "127.0.0.1:1"}))
    assert discovery.service_url("model-registry", "registry") == "http://127.0.0.1:40002"
    assert discovery.service_url("feature-store", "features") == "http://feature-store.features.svc.cluster.local"
    monkeypatch.setenv("MODEL_REGISTRY_URL", "http://127.0.0.1:9/")
    assert discovery.service_url("model-registry", "registry") == "http://127.0.0.1:9"


def test_a_seat_pod_on_real_kubelets_finds_its_own_seats_services(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """On kind, a seat's pod has no POD_NAMESPACE: its namespace (and so its seat) comes from resolv.conf."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search s-ab12cd-2--serving.svc.cluster.local svc.cluster.local cluster.local\n"
                      "nameserver 10.96.0.10\noptions ndots:5\n")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert discovery.own_namespace(str(resolv)) == "s-ab12cd-2--serving"
    resolv.write_text("nameserver 10.96.0.10\n")
    assert discovery.own_namespace(str(resolv)) == ""
    assert discovery.own_namespace(str(tmp_path / "absent")) == ""
    monkeypatch.delenv("FEATURE_STORE_URL", raising=False)
    monkeypatch.delenv("MLOPS_DRILL_SERVICES", raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "s-ab12cd-2--serving")
    assert discovery.service_url("feature-store", "features") == \
        "http://feature-store.s-ab12cd-2--features.svc.cluster.local"


def test_load_time_follows_the_h100_figures() -> None:
    f = loadtime.figures()
    assert loadtime.h2d_copy_seconds(8, pinned=False) == pytest.approx(f["h2d_pageable_8GiB_s"])
    assert loadtime.h2d_copy_seconds(16, pinned=True) == pytest.approx(f["h2d_pinned_16GiB_s"])
    v3, v5 = loadtime.load_seconds(6.0, "cuda"), loadtime.load_seconds(24.0, "cuda")
    assert 0.3 < v3 < 0.8 and 2.0 < v5 < 4.0
    assert loadtime.load_seconds(24.0, "cuda", pinned=True) < v5 / 3
    assert loadtime.inference_seconds(6.0, "cpu") == pytest.approx(
        loadtime.CPU_SLOWDOWN * loadtime.inference_seconds(6.0, "cuda"))


def test_replay_period_really_shifts_the_inputs() -> None:
    def mean_amount(period: str) -> float:
        rng = np.random.default_rng(0)
        profile = data.period(period).transactions
        return float(np.mean([make_request(rng, profile, 0.0)["features"]["amount"] for _ in range(2000)]))

    assert mean_amount(data.RECENT_PERIOD) > 1.5 * mean_amount(data.BASELINE_PERIOD)
    with pytest.raises(ValueError, match="unknown data period '2099-01'"):
        data.period("2099-01")


def _run_training(env: dict[str, str], stop_after_epoch: int | None = None) -> tuple[int, list[dict]]:
    """Run the Job's program; optionally SIGTERM it (a spot preemption) after an epoch is logged."""
    full = {**os.environ, "EPOCH_SECONDS": "0.3", "NVIDIA_VISIBLE_DEVICES": "GPU-0", **env}
    proc = subprocess.Popen([sys.executable, "-m", "mlops_drill.mlplatform.training"], env=full,
                            stdout=subprocess.PIPE, text=True)
    records = []
    assert proc.stdout is not None
    for line in proc.stdout:
        rec = json.loads(line)
        records.append(rec)
        if stop_after_epoch is not None and rec.get("epoch") == stop_after_epoch:
            proc.send_signal(signal.SIGTERM)
    return proc.wait(30), records


def test_training_resumes_from_checkpoint(tmp_path: Path) -> None:
    env = {"EPOCHS": "4", "CHECKPOINT_DIR": str(tmp_path / "ckpt"), "COST_LEDGER": str(tmp_path / "ledger.jsonl")}
    code, first = _run_training(env, stop_after_epoch=2)
    assert code == 143
    code, second = _run_training(env)
    assert code == 0
    assert any(r["msg"] == "resuming from checkpoint" and r["completed_epochs"] == 2 for r in second)
    assert [r["epoch"] for r in second if "epoch" in r] == [3, 4]
    assert second[-1]["gpu_hours_wasted"] == 0.0


def test_training_without_checkpoint_starts_over_and_wastes_gpu_hours(tmp_path: Path) -> None:
    env = {"EPOCHS": "3", "CAPACITY_TYPE": "spot", "COST_LEDGER": str(tmp_path / "ledger.jsonl")}
    code, _ = _run_training(env, stop_after_epoch=2)
    assert code == 143
    code, second = _run_training(env)
    assert [r["epoch"] for r in second if "epoch" in r] == [1, 2, 3]
    done = second[-1]
    assert done["gpu_hours_total"] == pytest.approx(2.5) and done["gpu_hours_wasted"] == pytest.approx(1.0)
    assert done["cost_usd_total"] == pytest.approx(2.5 * 2.75, abs=0.01)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return baseline_documents(tmp_path_factory.mktemp("art"))


def _find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_baseline_namespaces_and_workloads(docs: list[dict]) -> None:
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"} == {
        "serving", "features", "registry", "training", "gpu-operator"}
    where = {(d["kind"], d["metadata"]["name"]): d["metadata"].get("namespace") for d in docs}
    assert where[("Deployment", "fraud-model")] == "serving"
    assert where[("Service", "fraud-model")] == "serving"
    assert where[("Deployment", "model-registry")] == "registry"
    assert where[("Deployment", "feature-store")] == "features"
    assert where[("CronJob", "feature-refresh")] == "features"
    assert where[("Job", "fraud-train")] == "training"
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080


def test_every_pod_template_runs_a_platform_module(docs: list[dict]) -> None:
    templates = pod_templates(docs)
    assert len(templates) == 10
    for workload, template in templates:
        assert template["metadata"]["labels"][PROCESS_LABEL] == "true"
        (container,) = template["spec"]["containers"]
        python, flag, module = container["command"]
        assert (python, flag) == ("python", "-m") and importlib.util.find_spec(module) is not None
        assert container["image"] == releases.image(workload["metadata"]["name"])
        if workload["kind"] == "Deployment":
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["ports"][0]["containerPort"] == 8080


def test_gpu_workloads_request_a_gpu_on_the_gpu_pool(docs: list[dict]) -> None:
    for kind, name in (("Deployment", "fraud-model"), ("Job", "fraud-train")):
        spec = _find(docs, kind, name)["spec"]["template"]["spec"]
        assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["nodeSelector"] == {"pool": "gpu"}
    assert _find(docs, "Deployment", "fraud-model")["spec"]["template"]["metadata"]["labels"]["app"] == "fraud-model"


def test_baseline_config_matches_what_the_apps_expect(docs: list[dict], tmp_path_factory) -> None:
    upstream = json.loads(_find(docs, "ConfigMap", "upstream-schema")["data"]["schema.json"])
    assert upstream == DEFAULT_UPSTREAM_SCHEMA
    transforms_map = json.loads(_find(docs, "ConfigMap", "fraud-model-transforms")["data"]["transforms.json"])
    root = ensure_artifacts(tmp_path_factory.mktemp("art2"))
    for version in ("1", "2", "3", "4", "5"):
        lineage = load_version(root, "fraud-model", version).lineage
        assert transforms.config_hash(transforms_map["fraud-model"][version]) == lineage["transform_config_hash"]
    assert releases.is_known("mlops-drill/fraud-model:1.5.0") and not releases.is_known("mlops-drill/fraud-model:9.9")


def test_a_stop_while_the_training_program_still_loads_is_reported(tmp_path: Path) -> None:
    """A spot reclaim can come a second after the container starts, before numpy has loaded on a busy node:
    stopped as numpy starts to load (``python -v`` says when), the program still says it was stopped. A slow
    reaction here can only let the old program (handler installed after the imports) pass, never fail this."""
    env = {**os.environ, "EPOCH_SECONDS": "0.3", "NVIDIA_VISIBLE_DEVICES": "GPU-0", "EPOCHS": "3",
           "COST_LEDGER": str(tmp_path / "ledger.jsonl")}
    proc = subprocess.Popen([sys.executable, "-v", "-m", "mlops_drill.mlplatform.training"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "numpy" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=60)
    records = [json.loads(line) for line in out.splitlines()]
    assert proc.returncode == 143, f"exit {proc.returncode}: {records}"
    assert any(r["msg"] == "SIGTERM received, stopping" and r["completed_epochs"] == 0 for r in records), records
