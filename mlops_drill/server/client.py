"""A small Python client for the agent API: what an agent holds is a :class:`Session`.

Why a refusal raises and a failing command does not: a command that ran and
failed (exit 1, ``NotFound``) is evidence the agent reasons about, and it is in
the transcript like any other; a refused one never ran, so carrying on as if it
had would be a bug in the agent.

Why the client finds its token itself: the API refuses every request without
one (:mod:`mlops_drill.server.auth`), and an agent's author should not need to
read serve-api's output to get ``Client("http://127.0.0.1:8765")`` working.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from mlops_drill.errors import DrillError
from mlops_drill.server.auth import find_token

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT_S = 900.0  # starting a scenario waits for its symptom; finishing waits for fix checks


class CommandRefused(DrillError):
    """The server refused the command (not allowed); nothing ran."""


class ApiError(DrillError):
    """Any other error answer from the server (unknown session, busy cluster, ...)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if not isinstance(detail, str):
        detail = _first_line(response.text) or response.reason_phrase
    if response.status_code == 400 and detail.startswith("refused: "):
        raise CommandRefused(detail)
    raise ApiError(response.status_code, detail)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


class Client:
    """One API server. ``transport`` lets a test or benchmark talk to an in-process app.

    ``token``: the server's bearer token; without it, ``$MLOPS_DRILL_API_TOKEN``,
    else the token file serve-api wrote for that local port. With none found
    the server's 401 says what is missing.
    """

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        token = token or find_token(base_url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                 headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, API_PREFIX + path, **kwargs)
        _raise_for(response)
        return response.json()

    def scenarios(self) -> list[dict[str, Any]]:
        return self._call("GET", "/scenarios")

    def start(self, scenario: str, seed: int | None = None) -> "Session":
        body = self._call("POST", "/sessions", json={"scenario": scenario, **({"seed": seed} if seed is not None
                                                                               else {})})
        return Session(self, body["session_id"], body["scenario"], body["briefing"], body["time_limit_s"])


class Session:
    """One drill as the agent sees it: the briefing, a command line, and a way to say what it thinks."""

    def __init__(self, client: Client, session_id: str, scenario: str, briefing: str, time_limit_s: int) -> None:
        self.client = client
        self.id = session_id
        self.scenario = scenario
        self.briefing = briefing
        self.time_limit_s = time_limit_s

    def __repr__(self) -> str:
        return f"Session({self.id!r}, scenario={self.scenario!r})"

    def run(self, command: str, *, stdin: str | None = None, timeout_s: float = 120.0) -> CommandResult:
        """Run one kubectl/curl line as the seat; :class:`CommandRefused` when it may not run."""
        body: dict[str, Any] = {"command": command, "timeout_s": timeout_s}
        if stdin is not None:
            body["stdin"] = stdin
        out = self.client._call("POST", f"/sessions/{self.id}/commands", json=body)
        return CommandResult(command=command, **out)

    def hypothesize(self, text: str) -> int:
        return self.client._call("POST", f"/sessions/{self.id}/hypotheses", json={"text": text})["seq"]

    def diagnose(self, text: str) -> int:
        return self.client._call("POST", f"/sessions/{self.id}/diagnosis", json={"text": text})["seq"]

    def info(self) -> dict[str, Any]:
        return self.client._call("GET", f"/sessions/{self.id}")

    def finish(self, *, reset: bool = False) -> dict[str, Any]:
        """The graded transcript as JSON: ``score``, ``dimension_scores``, commands, steps, ..."""
        return self.client._call("POST", f"/sessions/{self.id}/finish", json={"reset": reset})

    def transcript(self) -> list[dict[str, Any]]:
        return self.client._call("GET", f"/sessions/{self.id}/transcript")["events"]
