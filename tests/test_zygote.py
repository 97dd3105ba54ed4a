"""The zygote forks containers that behave like exec'd ones: output, exit status, signals, env, session.

Each case runs the same command both ways (a plain ``subprocess`` exec and a
fork from a real zygote process) and compares what a user of ``kubectl logs``
or ``kubectl get pod`` would see: the lines, the exit code, the signal.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_drill.cluster.gpu.model import new_node
from mlops_drill.cluster.processpods import records
from mlops_drill.cluster.processpods.forking import Zygote

SMI = [sys.executable, "-m", "mlops_drill.cluster.gpu.nvidia_smi"]


def _env(**extra: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "MLOPS_DRILL_CACHE")
    return {**{k: v for k, v in os.environ.items() if k in keep}, "PYTHONUNBUFFERED": "1", **extra}


async def _forked(zygote: Zygote, argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await zygote.spawn(argv, cwd, env, 1 << 20)
    assert proc is not None, "the zygote took the command"
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    return await proc.wait(), out.decode(), err.decode()


def _execd(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def zygote_run(tmp_path: Path):
    """Run coroutines against one real zygote process, stopped afterwards."""
    zygote = Zygote(tmp_path)
    loop = asyncio.new_event_loop()

    def run(make):
        return loop.run_until_complete(make(zygote))

    loop.run_until_complete(zygote.start())
    assert loop.run_until_complete(zygote.ready), "the zygote came up"
    yield run
    loop.run_until_complete(zygote.stop())
    loop.close()


def test_forked_container_prints_and_exits_exactly_like_an_execd_one(tmp_path: Path, zygote_run) -> None:
    nodes = {n: new_node(n).model_dump() for n in ("gpu-node-0", "gpu-node-1")}
    nodes["gpu-node-1"]["driver_state"] = "library-mismatch"
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps(nodes))
    cases = [
        (["-L"], _env(MLOPS_DRILL_GPU_STATE=str(state), NODE_NAME="gpu-node-0", NVIDIA_VISIBLE_DEVICES="1,3")),
        ([], _env(MLOPS_DRILL_GPU_STATE=str(state), NODE_NAME="gpu-node-1")),  # exit 18, NVML's text
        (["-L"], _env()),  # no state: one line on stderr and the driver-not-loaded status
    ]
    for args, env in cases:
        execd = _execd(SMI + args, tmp_path, env)
        forked = zygote_run(lambda z: _forked(z, SMI + args, tmp_path, env))
        assert forked == execd, (args, env.get("NODE_NAME"))
    # Each child reads its own env: the first case saw only its two granted GPUs, renumbered.
    assert len(zygote_run(lambda z: _forked(z, SMI + ["-L"], tmp_path, cases[0][1]))[1].splitlines()) == 2


def test_forked_container_dies_from_sigterm_in_its_own_session(tmp_path: Path, zygote_run) -> None:
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps(new_node("gpu-node-0").model_dump()))
    env = _env(MLOPS_DRILL_GPU_STATE=str(state))

    async def scenario(zygote: Zygote) -> tuple[int, int, bytes, bool]:
        proc = await zygote.spawn(SMI + ["dmon"], tmp_path, env, 1 << 20)
        assert proc is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 30)  # streaming until interrupted
        session = os.getsid(proc.pid)
        records.write(tmp_path, proc.pid, {"POD_NAME": "p", "POD_NAMESPACE": "ns"})
        os.killpg(proc.pid, signal.SIGTERM)  # what the process kubelet sends to stop a container
        code = await asyncio.wait_for(proc.wait(), 30)
        return code, session == proc.pid, first, records.start_time(proc.pid) is None

    code, own_session, first, gone = zygote_run(scenario)
    assert first.startswith(b"# gpu"), first
    assert code == -signal.SIGTERM and own_session and gone


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_containers_end_when_their_zygote_ends(tmp_path: Path, zygote_run) -> None:
    """As containers of a dead node do: nothing keeps running once the node agent's zygote is gone."""
    state = tmp_path / "gpus.json"
    state.write_text(json.dumps(new_node("gpu-node-0").model_dump()))
    env = _env(MLOPS_DRILL_GPU_STATE=str(state))

    async def scenario(zygote: Zygote) -> list[int]:
        children = [await zygote.spawn(SMI + ["dmon"], tmp_path, env, 1 << 20) for _ in range(2)]
        for child in children:
            assert child is not None
            await asyncio.wait_for(child.stdout.readline(), 30)
        assert zygote.proc is not None
        zygote.proc.kill()
        await zygote.proc.wait()
        for _ in range(200):
            if not any(_alive(c.pid) for c in children):
                break
            await asyncio.sleep(0.05)
        return [c.pid for c in children if _alive(c.pid)]

    assert zygote_run(scenario) == []


def test_only_this_interpreters_mlops_drill_modules_are_forked(tmp_path: Path, zygote_run) -> None:
    for argv in ([sys.executable, "-c", "print(1)"], ["python3", "-m", "mlops_drill.cluster.gpu.nvidia_smi"],
                 [sys.executable, "-m", "json.tool"]):
        assert zygote_run(lambda z: z.spawn(argv, tmp_path, _env(), 1 << 20)) is None, argv


def test_process_record_names_the_live_process_and_not_a_recycled_pid(tmp_path: Path) -> None:
    pod_dir = tmp_path / "pods" / "serving_fraud-model-abc_1234abcd"
    pod_dir.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        records.write(pod_dir, child.pid, {"POD_NAME": "fraud-model-abc", "POD_NAMESPACE": "serving"})
        assert records.find(tmp_path, "serving", "fraud-model-abc") == (
            child.pid, {"POD_NAME": "fraud-model-abc", "POD_NAMESPACE": "serving"})
        assert records.find(tmp_path, "serving", "fraud-model-ab") is None
        record = pod_dir / records.RECORD
        data = json.loads(record.read_text())
        record.write_text(json.dumps({**data, "start": data["start"] - 1}))  # another process had that pid
        assert records.find(tmp_path, "serving", "fraud-model-abc") is None
    finally:
        child.kill()
        child.wait()
