"""GPU fault pieces that need no cluster: CUDA init per node state, pod processes, the idle backfill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_drill.cluster.gpu.model import XidEvent, new_node
from mlops_drill.mlplatform.cudainit import init_error, require_cuda

NODE = "gpu-node-1"


def _node(**changes):
    model = new_node(NODE)
    for key, value in changes.items():
        setattr(model, key, value)
    return model


def test_healthy_node_initialises_cuda():
    node = _node()
    assert init_error(node, [node.devices[0].uuid]) is None


def test_library_mismatch_fails_with_cuda_error_803():
    node = _node(driver_state="library-mismatch", driver_version="580.173.02")
    error = init_error(node, [node.devices[0].uuid])
    assert error is not None and error.startswith("Unexpected error from cudaGetDeviceCount().")
    assert error.endswith("Error 803: system has unsupported display driver / cuda driver combination")


def test_missing_driver_and_old_driver_use_pytorchs_messages():
    assert "Found no NVIDIA driver on your system" in init_error(_node(driver_state="missing"), [])
    old = init_error(_node(cuda_version="12.2"), [], runtime="12.4")
    assert old is not None and "driver on your system is too old (found version 12020)" in old
    assert init_error(_node(cuda_version="12.4"), [], runtime="12.4") is None


def test_only_a_pod_holding_the_lost_gpu_fails():
    node = _node(xid_events=[XidEvent(xid=79, device_index=2)])
    assert init_error(node, [node.devices[2].uuid]).endswith("Error 999: unknown error")
    assert init_error(node, [node.devices[0].uuid]) is None


def _state_file(tmp_path: Path, model) -> dict[str, str]:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({NODE: model.model_dump(mode="json")}))
    return {"MLOPS_DRILL_GPU_STATE": str(path), "NODE_NAME": NODE}


def test_require_cuda_reads_the_node_state_and_ignores_its_absence(tmp_path):
    broken = _node(driver_state="library-mismatch")
    with pytest.raises(RuntimeError, match="Error 803"):
        require_cuda([broken.devices[0].uuid], _state_file(tmp_path, broken))
    require_cuda(["GPU-anything"], {})  # no simulated state: a real GPU answers for itself


def test_serving_dies_at_start_on_a_mismatched_driver(tmp_path):
    broken = _node(driver_state="library-mismatch")
    env = {**os.environ, **_state_file(tmp_path, broken), "NVIDIA_VISIBLE_DEVICES": broken.devices[1].uuid,
           "PORT": "0", "MODEL_REGISTRY_URL": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "mlops_drill.mlplatform.serving"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.rstrip().splitlines()[-1] == (
        "RuntimeError: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before "
        "calling NumCudaDevices() that might have already set an error? Error 803: system has unsupported "
        "display driver / cuda driver combination")
    assert "listening" not in result.stdout


def _fake_pod(tmp_path: Path, name: str) -> subprocess.Popen:
    """A process started the way the process kubelet starts a container (own session, pod env)."""
    env = {**os.environ, "POD_NAME": name, "POD_NAMESPACE": "serving", "NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b",
           "MLOPS_DRILL_SERVICES": str(tmp_path / "services.json")}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True)


def test_a_pods_process_is_found_by_its_env_and_crashed(tmp_path):
    from mlops_drill.injector.context import DrillContext
    from mlops_drill.injector.pods import crash_container, pod_process

    # The one boundary stood in for: a backend object carrying only what pods.py reads.
    ctx = DrillContext(SimpleNamespace(runs_processes=True, process_state=tmp_path, cluster_namespace=str),
                       Path("kubectl"))
    other = SimpleNamespace(runs_processes=True, process_state=tmp_path / "other-cluster", cluster_namespace=str)
    child = _fake_pod(tmp_path, "fraud-model-abc")
    try:
        deadline = time.monotonic() + 10
        found = None
        while found is None and time.monotonic() < deadline:
            found = pod_process(ctx, "serving", "fraud-model-abc")
            time.sleep(0.05)
        assert found is not None and found.pid == child.pid and found.gpus == ["GPU-a", "GPU-b"]
        assert pod_process(DrillContext(other, Path("kubectl")), "serving", "fraud-model-abc") is None
        assert pod_process(ctx, "serving", "fraud-model-xyz") is None
        crash_container(ctx, "serving", "fraud-model-abc", signal.SIGABRT)
        assert child.wait(timeout=10) == -signal.SIGABRT
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_backfill_waits_idle_until_its_input_lands(tmp_path):
    env = {**os.environ, "INPUT_ROOT": str(tmp_path), "INPUT_TABLE": "txn", "INPUT_DATE": "2024-10-01",
           "POLL_SECONDS": "0.2", "EMBED_SECONDS": "0", "NVIDIA_VISIBLE_DEVICES": "GPU-a"}
    proc = subprocess.Popen([sys.executable, "-m", "mlops_drill.mlplatform.embeddings_backfill"], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        lines = [json.loads(proc.stdout.readline()) for _ in range(3)]
        assert lines[0]["msg"] == "starting" and lines[0]["gpus"] == ["GPU-a"]
        assert all("waiting" in ln["msg"] and ln["partition"] == "txn/dt=2024-10-01" for ln in lines[1:])
        marker = tmp_path / "txn" / "dt=2024-10-01" / "_SUCCESS"
        marker.parent.mkdir(parents=True)
        marker.touch()
        assert proc.wait(timeout=10) == 0
        assert json.loads(proc.stdout.read().strip().splitlines()[-1])["msg"] == "shard done"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_squatting_job_reads_like_an_ordinary_batch_job():
    from mlops_drill.injector.faults.occupy_gpus import backfill_job

    job = backfill_job("embeddings-backfill", "training", 6, "mlops-drill/embeddings-backfill:0.9.1")
    text = json.dumps(job).lower()
    assert not any(word in text for word in ("fault", "occupy", "squat", "drill-test", "injector"))
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["parallelism"] == 6 and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_a_crash_in_the_faults_own_second_counts_as_after_it():
    """Pod timestamps have whole seconds; the fault's time does not (a crash 0.3 s after it must count)."""
    from datetime import datetime, timezone

    from mlops_drill.injector.pods import restarted_with_error

    def pod(started: float) -> dict:
        stamp = datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"status": {"containerStatuses": [{
            "lastState": {"terminated": {"exitCode": 1, "startedAt": stamp}},
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}

    fault_at = 1_700_000_000.6
    assert restarted_with_error(pod(fault_at + 0.3), fault_at)
    assert not restarted_with_error(pod(fault_at - 1.0), fault_at), "a crash before the fault is not its symptom"


def test_a_board_swap_keeps_health_and_state_and_follows_the_product():
    """gpu-node-product changes only what the product decides, so it composes with the fault acting on the node."""
    from mlops_drill.cluster.gpu.products import A100
    from mlops_drill.injector.faults.gpu_node_product import with_product

    model = _node(plugin_state="crashed", xid_events=[XidEvent(xid=79, device_index=2)])
    model.devices[2].healthy = False
    with_product(model, "NVIDIA-A100-SXM4-80GB")
    assert (model.product, model.memory_total_mib) == (A100.name, 81920)
    assert [d.pci_bus_id for d in model.devices] == list(A100.pci_buses[:4])
    assert {d.power_limit_w for d in model.devices} == {400.0} and model.devices[0].power_draw_w == A100.idle_power_w
    assert model.plugin_state == "crashed" and not model.devices[2].healthy and model.xid_events[0].xid == 79
    assert model.allocatable == 0 and model.capacity == 4
