"""Group-drill load: N scripted seats against `mlops-drill serve`, on one shared cluster or one cluster each.

For each N it starts a drill of N seats (``--isolation namespaces``, the
default: every seat a set of namespaces and nodes of one shared cluster behind
its own gateway endpoint; ``clusters``: an embedded cluster per seat,
``--parallel`` of them started at once),
then runs one scripted candidate per seat for ``--duration`` seconds: kubectl
reads with the seat's kubeconfig and curl of fraud-model's /metadata through a
port-forward, one command every ``--human-interval / --speedup`` seconds (a
person types one every ~15 s; x10 by default). Every command is appended to
the seat's local transcript and streamed to the server by the same forwarder
`mlops-drill join` uses, while a dashboard poller GETs the drill every 2 s as
the instructor's page does. It prints:

* seat start-up: seconds to all seats ready, per-seat phases;
* kubectl latency p50/p95 over all seats (client wall time of the real kubectl);
* curl latency p50/p95; dashboard JSON p50/p95 (grading every seat's transcript);
* memory per seat: with a cluster each, PSS of the seat's control plane, node
  agent and platform processes; shared, PSS of the seat's own platform
  processes, plus the shared cluster's own (control plane, node agent) once;
  and the server's PSS (it runs the seats' gateway).

Usage: .venv/bin/python bench/drill_load.py [--seats 10 25 50] [--duration 60] [--isolation namespaces]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from scratch import pss_mib

TOKEN = "bench-instructor"
SCENARIO = "gpu-missing-toleration"
KUBECTL_SCRIPT = [
    ["get", "pods", "-n", "serving", "-o", "wide"],
    ["describe", "pod", "-n", "serving", "-l", "app=fraud-model"],
    ["get", "events", "-n", "serving", "--sort-by=.lastTimestamp"],
    ["get", "deploy", "fraud-model", "-n", "serving", "-o", "yaml"],
    ["describe", "node", "gpu-node-0"],
    ["rollout", "history", "deploy/fraud-model", "-n", "serving"],
]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seat_pids(cluster_dir: Path) -> set[int]:
    """Processes whose command line names the seat's state folder, and all their descendants."""
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        if str(cluster_dir) in cmd:
            roots.add(int(entry.name))
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def run_measured(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv`` to the end; (its result, the CPU seconds the process itself used)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    out = proc.stdout.read()  # type: ignore[union-attr]
    reader.join()
    err = errors[0] if errors else ""
    _, status, usage = os.wait4(proc.pid, 0)  # not Popen.wait: wait4 also gives the child's rusage
    proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), usage.ru_utime + usage.ru_stime


class Seat:
    def __init__(self, server: str, code: str, kubectl: str, folder: Path, interval: float) -> None:
        from mlops_drill.drills.join import Forwarder, SeatClient

        self.client = SeatClient(server)
        self.answer = self.client.join(code)
        self.info = self.client.wait_ready(say=lambda *_: None)
        folder.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = folder / "kubeconfig"
        self.kubeconfig.write_text(self.client.ok("GET", "/api/seat/kubeconfig").text)
        self.transcript = folder / "transcript.jsonl"
        self.forwarder = Forwarder(self.client, self.transcript)
        self.kubectl = kubectl
        self.interval = interval
        self.kubectl_s: list[float] = []
        self.curl_s: list[float] = []
        self.kubectl_cpu_s: list[float] = []  # the client's own CPU time (user + system) per call
        self.errors = 0
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def _record(self, argv: list[str], result: subprocess.CompletedProcess, started: float, took: float) -> None:
        from mlops_drill.grader.transcript import append

        append(self.transcript, "command", line=" ".join(argv), argv=argv, ts=started, exit_code=result.returncode,
               duration_s=took, stdout=result.stdout, stderr=result.stderr, cwd=os.getcwd())

    def run(self, duration: float) -> None:
        from mlops_drill.grader.transcript import append

        append(self.transcript, "session", data={"action": "shell-start", "scenario": self.info["scenario"],
                                                 "started_at": float(self.info["started_at"])})
        self.forwarder.start()
        forward = subprocess.Popen([self.kubectl, "port-forward", "-n", "serving", "svc/fraud-model", ":80"],
                                   env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = None
        line = forward.stdout.readline() if forward.stdout else ""
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
        end = time.monotonic() + duration
        i = 0
        try:
            while time.monotonic() < end:
                step = time.monotonic()
                if i % 4 == 3 and port:
                    argv = ["curl", "-s", f"http://127.0.0.1:{port}/metadata"]
                    bucket = self.curl_s
                else:
                    argv = [self.kubectl, *KUBECTL_SCRIPT[i % len(KUBECTL_SCRIPT)]]
                    bucket = self.kubectl_s
                started = time.time()
                t0 = time.perf_counter()
                result, cpu = run_measured(argv, self.env)
                took = time.perf_counter() - t0
                bucket.append(took)
                if bucket is self.kubectl_s:
                    self.kubectl_cpu_s.append(cpu)
                self.errors += result.returncode != 0
                self._record(["kubectl", *argv[1:]] if argv[0] == self.kubectl else argv, result, started, took)
                i += 1
                time.sleep(max(0.0, self.interval - (time.monotonic() - step)))
        finally:
            forward.terminate()
            self.forwarder.stop()


def shared_memory(state: Path, drill_id: str, n: int) -> tuple[dict[int, float], float]:
    """PSS of each seat's own platform processes, and of the shared cluster's other processes."""
    from mlops_drill.cluster.processpods import records
    from mlops_drill.cluster.seats.names import seat_prefix
    from mlops_drill.drills.shared import CLUSTER_NAME

    cluster = state / "clusters" / CLUSTER_NAME
    by_seat: dict[int, set[int]] = {k: set() for k in range(1, n + 1)}
    for pid, env in records.live(cluster):
        for k in by_seat:
            if env.get("POD_NAMESPACE", "").startswith(seat_prefix(drill_id, k)):
                by_seat[k].add(pid)
    seat_processes = set().union(*by_seat.values()) if by_seat else set()
    return ({k: pss_mib(p) for k, p in by_seat.items()},
            pss_mib(seat_pids(cluster) - seat_processes))


def run(n: int, duration: float, interval: float, parallel: int, kubectl: str, isolation: str) -> None:
    """One drill of ``n`` seats on a drill server of its own, stopped (drill, clusters, server) also when interrupted."""
    from mlops_drill.interrupts import stop_on_signals

    with stop_on_signals():
        _run(n, duration, interval, parallel, kubectl, isolation)


def _run(n: int, duration: float, interval: float, parallel: int, kubectl: str, isolation: str) -> None:
    from mlops_drill.interrupts import shielded

    root = Path(tempfile.mkdtemp(prefix="drill-load-"))
    env = {**os.environ, "MLOPS_DRILL_STATE": str(root / "state"), "MLOPS_DRILL_INSTRUCTOR_TOKEN": TOKEN}
    os.environ["MLOPS_DRILL_STATE"] = env["MLOPS_DRILL_STATE"]
    port = free_port()
    cli = Path(sys.executable).with_name("mlops-drill")
    # A session of its own: `timeout` and Ctrl-C signal our whole process group, and the server must
    # live until the `finally` below has stopped the drill (its clusters) through it.
    server = subprocess.Popen([str(cli), "serve", "--port", str(port), "--parallel", str(parallel)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    drill_id = None
    try:
        while True:
            try:
                http.get("/api/drills")
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        t0 = time.monotonic()
        created = http.post("/api/drills", json={"scenario": SCENARIO, "seats": n, "isolation": isolation}).json()
        drill_id = created["id"]
        while True:
            board = http.get(f"/api/drills/{drill_id}").json()
            if all(s["state"] in ("ready", "failed") for s in board["seats"]):
                break
            time.sleep(1)
        ready_s = time.monotonic() - t0
        failed = [s for s in board["seats"] if s["state"] == "failed"]
        print(f"\nN={n} ({isolation}): {n - len(failed)}/{n} seats ready in {ready_s:.0f}s; "
              f"per seat total {[s['setup_s'].get('total') for s in board['seats']]} s")
        for s in failed:
            print(f"  seat {s['seat']} failed: {s['error']}")
        seats = [Seat(base, s["code"], kubectl, root / f"seat-{s['seat']}", interval)
                 for s in created["seats"] if s["seat"] not in {f["seat"] for f in failed}]
        dash_s: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                http.get(f"/api/drills/{drill_id}")
                dash_s.append(time.perf_counter() - t)
                stop.wait(2)

        threads = [threading.Thread(target=s.run, args=(duration,)) for s in seats]
        poller = threading.Thread(target=poll)
        poller.start()
        for t in threads:
            t.start()
        mem_samples: list[dict[int, float]] = []
        shared_mib: list[float] = []
        while any(t.is_alive() for t in threads):
            time.sleep(min(10, duration / 3))
            if isolation == "namespaces":
                per_seat, rest = shared_memory(root / "state", drill_id, n)
                mem_samples.append(per_seat)
                shared_mib.append(rest)
            else:
                mem_samples.append({s["seat"]: pss_mib(seat_pids(root / "state" / "clusters" /
                                                                 f"seat-{drill_id}-{s['seat']}"))
                                    for s in board["seats"]})
        for t in threads:
            t.join()
        stop.set()
        poller.join()
        kubectl_s = [x for s in seats for x in s.kubectl_s]
        curl_s = [x for s in seats for x in s.curl_s]
        errors = sum(s.errors for s in seats)
        per_seat_mib = [max(m[k] for m in mem_samples) for k in mem_samples[0]] if mem_samples else []
        final = http.get(f"/api/drills/{drill_id}").json()
        events = sum(s["commands"] for s in final["seats"])
        print(f"  kubectl: {len(kubectl_s)} calls, p50 {1000 * pct(kubectl_s, 50):.0f} ms, "
              f"p95 {1000 * pct(kubectl_s, 95):.0f} ms; curl /metadata: {len(curl_s)} calls, "
              f"p50 {1000 * pct(curl_s, 50):.0f} ms, p95 {1000 * pct(curl_s, 95):.0f} ms; failed commands {errors}")
        cpu = [x for s in seats for x in s.kubectl_cpu_s]
        if cpu:
            per_call = statistics.mean(cpu)
            print(f"  kubectl client CPU: mean {1000 * per_call:.0f} ms per call; at one call per "
                  f"{interval:.1f}s per seat the clients alone need {n * 0.75 * per_call / interval:.2f} of "
                  f"{os.cpu_count()} cores")
        print(f"  dashboard JSON (grades {len(seats)} transcripts, {events} graded actions): "
              f"p50 {1000 * pct(dash_s, 50):.0f} ms, p95 {1000 * pct(dash_s, 95):.0f} ms")
        if per_seat_mib:
            print(f"  memory per seat (PSS, peak): mean {statistics.mean(per_seat_mib):.0f} MiB, "
                  f"max {max(per_seat_mib):.0f} MiB; server {pss_mib([server.pid]):.0f} MiB")
        if shared_mib:
            print(f"  shared cluster (control plane, node agent, zygote; PSS, peak): {max(shared_mib):.0f} MiB, "
                  f"{max(shared_mib) / n:.0f} MiB per seat; all seats and cluster together "
                  f"{(sum(per_seat_mib) + max(shared_mib)) / n:.0f} MiB per seat")
    finally:
        with shielded():
            if drill_id:
                t = time.monotonic()
                try:
                    http.delete(f"/api/drills/{drill_id}", timeout=600)
                    print(f"  stop: {time.monotonic() - t:.0f}s")
                except httpx.HTTPError as exc:
                    print(f"  stop failed ({exc}); clusters may be left under {root}", file=sys.stderr)
            server.terminate()
            server.wait(timeout=30)
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--duration", type=float, default=60, help="seconds of scripted work per N")
    parser.add_argument("--human-interval", type=float, default=15, help="seconds between a person's commands")
    parser.add_argument("--speedup", type=float, default=10)
    parser.add_argument("--parallel", type=int, default=1, help="seat clusters started at once (clusters)")
    parser.add_argument("--isolation", choices=("namespaces", "clusters"), default="namespaces")
    args = parser.parse_args()
    from mlops_drill.cluster.toolchain import ensure_toolchain

    kubectl = str(ensure_toolchain(progress=False)["kubectl"])
    print(f"{os.cpu_count()} CPUs; one command per {args.human_interval / args.speedup:.1f}s per seat "
          f"(human {args.human_interval:.0f}s x{args.speedup:g}); {args.duration:.0f}s per N")
    for n in args.seats:
        run(n, args.duration, args.human_interval / args.speedup, args.parallel, kubectl, args.isolation)


if __name__ == "__main__":
    main()
