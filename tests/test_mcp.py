"""The MCP server (`mlops-drill mcp`) driven by the `mcp` SDK's own client over stdio, on the session cluster.

The server is a real subprocess reached through ``stdio_client`` + ``ClientSession``,
exactly as Claude Desktop or another MCP client starts it; it reuses the session's
embedded cluster (same name, same state folder). The baseline agent plays one whole
scenario through it, then the same agent plays it through the HTTP agent API
(conftest's ``agent_api``), and the two graded transcripts are compared.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

QUICK = "gpu-missing-toleration"   # starts in seconds; its fault is one rollout (as in test_agent_api.py)
TOOLS = {"list_scenarios", "start_scenario", "run_command", "hypothesize", "diagnose", "finish"}
REFUSED = ("bash -c id", "kubectl get pods | head -3", "nvidia-smi", "kubectl --kubeconfig=/etc/passwd get pods",
           "curl -s http://127.0.0.1:1/metrics")
CALL_TIMEOUT_S = 900.0  # start waits for the symptom; finish waits for the fix checks


class McpDrill:
    """The SDK's ClientSession over stdio, called from synchronous code (the baseline agent is synchronous)."""

    def __init__(self, portal, session) -> None:
        self.portal = portal
        self.session = session

    def call(self, tool: str, arguments: dict[str, Any] | None = None):
        return self.portal.call(partial(self.session.call_tool, tool, arguments or {},
                                        read_timeout_seconds=CALL_TIMEOUT_S))

    def ok(self, tool: str, arguments: dict[str, Any] | None = None) -> Any:
        result = self.call(tool, arguments)
        assert not result.is_error, (tool, arguments, result.content)
        return result.structured_content

    def __getattr__(self, name: str):
        """Any other ClientSession method (list_tools, read_resource, get_prompt, ...), run in the portal."""
        method = getattr(self.session, name)
        return lambda *args, **kwargs: self.portal.call(partial(method, *args, **kwargs))


class McpSeat:
    """What the baseline agent holds (the client ``Session``'s run/hypothesize/diagnose), over MCP tools."""

    def __init__(self, drill: McpDrill, started: dict[str, Any]) -> None:
        self.drill = drill
        self.id = started["session_id"]
        self.scenario = started["scenario"]
        self.briefing = started["briefing"]
        self.time_limit_s = started["time_limit_s"]
        self.moves: list[tuple[str, tuple, dict]] = []  # what the agent did, to replay over HTTP
        self.ports: dict[int, list[str]] = {}  # move index -> local ports its port-forward printed

    def run(self, command: str, *, stdin: str | None = None, timeout_s: float = 120.0):
        from mlops_drill.server.client import CommandRefused, CommandResult

        move = ("run", (command,), {"stdin": stdin, "timeout_s": timeout_s})
        self.moves.append(move)
        arguments: dict[str, Any] = {"command": command, "timeout_s": timeout_s}
        if stdin is not None:
            arguments["stdin"] = stdin
        result = self.drill.call("run_command", arguments)
        if result.is_error:
            text = result.content[0].text
            if "refused: " in text:
                raise CommandRefused(text[text.index("refused: "):])
            raise AssertionError(f"run_command {command!r}: {text}")
        answer = CommandResult(command=command, **result.structured_content)
        self.ports[len(self.moves) - 1] = _FORWARDED.findall(answer.stdout)
        return answer

    def hypothesize(self, text: str) -> int:
        self.moves.append(("hypothesize", (text,), {}))
        return self.drill.ok("hypothesize", {"text": text})["seq"]

    def diagnose(self, text: str) -> int:
        self.moves.append(("diagnose", (text,), {}))
        return self.drill.ok("diagnose", {"text": text})["seq"]


_FORWARDED = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


def _replay(session, seat: "McpSeat") -> None:
    """The same moves, in the same order, on an HTTP API session (refusals as the agent meets them).

    A port-forward to ``:80`` gets a new local port each time: later commands are sent with the
    port this session's port-forward printed where the MCP run's printed another.
    """
    from mlops_drill.server.client import CommandRefused

    ports: dict[str, str] = {}
    for index, (name, args, kwargs) in enumerate(seat.moves):
        if name == "run":
            command = args[0]
            for old, new in ports.items():
                command = command.replace(f"localhost:{old}", f"localhost:{new}")
            args = (command,)
        try:
            answer = getattr(session, name)(*args, **kwargs)
        except CommandRefused:
            continue
        if name == "run":
            ports.update(zip(seat.ports.get(index, []), _FORWARDED.findall(answer.stdout)))


@pytest.fixture(scope="module")
def mcp_drill(platform, cluster, tmp_path_factory):
    """`mlops-drill mcp` for the session cluster, spawned and spoken to by the SDK's stdio client."""
    from anyio.from_thread import start_blocking_portal
    from mcp import ClientSession, StdioServerParameters, stdio_client

    name = cluster.backend.name
    log_path = tmp_path_factory.mktemp("mcp") / "server-stderr.log"
    exe = Path(sys.executable).with_name("mlops-drill")
    # The whole environment: the cluster's state folder (MLOPS_DRILL_STATE) and build cache come with it.
    params = StdioServerParameters(command=str(exe), args=["mcp", "--name", name], env=dict(os.environ))
    with open(log_path, "w") as errlog, start_blocking_portal() as portal:
        t0 = time.monotonic()
        with portal.wrap_async_context_manager(stdio_client(params, errlog=errlog)) as (read, write):
            with portal.wrap_async_context_manager(ClientSession(read, write)) as session:
                portal.call(session.initialize)
                print(f"\nmcp server up and initialised in {time.monotonic() - t0:.1f}s")
                yield McpDrill(portal, session)
    tail = log_path.read_text()[-2000:]
    if tail.strip():
        print(f"mcp server stderr (tail):\n{tail}")


@pytest.mark.cluster
def test_lists_the_drill_tools_the_briefing_and_the_rules(mcp_drill):
    from mcp import MCPError

    from mlops_drill.server.policy import NVIDIA_SMI_HOWTO

    tools = {t.name: t for t in mcp_drill.list_tools().tools}
    assert set(tools) == TOOLS
    assert tools["run_command"].input_schema["required"] == ["command"]
    assert tools["start_scenario"].input_schema["required"] == ["scenario"]
    (prompt,) = mcp_drill.list_prompts().prompts
    assert prompt.name == "drill_rules"
    rules = mcp_drill.get_prompt("drill_rules").messages[0].content.text
    for fact in ("run_command", "no pipes", NVIDIA_SMI_HOWTO, "port-forward", "finish", "ORDER"):
        assert fact in rules, fact
    assert [str(r.uri) for r in mcp_drill.list_resources().resources] == ["drill://briefing"]
    ids = {s["id"] for s in mcp_drill.ok("list_scenarios")["result"]}
    assert QUICK in ids
    # Before a scenario runs: errors that say what to do, and the server keeps serving.
    with pytest.raises(MCPError, match="start_scenario first"):
        mcp_drill.read_resource("drill://briefing")
    result = mcp_drill.call("run_command", {"command": "kubectl get pods"})
    assert result.is_error and "start_scenario first" in result.content[0].text
    unknown = mcp_drill.call("start_scenario", {"scenario": "no-such-incident"})
    assert unknown.is_error and "unknown scenario 'no-such-incident'" in unknown.content[0].text


def _refusals_http(session) -> list[str]:
    from mlops_drill.server.client import CommandRefused

    details = []
    for line in REFUSED:
        with pytest.raises(CommandRefused) as refused:
            session.run(line)
        details.append(str(refused.value))
    return details


def _refusals_mcp(drill: McpDrill) -> list[str]:
    texts = []
    for line in REFUSED:
        result = drill.call("run_command", {"command": line})
        assert result.is_error, (line, result.content)
        (content,) = result.content
        assert "\n" not in content.text, content.text
        texts.append(content.text)
    return texts


# What differs between two runs on the same cluster although the agent did the same thing.
_RUN_SPECIFIC = (
    (re.compile(r"(localhost|127\.0\.0\.1):\d+"), r"\1:PORT"),    # port-forward :80 picks a free port
    (re.compile(r"-[a-z0-9]{8,10}-[a-z0-9]{5}\b"), "-POD"),          # a ReplicaSet's pod name suffix
    (re.compile(r"(revision[ =(]*)\d+"), r"\1N"),                   # each run rolls the Deployment on
    (re.compile(r"acct-\d+"), "acct-N"),                             # an account sampled from the traffic
)


def _masked(text: str | None) -> str | None:
    for pattern, replacement in _RUN_SPECIFIC:
        text = pattern.sub(replacement, text) if text else text
    return text


def _comparable(graded: dict[str, Any]) -> dict[str, Any]:
    """The grade without what depends on the clock or on the run.

    Left out: every time (``t`` of commands and hypotheses, ``times``, the ``time`` dimension's
    ``detail``, "0:18 of 15:00"), because two runs never take the same seconds. Masked in command
    lines and statements: local ports, pod name suffixes, Deployment revision numbers and sampled
    account ids (see ``_RUN_SPECIFIC``). Also left out: each command's exit code, because the HTTP
    side replays the MCP run's lines, and a line naming that run's pod or revision fails on the
    second run where the object has another name. Everything else is compared as it is: the
    score, every dimension's score, weight and contribution, deductions, each command's status,
    matched step and whether it changed something, the steps, missed steps, verification, the
    diagnosis and hypotheses with their verdicts.
    """
    return {
        "scenario": graded["scenario"],
        "score": graded["score"],
        "dimension_scores": graded["dimension_scores"],
        "dimensions": [{k: v for k, v in d.items() if not (d["name"] == "time" and k == "detail")}
                       for d in graded["dimensions"]],
        "deductions": graded["deductions"],
        "commands": [(_masked(c["line"]), c["tool"], c["status"], c["step"], c["phase"],
                      c["mutation"], c["notes"]) for c in graded["commands"]],
        "steps": graded["steps"],
        "missed": graded["missed"],
        "strong_next": graded["strong_next"],
        "verification": graded["verification"],
        "diagnosis": (_masked(graded["diagnosis"]["text"]), graded["diagnosis"]["accepted"]),
        "hypotheses": [(_masked(h["text"]), h["correct"], h["fixes_before"]) for h in graded["hypotheses"]],
    }


@pytest.mark.cluster
def test_baseline_plays_a_scenario_over_mcp_and_grades_as_over_http(mcp_drill, agent_api, platform, tmp_path):
    from mlops_drill.agents import baseline
    from mlops_drill.injector import engine
    from mlops_drill.server.client import Client

    assert engine.load_session(platform) is None, "another test left a scenario running"
    t0 = time.monotonic()
    started = mcp_drill.ok("start_scenario", {"scenario": QUICK})
    t_start = time.monotonic() - t0
    assert started["scenario"] == QUICK and started["briefing"]
    briefing = mcp_drill.read_resource("drill://briefing").contents[0].text
    assert briefing == started["briefing"]
    busy = mcp_drill.call("start_scenario", {"scenario": QUICK})
    assert busy.is_error and "is running on this cluster: finish it first" in busy.content[0].text
    mcp_refusals = _refusals_mcp(mcp_drill)
    t1 = time.monotonic()
    seat = McpSeat(mcp_drill, started)
    baseline.agent(seat)
    t_agent = time.monotonic() - t1
    t2 = time.monotonic()
    graded_mcp = mcp_drill.ok("finish", {"reset": True})
    t_finish = time.monotonic() - t2
    assert mcp_drill.ok("finish") == graded_mcp, "finishing again returns the same grade"
    after = mcp_drill.call("run_command", {"command": "kubectl get pods -n serving"})
    assert after.is_error and "is finished" in after.content[0].text
    print(f"\nMCP run: start {t_start:.1f}s, baseline agent {t_agent:.1f}s "
          f"({len(graded_mcp['commands'])} commands), finish+reset {t_finish:.1f}s, score {graded_mcp['score']}")

    t3 = time.monotonic()
    with Client(agent_api[1], token=agent_api[0].state.api_token) as client:
        session = client.start(QUICK)
        http_refusals = _refusals_http(session)
        # The agent's own path depends on timing (what it sees while a rollout settles), so the HTTP
        # side replays exactly the commands and statements the agent sent over MCP.
        _replay(session, seat)
        graded_http = session.finish(reset=True)
    print(f"HTTP run: {time.monotonic() - t3:.1f}s in all, score {graded_http['score']}")

    # The same refusals, for the same reasons: the tool error carries the API's one-line detail.
    for line, text, detail in zip(REFUSED, mcp_refusals, http_refusals):
        assert detail.startswith("refused: ") and text.endswith(detail), (line, text, detail)
    # The run itself counts: the baseline diagnoses this fault and leaves it fixed.
    assert graded_mcp["diagnosis"]["accepted"] is True
    assert graded_mcp["dimension_scores"]["end_state"] == 100, graded_mcp["verification"]
    (tmp_path / "graded-mcp.json").write_text(json.dumps(graded_mcp, indent=1))
    (tmp_path / "graded-http.json").write_text(json.dumps(graded_http, indent=1))
    assert _comparable(graded_mcp) == _comparable(graded_http), f"both graded transcripts are in {tmp_path}"
    # Refused lines are in the transcript but not graded: same in both.
    assert not any(c["line"] in REFUSED for c in graded_mcp["commands"])


def _listening_on(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) with a listening socket on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


def test_streamable_http_serves_the_tools_on_loopback_only_with_its_token(tmp_path):
    """`--http PORT`: the SDK's streamable HTTP client, with the token, lists the tools; 401 without it;
    the socket is 127.0.0.1's alone.

    No cluster: the server reaches one only for the first tool that needs it, and none is called here.
    """
    import socket
    import stat
    import subprocess

    import anyio
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exe = Path(sys.executable).with_name("mlops-drill")
    log = tmp_path / "stderr.log"
    state = tmp_path / "state"  # the user's state directory, where the token file goes
    env = {**{k: v for k, v in os.environ.items() if k != "MLOPS_DRILL_API_TOKEN"}, "MLOPS_DRILL_STATE": str(state)}
    with open(log, "w") as errlog:
        proc = subprocess.Popen([str(exe), "mcp", "--http", str(port), "--name", "mcp-test-no-such-cluster"],
                                stdout=subprocess.DEVNULL, stderr=errlog, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 90
        while not _listening_on(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text()}"
            time.sleep(0.2)
        assert _listening_on(port) == ["0100007F"], "bound to 127.0.0.1 only"
        assert f"http://127.0.0.1:{port}/mcp" in log.read_text()
        token_path = Path(re.search(r"bearer token in (\S+) \(mode 0600", log.read_text()).group(1))
        assert token_path == state / "agent-api" / f"port-{port}.token"
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        token = token_path.read_text().strip()
        assert token not in log.read_text(), "the token was printed"
        # Pods share this loopback: without the token nothing gets past the door, not even the handshake.
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                            "clientInfo": {"name": "pod", "version": "0"}}}
        for headers in ({}, {"Authorization": "Bearer " + "x" * 43}):
            refused = httpx.post(f"http://127.0.0.1:{port}/mcp", json=hello, timeout=30,
                                 headers={**headers, "Accept": "application/json, text/event-stream"})
            assert refused.status_code == 401, refused.text

        async def talk():
            async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http, \
                    streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name for t in (await session.list_tools()).tools}
                early = await session.call_tool("finish", {})
                return tools, early

        tools, early = anyio.run(talk)
        assert tools == TOOLS
        assert early.is_error and "start_scenario first" in early.content[0].text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not token_path.exists(), "the token file outlived its server"
