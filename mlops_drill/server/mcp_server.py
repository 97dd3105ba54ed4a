"""The drill as an MCP server: the agent API's drill for agents that speak the Model Context Protocol.

Why MCP beside the HTTP API: agent builders connect their agents to tools over
MCP, so an MCP server needs no adapter per agent. It is a second face of the
same core (:class:`mlops_drill.server.drills.Drills`): the same policy, the
same refusals and reasons, the same transcript, the same grade.

Why the tools take no session id: one scenario runs per cluster, so the server
keeps "the current session" (the last one started) and every tool acts on it;
a model has nothing to carry between calls but its own reasoning.

A refused command is raised as a :class:`ToolError`, which the SDK answers as
a tool result with ``isError`` set (the model reads the reason and carries
on), never as a protocol error or a crash.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Annotated, Any, AsyncIterator, Callable, Iterator

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import Field

# The HTTP API's wire models and limits: a tool's result is the route's answer body.
from mlops_drill.server.app import MAX_COMMAND, MAX_STDIN, MAX_TEXT
from mlops_drill.server.app import CommandOut as CommandOutput
from mlops_drill.server.app import ScenarioOut as ScenarioInfo
from mlops_drill.server.app import StartOut as StartedInfo
from mlops_drill.server.app import StatementOut as Recorded
from mlops_drill.server.drills import Drills, DrillRefusal
from mlops_drill.server.policy import NVIDIA_SMI_HOWTO

SERVER_NAME = "mlops-drill"
BRIEFING_URI = "drill://briefing"

RULES = f"""\
You are the on-call ML platform engineer. A production incident is running on a Kubernetes
cluster that serves a fraud-detection model (namespaces: serving, features, registry, training,
gpu-operator). Find the root cause, fix it if you can, and say what it was.

How the drill works:
1. `list_scenarios`, then `start_scenario` with an id: the fault is injected and you get the
   briefing (symptoms only; it is also the resource {BRIEFING_URI}).
2. `run_command` runs ONE command line as the on-call seat, split like a shell would split it
   but with no shell: no pipes, `;`, `&&`, redirections or `$(...)`; filter the output yourself.
   - kubectl with the seat's own credentials (no --kubeconfig/--token/--as, no local files:
     `-f -` reads the `stdin` argument; no -w, logs -f, edit, attach, proxy, cp, config).
   - curl only to localhost on a port you forwarded with `kubectl port-forward` (use `:80` for a
     free local port; the output says which).
   - nvidia-smi runs on a GPU node: `{NVIDIA_SMI_HOWTO}`.
   A refused command comes back as a tool error with the reason; nothing ran.
3. `hypothesize` whenever you suspect a cause (graded, never answered), `diagnose` with your root
   cause (the last one counts).
4. `finish` verifies the fix and returns the graded transcript: the ORDER of your diagnostics is
   graded against an MLOps playbook (triage before deep dives, evidence before changes, one
   justified fix, re-check the symptom), as well as coverage, efficiency, the end state, the
   diagnosis and time. `finish` with reset=true restores the healthy platform afterwards.
Every command, refusal and statement is recorded.
"""


@contextlib.contextmanager
def _tool_errors() -> Iterator[None]:
    """The core's refusals as tool errors: the same one line the HTTP API gives as ``detail``."""
    try:
        yield
    except DrillRefusal as exc:
        raise ToolError(exc.detail) from None


def create_server(ctx_factory: Callable[[], Any]) -> MCPServer:
    """An MCP server over the cluster that ``ctx_factory()`` (a DrillContext) reaches; called once, lazily."""
    drills = Drills(ctx_factory)
    current: dict[str, str] = {}
    current_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            drills.close()

    server = MCPServer(SERVER_NAME, title="mlops-drill", version="1", log_level="WARNING", lifespan=lifespan,
                       instructions=RULES,
                       description="MLOps incident drills: run kubectl/curl as the on-call engineer, graded "
                                   "on the order of your diagnostics.")

    def _session_id() -> str:
        with current_lock:
            session_id = current.get("id")
        if session_id is None:
            raise ToolError("no scenario is running: call start_scenario first")
        return session_id

    @server.tool()
    def list_scenarios() -> list[ScenarioInfo]:
        """The incident catalogue: ids, titles, difficulty, time limits, and whether each can run."""
        return [ScenarioInfo(**row) for row in drills.scenarios()]

    @server.tool()
    def start_scenario(scenario: Annotated[str, Field(min_length=1, max_length=200,
                                                      description="a scenario id from list_scenarios")],
                       seed: Annotated[int | None, Field(ge=0, le=2**63 - 1,
                                                         description="the variant of a parameterised "
                                                                     "scenario (default: a fresh one)")] = None
                       ) -> StartedInfo:
        """Inject the scenario's fault, wait until its symptom shows, and return the briefing.

        One scenario runs at a time: finish the running one first. Takes seconds to a few minutes.
        """
        with _tool_errors():
            started = drills.start(scenario, seed)
        with current_lock:
            current["id"] = started.session_id
        return StartedInfo(**started.__dict__)

    @server.tool()
    def run_command(command: Annotated[str, Field(min_length=1, max_length=MAX_COMMAND,
                                                  description="one kubectl or curl line, split like a shell "
                                                              "would (no pipes, ;, &&, redirections)")],
                    stdin: Annotated[str | None, Field(max_length=MAX_STDIN,
                                                       description="input for `kubectl ... -f -`")] = None,
                    timeout_s: Annotated[float, Field(gt=0, le=600, description="the command is stopped "
                                                                                "(exit 124) after this")] = 120.0
                    ) -> CommandOutput:
        """Run one command as the on-call engineer: kubectl, curl to a port you forwarded, or nvidia-smi on a
        GPU node through kubectl exec. A refused command is an error with the reason; nothing ran."""
        session_id = _session_id()
        with _tool_errors():
            result = drills.run(session_id, command, stdin, timeout_s)
        return CommandOutput(**result.__dict__)

    @server.tool()
    def hypothesize(text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="in your words")]
                    ) -> Recorded:
        """State a cause you suspect. Graded at the end (how soon you were right), never answered now."""
        session_id = _session_id()
        with _tool_errors():
            return Recorded(kind="hypothesis", seq=drills.statement(session_id, "hypothesis", text).seq)

    @server.tool()
    def diagnose(text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT, description="in your words")]
                 ) -> Recorded:
        """State your root cause, quoting your evidence. The last diagnosis counts."""
        session_id = _session_id()
        with _tool_errors():
            return Recorded(kind="diagnosis", seq=drills.statement(session_id, "diagnosis", text).seq)

    @server.tool()
    def finish(reset: Annotated[bool, Field(description="restore the healthy platform after grading")] = False
               ) -> dict[str, Any]:
        """End the drill: verify the fix, grade the transcript and return it as JSON (score, dimension_scores,
        commands with their status, steps, diagnosis, ...). Finishing again returns the same grade."""
        session_id = _session_id()
        with _tool_errors():
            return drills.finish(session_id, reset=reset)

    @server.resource(BRIEFING_URI, name="briefing", mime_type="text/plain",
                     description="the running scenario's briefing: what the on-call engineer is told")
    def briefing() -> str:
        with current_lock:
            session_id = current.get("id")
        if session_id is None:
            raise ResourceError("no scenario is running: call start_scenario first")
        return drills.get(session_id).briefing

    @server.prompt(name="drill_rules", title="mlops-drill: rules for the on-call agent")
    def drill_rules() -> str:
        """What the agent is, which tools it has, what a command may be, and how it is graded."""
        return RULES

    server.drills = drills  # type: ignore[attr-defined]  (tests and embedders reach the sessions)
    return server
