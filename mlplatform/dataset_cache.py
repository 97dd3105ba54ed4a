"""The training data as a sharded dataset in an object-store bucket, with a local cache on the node.

Why: the cost of an expensive training run is not only GPU time in the
optimiser. A data loader that streams every shard from a bucket in another
region on every epoch keeps the GPUs allocated and idle while it waits, and
bills cross-region egress on top. A cache directory on the node's disk makes
every epoch after the first read locally.

The bucket is the one boundary not reachable here (no cloud): its content is
the Job's own training data, cut into shards and serialised for real, and its
read speed is the throughput a bucket in that region gives a node in this one
(``SAME_REGION_MBPS`` / ``CROSS_REGION_MBPS`` for a shard of ``shard_mb``
nominal megabytes), scaled by ``time_scale`` (nominal seconds per real second)
like the rest of the run. The cache is real: files written on a miss and read
back on a hit.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

#: Where each bucket of the dataset lives (its location, as ``gsutil ls -L -b`` reports it).
BUCKET_REGIONS = {
    "fraud-datasets-us-central1": "us-central1",
    "fraud-datasets-us-east1": "us-east1",
    "fraud-datasets-europe-west4": "europe-west4",
}
SAME_REGION_MBPS = 800.0
CROSS_REGION_MBPS = 40.0
LOCAL_DISK_MBPS = 3000.0
#: List price of inter-region egress inside a continent, per GB.
EGRESS_USD_PER_GB = 0.02


class DatasetError(ValueError):
    """A dataset setting that cannot work (one line naming the env var)."""


@dataclass(frozen=True)
class ShardRead:
    index: int  # 1-based, as logged
    cache: str  # "hit", "miss", or "off" (no cache directory)
    mb_per_s: float
    seconds: float  # real seconds the read took
    egress_gb: float


def parse_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/prefix/`` -> (bucket, prefix without slashes at either end)."""
    scheme, sep, rest = uri.strip().partition("://")
    if not sep or scheme not in ("gs", "s3") or not rest.split("/", 1)[0]:
        raise DatasetError(f"invalid value for env DATASET_URI: {uri!r} (use gs://BUCKET/PATH/)")
    bucket, _, prefix = rest.partition("/")
    if bucket not in BUCKET_REGIONS:
        raise DatasetError(f"DATASET_URI {uri!r}: bucket {bucket!r} not found (404)")
    return bucket, prefix.strip("/")


def node_region(node_name: str) -> str | None:
    """The region of the node this pod runs on, as the instance metadata server would tell it.

    A seat of a shared cluster names its nodes with a prefix, so a node matches
    the pool node its name ends with.
    """
    from mlops_drill.cluster.nodes import NODE_POOLS

    for spec in NODE_POOLS:
        if node_name and node_name.endswith(spec.name):
            return spec.zone.rsplit("-", 1)[0]
    return None


class ShardedDataset:
    """``X``/``y`` as ``shards`` shards under ``uri``; ``load_epoch`` reads them all, through the cache if any."""

    def __init__(self, uri: str, X: np.ndarray, y: np.ndarray, *, shards: int = 12, shard_mb: float = 2048.0,
                 cache_dir: Path | None = None, region: str | None = None, time_scale: float = 60.0,
                 log: Callable[..., None] | None = None) -> None:
        if shards < 1:
            raise DatasetError(f"invalid value for env DATASET_SHARDS: {shards} (at least 1)")
        if time_scale <= 0:
            raise DatasetError(f"invalid value for env DATA_TIME_SCALE: {time_scale} (must be > 0)")
        self.uri = uri.rstrip("/") + "/"
        self.bucket, self.prefix = parse_uri(uri)
        self.bucket_region = BUCKET_REGIONS[self.bucket]
        self.region = region
        self.cross_region = region is not None and region != self.bucket_region
        self.X, self.y = X, y
        self.shards, self.shard_mb, self.time_scale = shards, shard_mb, time_scale
        self.cache_dir = cache_dir
        self.log = log or (lambda *a, **k: None)
        self.bounds = np.linspace(0, len(y), shards + 1).astype(int)

    def shard_name(self, index: int) -> str:
        return f"shard-{index:05d}-of-{self.shards:05d}.npz"

    def cache_path(self, index: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / self.bucket / self.prefix / self.shard_name(index)

    def remote_mbps(self, epoch: int, index: int) -> float:
        """The bucket's throughput for this read: its region's figure, give or take 10% per read."""
        base = CROSS_REGION_MBPS if self.cross_region else SAME_REGION_MBPS
        jitter = int(hashlib.sha256(f"{self.uri}:{epoch}:{index}".encode()).hexdigest()[:4], 16) / 0xFFFF
        return base * (0.9 + 0.2 * jitter)

    def _download(self, index: int) -> bytes:
        lo, hi = self.bounds[index - 1], self.bounds[index]
        buf = io.BytesIO()
        np.savez(buf, X=self.X[lo:hi], y=self.y[lo:hi])
        return buf.getvalue()

    def _read_cached(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path) as npz:
                return npz["X"], npz["y"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent or cut short: a miss
            return None

    def read_shard(self, epoch: int, index: int, stop: threading.Event) -> tuple[np.ndarray, np.ndarray, ShardRead] | None:
        """One shard, from the cache when it holds it; None when ``stop`` is set while waiting on the bucket."""
        path = self.cache_path(index)
        cached = self._read_cached(path) if path is not None else None
        name = self.uri + self.shard_name(index)
        if cached is not None:
            seconds = self.shard_mb / LOCAL_DISK_MBPS / self.time_scale
            if stop.wait(seconds):
                return None
            self.log("info", f"loading shard {index}/{self.shards} from {name} (cache hit, local copy {path})",
                     shard=index, shards=self.shards, cache="hit", mb=self.shard_mb,
                     mb_per_s=round(LOCAL_DISK_MBPS), seconds=round(seconds, 3))
            return cached[0], cached[1], ShardRead(index, "hit", LOCAL_DISK_MBPS, seconds, 0.0)
        mbps = self.remote_mbps(epoch, index)
        seconds = self.shard_mb / mbps / self.time_scale
        if stop.wait(seconds):
            return None
        payload = self._download(index)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(payload)
            os.replace(tmp, path)
        where = f"remote region {self.bucket_region}" if self.cross_region else f"region {self.bucket_region}"
        cache = "miss" if path is not None else "off"
        self.log("info", f"loading shard {index}/{self.shards} from {name} (cache miss, {mbps:.0f} MB/s, {where})",
                 shard=index, shards=self.shards, cache=cache, mb=self.shard_mb, mb_per_s=round(mbps),
                 bucket_region=self.bucket_region, node_region=self.region, seconds=round(seconds, 3))
        egress = self.shard_mb / 1000 if self.cross_region else 0.0
        with np.load(io.BytesIO(payload)) as npz:
            return npz["X"], npz["y"], ShardRead(index, cache, mbps, seconds, egress)

    def load_epoch(self, epoch: int, stop: threading.Event) -> tuple[np.ndarray, np.ndarray, list[ShardRead]] | None:
        """Every shard in order (so an epoch sees exactly ``X``/``y``); None when stopped part-way."""
        xs, ys, reads = [], [], []
        for index in range(1, self.shards + 1):
            got = self.read_shard(epoch, index, stop)
            if got is None:
                return None
            xs.append(got[0])
            ys.append(got[1])
            reads.append(got[2])
        return np.concatenate(xs), np.concatenate(ys), reads
