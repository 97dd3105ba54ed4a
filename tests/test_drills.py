"""Group drills end to end: a real `mlops-drill serve`, three seats on one shared cluster, two real seats.

This test shares nothing with the suite's session cluster: the server starts its
own shared cluster under a temporary state folder, puts each seat's namespaces
and nodes on it behind the seat's own gateway endpoint, and stops it when the
drill stops. Seat 1 types the scenario's reference solution into `mlops-drill
join` (the real recorded shell, driven through a pseudo-terminal), seat 2 types
the same commands with the fix first, seat 3 has not joined yet when they are
graded, then types one command while headless Chromium watches the dashboard.
The tests run in file order on one drill; the stop test stops it. The last test
runs one seat with ``clusters`` isolation (an embedded cluster of its own).

Isolation is asserted the way a candidate would hit it: with the seat's own
token against the Kubernetes API. Another seat's endpoint does not know the
token (401 Unauthorized); another seat's namespaces, as the shared cluster
names them, are refused by the gateway, and the engine namespace by RBAC (403).
"""
from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from polling import wait

pytestmark = pytest.mark.cluster

SCENARIO = "gpu-missing-toleration"
TOKEN = "instructor-test-token"
PROMPT = re.compile(r"\x1b\[33m\d+:\d\d\x1b\[0m \S+ [$#] ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mutation_first(lines: list[str]) -> list[str]:
    from mlops_drill.grader.parse import parse_commands

    mutations = [ln for ln in lines if any(c.is_mutation or c.http_mutation for c in parse_commands(ln))]
    return mutations + [ln for ln in lines if ln not in mutations]


@pytest.fixture(scope="module")
def drill_server(tmp_path_factory):
    """`mlops-drill serve` as its own process, state in a temporary folder, seat clusters stopped after."""
    from mlops_drill.cluster.toolchain import ensure_toolchain
    from mlops_drill.paths import cache_dir

    ensure_toolchain(progress=False)
    root = tmp_path_factory.mktemp("drills")
    port = _free_port()
    env = {**os.environ, "MLOPS_DRILL_STATE": str(root / "state"), "MLOPS_DRILL_CACHE": str(cache_dir()),
           "MLOPS_DRILL_INSTRUCTOR_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    log = open(root / "serve.log", "w")
    cli = Path(sys.executable).with_name("mlops-drill")
    proc = subprocess.Popen([str(cli), "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(base + "/api/drills", timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlops-drill serve did not start: {(root / 'serve.log').read_text()}")
            time.sleep(0.3)
    server = {"url": base, "env": env, "root": root, "proc": proc, "argv": [str(cli), "serve", "--port", str(port)],
              "log": log,
              "http": httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)}
    try:
        yield server
    finally:
        for drill in server["http"].get("/api/drills").json():
            if drill["state"] != "stopped":
                server["http"].delete(f"/api/drills/{drill['id']}", timeout=600)
        server["proc"].terminate()  # the restart test replaces the first one
        server["proc"].wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def drill(drill_server):
    """A 3-seat drill with every seat's cluster up and its fault injected."""
    http = drill_server["http"]
    created = http.post("/api/drills", json={"scenario": SCENARIO, "seats": 3}).json()
    t0 = time.monotonic()
    deadline = t0 + 900
    while True:
        board = http.get(f"/api/drills/{created['id']}").json()
        states = [s["state"] for s in board["seats"]]
        if all(s in ("ready", "failed") for s in states):
            break
        assert time.monotonic() < deadline, f"seats not ready after 900 s: {states}"
        time.sleep(2)
    failed = [s for s in board["seats"] if s["state"] == "failed"]
    assert not failed, f"seats failed to start: {[(s['seat'], s['error']) for s in failed]}"
    print(f"\n3 seats ready in {time.monotonic() - t0:.0f}s: "
          + "; ".join(f"seat {s['seat']} {s['setup_s']}" for s in board["seats"]))
    return {**created, "codes": {s["seat"]: s["code"] for s in created["seats"]}}


def _join(server: dict, code: str, lines: list[str], home: Path, *, hand_in: bool = True):
    """`mlops-drill join CODE` in a pseudo-terminal, typing ``lines`` at the prompt.

    ``hand_in``: type `exit` (the seat hands in) and return the output; else return the
    still-open session, as a candidate who has not finished yet.
    """
    import pexpect

    home.mkdir(parents=True, exist_ok=True)
    cli = Path(sys.executable).with_name("mlops-drill")
    child = pexpect.spawn(str(cli), ["join", code, "--server", server["url"]], env={**server["env"], "HOME": str(home)},
                          encoding="utf-8", timeout=300, dimensions=(50, 200))
    out = io.StringIO()
    child.logfile_read = out
    try:
        child.expect(PROMPT, timeout=300)
        for line in lines:
            child.sendline(line)
            child.expect(PROMPT, timeout=240)
        if not hand_in:
            return child
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=120)
    except pexpect.ExceptionPexpect as exc:
        child.close(force=True)
        raise AssertionError(f"seat shell stalled: {type(exc).__name__}\n{out.getvalue()[-3000:]}") from None
    child.close()
    assert child.exitstatus == 0, out.getvalue()[-3000:]
    assert "handed in" in out.getvalue()
    return out.getvalue()


def _board_when_checked(http: httpx.Client, drill_id: str, seats: tuple[int, ...]) -> dict:
    """The dashboard once the hand-in fix checks of ``seats`` have run (they run in the background)."""
    deadline = time.monotonic() + 180
    while True:
        board = http.get(f"/api/drills/{drill_id}").json()
        if all(board["seats"][n - 1]["fixed"] is not None for n in seats):
            return board
        assert time.monotonic() < deadline, f"fix checks never reported: {board['seats']}"
        time.sleep(1)


def _seat_client(server: dict, code: str) -> tuple[httpx.Client, dict]:
    answer = httpx.post(server["url"] + "/api/join", json={"code": code}).json()
    return httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {answer['token']}"},
                        timeout=60), answer


def _kube_json(kubeconfig: dict, path: str) -> dict:
    cluster = kubeconfig["clusters"][0]["cluster"]
    token = kubeconfig["users"][0]["user"]["token"]
    response = httpx.get(cluster["server"] + path, headers={"Authorization": f"Bearer {token}"},
                         verify=False, timeout=20)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return response.json()


def _kube_status(kubeconfig: dict, path: str, server: str | None = None) -> int:
    """HTTP status of one GET with the kubeconfig's token (against another API server when given)."""
    cluster = kubeconfig["clusters"][0]["cluster"]
    token = kubeconfig["users"][0]["user"]["token"]
    response = httpx.get((server or cluster["server"]) + path, headers={"Authorization": f"Bearer {token}"},
                         verify=False, timeout=20)
    return response.status_code


def test_seat_token_sees_no_answer_key_and_no_instructor_data(drill_server, drill):
    from mlops_drill.injector.engine import scenario

    sc = scenario(SCENARIO)
    seat, answer = _seat_client(drill_server, drill["codes"][3])
    bodies = [seat.get("/api/seat/briefing").text, seat.get("/api/seat/kubeconfig").text,
              httpx.post(drill_server["url"] + "/api/join", json={"code": drill["codes"][3]}).text]
    secrets = ([s.id for p in sc.expected.phases for s in p.steps] + [h.text for h in sc.hints]
               + [f.name for f in sc.faults] + [c.description for c in sc.fix.checks] + [sc.root_cause]
               + [a.id for a in sc.anti_patterns])
    for body in bodies:
        leaked = [s for s in secrets if s in body]
        assert not leaked, f"a seat endpoint reveals {leaked}"
    assert "briefing" in seat.get("/api/seat/briefing").json()

    drill_id = drill["id"]
    for method, path in [("GET", f"/api/drills/{drill_id}"), ("GET", f"/api/drills/{drill_id}/debrief"),
                         ("GET", f"/api/drills/{drill_id}/export"), ("GET", "/api/drills"),
                         ("POST", f"/api/drills/{drill_id}/verify"), ("DELETE", f"/api/drills/{drill_id}"),
                         ("GET", f"/drills/{drill_id}"), ("GET", "/")]:
        assert seat.request(method, path).status_code == 403, f"seat token on {method} {path}"
        assert httpx.request(method, drill_server["url"] + path).status_code == 401, f"no token on {method} {path}"
    # The instructor's token is no seat token either, and seats cannot forge fix-check results.
    instructor = drill_server["http"]
    assert instructor.get("/api/seat/kubeconfig").status_code == 403
    forged = {"seq": 0, "kind": "verification", "data": {"results": {"x": True}}}
    assert seat.post("/api/seat/events", json={"events": [forged]}).status_code == 422


def test_seat_kubeconfig_is_refused_on_other_seats_and_on_the_engine_namespace(drill_server, drill):
    one, _ = _seat_client(drill_server, drill["codes"][1])
    two, _ = _seat_client(drill_server, drill["codes"][2])
    cfg1 = yaml.safe_load(one.get("/api/seat/kubeconfig").text)
    cfg2 = yaml.safe_load(two.get("/api/seat/kubeconfig").text)
    from mlops_drill.cluster.seats.names import seat_prefix

    server2 = cfg2["clusters"][0]["cluster"]["server"]
    assert cfg1["clusters"][0]["cluster"]["server"] != server2, "two seats share one API endpoint"

    assert _kube_status(cfg1, "/api/v1/namespaces/serving/pods") == 200
    assert _kube_status(cfg1, "/api/v1/namespaces/mlops-drill-system/configmaps") == 403
    assert _kube_status(cfg1, "/api/v1/namespaces/mlops-drill-system/secrets") == 403
    # Seat 2's namespaces as the shared cluster names them, through seat 1's own endpoint.
    other = seat_prefix(drill["id"], 2)
    assert _kube_status(cfg1, f"/api/v1/namespaces/{other}serving/pods") == 403
    assert _kube_status(cfg1, f"/api/v1/namespaces/{other}mlops-drill-system/configmaps") == 403
    # Seat 1's token on seat 2's endpoint: that endpoint never issued it.
    assert _kube_status(cfg1, "/api/v1/namespaces/serving/pods", server=server2) == 401
    assert _kube_status(cfg1, "/api/v1/nodes", server=server2) == 401

    # Seat 1 sees a cluster of its own: its namespaces and nodes by the product's names, nobody else's.
    pods = _kube_json(cfg1, "/api/v1/pods")["items"]
    assert {p["metadata"]["namespace"] for p in pods} >= {"serving", "features", "registry"}
    assert all(not p["metadata"]["namespace"].startswith("s-") for p in pods), "another seat's pod is listed"
    assert sorted(n["metadata"]["name"] for n in _kube_json(cfg1, "/api/v1/nodes")["items"]) == \
        ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1"]
    names = {p["metadata"]["name"] for p in pods}
    assert not names & {p["metadata"]["name"] for p in _kube_json(cfg2, "/api/v1/pods")["items"]}


def test_a_restarted_server_serves_every_seat_on_its_endpoint_again(drill_server, drill):
    """The server dies; the shared cluster does not. Restarted, it puts each seat back on its port."""
    one, _ = _seat_client(drill_server, drill["codes"][1])
    cfg1 = yaml.safe_load(one.get("/api/seat/kubeconfig").text)
    drill_server["proc"].kill()
    drill_server["proc"].wait(timeout=30)
    with pytest.raises(httpx.ConnectError):
        _kube_status(cfg1, "/api/v1/namespaces/serving/pods")
    drill_server["proc"] = subprocess.Popen(drill_server["argv"], env=drill_server["env"], stdout=drill_server["log"],
                                            stderr=subprocess.STDOUT)

    def serving() -> bool:
        try:
            return _kube_status(cfg1, "/api/v1/namespaces/serving/pods") == 200
        except httpx.HTTPError:
            return False

    wait(serving, 60, "seat 1's endpoint after the restart", 0.5)
    board = drill_server["http"].get(f"/api/drills/{drill['id']}").json()
    assert [s["state"] for s in board["seats"]] == ["ready"] * 3


def test_two_seats_graded_dashboard_debrief_and_export(drill_server, drill, tmp_path):
    from mlops_drill.injector.engine import scenario

    sc = scenario(SCENARIO)
    http = drill_server["http"]
    drill_id = drill["id"]
    _join(drill_server, drill["codes"][1], sc.reference_solution, tmp_path / "home1")
    _join(drill_server, drill["codes"][2], _mutation_first(sc.reference_solution), tmp_path / "home2")

    board = _board_when_checked(http, drill_id, (1, 2))
    good, poor, absent = board["seats"]
    print(f"\nscores: good order {good['score']}, fix first {poor['score']}")
    assert good["joined"] and good["finished"] and good["fixed"] is True
    assert good["required_done"] == good["steps_required"] > 0
    assert good["phase"]["id"] == sc.expected.phases[-1].id
    assert good["score"] >= 90, good
    assert good["hints_used"] == 0 and good["elapsed_s"] is not None
    assert poor["finished"] and poor["fixed"] is True
    assert poor["score"] <= good["score"] - 15, (good["score"], poor["score"])
    assert absent["joined"] is False and absent["score"] is None and absent["phase"] is None

    debrief = http.get(f"/api/drills/{drill_id}/debrief").json()
    assert debrief["seats_graded"] == 2
    steps = {s["id"]: s for s in debrief["steps"]}
    assert (steps["restore-toleration"]["done"], steps["restore-toleration"]["in_order"]) == (2, 1)
    assert steps["read-scheduler-events"]["done"] == 2
    assert [s["id"] for s in debrief["steps"]] == [s.id for p in sc.expected.phases for s in p.steps]

    archive = zipfile.ZipFile(io.BytesIO(http.get(f"/api/drills/{drill_id}/export").content))
    names = set(archive.namelist())
    assert {"seat-1.html", "seat-1.json", "seat-2.html", "seat-2.json", "dashboard.json"} <= names
    assert "seat-3.json" not in names
    assert json.loads(archive.read("seat-1.json"))["score"] == good["score"]
    assert "<html" in archive.read("seat-2.html").decode().lower()


def test_dashboard_rows_update_without_reload_in_chromium(drill_server, drill, tmp_path):
    """The instructor's page in real headless Chromium while seat 3 works: its row changes in place."""
    from cdp import Browser, chromium_path

    exe = chromium_path()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    drill_id = drill["id"]
    browser = Browser(exe)
    try:
        browser.goto(f"{drill_server['url']}/login?token={TOKEN}&next=/drills/{drill_id}",
                     ready="document.getElementById('seat-3') !== null")
        cell = "document.querySelector('#seat-{n} td[data-f={f}]').textContent"
        loaded_at = browser.eval("window.__loadedAt")
        assert browser.eval(cell.format(n=3, f="state")) == "waiting to join"
        assert browser.eval(cell.format(n=1, f="fixed")) == "yes"  # server-rendered at load
        browser.screenshot(tmp_path / "dashboard-before.png")

        # Seat 3 starts working and has not handed in: its row follows it live.
        session = _join(drill_server, drill["codes"][3], ["kubectl get pods -n serving"], tmp_path / "home3",
                        hand_in=False)
        try:
            browser.wait_for(cell.format(n=3, f="state") + " === 'working'", 30)
            browser.wait_for(cell.format(n=3, f="steps") + " === '1/6'", 30)
            assert browser.eval(cell.format(n=3, f="phase")).startswith("1/4 ")
            assert browser.eval(cell.format(n=3, f="fixed")) == "-"
            assert browser.eval("document.querySelector('#step-see-pending-pods td[data-f=done]').textContent") \
                == "3/3"
            assert browser.eval("window.__loadedAt") == loaded_at, "the page reloaded instead of updating"
            shot = browser.screenshot(tmp_path / "dashboard.png")
            assert shot.stat().st_size > 5000
        finally:
            session.close(force=True)  # the candidate closes the terminal without handing in
        print(f"\ndashboard screenshot: {shot}")
    finally:
        browser.close()


def test_a_seats_pods_are_sandboxes_through_the_gateway(drill_server, drill, tmp_path):
    """Every escape attempt of tests/test_pod_sandbox.py, typed into `kubectl exec` with a seat's kubeconfig."""
    from mlops_drill.cluster.backends.embedded import EmbeddedBackend
    from mlops_drill.cluster.toolchain.binaries import resolve_without_building
    from test_pod_sandbox import check_escape, escapes, host_facts

    one, _ = _seat_client(drill_server, drill["codes"][1])
    kubeconfig = tmp_path / "seat1.kubeconfig"
    kubeconfig.write_text(one.get("/api/seat/kubeconfig").text)
    kubectl = str(resolve_without_building()[0]["kubectl"])
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    pods = json.loads(subprocess.run([kubectl, "get", "pods", "-n", "registry", "-o", "json"], env=env,
                                     capture_output=True, text=True, timeout=60, check=True).stdout)["items"]
    pod = next(p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running")

    def pod_sh(script: str) -> tuple[str, str]:
        result = subprocess.run([kubectl, "exec", "-n", "registry", pod, "--", "sh", "-c", script], env=env,
                                capture_output=True, text=True, timeout=60)
        return result.stdout, result.stdout + result.stderr

    old = os.environ.get("MLOPS_DRILL_STATE")
    os.environ["MLOPS_DRILL_STATE"] = str(drill_server["root"] / "state")
    try:
        shared = EmbeddedBackend(name="drills-shared")
    finally:
        if old is None:
            os.environ.pop("MLOPS_DRILL_STATE")
        else:
            os.environ["MLOPS_DRILL_STATE"] = old
    two, _ = _seat_client(drill_server, drill["codes"][2])
    other = tmp_path / "seat2.kubeconfig"  # the test's own copy; inside the pod its path must not exist
    other.write_text(two.get("/api/seat/kubeconfig").text)
    assert pod_sh("hostname")[0].strip() == pod
    for escape in escapes(host_facts(shared, other)):
        check_escape(escape, pod_sh)


def test_stopping_the_drill_removes_every_seat_cluster(drill_server, drill, tmp_path):
    http = drill_server["http"]
    if not http.get(f"/api/drills/{drill['id']}").json()["seats"][2]["joined"]:
        # The browser test joins seat 3; where it was skipped (no Chromium), join it here.
        session = _join(drill_server, drill["codes"][3], ["kubectl get pods -n serving"], tmp_path / "home3",
                        hand_in=False)
        wait(lambda: http.get(f"/api/drills/{drill['id']}").json()["seats"][2]["joined"], 60,
             "seat 3's shell streaming its command", 0.5)
        session.close(force=True)
    stopped = http.delete(f"/api/drills/{drill['id']}", timeout=600).json()
    assert stopped["state"] == "stopped"
    # Seat 3 never handed in: its end state was checked before its cluster went.
    assert http.get(f"/api/drills/{drill['id']}").json()["seats"][2]["fixed"] is False
    assert {s["state"] for s in http.get(f"/api/drills/{drill['id']}").json()["seats"]} == {"stopped"}
    # No drill is left on the shared cluster, so the server stopped it, and every seat process with it.
    clusters = Path(drill_server["env"]["MLOPS_DRILL_STATE"]) / "clusters"
    left_behind = [p.name for p in clusters.iterdir()] if clusters.is_dir() else []
    assert not left_behind, f"clusters left behind: {left_behind}"
    left = subprocess.run(["pgrep", "-f", str(clusters)], capture_output=True, text=True).stdout
    assert not left.strip(), f"cluster processes still running: {left}"
    assert httpx.post(drill_server["url"] + "/api/join", json={"code": drill["codes"][1]}).status_code == 410


def test_a_seat_can_be_a_cluster_of_its_own(drill_server):
    """``isolation: clusters``: the seat's kubeconfig names its own API server, which stops with the drill."""
    http = drill_server["http"]
    created = http.post("/api/drills", json={"scenario": "gpu-driver-cuda-mismatch", "seats": 1,
                                             "isolation": "clusters"}).json()
    board = wait(lambda: (b := http.get(f"/api/drills/{created['id']}").json())["seats"][0]["state"] != "starting"
                 and b, 600, "the seat's own cluster", 2)
    assert board["seats"][0]["state"] == "ready", board["seats"][0]
    seat, _ = _seat_client(drill_server, created["seats"][0]["code"])
    cfg = yaml.safe_load(seat.get("/api/seat/kubeconfig").text)
    clusters = Path(drill_server["env"]["MLOPS_DRILL_STATE"]) / "clusters"
    own = (clusters / f"seat-{created['id']}-1" / "admin.kubeconfig").read_text()
    assert cfg["clusters"][0]["cluster"]["server"] in own, "the seat's kubeconfig is not its own cluster's"
    assert _kube_status(cfg, "/api/v1/namespaces/serving/pods") == 200
    assert _kube_status(cfg, "/api/v1/namespaces/mlops-drill-system/configmaps") == 403
    http.delete(f"/api/drills/{created['id']}", timeout=600)
    assert not (clusters / f"seat-{created['id']}-1").exists(), "the seat's cluster was left behind"


def test_a_gpu_node_fault_needs_seats_with_clusters_of_their_own(drill_server):
    answer = drill_server["http"].post("/api/drills", json={"scenario": "gpu-device-plugin-crash", "seats": 2})
    assert answer.status_code == 422
    assert "isolation 'clusters'" in answer.json()["detail"]


def test_every_seat_gets_the_drills_variant(drill_server):
    """A parameterised scenario: every seat's cluster is broken the same way (the variant of the seed the
    instructor gave, not the scenario's first value), and no seat endpoint names the seed."""
    from mlops_drill.injector.engine import scenario
    from mlops_drill.scenarios.variants import draw

    http = drill_server["http"]
    sc = scenario("wrong-model-version")
    seed = next(s for s in range(1_000_000, 1_000_100) if draw(sc, s)["archived_version"] == "1")
    created = http.post("/api/drills", json={"scenario": sc.id, "seats": 2, "seed": seed}).json()
    assert created["seed"] == seed, created
    try:
        board = wait(lambda: (b := http.get(f"/api/drills/{created['id']}").json())
                     and all(s["state"] != "starting" for s in b["seats"]) and b, 600, "the seats", 2)
        assert [s["state"] for s in board["seats"]] == ["ready", "ready"], board["seats"]
        for row in created["seats"]:
            seat, answer = _seat_client(drill_server, row["code"])
            cfg = yaml.safe_load(seat.get("/api/seat/kubeconfig").text)
            deploy = _kube_json(cfg, "/apis/apps/v1/namespaces/serving/deployments/fraud-model")
            env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env.get("MODEL_VERSION") == "1", f"seat {row['seat']} runs another variant: {env}"
            told = seat.get("/api/seat/briefing").text + json.dumps(answer) + json.dumps(cfg)
            assert str(seed) not in told and "archived_version" not in told
    finally:
        http.delete(f"/api/drills/{created['id']}", timeout=600)


def test_each_seat_gets_its_own_variant_when_asked(drill_server, tmp_path):
    """``seed_per_seat``: two seats of wrong-model-version are broken two different ways, each as the seed the
    server derived for it (recorded with the values the engine drew); the instructor's dashboard shows both,
    and nothing a seat's candidate can read (join, briefing, kubeconfig, the cluster's objects) names them."""
    from answer_markers import candidate_view, variant_markers_in

    from mlops_drill.cluster.toolchain.binaries import resolve_without_building
    from mlops_drill.drills.seat_variants import seat_seeds
    from mlops_drill.injector.engine import scenario
    from mlops_drill.scenarios.variants import draw, variant

    http = drill_server["http"]
    sc = scenario("wrong-model-version")
    created = http.post("/api/drills", json={"scenario": sc.id, "seats": 2, "seed": 31337,
                                             "seed_per_seat": True}).json()
    try:
        expected = seat_seeds(sc, 31337, 2)
        assert created["seed_per_seat"] is True and [s["seed"] for s in created["seats"]] == expected, created
        board = wait(lambda: (b := http.get(f"/api/drills/{created['id']}").json())
                     and all(s["state"] != "starting" for s in b["seats"]) and b, 600, "the seats", 2)
        assert [s["state"] for s in board["seats"]] == ["ready", "ready"], board["seats"]
        recorded = [(s["seed"], s["values"]) for s in board["seats"]]
        print(f"\nper-seat variants: {recorded}")
        assert recorded == [(seed, draw(sc, seed)) for seed in expected]
        assert recorded[0][1] != recorded[1][1], "the two seats got the same incident"
        kubectl = str(resolve_without_building()[0]["kubectl"])
        for row, (seed, values) in zip(created["seats"], recorded):
            seat, answer = _seat_client(drill_server, row["code"])
            text = seat.get("/api/seat/kubeconfig").text
            cfg = yaml.safe_load(text)
            deploy = _kube_json(cfg, "/apis/apps/v1/namespaces/serving/deployments/fraud-model")
            env = {e["name"]: e.get("value") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env.get("MODEL_VERSION") == values["archived_version"], f"seat {row['seat']}: {env}"
            kubeconfig = tmp_path / f"seat{row['seat']}.kubeconfig"
            kubeconfig.write_text(text)

            def as_candidate(*args: str, check: bool = True) -> subprocess.CompletedProcess:
                done = subprocess.run([kubectl, *args], capture_output=True, text=True, timeout=120,
                                      env={**os.environ, "KUBECONFIG": str(kubeconfig)})
                assert done.returncode == 0 or not check, done.stderr
                return done

            told = (seat.get("/api/seat/briefing").text + json.dumps(answer) + text).lower() \
                + candidate_view(as_candidate)
            found = variant_markers_in(told, variant(sc, seed))
            assert not found, f"seat {row['seat']}'s candidate can read {found}"
            assert "31337" not in told, f"seat {row['seat']}'s candidate can read the drill's seed"
    finally:
        http.delete(f"/api/drills/{created['id']}", timeout=600)
