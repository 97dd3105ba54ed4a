"""A kubelet device plugin for ``nvidia.com/gpu`` that serves the fake GPUs of the inventory model.

It speaks the real kubelet device plugin API (v1beta1) over a unix socket, so on kind a real
kubelet advertises the node's GPUs, schedules against them and injects them into containers:

* it serves ``DevicePlugin`` on ``<plugin dir>/nvidia-gpu.sock`` and registers that endpoint
  with the kubelet's ``Registration`` service on ``<plugin dir>/kubelet.sock``;
* ``ListAndWatch`` sends the whole device list first and again whenever a device's health
  changes in the inventory (a fault flips ``GpuDevice.healthy``);
* ``Allocate`` hands the container ``NVIDIA_VISIBLE_DEVICES`` and mounts the fake ``nvidia-smi``
  and the inventory, which is what the NVIDIA container runtime would have made visible;
* when the kubelet restarts it wipes the plugin directory and creates a new ``kubelet.sock``;
  the plugin notices either sign, restarts its server and registers again.

Faults that stop the plugin itself are rendered the way a real node shows them: an inventory
whose ``plugin_state`` is ``crashed`` makes :meth:`NvidiaDevicePlugin.wait` raise
:class:`PluginCrashed` (the process exits, the DaemonSet pod crash-loops and the kubelet drops
allocatable to 0 while capacity stays). A broken driver at start-up is fatal too, as NVML
initialisation fails; a driver that breaks while running marks every device Unhealthy.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from mlops_drill.cluster.gpu.deviceplugin import api_pb2, api_pb2_grpc
from mlops_drill.cluster.gpu.deviceplugin.dirwatch import KubeletSocketWatcher
from mlops_drill.cluster.gpu.deviceplugin.source import InventorySource
from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.cluster.gpu.nvidia_smi import PLUGIN_NODE_ENV as NODE_ENV, STATE_ENV
from mlops_drill.errors import DrillError

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
RESOURCE_NAME = "nvidia.com/gpu"
SOCKET_NAME = "nvidia-gpu.sock"
KUBELET_SOCKET = "kubelet.sock"
DEFAULT_PLUGIN_DIR = Path("/var/lib/kubelet/device-plugins")
HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"
NVIDIA_SMI_CONTAINER_PATH = "/usr/bin/nvidia-smi"
DEFAULT_NVIDIA_SMI_HOST_PATH = Path("/opt/mlops-drill/bin/nvidia-smi")
# STATE_ENV and NODE_ENV come from nvidia_smi: the env the fake nvidia-smi reads in a GPU container.

DeviceList = tuple[tuple[str, str], ...]  # ((uuid, health), ...) in device index order


class PluginCrashed(Exception):
    """The inventory says the plugin is down; the process should exit non-zero."""


def driver_failure(node: GpuNode) -> str | None:
    """What NVML initialisation would report for the node's driver state, or None if it works."""
    if node.driver_state == "library-mismatch":
        return "Failed to initialize NVML: Driver/library version mismatch"
    if node.driver_state == "missing":
        return "Failed to initialize NVML: could not load NVML library"
    return None


def device_list(node: GpuNode) -> DeviceList:
    """What ListAndWatch advertises: every device, all Unhealthy while the driver is broken."""
    driver_ok = driver_failure(node) is None
    return tuple((d.uuid, HEALTHY if d.healthy and driver_ok else UNHEALTHY)
                 for d in sorted(node.devices, key=lambda d: d.index))


class _DeviceBoard:
    """The current device list plus a version, so each ListAndWatch stream can wait for news."""

    def __init__(self, devices: DeviceList) -> None:
        self._cond = threading.Condition()
        self._devices = devices
        self._version = 0

    def current(self) -> tuple[int, DeviceList]:
        with self._cond:
            return self._version, self._devices

    def publish(self, devices: DeviceList) -> bool:
        with self._cond:
            if devices == self._devices:
                return False
            self._devices = devices
            self._version += 1
            self._cond.notify_all()
            return True

    def wait_newer(self, version: int, timeout: float) -> tuple[int, DeviceList] | None:
        with self._cond:
            if self._version == version:
                self._cond.wait(timeout)
            if self._version == version:
                return None
            return self._version, self._devices

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def _list_response(devices: DeviceList) -> api_pb2.ListAndWatchResponse:
    return api_pb2.ListAndWatchResponse(
        devices=[api_pb2.Device(ID=uuid, health=health) for uuid, health in devices])


class _DevicePluginServicer(api_pb2_grpc.DevicePluginServicer):
    """One per server instance: its streams end when that instance is stopped."""

    def __init__(self, plugin: NvidiaDevicePlugin, stopped: threading.Event) -> None:
        self._plugin = plugin
        self._stopped = stopped

    def GetDevicePluginOptions(self, request, context):  # noqa: N802 - gRPC method name
        return self._plugin.options

    def ListAndWatch(self, request, context):  # noqa: N802
        board = self._plugin._board
        context.add_callback(board.wake)  # the kubelet hung up: stop waiting at once
        version, devices = board.current()
        yield _list_response(devices)
        while context.is_active() and not self._stopped.is_set():
            update = board.wait_newer(version, timeout=1.0)
            if update is not None and context.is_active():
                version, devices = update
                yield _list_response(devices)

    def GetPreferredAllocation(self, request, context):  # noqa: N802
        order = [uuid for uuid, _ in self._plugin.devices()]
        responses = []
        for req in request.container_requests:
            chosen = list(dict.fromkeys(req.must_include_deviceIDs))
            available = set(req.available_deviceIDs)
            for uuid in order:  # lowest index first, as NVML enumerates them
                if len(chosen) >= req.allocation_size:
                    break
                if uuid in available and uuid not in chosen:
                    chosen.append(uuid)
            responses.append(api_pb2.ContainerPreferredAllocationResponse(deviceIDs=chosen))
        return api_pb2.PreferredAllocationResponse(container_responses=responses)

    def Allocate(self, request, context):  # noqa: N802
        known = {uuid for uuid, _ in self._plugin.devices()}
        responses = []
        for req in request.container_requests:
            for uuid in req.devicesIDs:
                if uuid not in known:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"invalid allocation request for '{self._plugin.resource_name}': "
                                  f"unknown device: {uuid}")
            responses.append(self._plugin.container_allocation(list(req.devicesIDs)))
        return api_pb2.AllocateResponse(container_responses=responses)

    def PreStartContainer(self, request, context):  # noqa: N802
        return api_pb2.PreStartContainerResponse()


@dataclass
class _Server:
    grpc_server: grpc.Server
    stopped: threading.Event = field(default_factory=threading.Event)


class NvidiaDevicePlugin:
    """Serves, registers and keeps re-registering one resource's device plugin.

    ``start()`` returns once the server listens (registration is retried in the background
    until a kubelet answers); ``wait()`` blocks until ``stop()`` or a crash; ``serve_forever()``
    is both. ``poll_interval`` is how often the inventory is re-read and how long a kubelet
    restart can go unnoticed when inotify is unavailable.
    """

    def __init__(
        self,
        source: InventorySource,
        plugin_dir: Path = DEFAULT_PLUGIN_DIR,
        *,
        resource_name: str = RESOURCE_NAME,
        socket_name: str = SOCKET_NAME,
        nvidia_smi_host_path: Path = DEFAULT_NVIDIA_SMI_HOST_PATH,
        inventory_host_path: Path | None = None,
        poll_interval: float = 1.0,
        register_timeout: float = 5.0,
        use_inotify: bool = True,
    ) -> None:
        self.source = source
        self.plugin_dir = Path(plugin_dir)
        self.resource_name = resource_name
        self.socket_name = socket_name
        self.nvidia_smi_host_path = Path(nvidia_smi_host_path)
        self.inventory_host_path = Path(inventory_host_path) if inventory_host_path else None
        self.poll_interval = poll_interval
        self.register_timeout = register_timeout
        self.use_inotify = use_inotify
        # No PreStartContainer, as NVIDIA's plugin: with it, a kubelet could not restart a GPU
        # container at all while the plugin is down (the rpc fails), where a real node restarts it.
        self.options = api_pb2.DevicePluginOptions(
            pre_start_required=False, get_preferred_allocation_available=True)
        self._board: _DeviceBoard = _DeviceBoard(())
        self._node: GpuNode | None = None
        self._server: _Server | None = None
        self._watcher: KubeletSocketWatcher | None = None
        self._supervisor: threading.Thread | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._crash: str | None = None
        self._registered = False
        self._last_register_error: str | None = None
        self._last_source_error: str | None = None
        self.registrations = 0  # successful Register calls, for logs and operators

    @property
    def socket_path(self) -> Path:
        return self.plugin_dir / self.socket_name

    @property
    def kubelet_socket(self) -> Path:
        return self.plugin_dir / KUBELET_SOCKET

    def devices(self) -> DeviceList:
        return self._board.current()[1]

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Read the inventory, serve, and try a first registration.

        Raises :class:`PluginCrashed` when the inventory says the plugin or the driver is down
        (a real plugin would not get past NVML initialisation), and :class:`DrillError` when
        the inventory cannot be read.
        """
        node = self.source()
        failure = driver_failure(node)
        if failure:
            log.error("%s", failure)
            log.error("If this is a GPU node, did you configure the NVIDIA Container Toolkit?")
            raise PluginCrashed(f"error starting plugins: nvml init failed: {failure}")
        if node.plugin_state == "crashed":
            log.error("'%s' device plugin terminated", self.resource_name)
            raise PluginCrashed("error starting plugins: device plugin terminated")
        if len(os.fsencode(self.socket_path)) > 107:  # sun_path limit; gRPC's error is obscure
            raise DrillError(f"{self.socket_path}: unix socket path longer than 107 bytes; "
                             "use a shorter --plugin-dir")
        self._node = node
        self._board = _DeviceBoard(device_list(node))
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        log.info("Starting FS watcher.")
        self._watcher = KubeletSocketWatcher(self.plugin_dir, KUBELET_SOCKET, self.use_inotify)
        self._start_server()
        self._registered = self._register()
        if self._registered:
            self._forget_socket_events()
        self._supervisor = threading.Thread(target=self._supervise, name="deviceplugin-supervisor",
                                            daemon=True)
        self._supervisor.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stopped; raise :class:`PluginCrashed` if it stopped because it crashed."""
        finished = self._done.wait(timeout)
        if self._crash is not None:
            raise PluginCrashed(self._crash)
        return finished

    def serve_forever(self) -> None:
        self.start()
        self.wait()

    def stop(self) -> None:
        """Stop serving and remove our socket, as a plugin being shut down does."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.wake()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        self._shutdown()

    def _shutdown(self) -> None:
        self._stop_server()
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        self._done.set()

    # ---- serving ---------------------------------------------------------------------------

    def _start_server(self) -> None:
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8,
                                                        thread_name_prefix="deviceplugin"))
        instance = _Server(server)
        api_pb2_grpc.add_DevicePluginServicer_to_server(
            _DevicePluginServicer(self, instance.stopped), server)
        log.info("Starting GRPC server for '%s'", self.resource_name)
        server.add_insecure_port(f"unix://{self.socket_path}")
        server.start()
        self._server = instance
        log.info("Starting to serve '%s' on %s", self.resource_name, self.socket_path)

    def _stop_server(self) -> None:
        instance, self._server = self._server, None
        if instance is None:
            return
        instance.stopped.set()
        self._board.wake()
        instance.grpc_server.stop(grace=0.2).wait()
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass

    def _restart_server(self) -> None:
        self._stop_server()
        self._start_server()

    def _register(self) -> bool:
        """One Register call; False (and a log line when the reason changes) if it failed."""
        if not self.kubelet_socket.exists():
            return False
        request = api_pb2.RegisterRequest(version=API_VERSION, endpoint=self.socket_name,
                                          resource_name=self.resource_name, options=self.options)
        with grpc.insecure_channel(f"unix://{self.kubelet_socket}") as channel:
            try:
                api_pb2_grpc.RegistrationStub(channel).Register(request,
                                                                timeout=self.register_timeout)
            except grpc.RpcError as err:
                reason = f"{err.code().name}: {err.details()}"  # type: ignore[attr-defined]
                if reason != self._last_register_error:
                    log.warning("Could not register device plugin: %s", reason)
                    self._last_register_error = reason
                return False
        self._last_register_error = None
        self.registrations += 1
        log.info("Registered device plugin for '%s' with Kubelet", self.resource_name)
        return True

    # ---- watching --------------------------------------------------------------------------

    def _supervise(self) -> None:
        assert self._watcher is not None
        try:
            while not self._stop.is_set():
                kubelet_created = self._watcher.wait(self.poll_interval)
                if self._stop.is_set():
                    break
                self._refresh_devices()
                if self._crash is not None:
                    break
                if kubelet_created and self._registered:
                    log.info("inotify: %s created, restarting.", self.kubelet_socket)
                    self._restart_server()
                    self._registered = False
                elif not self.socket_path.exists():
                    log.info("%s was removed (kubelet restart?), restarting.", self.socket_path)
                    self._restart_server()
                    self._registered = False
                if not self._registered:
                    self._registered = self._register()
                    if self._registered:
                        self._forget_socket_events()
        except Exception as err:  # noqa: BLE001 - a dead supervisor must not leave a zombie plugin
            log.exception("device plugin supervisor failed")
            self._crash = f"internal error: {err}"
        finally:
            if self._crash is not None:
                self._shutdown()

    def _forget_socket_events(self) -> None:
        """A kubelet.sock creation seen before we registered with that kubelet is no restart of it."""
        assert self._watcher is not None
        while self._watcher.wait(0):
            pass

    def _refresh_devices(self) -> None:
        try:
            node = self.source()
        except DrillError as err:  # half-written file, ConfigMap sync in flight: keep last list
            message = str(err)
            if message != self._last_source_error:
                log.warning("Could not read GPU inventory, keeping the last device list: %s",
                            message)
                self._last_source_error = message
            return
        self._last_source_error = None
        if node.plugin_state == "crashed":
            self._crash = "device plugin terminated"
            log.error("'%s' device plugin terminated", self.resource_name)
            return
        failure = driver_failure(node)
        if failure and (self._node is None or driver_failure(self._node) is None):
            log.error("%s; marking all devices unhealthy", failure)
        before = dict(self.devices())
        if self._board.publish(device_list(node)):
            for uuid, health in self.devices():
                if health == UNHEALTHY and before.get(uuid) != UNHEALTHY:
                    log.info("'%s' device marked unhealthy: %s", self.resource_name, uuid)
                elif health == HEALTHY and before.get(uuid) == UNHEALTHY:
                    log.info("'%s' device marked healthy: %s", self.resource_name, uuid)
        self._node = node

    # ---- allocation ------------------------------------------------------------------------

    def container_allocation(self, device_ids: list[str]) -> api_pb2.ContainerAllocateResponse:
        """What one container gets for ``device_ids``.

        The inventory's directory is mounted rather than the file itself: the engine replaces
        the file atomically, and a single-file bind mount would keep showing the old inode, so
        ``nvidia-smi`` in a running pod would never see a fault.
        """
        envs = {"NVIDIA_VISIBLE_DEVICES": ",".join(device_ids)}
        mounts = [api_pb2.Mount(container_path=NVIDIA_SMI_CONTAINER_PATH,
                                host_path=str(self.nvidia_smi_host_path), read_only=True)]
        if self.inventory_host_path is not None:
            state_dir = self.inventory_host_path.parent
            mounts.append(api_pb2.Mount(container_path=str(state_dir), host_path=str(state_dir),
                                        read_only=True))
            envs[STATE_ENV] = str(self.inventory_host_path)
        if self._node is not None:
            envs[NODE_ENV] = self._node.node_name
        return api_pb2.ContainerAllocateResponse(envs=envs, mounts=mounts)
