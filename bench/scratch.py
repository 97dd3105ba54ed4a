"""What the bench scripts share: a throwaway embedded cluster and process memory readings."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def scratch_cluster(name: str, up: bool = True) -> Iterator["object"]:
    """An EmbeddedBackend with its state in a temporary folder, brought down afterwards."""
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    with tempfile.TemporaryDirectory() as state:
        old = os.environ.get("MLOPS_DRILL_STATE")
        os.environ["MLOPS_DRILL_STATE"] = state
        backend = EmbeddedBackend(name=name)
        try:
            if up:
                backend.up(progress=False)
            yield backend
        finally:
            backend.down()
            if old is None:
                os.environ.pop("MLOPS_DRILL_STATE", None)
            else:
                os.environ["MLOPS_DRILL_STATE"] = old


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of these processes, in MiB (gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024
