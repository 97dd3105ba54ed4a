"""How long loading and running a model takes, from real H100 measurements.

The drill's models are tiny numpy arrays, but the cold-start and CPU-fallback
scenarios are about production-sized models. Each version therefore declares the
serving footprint of the model it stands for (``serving_size_gib``) and the
service really sleeps for the time an H100 host needs to move that many bytes:
CUDA context creation plus a host-to-device copy, interpolated between the
figures measured on a real H100 (``gpu_load_h100.json``, copied from
``shared/reference/nvidia-smi-h100/gpu_load.json``). A bigger model therefore
really starts slower, by the measured ratio.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

#: Default MODEL_LOAD_TIME_SCALE: a 6 GiB model (v3) loads in ~0.55 s, 24 GiB (v5) in ~2.5 s.
DEFAULT_LOAD_SCALE = 0.25
#: Per-request compute on a GPU per GiB of model (v3: ~4.8 ms); CPU is CPU_SLOWDOWN times that.
#: 20x device time makes end-to-end /predict latency ~10x once HTTP and the feature lookup
#: (~5 ms here) are added: the "latency x10" a GPU-less pod shows.
GPU_INFER_SECONDS_PER_GIB = 0.0008
CPU_SLOWDOWN = 20.0


@lru_cache(maxsize=1)
def figures() -> dict[str, float]:
    """The measured H100 figures (seconds), numbers only."""
    raw = json.loads((Path(__file__).with_name("gpu_load_h100.json")).read_text())
    return {k: float(v) for k, v in raw.items() if isinstance(v, (int, float))}


def h2d_copy_seconds(size_gib: float, pinned: bool) -> float:
    """Host-to-device copy time, linear between the measured sizes (2, 8, 16 GiB).

    Beyond 16 GiB the last measured segment's slope continues; below 2 GiB the
    line runs through the origin.
    """
    kind = "pinned" if pinned else "pageable"
    f = figures()
    points = [(0.0, 0.0)] + [(float(s), f[f"h2d_{kind}_{s}GiB_s"]) for s in (2, 8, 16)]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if size_gib <= x1:
            return y0 + (y1 - y0) * (size_gib - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = points[-2], points[-1]
    return y1 + (y1 - y0) / (x1 - x0) * (size_gib - x1)


def load_seconds(size_gib: float, device: str, pinned: bool = False, scale: float = DEFAULT_LOAD_SCALE) -> float:
    """Time from process start to a model ready for inference.

    On a GPU: CUDA initialisation plus the host-to-device copy. On a CPU there is
    no CUDA context and no device copy, only the host-side read (modelled with
    the pageable bandwidth).
    """
    if device == "cuda":
        return scale * (figures()["cuda_init_s"] + h2d_copy_seconds(size_gib, pinned))
    return scale * h2d_copy_seconds(size_gib, pinned=False)


def inference_seconds(size_gib: float, device: str, scale: float = 1.0) -> float:
    """Device time of one forward pass for a model of this footprint."""
    gpu = GPU_INFER_SECONDS_PER_GIB * size_gib
    return scale * (gpu if device == "cuda" else gpu * CPU_SLOWDOWN)
