"""CUDA initialisation of a GPU pod, as the serving image's PyTorch would meet it on this node.

The drill's models are numpy arrays, so nothing here touches a GPU. A GPU pod
must still fail to start wherever a real CUDA process would: on a node whose
driver is missing, whose user-space driver libraries no longer match the loaded
kernel module, whose driver is older than the image's CUDA runtime, or when a
GPU it was given has fallen off the bus. The node comes from the GPU inventory
file the node agent keeps (``MLOPS_DRILL_GPU_STATE`` + ``NODE_NAME``); where
there is none (a real GPU, another backend) nothing is checked.

Error texts are PyTorch's own (``torch.cuda._lazy_init`` -> ``torch._C._cuda_init``).
"""
from __future__ import annotations

import os
from typing import Mapping

from mlops_drill.cluster.gpu.model import GpuNode

#: The CUDA runtime the serving image's PyTorch wheel was built against (cu124).
IMAGE_CUDA_RUNTIME = "12.4"
XID_FELL_OFF_BUS = 79
DOWNLOAD = "http://www.nvidia.com/Download/index.aspx"


def _cuda_number(version: str) -> int:
    """``12.2`` -> 12020, the form ``cudaDriverGetVersion`` reports and PyTorch prints."""
    major, _, minor = version.partition(".")
    return int(major) * 1000 + int(minor or 0) * 10


def _device_count_error(code: int, text: str) -> str:
    return ("Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling "
            f"NumCudaDevices() that might have already set an error? Error {code}: {text}")


def init_error(node: GpuNode, visible: list[str], runtime: str = IMAGE_CUDA_RUNTIME) -> str | None:
    """What ``torch._C._cuda_init()`` raises on ``node`` for the GPUs ``visible`` to the pod; None if CUDA comes up.

    This is the one place the drill decides driver/CUDA compatibility.
    """
    if node.driver_state == "missing":
        return ("Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and "
                f"installed a driver from {DOWNLOAD}")
    if node.driver_state == "library-mismatch":
        # libcuda from the upgraded package talks to the older kernel module still loaded.
        return _device_count_error(803, "system has unsupported display driver / cuda driver combination")
    found = _cuda_number(node.cuda_version)
    if found < _cuda_number(runtime):
        return (f"The NVIDIA driver on your system is too old (found version {found}). Please update your GPU "
                f"driver by downloading and installing a new version from the URL: {DOWNLOAD} Alternatively, "
                "go to: https://pytorch.org to install a PyTorch version that has been compiled with your "
                "version of the CUDA driver.")
    lost = {d.uuid for d in node.devices
            if any(e.xid == XID_FELL_OFF_BUS and e.device_index == d.index for e in node.xid_events)}
    if lost.intersection(visible):
        return _device_count_error(999, "unknown error")
    return None


def require_cuda(visible: list[str], environ: Mapping[str, str] = os.environ) -> None:
    """Raise the RuntimeError CUDA initialisation would raise on this node (start-up check of a GPU pod)."""
    from mlops_drill.cluster.gpu.nvidia_smi import StateError, load_node

    try:
        node = load_node(environ)
    except StateError:
        return  # no simulated GPU state here: a real GPU answers for itself
    error = init_error(node, visible)
    if error:
        raise RuntimeError(error)
