"""What the bench scripts share: a throwaway embedded cluster and process memory readings."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def scratch_cluster(name: str, up: bool = True) -> Iterator["object"]:
    """An EmbeddedBackend with its state in a temporary folder, brought down afterwards.

    Also when the script is stopped by SIGTERM, SIGINT or SIGHUP (`timeout`, Ctrl-C, a closed
    terminal): the cluster's daemons run in sessions of their own and would outlive the script.
    """
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend

    with _scratch(EmbeddedBackend, name, up) as backend:
        yield backend


@contextlib.contextmanager
def scratch_kind_cluster(name: str, up: bool = True) -> Iterator["object"]:
    """A KindBackend with its state in a temporary folder, deleted afterwards (signals included, as above)."""
    from mlops_drill.cluster.backends.kind import KindBackend

    with _scratch(KindBackend, name, up) as backend:
        yield backend


@contextlib.contextmanager
def _scratch(backend_class, name: str, up: bool) -> Iterator["object"]:
    from mlops_drill.interrupts import shielded, stop_on_signals

    with stop_on_signals(), tempfile.TemporaryDirectory() as state:
        old = os.environ.get("MLOPS_DRILL_STATE")
        os.environ["MLOPS_DRILL_STATE"] = state
        backend = backend_class(name=name)
        try:
            if up:
                backend.up(progress=False)
            yield backend
        finally:
            with shielded():
                backend.down()
                if old is None:
                    os.environ.pop("MLOPS_DRILL_STATE", None)
                else:
                    os.environ["MLOPS_DRILL_STATE"] = old


def _summed_kib(pids: Iterable[int], proc_file: str, key: str) -> int:
    """Sum of one ``key: N kB`` line of ``/proc/<pid>/<proc_file>`` over pids (gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/{proc_file}").read_text().splitlines():
                if line.startswith(key):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of these processes, in MiB (gone processes count 0)."""
    return _summed_kib(pids, "status", "VmRSS:") / 1024


def pss_mib(pids: Iterable[int]) -> float:
    """Proportional memory of these processes, in MiB: pages shared (a zygote's forks) count once in total."""
    return _summed_kib(pids, "smaps_rollup", "Pss:") / 1024


def children_of(pids: Iterable[int], cmd_part: str | None = None) -> list[int]:
    """Direct children of ``pids`` (only those whose command line contains ``cmd_part``, if given)."""
    wanted = set(pids)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid in wanted and (cmd_part is None or cmd_part in cmd):
            found.append(int(entry.name))
    return found


def container_pids(state: Path) -> list[int]:
    """The live container processes of one embedded cluster, from the records its process kubelet writes."""
    from mlops_drill.cluster.processpods import records

    return [pid for pid, _ in records.live(state)]


def pids_in(folder: Path) -> list[int]:
    """The pids in a folder of ``*.pid`` files (kwokctl's, and our daemons')."""
    pids = []
    for pid_file in folder.glob("*.pid") if folder.is_dir() else []:
        try:
            pids.append(int(pid_file.read_text().strip()))
        except ValueError:
            pass
    return pids
