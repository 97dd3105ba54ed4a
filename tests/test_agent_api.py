"""The agent API on the session's embedded cluster: what an agent may run, what it may not, how it is graded.

The app runs in-process on uvicorn (ephemeral loopback port) over the shared
``platform`` fixture (``agent_api`` in conftest.py), and agents drive it through the real client. The
benchmark over the whole catalogue takes tens of minutes on a shared box, so
the default run covers three scenarios of different kinds; set
``MLOPS_DRILL_AGENT_CATALOGUE=1`` for the issue's full acceptance run.
"""
from __future__ import annotations

import math
import os
import re

import httpx
import pytest

pytestmark = pytest.mark.cluster

QUICK = "gpu-missing-toleration"   # starts in a few seconds; its fault is one rollout
DEFAULT_SCENARIOS = ("gpu-missing-toleration", "bad-canary", "gpu-insufficient-capacity")
REFUSED = (
    "bash -c id",
    "rm -rf /",
    "python -c 'print(1)'",
    "kubectl get pods; rm -rf /",
    "kubectl get pods | head -3",
    "kubectl get pods && id",
    "kubectl get pods > /tmp/pods.txt",
    "kubectl get pods $(id -u)",
    "nvidia-smi",
    "/usr/bin/kubectl get pods",
    "kubectl --kubeconfig=/etc/passwd get pods",
    "kubectl get cm -A --token=abc",
    "kubectl apply -f /etc/passwd",
    "kubectl create secret generic x -n serving --from-file=/etc/hostname",
    "kubectl exec -n serving deploy/fraud-model -- cat /etc/hostname",
    "kubectl edit deploy fraud-model -n serving",
    "kubectl logs -f deploy/fraud-model -n serving",
    "curl file:///etc/passwd",
    "curl -s http://127.0.0.1:1/metrics",
)


@pytest.fixture(scope="module")
def api(agent_api):
    return agent_api


@pytest.fixture(scope="module")
def client(api):
    from mlops_drill.server.client import Client

    with Client(api[1], token=api[0].state.api_token) as c:
        yield c


@pytest.fixture(scope="module")
def drill(client, platform):
    """One live session for the refusal tests (finished and reset afterwards)."""
    from mlops_drill.injector import engine

    session = client.start(QUICK)
    yield session
    _end(session)
    if engine.load_session(platform) is not None:
        engine.reset(platform)


def _events(session, kind):
    return [e for e in session.transcript() if e["kind"] == kind]


def test_disallowed_commands_are_refused_with_one_line_and_recorded(drill, api):
    url, auth = api[1], {"Authorization": f"Bearer {api[0].state.api_token}"}
    before = len(_events(drill, "command"))
    for line in REFUSED:
        response = httpx.post(f"{url}/api/v1/sessions/{drill.id}/commands", json={"command": line}, headers=auth,
                              timeout=60)
        assert response.status_code == 400, (line, response.text)
        detail = response.json()["detail"]
        assert detail.startswith("refused: ") and "\n" not in detail, (line, detail)
    refused = [e for e in _events(drill, "session") if e["data"].get("action") == "refused"]
    assert [e["line"] for e in refused[-len(REFUSED):]] == list(REFUSED)
    assert all(e["data"]["reason"] for e in refused)
    assert len(_events(drill, "command")) == before, "a refused command must not run"


def test_refusal_names_the_reason(drill):
    from mlops_drill.server.client import CommandRefused

    with pytest.raises(CommandRefused, match="only kubectl and curl"):
        drill.run("bash -c id")
    with pytest.raises(CommandRefused, match=r"shell operator ';'"):
        drill.run("kubectl get pods; rm -rf /")
    with pytest.raises(CommandRefused, match="kubectl exec -n gpu-operator"):
        drill.run("nvidia-smi")


def test_reading_the_answer_key_is_refused_by_rbac_and_recorded(drill):
    for line in ("kubectl get cm -n mlops-drill-system", "kubectl get clusterexecs.kwok.x-k8s.io"):
        result = drill.run(line)
        assert result.exit_code != 0 and "forbidden" in result.stderr.lower(), (line, result)
        recorded = _events(drill, "command")[-1]
        assert recorded["line"] == line and recorded["exit_code"] == result.exit_code
        assert "forbidden" in recorded["stderr"].lower()


def test_commands_run_as_the_seat_and_are_recorded(drill):
    result = drill.run("kubectl get pods -n serving -o wide")
    assert result.exit_code == 0 and "fraud-model" in result.stdout
    event = _events(drill, "command")[-1]
    assert event["argv"] == ["kubectl", "get", "pods", "-n", "serving", "-o", "wide"]
    assert event["stdout"] == result.stdout and event["duration_s"] is not None
    whoami = drill.run("kubectl auth whoami")
    assert "oncall-engineer" in whoami.stdout, whoami


def test_curl_reaches_services_only_through_its_own_port_forward(drill):
    import json

    from mlops_drill.server.client import CommandRefused

    forward = drill.run("kubectl port-forward -n serving svc/fraud-model :80")
    port = int(re.search(r"127\.0\.0\.1:(\d+)", forward.stdout).group(1))
    assert port in drill.info()["forwarded_ports"]
    metadata = drill.run(f"curl -s localhost:{port}/metadata")
    assert json.loads(metadata.stdout)["model_name"] == "fraud-model"
    with pytest.raises(CommandRefused, match="port-forwards"):
        drill.run(f"curl -s localhost:{port + 1 if port < 65535 else port - 1}/metadata")


def test_kubectl_reads_a_manifest_from_stdin_only(drill):
    from mlops_drill.server.client import CommandRefused

    manifest = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"agent-note","namespace":"serving"}}'
    result = drill.run("kubectl apply --dry-run=server -f -", stdin=manifest)
    assert result.exit_code == 0 and "agent-note" in result.stdout, result
    with pytest.raises(CommandRefused, match="stdin"):
        drill.run("kubectl apply --dry-run=server -f -")


def _end(session) -> None:
    """Fix QUICK's fault (one rollout) and finish: passing fix checks grade at once, failing ones are polled."""
    if session.info()["finished"]:
        return
    session.run("kubectl rollout undo deploy/fraud-model -n serving")
    session.run("kubectl rollout status deploy/fraud-model -n serving --timeout=120s", timeout_s=150)
    session.finish(reset=True)


def _free(drill) -> None:
    """The cluster runs one session at a time: end the shared one before a test starts its own."""
    _end(drill)


def test_finish_grades_with_the_human_rubric_and_closes_the_session(client, drill):
    from mlops_drill.server.client import ApiError

    _free(drill)
    session = client.start(QUICK)
    with pytest.raises(ApiError, match="409"):
        client.start(QUICK)
    session.run("kubectl get pods -n serving")
    session.run("kubectl describe pod -n serving -l app=fraud-model")
    assert session.hypothesize("a toleration for the GPU taint is missing") > 0
    assert session.run("kubectl rollout undo deploy/fraud-model -n serving").exit_code == 0
    session.run("kubectl rollout status deploy/fraud-model -n serving --timeout=120s", timeout_s=150)
    session.run("kubectl get pods -n serving")
    session.diagnose("the new revision dropped its toleration for the nvidia.com/gpu taint")
    graded = session.finish(reset=True)
    assert 0 <= graded["score"] <= 100
    assert {"coverage", "order", "efficiency", "end_state", "diagnosis", "time"} <= set(graded["dimension_scores"])
    assert graded["diagnosis"]["accepted"] is True
    assert graded["dimension_scores"]["end_state"] == 100, graded["verification"]
    assert [c["line"] for c in graded["commands"]][:2] == ["kubectl get pods -n serving",
                                                           "kubectl describe pod -n serving -l app=fraud-model"]
    assert session.finish() == graded, "finishing again returns the same grade"
    with pytest.raises(ApiError, match="409"):
        session.run("kubectl get pods -n serving")


def _benchmark(client, scenarios):
    from mlops_drill.agents import baseline, random_agent
    from mlops_drill.server.benchmark import resolve_scenarios, run_benchmark

    ids, _skipped = resolve_scenarios(",".join(scenarios), client.scenarios())
    rows = {}
    for sid in ids:
        for name, agent in (("baseline", baseline.agent), ("random", random_agent.agent)):
            (row,) = run_benchmark(client, agent, [sid], agent_name=name)
            rows[sid, name] = row
    return ids, rows


def _assert_acceptance(ids, rows):
    from mlops_drill.server.benchmark import rows_table

    table = rows_table(list(rows.values()), "md")
    print("\n" + table)  # shown with `pytest -s`: the figures the assertions below read
    for sid in ids:
        base, rand = rows[sid, "baseline"], rows[sid, "random"]
        assert base.error is None and base.score is not None, (sid, base.error, table)
        assert rand.score is None or base.score > rand.score, (sid, base.score, rand.score, table)
    fixed = [sid for sid in ids if rows[sid, "baseline"].fixed]
    assert len(fixed) >= math.ceil(len(ids) / 2), (fixed, table)


def test_a_seed_draws_the_variant_and_the_grade_names_it(client, drill):
    """`POST /sessions {"seed": N}`: the seat's cluster is broken the way N draws (archived version 1, not the
    scenario's first value), the briefing does not name the draw, and the graded report does."""
    from mlops_drill.injector.engine import scenario
    from mlops_drill.scenarios.variants import draw

    _free(drill)
    sc = scenario("wrong-model-version")
    seed = next(s for s in range(1_000_000, 1_000_100) if draw(sc, s)["archived_version"] == "1")
    session = client.start(sc.id, seed=seed)
    try:
        assert str(seed) not in session.briefing and "{{" not in session.briefing
        env = session.run("kubectl get deploy fraud-model -n serving -o jsonpath={.spec.template.spec.containers[0].env}")
        assert '"name":"MODEL_VERSION","value":"1"' in env.stdout.replace(" ", ""), env.stdout
        session.run("kubectl set env deploy/fraud-model -n serving MODEL_VERSION-")
        session.run("kubectl rollout status deploy/fraud-model -n serving --timeout=120s", timeout_s=150)
    finally:
        graded = session.finish(reset=True)
    assert graded["seed"] == seed and graded["values"] == {"archived_version": "1"}


def test_benchmark_seeds_runs_two_variants_and_reports_their_spread(drill, cluster, cluster_state):
    """`mlops-drill benchmark --seeds 2 --seed BASE --format json` on the session cluster: the baseline agent
    meets both variants of wrong-model-version (BASE is picked so BASE and BASE+1 draw different archived
    versions), and each run's graded report names the seed it was started with and the values it drew."""
    import json
    import subprocess
    import sys

    from mlops_drill.injector.engine import scenario
    from mlops_drill.scenarios.variants import draw

    _free(drill)
    sc = scenario("wrong-model-version")
    base = next(s for s in range(2_000_000, 2_000_100) if draw(sc, s) != draw(sc, s + 1))
    env = {**os.environ, "MLOPS_DRILL_STATE": str(cluster_state)}  # the session cluster's, named (see _session_cli)
    done = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "benchmark", "--agent",
                           "mlops_drill.agents.baseline:agent", "--scenarios", sc.id, "--seeds", "2",
                           "--seed", str(base), "--format", "json", "--name", cluster.backend.name],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    print("\n" + done.stderr + done.stdout)  # the figures, with `pytest -s`
    out = json.loads(done.stdout)
    (summary,) = out["scenarios"]
    runs = summary["runs"]
    assert [r["seed"] for r in runs] == [base, base + 1]
    assert [r["values"] for r in runs] == [draw(sc, base), draw(sc, base + 1)], "the server drew another variant"
    scores = [r["score"] for r in runs]
    assert all(isinstance(s, (int, float)) for s in scores), runs
    assert summary["variants"] == 2 and summary["graded"] == 2
    assert summary["mean"] == pytest.approx(sum(scores) / 2, abs=0.01)
    assert summary["sd"] == pytest.approx(abs(scores[0] - scores[1]) / 2, abs=0.01)
    assert (summary["min"], summary["max"]) == (min(scores), max(scores))
    assert f"{sc.id} (seed {base}): baseline scored" in done.stderr
    assert cluster.kubectl("get", "namespace", "serving").returncode == 0, "benchmark stopped a cluster it reused"


def test_baseline_outscores_random_and_fixes_most(client, drill):
    """Three scenarios of three kinds (a bad revision, a bad extra backend, GPUs held by an idle Job)."""
    _free(drill)
    ids, rows = _benchmark(client, DEFAULT_SCENARIOS)
    assert len(ids) == len(DEFAULT_SCENARIOS)
    _assert_acceptance(ids, rows)


@pytest.mark.skipif(not os.environ.get("MLOPS_DRILL_AGENT_CATALOGUE"),
                    reason="the whole catalogue takes ~30 min: set MLOPS_DRILL_AGENT_CATALOGUE=1")
@pytest.mark.timeout(3600)  # ~32 min measured (bench/agents_table.py); the suite's 600 s cap cut it off
def test_baseline_outscores_random_on_the_whole_catalogue(client, drill):
    _free(drill)
    ids, rows = _benchmark(client, tuple(s["id"] for s in client.scenarios() if s["available"]))
    _assert_acceptance(ids, rows)


def test_openapi_schema_is_published(api):
    schema = httpx.get(f"{api[1]}/openapi.json", timeout=30).json()
    paths = schema["paths"]
    for path in ("/api/v1/sessions", "/api/v1/sessions/{session_id}/commands", "/api/v1/sessions/{session_id}/finish",
                 "/api/v1/sessions/{session_id}/hypotheses", "/api/v1/sessions/{session_id}/diagnosis",
                 "/api/v1/sessions/{session_id}/transcript"):
        assert path in paths, path


def test_schemathesis_fuzzes_the_refusing_and_validating_endpoints(api, client, platform, drill):
    """Generated bodies (valid and invalid) against the live session: never a 5xx, always the documented answers."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                     status_code_conformance)

    from mlops_drill.injector import engine

    app, _url = api
    _free(drill)
    session = client.start(QUICK)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
        live = {"session_id": session.id}
        auth = {"Authorization": f"Bearer {app.state.api_token}"}
        both = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        targets = [("/api/v1/sessions/{session_id}/commands", "POST", live, both),
                   ("/api/v1/sessions/{session_id}/hypotheses", "POST", live, both),
                   ("/api/v1/sessions/{session_id}/diagnosis", "POST", live, both),
                   ("/api/v1/sessions/{session_id}/commands", "POST", None, both),
                   ("/api/v1/sessions/{session_id}/transcript", "GET", None, both[:1]),
                   ("/api/v1/sessions/{session_id}", "GET", None, both[:1]),
                   ("/api/v1/sessions", "POST", None, both)]
        for path, method, params, modes in targets:
            operation = schema[path][method]
            for mode in modes:
                @settings(max_examples=25, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=operation.as_strategy(mode, path_parameters=params))
                def fuzz(case):
                    response = case.call(headers=auth)
                    # Negative cases may drop or mangle the declared bearer header: then 401, as documented.
                    allowed = (200, 201, 400, 404, 409, 422) + ((401,) if mode is GenerationMode.NEGATIVE else ())
                    assert response.status_code in allowed, (case, response.text)
                    case.validate_response(response, checks=checks)
                fuzz()
        assert not session.info()["finished"]
        refused = [e for e in session.transcript() if e["data"].get("action") == "refused"]
        assert refused, "fuzzed commands were refused and recorded"
    finally:
        _end(session)
        if engine.load_session(platform) is not None:
            engine.reset(platform)


def test_serve_api_writes_its_token_to_a_private_file_and_never_prints_it(cluster, platform, monkeypatch):
    """`mlops-drill serve-api` itself on the session cluster: 401 without the token, the client finds the file."""
    import signal
    import stat
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    from mlops_drill.server.auth import TOKEN_ENV
    from mlops_drill.server.client import ApiError, Client

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # MLOPS_DRILL_STATE: the session cluster's
    proc = subprocess.Popen([sys.executable, "-m", "mlops_drill.cli", "serve-api", "--port", "0",
                             "--name", cluster.backend.name], stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any("curl -H" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        url = re.search(r"agent API on (http://127\.0\.0\.1:\d+)/api/v1", "".join(lines)).group(1)
        token_path = Path(re.search(r"bearer token in (\S+) \(mode 0600", "".join(lines)).group(1))
        assert token_path.parent.parent == Path(os.environ["MLOPS_DRILL_STATE"])
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        token = token_path.read_text().strip()
        assert len(token) >= 40

        assert httpx.get(f"{url}/api/v1/scenarios", timeout=30).status_code == 401
        wrong = httpx.get(f"{url}/api/v1/scenarios", headers={"Authorization": "Bearer " + "x" * 43}, timeout=30)
        assert wrong.status_code == 401 and wrong.json()["detail"].startswith("wrong token")
        with Client(url) as client:  # no token given: the client reads the file of that port
            assert QUICK in {s["id"] for s in client.scenarios()}
            with pytest.raises(ApiError, match="404"):
                client._call("GET", "/sessions/no-such-session")
        assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    assert token not in "".join(lines), "the token was printed"
    assert not token_path.exists(), "the token file outlived its server"
    assert cluster.kubectl("get", "namespace", "serving").returncode == 0, "serve-api stopped a cluster it reused"
