"""A command stopped by a signal leaves nothing running: SIGTERM/SIGINT/SIGHUP unwind through `finally`.

An embedded cluster's daemons run in sessions of their own, so a command killed
outright by SIGTERM (`timeout`, a CI job cancelled) left etcd, kube-apiserver,
kwok, the node agent and its zygote running with nobody to stop them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from polling import wait

HELPER_SCRIPT = textwrap.dedent("""
    import sys, time
    from mlops_drill.interrupts import shielded, stop_on_signals

    with stop_on_signals():
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            with shielded():
                print("cleaning", flush=True)
                time.sleep(1.0)  # a second signal arrives here and must not cut the cleanup short
                print("cleaned", flush=True)
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_runs_the_cleanup_to_its_end(signum):
    proc = subprocess.Popen([sys.executable, "-c", HELPER_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signum)
    assert proc.stdout.readline().strip() == "cleaning"
    proc.send_signal(signum)  # the impatient second Ctrl-C / SIGTERM
    out, err = proc.communicate(timeout=30)
    assert out.strip() == "cleaned", err
    assert proc.returncode == 128 + signum, err
    assert "already stopping, cleaning up first" in err


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), so a recycled pid is not taken for it; None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _command(pid: int) -> str:
    """The program a process runs (its first argument, or the module after ``-m``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    return argv[argv.index("-m") + 1] if "-m" in argv[:-1] else argv[0]


def processes_naming(path: str) -> dict[int, str]:
    """pid -> start time of each live process whose command line, working folder or environment names ``path``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        texts = []
        for read in (lambda: (entry / "cmdline").read_bytes(), lambda: os.readlink(entry / "cwd").encode(),
                     lambda: (entry / "environ").read_bytes()):
            try:
                texts.append(read())
            except OSError:
                pass
        started = _start_time(int(entry.name))
        if started and any(path.encode() in text for text in texts):
            found[int(entry.name)] = started
    return found


def recorded_pids(cluster_state: Path) -> dict[int, str]:
    """The processes the backend records: kwokctl's control plane, our daemons, every pod's container."""
    from mlops_drill.cluster.processpods import records

    pids = [pid for pid, _ in records.live(cluster_state)]
    for folder in (cluster_state / "pids", cluster_state / "kwok" / "clusters" / cluster_state.name / "pids"):
        for pid_file in folder.glob("*.pid") if folder.is_dir() else []:
            try:
                pids.append(int(pid_file.read_text().strip()))
            except ValueError:
                pass
    return {pid: started for pid in pids if (started := _start_time(pid))}


@pytest.mark.cluster
def test_sigterm_during_platform_up_stops_the_cluster_it_started(tmp_path):
    """`mlops-drill platform up` on a fresh cluster, stopped by SIGTERM while the baseline comes up."""
    from mlops_drill.cluster.processpods import records

    state_root = tmp_path / "state"
    cluster_state = state_root / "clusters" / "sigterm-test"
    env = {**os.environ, "MLOPS_DRILL_STATE": str(state_root)}
    env.pop("KUBECONFIG", None)
    cli = Path(sys.executable).with_name("mlops-drill")
    log = (tmp_path / "cli.log").open("w")
    proc = subprocess.Popen([str(cli), "platform", "up", "--name", "sigterm-test"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    before: dict[int, str] = {}
    try:
        # Once the cluster answers and pods run as processes: control plane, node agent, zygote, containers.
        wait(lambda: proc.poll() is not None or any(records.live(cluster_state)), timeout=240,
             what="the first platform pod's process", interval=0.2)
        assert proc.poll() is None, (tmp_path / "cli.log").read_text()
        before = {**processes_naming(str(state_root)), **recorded_pids(cluster_state)}
        commands = {pid: _command(pid) for pid in before}
        assert any(c.endswith("etcd") for c in commands.values()), commands
        assert any(c.endswith("kube-apiserver") for c in commands.values()), commands
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        time.sleep(0.5)  # a daemon's last children may need a moment after its group was signalled
        left = {pid: _command(pid) for pid, started in before.items() if _start_time(pid) == started}
        left.update({pid: _command(pid) for pid in processes_naming(str(state_root))})
        assert not left, f"left running after SIGTERM: {left}"
        assert code == 128 + signal.SIGTERM, (tmp_path / "cli.log").read_text()
        assert not cluster_state.exists(), "the cluster's state was not removed"
        assert "stopped by SIGTERM" in (tmp_path / "cli.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        for pid, started in {**before, **processes_naming(str(state_root))}.items():  # only this test's own
            if _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
