"""The agent API's bearer token, over real HTTP on loopback (uvicorn), without a cluster.

Why no cluster: the token is checked before any route runs, and the one route
used to show that the right token works (the catalogue) reads scenario files
only. The app's cluster factory fails loudly if anything reaches for a cluster.
The same checks against the session cluster, through `mlops-drill serve-api`
itself and from inside a pod, are in tests/test_agent_api.py and
tests/test_pod_sandbox.py.
"""
from __future__ import annotations

import os
import stat

import httpx
import pytest

from mlops_drill.errors import DrillError
from mlops_drill.server import auth, create_app, serving
from mlops_drill.server.client import ApiError, Client

ROUTES = [("GET", "/api/v1/scenarios"), ("POST", "/api/v1/sessions"), ("GET", "/api/v1/sessions/x"),
          ("POST", "/api/v1/sessions/x/commands"), ("POST", "/api/v1/sessions/x/hypotheses"),
          ("POST", "/api/v1/sessions/x/diagnosis"), ("POST", "/api/v1/sessions/x/finish"),
          ("GET", "/api/v1/sessions/x/transcript"), ("GET", "/api/v1/no-such-route"), ("GET", "/")]


def _no_cluster():
    raise AssertionError("this request reached for the cluster; these tests have none")


@pytest.fixture(scope="module")
def api():
    app = create_app(_no_cluster)
    with serving(app) as url:
        yield url, app.state.api_token


@pytest.fixture
def state(tmp_path, monkeypatch):
    """The user's state directory (where serve-api writes token files), in a folder of this test's own."""
    monkeypatch.setenv("MLOPS_DRILL_STATE", str(tmp_path))
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    return tmp_path


def test_the_right_token_opens_the_api(api):
    url, token = api
    response = httpx.get(f"{url}/api/v1/scenarios", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200 and "gpu-missing-toleration" in {s["id"] for s in response.json()}
    unknown = httpx.get(f"{url}/api/v1/sessions/nope", headers={"Authorization": f"bearer {token}"}, timeout=30)
    assert unknown.status_code == 404, unknown.text  # past the token: the route's own answer


@pytest.mark.parametrize("method,path", ROUTES)
def test_no_token_is_401_with_a_one_line_detail(api, method, path):
    url, _ = api
    response = httpx.request(method, url + path, json={"scenario": "gpu-missing-toleration"}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    detail = response.json()["detail"]
    assert detail.startswith("missing token: send `Authorization: Bearer <token>`") and "\n" not in detail


@pytest.mark.parametrize("header", ["Bearer wrong-token-wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "Bearer é"])
def test_a_wrong_token_is_401(api, header):
    url, token = api
    for method, path in ROUTES:
        response = httpx.request(method, url + path, headers={"Authorization": header.encode()}, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["detail"].startswith("wrong token"), response.text
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    response = httpx.get(f"{url}/api/v1/scenarios", headers={"Authorization": f"Bearer {near}"}, timeout=30)
    assert response.status_code == 401


def test_a_malformed_body_without_a_token_is_401_not_a_validation_error(api):
    url, _ = api
    response = httpx.post(f"{url}/api/v1/sessions", content=b"{not json", timeout=30)
    assert response.status_code == 401, response.text


def test_the_schema_and_its_pages_stay_open_and_declare_the_bearer_scheme(api):
    url, _ = api
    for path in ("/docs", "/redoc"):
        assert httpx.get(url + path, timeout=30).status_code == 200, path
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    start = schema["paths"]["/api/v1/sessions"]["post"]
    assert start["security"] == [{"HTTPBearer": []}] and "401" in start["responses"]


def test_client_takes_the_token_as_an_argument(api, state):
    url, token = api
    with Client(url, token=token) as client:
        assert any(s["id"] == "gpu-missing-toleration" for s in client.scenarios())
    with Client(url) as client, pytest.raises(ApiError, match="HTTP 401: missing token") as raised:
        client.scenarios()
    assert raised.value.status == 401


def test_client_reads_the_env_var_before_the_token_file(api, state, monkeypatch):
    url, token = api
    port = httpx.URL(url).port
    auth.write_token_file(port, "a-stale-token-from-an-older-server")
    monkeypatch.setenv(auth.TOKEN_ENV, token)
    with Client(url) as client:
        assert client.scenarios()
    monkeypatch.delenv(auth.TOKEN_ENV)
    with Client(url) as client, pytest.raises(ApiError, match="HTTP 401: wrong token"):
        client.scenarios()


def test_client_reads_the_token_file_of_its_local_port_only(api, state):
    url, token = api
    port = httpx.URL(url).port
    path = auth.write_token_file(port, token)
    assert path == state / "agent-api" / f"port-{port}.token"
    with Client(url) as client:
        assert client.scenarios()
    with Client(url.replace("127.0.0.1", "localhost")) as client:
        assert client.scenarios()
    # Another host on the same port (a tunnel, a typo): this machine's token is not sent there.
    assert auth.find_token(f"http://192.0.2.1:{port}") is None
    assert auth.find_token(f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}") is None


def test_the_token_file_is_private_even_if_it_was_not(state):
    path = auth.token_file(8765)
    path.parent.mkdir(parents=True)
    path.write_text("old")
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o755)
    assert auth.write_token_file(8765, "x" * 20) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_text() == "x" * 20 + "\n"
    auth.remove_token_file(path, "another-server-token")
    assert path.exists(), "a newer server's file is left alone"
    auth.remove_token_file(path, "x" * 20)
    assert not path.exists()


@pytest.mark.parametrize("bad", ["short", "has a space in it somewhere", "tab\tinside-the-token-x", "é" * 20])
def test_a_token_that_cannot_be_one_is_refused_in_one_line(bad):
    with pytest.raises(DrillError, match=r"^--token / \$MLOPS_DRILL_API_TOKEN: a token is at least 16 visible"):
        auth.checked_token(bad, "--token / $MLOPS_DRILL_API_TOKEN")
    assert auth.checked_token("A" * 16, "x") == "A" * 16


def test_every_app_has_a_token_of_its_own():
    first, second = create_app(_no_cluster), create_app(_no_cluster)
    assert first.state.api_token != second.state.api_token and len(first.state.api_token) >= 40
    assert create_app(_no_cluster, token="given-token-given-token").state.api_token == "given-token-given-token"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_api_refuses_a_token_that_cannot_be_one_before_touching_a_cluster(state, how):
    import subprocess
    import sys

    argv = [sys.executable, "-m", "mlops_drill.cli", "serve-api", "--name", "no-such-cluster"]
    env = dict(os.environ)
    if how == "flag":
        argv += ["--token", "short"]
    else:
        env[auth.TOKEN_ENV] = "a token with spaces in it"
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: --token / $MLOPS_DRILL_API_TOKEN: a token is at least 16 visible ASCII characters, no spaces "
        "(leave it unset for a random one)"], result.stderr
    assert not (state / "clusters").exists(), "no cluster was started for a bad token"
