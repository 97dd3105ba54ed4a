"""Drills and seats as saved on the server's disk.

Why files and not only memory: seat clusters outlive a crashed or restarted
server, and the instructor still needs to stop them and export the transcripts;
``drill.json`` (mode 0600, it holds the seat tokens) is enough to pick up again.
"""
from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SeatState = Literal["starting", "ready", "failed", "stopped"]
DrillState = Literal["starting", "running", "stopped"]
#: namespaces: every seat is a set of namespaces and nodes of one shared cluster, behind its own gateway
#: endpoint; clusters: every seat is an embedded cluster of its own (heavier, but nothing is shared).
Isolation = Literal["namespaces", "clusters"]

# Join codes are read aloud and typed: no 0/O, 1/I/L.
_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Verification(BaseModel):
    """One run of the scenario's fix checks on a seat's cluster (server-side only)."""

    ts: float
    results: dict[str, bool]
    why: str = Field(description="finish | instructor | stop")


class Seat(BaseModel):
    n: int
    cluster: str
    code: str
    token: str
    state: SeatState = "starting"
    error: str = ""
    started_at: float | None = Field(None, description="when the fault's symptom was observable")
    joined_at: float | None = None
    finished_at: float | None = None
    setup_s: dict[str, float] = Field(default_factory=dict)
    gateway_port: int | None = Field(None, description="namespaces isolation: the seat's API endpoint")
    route: dict[str, str] | None = Field(None, description="namespaces isolation: prefix and gateway tokens")
    #: The seed of the seat's variant (the drill's, or its own with ``seed_per_seat``) and the values the engine
    #: drew from it when the seat started: enough to replay the seat's grade. Instructor-only, like the drill seed.
    seed: int | None = None
    values: dict[str, Any] | None = Field(None, description="the parameter values the seat's fault was drawn with")


class Drill(BaseModel):
    id: str
    scenario: str
    time_limit_minutes: int
    created_at: float
    state: DrillState = "starting"
    isolation: Isolation = "clusters"  # drills saved before seats could share a cluster had their own
    seats: list[Seat]
    #: The variant of a parameterised scenario every seat draws (None without parameters): one incident for
    #: the room, so the debrief compares like with like. Server-side only, like the fault params.
    seed: int | None = None
    #: Each seat its own variant, derived from ``seed`` and the seat number (:mod:`mlops_drill.drills.seat_variants`).
    seed_per_seat: bool = False
    #: namespaces isolation: the existing cluster's kubeconfig the seats live on (None: the server's embedded one),
    #: so a server restarted with another ``--shared-kubeconfig`` does not put them on the wrong cluster.
    shared_kubeconfig: str | None = None

    def seat_seed(self, seat: Seat) -> int | None:
        """The seed the seat's incident is drawn from (drills saved before seats kept one: the drill's)."""
        return seat.seed if seat.seed is not None else self.seed


class DrillStore:
    """All drills of one server, each in ``<root>/<id>/`` (drill.json, seat-<n>/)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.drills: dict[str, Drill] = {}
        for path in sorted(self.root.glob("*/drill.json")):
            drill = Drill.model_validate_json(path.read_text())
            self.drills[drill.id] = drill

    def create(self, scenario: str, seats: int, time_limit_minutes: int,
               isolation: Isolation = "namespaces", seed: int | None = None,
               seat_seeds: list[int] | None = None) -> Drill:
        """``seat_seeds``: one seed per seat (a drill with ``seed_per_seat``); else every seat gets ``seed``."""
        from mlops_drill.cluster.seats.names import seat_prefix

        with self.lock:
            drill_id = secrets.token_hex(3)
            while drill_id in self.drills:
                drill_id = secrets.token_hex(3)
            if seat_seeds is not None and len(seat_seeds) != seats:
                raise ValueError(f"{len(seat_seeds)} seat seeds for {seats} seats")
            made = [Seat(n=n, cluster=f"seat-{drill_id}-{n}", code=new_code(), token=new_token(),
                         seed=seat_seeds[n - 1] if seat_seeds is not None else seed)
                    for n in range(1, seats + 1)]
            if isolation == "namespaces":
                for seat in made:
                    seat.cluster = seat_prefix(drill_id, seat.n).rstrip("-")
                    seat.route = {"prefix": seat_prefix(drill_id, seat.n), "admin_token": new_token(),
                                  "candidate_token": new_token()}
            drill = Drill(id=drill_id, scenario=scenario, time_limit_minutes=time_limit_minutes,
                          created_at=time.time(), isolation=isolation, seats=made, seed=seed,
                          seed_per_seat=seat_seeds is not None)
            self.drills[drill_id] = drill
            self.save(drill)
            return drill

    def save(self, drill: Drill) -> None:
        with self.lock:
            folder = self.root / drill.id
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / "drill.json.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(drill.model_dump_json(indent=1))
            os.replace(tmp, folder / "drill.json")

    def seat_dir(self, drill: Drill, seat: Seat) -> Path:
        path = self.root / drill.id / f"seat-{seat.n}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def transcript_path(self, drill: Drill, seat: Seat) -> Path:
        return self.seat_dir(drill, seat) / "transcript.jsonl"

    def verifications(self, drill: Drill, seat: Seat) -> list[Verification]:
        path = self.seat_dir(drill, seat) / "verifications.jsonl"
        if not path.is_file():
            return []
        return [Verification.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]

    def add_verification(self, drill: Drill, seat: Seat, verification: Verification) -> None:
        with self.lock, open(self.seat_dir(drill, seat) / "verifications.jsonl", "a") as handle:
            handle.write(json.dumps(verification.model_dump()) + "\n")

    def by_seat_token(self, token: str) -> tuple[Drill, Seat] | None:
        for drill in self.drills.values():
            for seat in drill.seats:
                if secrets.compare_digest(seat.token, token):
                    return drill, seat
        return None

    def by_code(self, code: str) -> tuple[Drill, Seat] | None:
        wanted = code.strip().upper()
        for drill in self.drills.values():
            for seat in drill.seats:
                if secrets.compare_digest(seat.code, wanted):
                    return drill, seat
        return None
