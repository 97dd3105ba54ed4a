"""The kind face of the fake GPUs: a real kubelet device plugin (API v1beta1) over gRPC.

See :mod:`.plugin` for the behaviour and :mod:`.source` for where the inventory comes from.
The generated ``api_pb2*`` modules are committed; regenerate them with :mod:`.regenerate`.
"""
from mlops_drill.cluster.gpu.deviceplugin.plugin import (
    API_VERSION,
    HEALTHY,
    RESOURCE_NAME,
    SOCKET_NAME,
    UNHEALTHY,
    NvidiaDevicePlugin,
    PluginCrashed,
)
from mlops_drill.cluster.gpu.deviceplugin.source import InventorySource, JsonFileSource, parse_inventory

__all__ = ["API_VERSION", "HEALTHY", "RESOURCE_NAME", "SOCKET_NAME", "UNHEALTHY", "InventorySource",
           "JsonFileSource", "NvidiaDevicePlugin", "PluginCrashed", "parse_inventory"]
