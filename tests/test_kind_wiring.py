"""What the kind backend hands its real kubelets: release images, the fake nvidia-smi, each node's GPU file.

These run without a Docker engine (tests/test_kind_backend.py runs the same wiring on a
real kind cluster), so the Docker boundary is a MOCK: ``DockerRecorder`` stands in for the
``docker`` CLI and records what would cross it (argv and stdin). Everything on our side of it is real: the release list, the images'
Dockerfiles, the launcher, the inventory ConfigMap on the session's real API
server, and the nvidia-smi and device-plugin readers fed with the recorded files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECORDER = """#!{python}
# MOCK of the docker CLI (no Docker engine here): records each call, answers success.
import json, sys
with open({log!r}, "a") as handle:
    handle.write(json.dumps({{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}) + "\\n")
"""


class DockerRecorder:
    def __init__(self, folder: Path) -> None:
        self.log = folder / "docker-calls.jsonl"
        self.path = folder / "docker"
        self.path.write_text(RECORDER.format(python=sys.executable, log=str(self.log)))
        self.path.chmod(0o755)

    def calls(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def files_put(self) -> dict[tuple[str, str], str]:
        """(node, path) -> content of every file written on a node with ``docker exec -i``."""
        put = {}
        for call in self.calls():
            argv = call["argv"]
            if argv[:2] == ["exec", "-i"] and "cat > " in argv[-1]:  # not the mkdir/chown of a node folder
                node, script = argv[2], argv[-1]
                path = script.split("cat > ", 1)[1].split(".tmp", 1)[0]
                put[node, path] = call["stdin"]
        return put


def _images_in(doc: object):
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "image" and isinstance(value, str):
                yield value
            else:
                yield from _images_in(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _images_in(item)


def test_every_image_the_baseline_and_the_catalogue_faults_run_is_a_known_release():
    """kind loads ``releases.all_images()``: a fault rolling out a tag missing there would hang in ErrImagePull."""
    import mlops_drill.injector.faults  # noqa: F401
    from mlops_drill.injector.fault import REGISTRY, make
    from mlops_drill.mlplatform import releases
    from mlops_drill.mlplatform.manifests import baseline_documents
    from mlops_drill.scenarios.loader import catalogue_dir, load_scenario
    from mlops_drill.scenarios.variants import probe_values, render

    docs = baseline_documents()
    used = {i for doc in docs for i in _images_in(doc) if i.startswith("mlops-drill/")}
    stable = {d["metadata"]["name"]: next(_images_in(d["spec"])) for d in docs if d["kind"] == "Deployment"}
    scenarios = [load_scenario(p) for p in sorted(catalogue_dir().glob("*.yaml"))]
    variants = [render(sc, values) for sc in scenarios for values in probe_values(sc)]  # every value a seed can draw
    # Each fault's defaults (a fault with required params has none: its catalogue params are read below)
    defaults = [(name, {}) for name, cls in REGISTRY.items()
                if not any(field.is_required() for field in cls.Params.model_fields.values())]
    faults = defaults + [(f.name, f.params) for v in variants for f in v.faults]
    for name, params in faults:
        values = make(name, params).params.model_dump()
        target = values.get("deployment") or values.get("stable")
        for key, value in values.items():
            if key == "image":
                used.add(value)
            elif key.endswith("image_tag"):
                used.add(stable[target].rsplit(":", 1)[0] + ":" + value)
    assert "mlops-drill/fraud-model:1.6.0-rc1" in used and "mlops-drill/fraud-model:1.5.0" in used
    assert used <= set(releases.all_images()), sorted(used - set(releases.all_images()))


def test_release_images_are_the_repo_build_with_their_own_name_baked_in(tmp_path):
    from mlops_drill.cluster.backends.kind_images import BASE_IMAGE, build_images

    docker = DockerRecorder(tmp_path)
    platform_builds = []
    built = build_images(["mlops-drill/fraud-model:1.5.0", "mlops-drill/model-registry:1.2.0"], docker=str(docker.path),
                         build_platform=lambda: platform_builds.append(1))
    assert built == [BASE_IMAGE, "mlops-drill/fraud-model:1.5.0", "mlops-drill/model-registry:1.2.0"]
    assert platform_builds == [1]  # the platform image itself (tests/test_kind_backend.py builds it for real)
    releases = docker.calls()
    assert len(releases) == 2
    for call, image in zip(releases, built[1:]):
        assert call["argv"] == ["build", "-q", "--force-rm", "-t", image, "-"]
        lines = call["stdin"].splitlines()
        assert lines[0] == f"FROM {BASE_IMAGE}"
        baked = dict(line.removeprefix("ENV ").split("=", 1) for line in lines[1:])
        # What the app in that image then says it is: the release its tag names.
        release = subprocess.run([sys.executable, "-c", "from mlops_drill.mlplatform import appkit; "
                                  "print(appkit.release('none'))"], env={**os.environ, **baked},
                                 capture_output=True, text=True, timeout=30)
        assert release.stdout.strip() == image.rsplit(":", 1)[1]


def test_a_failed_docker_build_is_one_line(tmp_path):
    from mlops_drill.cluster.backends.kind_images import build_images
    from mlops_drill.errors import DrillError

    failing = tmp_path / "docker"
    failing.write_text("#!/bin/sh\n# MOCK docker CLI that fails like a build with no engine\n"
                       "echo 'ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(DrillError) as err:
        build_images(["mlops-drill/fraud-model:1.4.0"], docker=str(failing), build_platform=lambda: None)
    assert "\n" not in str(err.value) and "Cannot connect to the Docker daemon" in str(err.value)


def test_a_node_that_refuses_the_file_is_one_line(tmp_path, monkeypatch):
    from mlops_drill.cluster.backends.kind import KindBackend
    from mlops_drill.errors import DrillError

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path / "state"))
    failing = tmp_path / "docker"
    failing.write_text("#!/bin/sh\n# MOCK docker CLI: the node container is gone\ncat >/dev/null\n"
                       "echo 'Error response from daemon:' >&2\n"
                       "echo 'No such container: drill-worker3' >&2\nexit 1\n")
    failing.chmod(0o755)
    backend = KindBackend(name="gone")
    backend.docker = str(failing)
    with pytest.raises(DrillError) as err:
        backend.publish_gpu_inventory({"drill-worker3": "{}"})
    assert str(err.value) == "docker exec drill-worker3: No such container: drill-worker3"


@pytest.mark.cluster
def test_gpu_faults_reach_each_kind_node_file_that_nvidia_smi_and_the_plugin_read(cluster, tmp_path, monkeypatch):
    """The inventory ConfigMap (real API server) -> per-node files over `docker exec` (mocked) -> real readers."""
    from mlops_drill.cluster.backends.kind import GPU_STATE_FILE, NVIDIA_SMI_LAUNCHER, KindBackend
    from mlops_drill.cluster.gpu.deviceplugin.plugin import DEFAULT_NVIDIA_SMI_HOST_PATH
    from mlops_drill.cluster.gpu.deviceplugin.source import JsonFileSource
    from mlops_drill.cluster.gpu.model import GpuProcess
    from mlops_drill.injector.context import DrillContext

    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path / "state"))
    docker = DockerRecorder(tmp_path)

    class KindOnTheSessionCluster(KindBackend):
        """kind's wiring, aimed at the session's API server (its GPU nodes are named as kind's would be here)."""

        def kubeconfig(self) -> Path:
            return cluster.kubeconfig

    backend = KindOnTheSessionCluster(name="wiring")
    backend.docker = str(docker.path)
    backend.state.mkdir(parents=True, exist_ok=True)
    backend.prepare_gpu_nodes(["gpu-node-0", "gpu-node-1"])
    files = docker.files_put()
    assert files["gpu-node-0", str(DEFAULT_NVIDIA_SMI_HOST_PATH)] == NVIDIA_SMI_LAUNCHER
    assert {("gpu-node-0", GPU_STATE_FILE), ("gpu-node-1", GPU_STATE_FILE)} <= set(files)

    ctx = DrillContext(backend, cluster.kubectl_path)
    before = ctx.gpu_node("gpu-node-1")
    try:
        ctx.edit_gpu_node("gpu-node-1", lambda m: m.devices[2].processes.append(
            GpuProcess(pid=31337, name="python3", used_memory_mib=2048)))
        node_file = tmp_path / "gpu-node-1" / "gpu.json"
        node_file.parent.mkdir()
        node_file.write_text(docker.files_put()["gpu-node-1", GPU_STATE_FILE])
        # The gRPC plugin's reader and the nvidia-smi of a container on that node both see the process.
        assert JsonFileSource(node_file, "gpu-node-1")().devices[2].processes[0].pid == 31337
        smi = subprocess.run([sys.executable, "-m", "mlops_drill.cluster.gpu.nvidia_smi",
                              "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                             env={"PATH": os.environ["PATH"], "MLOPS_DRILL_GPU_STATE": str(node_file)},
                             capture_output=True, text=True, timeout=30)
        assert smi.stdout.strip() == "31337, 2048 MiB", smi.stdout + smi.stderr
    finally:
        ctx.put_gpu_node(before)
