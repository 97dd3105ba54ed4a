"""`mlops-drill join CODE`: a seat's side of a group drill.

Why a forwarder thread that tails the local transcript (and not shims that POST
directly): the recorded shell and its shims stay exactly as in a single-user
drill (stdlib-only, no network in the per-command path, nothing slower), and a
network hiccup loses nothing: the events stay in the local JSONL and the
forwarder resends from the server's ``next_seq`` once it answers again.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mlops_drill import paths
from mlops_drill.errors import DrillError

POLL_S = 0.5
BATCH = 100


class SeatClient:
    """The seat's calls, with its token; every failure is one readable line."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 30) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.http = httpx.Client(base_url=self.server, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, headers=self._headers(), **kwargs)
        except httpx.HTTPError as exc:
            raise DrillError(f"{self.server}{path}: {type(exc).__name__}: {exc}") from None

    def ok(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.call(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise DrillError(f"{self.server}{path}: HTTP {response.status_code}: {detail}")
        return response

    def join(self, code: str) -> dict[str, Any]:
        answer = self.ok("POST", "/api/join", json={"code": code}).json()
        self.token = answer["token"]
        return answer

    def wait_ready(self, timeout: float = 600, say=print) -> dict[str, Any]:
        """The briefing once the seat's cluster is up with its fault (seats start one by one)."""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            info = self.ok("GET", "/api/seat/briefing").json()
            if info["state"] == "ready":
                return info
            if info["state"] != "starting":
                raise DrillError(f"seat {info['seat']} is {info['state']}: ask your instructor")
            if time.monotonic() > deadline:
                raise DrillError(f"seat {info['seat']} was not ready after {timeout:.0f}s: ask your instructor")
            if not told:
                say(f"seat {info['seat']}: waiting for its cluster to start ...")
                told = True
            time.sleep(2)


class Forwarder(threading.Thread):
    """Tail the local JSONL and POST complete new lines; resync on the server's ``next_seq``."""

    def __init__(self, client: SeatClient, transcript: Path, next_seq: int = 0) -> None:
        super().__init__(name="mlops-drill-forwarder", daemon=True)
        self.client = client
        self.transcript = transcript
        self.next_seq = next_seq
        self.stopping = threading.Event()
        self.last_error: str | None = None

    def pending(self) -> list[dict]:
        if not self.transcript.is_file():
            return []
        events = []
        with open(self.transcript, "rb") as handle:
            for raw in handle:
                if not raw.endswith(b"\n"):
                    break  # a line still being written
                if not raw.strip():
                    continue
                event = json.loads(raw)
                if event.get("seq", -1) >= self.next_seq:
                    events.append(event)
        return events

    def flush(self) -> bool:
        """Send what is pending; True when the server has everything."""
        events = self.pending()
        while events:
            batch = events[:BATCH]
            response = self.client.call("POST", "/api/seat/events", json={"events": batch})
            if response.status_code == 409:
                self.next_seq = int(response.json()["detail"]["next_seq"])
                events = [e for e in self.pending()]
                if not events or events[0].get("seq") != self.next_seq:
                    self.last_error = f"server expects seq {self.next_seq}, which this transcript lacks"
                    return False
                continue
            if response.status_code >= 400:
                self.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
                return False
            self.next_seq = int(response.json()["next_seq"])
            self.last_error = None
            events = events[len(batch):]
        return True

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.flush()
            except DrillError as exc:  # server unreachable for now: the events wait on disk
                self.last_error = str(exc)
            self.stopping.wait(POLL_S)

    def stop(self, timeout: float = 30) -> bool:
        """Stop tailing and send the rest; False if some events could not be delivered."""
        self.stopping.set()
        self.join(timeout=5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.flush():
                    return True
            except DrillError as exc:
                self.last_error = str(exc)
            time.sleep(1)
        return False


def seat_dir(drill: str, seat: int) -> Path:
    return paths.state_dir() / "seats" / f"{drill}-{seat}"


def join(code: str, server: str, *, source_user_rc: bool = True, say=print) -> int:
    """Join, open the recorded shell with forwarding, hand in on exit; the shell's exit status."""
    from mlops_drill.grader.shell import find_real_tools, run_shell

    client = SeatClient(server)
    answer = client.join(code)
    info = client.wait_ready(say=say)
    folder = seat_dir(answer["drill"], answer["seat"])
    folder.mkdir(parents=True, exist_ok=True)
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(client.ok("GET", "/api/seat/kubeconfig").text)
    kubeconfig.chmod(0o600)
    transcript = folder / "transcript.jsonl"
    if info["next_seq"] and not transcript.is_file():
        raise DrillError(f"seat {answer['seat']} already has {info['next_seq']} events from another machine: "
                         f"join from there, or ask your instructor")
    real = find_real_tools()
    if "kubectl" not in real:
        from mlops_drill.cluster.toolchain.binaries import resolve_without_building

        found, _missing = resolve_without_building()
        if "kubectl" not in found:
            raise DrillError("kubectl not found on PATH: install it to take part in the drill")
        real["kubectl"] = Path(found["kubectl"])
    say(info["briefing"].rstrip())
    say(f"\nseat {answer['seat']} of drill {answer['drill']}: {info['title']} "
        f"({info['time_limit_minutes']} min). Exit the shell when you are done.")
    forwarder = Forwarder(client, transcript, next_seq=info["next_seq"])
    forwarder.start()
    try:
        code_ = run_shell(transcript, kubeconfig, info["scenario"], real, float(info["started_at"]),
                          source_user_rc=source_user_rc)
    finally:
        delivered = forwarder.stop()
    if not delivered:
        print(f"warning: not every event reached the server ({forwarder.last_error}); "
              f"your transcript is kept in {transcript}", file=sys.stderr)
    say(client.ok("POST", "/api/seat/finish").json()["message"])
    return code_
