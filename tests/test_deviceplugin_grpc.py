"""The gRPC device plugin against a fake kubelet that speaks the real v1beta1 API.

The fake kubelet is a real gRPC server on ``kubelet.sock``. Like the kubelet's device manager,
it answers Register, then dials the plugin's endpoint back, asks for its options and keeps a
ListAndWatch stream open, recording every device list it receives. Everything runs over real
unix sockets in a temporary plugin directory; the only stand-in is the kubelet itself.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
import yaml
from google.protobuf import descriptor_pb2

from mlops_drill.cluster.gpu.deviceplugin import (
    JsonFileSource,
    NvidiaDevicePlugin,
    PluginCrashed,
    api_pb2,
    api_pb2_grpc,
    parse_inventory,
)
from mlops_drill.cluster.gpu.deviceplugin.__main__ import build_parser
from mlops_drill.cluster.gpu.deviceplugin.dirwatch import KubeletSocketWatcher
from mlops_drill.cluster.gpu.model import GpuNode, new_node
from mlops_drill.errors import DrillError

pytestmark = pytest.mark.timeout(60)

NODE = "gpu-node-0"
NVIDIA_SMI = Path("/opt/mlops-drill/bin/nvidia-smi")
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "cluster" / "gpu" / "deviceplugin"
T = TypeVar("T")


class FakeKubelet(api_pb2_grpc.RegistrationServicer):
    """The kubelet's side of the protocol, on ``<plugin_dir>/kubelet.sock``."""

    def __init__(self, plugin_dir: Path) -> None:
        self.plugin_dir = plugin_dir
        self.registrations: list[api_pb2.RegisterRequest] = []
        self.plugin_options: list[api_pb2.DevicePluginOptions] = []
        self.device_lists: list[dict[str, str]] = []
        self.streams_ended = 0
        self.before_answering: Callable[[], None] | None = None  # runs inside Register
        self._cond = threading.Condition()
        self._channels: list[grpc.Channel] = []
        self._threads: list[threading.Thread] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        api_pb2_grpc.add_RegistrationServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix://{plugin_dir / 'kubelet.sock'}")
        self._server.start()

    def Register(self, request, context):  # noqa: N802 - gRPC method name
        if request.version != "v1beta1":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"Requested API version {request.version!r} is not supported by kubelet")
        with self._cond:
            self.registrations.append(request)
            self._cond.notify_all()
        if self.before_answering is not None:
            self.before_answering()
        # The kubelet answers first and connects back asynchronously.
        thread = threading.Thread(target=self._watch_plugin, args=(request.endpoint,), daemon=True)
        self._threads.append(thread)
        thread.start()
        return api_pb2.Empty()

    def _watch_plugin(self, endpoint: str) -> None:
        channel = grpc.insecure_channel(f"unix://{self.plugin_dir / endpoint}")
        self._channels.append(channel)
        stub = api_pb2_grpc.DevicePluginStub(channel)
        try:
            options = stub.GetDevicePluginOptions(api_pb2.Empty(), timeout=15)
            with self._cond:
                self.plugin_options.append(options)
            for response in stub.ListAndWatch(api_pb2.Empty()):
                with self._cond:
                    self.device_lists.append({d.ID: d.health for d in response.devices})
                    self._cond.notify_all()
        except grpc.RpcError:
            pass  # plugin or kubelet went away; the end is recorded below either way
        with self._cond:
            self.streams_ended += 1
            self._cond.notify_all()

    def plugin_stub(self) -> api_pb2_grpc.DevicePluginStub:
        """A client on the endpoint the plugin registered, for kubelet-initiated calls."""
        endpoint = self.registrations[-1].endpoint
        channel = grpc.insecure_channel(f"unix://{self.plugin_dir / endpoint}")
        self._channels.append(channel)
        return api_pb2_grpc.DevicePluginStub(channel)

    def wait_for(self, what: str, predicate: Callable[[], T], timeout: float = 30.0) -> T:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"fake kubelet: no {what} within {timeout}s; registrations="
                        f"{len(self.registrations)}, device lists={self.device_lists}")
                self._cond.wait(remaining)
            return value

    def stop(self) -> None:
        self._server.stop(grace=0).wait()
        for channel in self._channels:
            channel.close()
        for thread in self._threads:
            thread.join(timeout=5)


def write_inventory(path: Path, node: GpuNode) -> None:
    """Atomically, as the engine does, so the plugin never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(node.model_dump_json())
    os.replace(tmp, path)


@pytest.fixture
def root() -> Iterator[Path]:
    # Short on purpose: unix socket paths must stay under 108 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="dp-", dir="/tmp"))
    (path / "plugins").mkdir()
    (path / "state").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def plugin_dir(root: Path) -> Path:
    return root / "plugins"


@pytest.fixture
def node() -> GpuNode:
    return new_node(NODE, count=4)


@pytest.fixture
def state(root: Path, node: GpuNode) -> Path:
    path = root / "state" / "gpu.json"
    write_inventory(path, node)
    return path


@pytest.fixture
def kubelet(plugin_dir: Path) -> Iterator[FakeKubelet]:
    fake = FakeKubelet(plugin_dir)
    yield fake
    fake.stop()


def make_plugin(plugin_dir: Path, state: Path, use_inotify: bool = True) -> NvidiaDevicePlugin:
    return NvidiaDevicePlugin(JsonFileSource(state, NODE), plugin_dir, poll_interval=0.05,
                              register_timeout=2.0, nvidia_smi_host_path=NVIDIA_SMI,
                              inventory_host_path=state, use_inotify=use_inotify)


@pytest.fixture
def plugin(plugin_dir: Path, state: Path, kubelet: FakeKubelet) -> Iterator[NvidiaDevicePlugin]:
    p = make_plugin(plugin_dir, state)
    p.start()
    yield p
    p.stop()


def uuids(node: GpuNode) -> list[str]:
    return [d.uuid for d in node.devices]


# ---- registration and ListAndWatch ---------------------------------------------------------

def test_plugin_registers_with_the_kubelet(plugin, kubelet):
    kubelet.wait_for("registration", lambda: kubelet.registrations)
    request = kubelet.registrations[0]
    assert request.version == "v1beta1"
    assert request.endpoint == "nvidia-gpu.sock"
    assert request.resource_name == "nvidia.com/gpu"
    assert request.options.pre_start_required is False  # as NVIDIA's plugin: restarts need no rpc
    options = kubelet.wait_for("options", lambda: kubelet.plugin_options)[0]
    assert options.pre_start_required is False


def test_list_and_watch_first_sends_four_healthy_devices(plugin, kubelet, node):
    first = kubelet.wait_for("device list", lambda: kubelet.device_lists)[0]
    assert first == {uuid: "Healthy" for uuid in uuids(node)}


def test_device_turning_unhealthy_is_streamed_to_the_kubelet(plugin, kubelet, node, state):
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    node.devices[2].healthy = False
    write_inventory(state, node)
    update = kubelet.wait_for("Unhealthy update", lambda: [
        lst for lst in kubelet.device_lists if "Unhealthy" in lst.values()])[0]
    assert update[node.devices[2].uuid] == "Unhealthy"
    assert [h for u, h in update.items() if u != node.devices[2].uuid] == ["Healthy"] * 3

    node.devices[2].healthy = True
    write_inventory(state, node)
    kubelet.wait_for("recovery", lambda: kubelet.device_lists[-1] == {
        uuid: "Healthy" for uuid in uuids(node)})


def test_inventory_rewrite_without_health_change_sends_nothing(plugin, kubelet, node, state):
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    node.devices[0].utilization_pct = 97
    write_inventory(state, node)
    node.devices[1].healthy = False  # a later, real change proves the stream was still live
    write_inventory(state, node)
    kubelet.wait_for("Unhealthy update", lambda: len(kubelet.device_lists) >= 2)
    assert len(kubelet.device_lists) == 2


def test_broken_driver_marks_every_device_unhealthy(plugin, kubelet, node, state):
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    node.driver_state = "library-mismatch"
    write_inventory(state, node)
    kubelet.wait_for("all-Unhealthy list", lambda: kubelet.device_lists[-1] == {
        uuid: "Unhealthy" for uuid in uuids(node)})


# ---- the kubelet's calls -------------------------------------------------------------------

def test_allocate_two_devices_sets_visible_devices_and_mounts_nvidia_smi(plugin, kubelet, node,
                                                                       state):
    kubelet.wait_for("registration", lambda: kubelet.registrations)
    wanted = uuids(node)[1:3]
    response = kubelet.plugin_stub().Allocate(api_pb2.AllocateRequest(container_requests=[
        api_pb2.ContainerAllocateRequest(devicesIDs=wanted)]), timeout=5)
    (container,) = response.container_responses
    assert container.envs["NVIDIA_VISIBLE_DEVICES"] == ",".join(wanted)
    mounts = {m.container_path: m for m in container.mounts}
    assert mounts["/usr/bin/nvidia-smi"].host_path == str(NVIDIA_SMI)
    assert mounts["/usr/bin/nvidia-smi"].read_only
    # The inventory's directory is mounted so nvidia-smi in the pod sees later faults too.
    assert mounts[str(state.parent)].host_path == str(state.parent)
    assert container.envs["MLOPS_DRILL_GPU_STATE"] == str(state)
    assert container.envs["MLOPS_DRILL_GPU_NODE"] == NODE
    # The fake nvidia-smi, run with exactly that env (as in the container), lists the two granted GPUs.
    smi = subprocess.run([sys.executable, "-m", "mlops_drill.cluster.gpu.nvidia_smi", "-L"], capture_output=True,
                         text=True, timeout=30, env={"PATH": os.environ.get("PATH", ""), **container.envs})
    assert smi.returncode == 0, smi.stderr
    assert smi.stdout.splitlines() == [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: {uuid})" for i, uuid in enumerate(wanted)]


def test_allocate_of_an_unknown_device_is_refused(plugin, kubelet):
    kubelet.wait_for("registration", lambda: kubelet.registrations)
    with pytest.raises(grpc.RpcError) as err:
        kubelet.plugin_stub().Allocate(api_pb2.AllocateRequest(container_requests=[
            api_pb2.ContainerAllocateRequest(devicesIDs=["GPU-does-not-exist"])]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown device: GPU-does-not-exist" in err.value.details()


def test_prestart_container_answers_empty(plugin, kubelet, node):
    kubelet.wait_for("registration", lambda: kubelet.registrations)
    response = kubelet.plugin_stub().PreStartContainer(
        api_pb2.PreStartContainerRequest(devicesIDs=uuids(node)[:1]), timeout=5)
    assert response == api_pb2.PreStartContainerResponse()


def test_preferred_allocation_keeps_must_include_and_fills_lowest_index(plugin, kubelet, node):
    kubelet.wait_for("registration", lambda: kubelet.registrations)
    ids = uuids(node)
    response = kubelet.plugin_stub().GetPreferredAllocation(api_pb2.PreferredAllocationRequest(
        container_requests=[api_pb2.ContainerPreferredAllocationRequest(
            available_deviceIDs=[ids[3], ids[1], ids[2]], must_include_deviceIDs=[ids[3]],
            allocation_size=2)]), timeout=5)
    assert list(response.container_responses[0].deviceIDs) == [ids[3], ids[1]]


# ---- kubelet restarts ----------------------------------------------------------------------

def test_reregisters_after_kubelet_restart(plugin, kubelet, plugin_dir, node):
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    kubelet.stop()
    (plugin_dir / "kubelet.sock").unlink(missing_ok=True)
    restarted = FakeKubelet(plugin_dir)
    try:
        request = restarted.wait_for("re-registration", lambda: restarted.registrations)[0]
        assert request.resource_name == "nvidia.com/gpu"
        lst = restarted.wait_for("device list", lambda: restarted.device_lists)[0]
        assert lst == {uuid: "Healthy" for uuid in uuids(node)}
    finally:
        restarted.stop()


def test_reregisters_when_kubelet_wipes_the_plugin_dir(plugin, kubelet, plugin_dir, node):
    """What a real kubelet does on start: remove every socket, ours included, then listen."""
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    kubelet.stop()
    for entry in plugin_dir.iterdir():
        entry.unlink()
    restarted = FakeKubelet(plugin_dir)
    try:
        restarted.wait_for("re-registration", lambda: restarted.registrations)
        restarted.wait_for("device list", lambda: restarted.device_lists)
        assert (plugin_dir / "nvidia-gpu.sock").exists()
    finally:
        restarted.stop()


def test_registers_once_a_late_kubelet_appears(plugin_dir, state):
    plugin = make_plugin(plugin_dir, state)
    plugin.start()  # no kubelet yet: serving, registration pending
    kubelet = FakeKubelet(plugin_dir)
    try:
        kubelet.wait_for("registration", lambda: kubelet.registrations)
        kubelet.wait_for("device list", lambda: kubelet.device_lists)
    finally:
        plugin.stop()
        kubelet.stop()


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "stat"])
def test_watcher_reports_kubelet_socket_creation(plugin_dir, use_inotify):
    watcher = KubeletSocketWatcher(plugin_dir, use_inotify=use_inotify)
    try:
        assert watcher.wait(0.01) is False
        (plugin_dir / "kubelet.sock").touch()
        (plugin_dir / "nvidia-gpu.sock").touch()
        assert watcher.wait(2.0 if use_inotify else 0.05) is True  # stat mode only polls
        assert watcher.wait(0.01) is False
    finally:
        watcher.close()


# ---- the plugin going down -----------------------------------------------------------------

def test_crashed_plugin_stops_serving_and_the_kubelet_stream_ends(plugin, kubelet, node, state,
                                                                 plugin_dir):
    kubelet.wait_for("device list", lambda: kubelet.device_lists)
    node.plugin_state = "crashed"
    write_inventory(state, node)
    with pytest.raises(PluginCrashed):
        plugin.wait(timeout=10)
    kubelet.wait_for("stream end", lambda: kubelet.streams_ended)
    assert not (plugin_dir / "nvidia-gpu.sock").exists()


def test_plugin_does_not_start_on_a_broken_driver(plugin_dir, state, node):
    node.driver_state = "library-mismatch"
    write_inventory(state, node)
    with pytest.raises(PluginCrashed, match="Driver/library version mismatch"):
        make_plugin(plugin_dir, state).start()


# ---- inventory file ------------------------------------------------------------------------

def test_inventory_may_be_the_configmap_data_of_every_node(node):
    """ConfigMap ``gpu-inventory`` data written out as-is: node name -> JSON text."""
    other = new_node("gpu-node-1")
    text = json.dumps({NODE: node.model_dump_json(), "gpu-node-1": other.model_dump_json()})
    assert uuids(parse_inventory(text, NODE, "gpu.json")) == uuids(node)
    assert uuids(parse_inventory(text, "gpu-node-1", "gpu.json")) == uuids(other)


def test_inventory_without_this_node_names_the_node_on_one_line(node):
    with pytest.raises(DrillError) as err:
        parse_inventory(f'{{"gpu-node-1": {node.model_dump_json()}}}', NODE, "/etc/gpu.json")
    assert str(err.value) == ("/etc/gpu.json: no GPU inventory for node 'gpu-node-0' "
                              "(nodes in file: gpu-node-1)")


# ---- packaging -----------------------------------------------------------------------------

def test_committed_modules_match_api_proto(tmp_path):
    regenerate = pytest.importorskip("mlops_drill.cluster.gpu.deviceplugin.regenerate")
    pytest.importorskip("grpc_tools")
    compiled = descriptor_pb2.FileDescriptorSet.FromString(
        regenerate.descriptor_set(tmp_path / "api.pb")).file[0]
    for message in _all_messages(compiled.message_type):
        for field in message.field:
            field.ClearField("json_name")  # protoc fills it in; generated code leaves it out
    committed = descriptor_pb2.FileDescriptorProto()
    api_pb2.DESCRIPTOR.CopyToProto(committed)
    assert committed == compiled, "api.proto changed: run cluster/gpu/deviceplugin/regenerate.py"


def _all_messages(messages) -> Iterator[descriptor_pb2.DescriptorProto]:
    for message in messages:
        yield message
        yield from _all_messages(message.nested_type)


def test_daemonset_runs_the_plugin_on_gpu_nodes_with_the_cli_it_ships():
    ds = yaml.safe_load((PACKAGE_DIR / "daemonset.yaml").read_text())
    assert (ds["kind"], ds["metadata"]["namespace"], ds["metadata"]["name"]) == (
        "DaemonSet", "gpu-operator", "nvidia-device-plugin-daemonset")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    (container,) = pod["containers"]
    assert container["image"] == "mlops-drill/platform:dev"
    assert container["command"][1:] == ["-m", "mlops_drill.cluster.gpu.deviceplugin"]
    args = build_parser().parse_args([a.replace("$(NODE_NAME)", NODE) for a in container["args"]])
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.plugin_dir) == host_paths["device-plugin"] == mounts["device-plugin"]
    assert str(args.state.parent) == host_paths["gpu-state"] == mounts["gpu-state"]
    assert args.node == NODE


def _plugin_process(plugin_dir: Path, state: Path) -> subprocess.Popen:
    """The DaemonSet container's command, as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "mlops_drill.cluster.gpu.deviceplugin", "--plugin-dir",
         str(plugin_dir), "--state", str(state), "--node", NODE, "--poll-interval", "0.05"],
        stderr=subprocess.PIPE, text=True)


def _stderr_when_done(proc: subprocess.Popen, kubelet: FakeKubelet, then: Callable[[], None] | None = None) -> str:
    try:
        kubelet.wait_for("registration", lambda: kubelet.registrations, timeout=30)
        if then is not None:
            then()
        _, stderr = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    return stderr


def test_module_entry_point_registers_then_exits_cleanly_on_sigterm(kubelet, plugin_dir, state):
    proc = _plugin_process(plugin_dir, state)

    def terminate_once_listed() -> None:
        kubelet.wait_for("device list", lambda: kubelet.device_lists)
        proc.send_signal(signal.SIGTERM)

    stderr = _stderr_when_done(proc, kubelet, terminate_once_listed)
    assert proc.returncode == 0, stderr
    assert "] Registered device plugin for 'nvidia.com/gpu' with Kubelet" in stderr


def test_sigterm_while_the_plugin_is_still_registering_exits_cleanly(kubelet, plugin_dir, state):
    """The kubelet may stop a plugin mid-start; CI once saw start() crash on a torn-down watcher."""
    proc = _plugin_process(plugin_dir, state)

    def terminate_then_answer() -> None:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the handler runs in the plugin while its Register call is pending

    kubelet.before_answering = terminate_then_answer
    stderr = _stderr_when_done(proc, kubelet)
    assert proc.returncode == 0, stderr
    assert 'Received signal "SIGTERM", shutting down.' in stderr
    assert "Traceback" not in stderr
    assert not (plugin_dir / "nvidia-gpu.sock").exists()
