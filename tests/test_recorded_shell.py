"""The recorded shell through a real pseudo-terminal (pexpect), as a candidate uses it.

Most tests here need no cluster, so ``kubectl`` is a FAKE REAL TOOL, a small sh
script in tmp that prints and exits with chosen codes (streaming, tty, stdin on
demand). ``test_real_kubectl_on_the_cluster_keeps_its_exit_code`` types into the
same shell with the real pinned kubectl and the candidate's kubeconfig on the
session cluster. ``curl`` is the real curl against a local http.server.
Everything between the keyboard and those tools (bash, the generated rcfile, the
shims, the recorder, the transcript) is the real thing.
"""
from __future__ import annotations

import http.server
import socket
import sys
import textwrap
import threading
from pathlib import Path
from typing import Iterator

import pexpect
import pytest

from mlops_drill.grader.transcript import Event, read_transcript

FAKE_KUBECTL = textwrap.dedent("""\
    #!/bin/sh
    # FAKE real kubectl for tests: behaviour chosen by the first argument.
    case "$1" in
      get) echo "NAME            READY   STATUS"; echo "fraud-model-1   0/1     Pending";;
      fail) echo "Error from server (NotFound): pods \\"nope\\" not found" >&2; exit 3;;
      logs) i=0; while :; do echo "log line $i"; i=$((i+1)); sleep 0.1; done;;
      stdin) cat;;
      tty) if [ -t 1 ]; then echo "stdout is a tty"; else echo "stdout is not a tty"; fi;;
      *) echo "fake kubectl: $*";;
    esac
    """)
PROMPT = r"drillwork [#$] "


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b"ok\n" if self.path == "/healthz" else b"{}\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Session:
    """One recorded shell on a pty; ``run`` types a line and waits for the next prompt."""

    def __init__(self, tmp: Path, scenario: str = "gpu-missing-toleration", kubectl: Path | None = None,
                 kubeconfig: Path | None = None) -> None:
        self.transcript = tmp / "session.jsonl"
        work = tmp / "drillwork"
        work.mkdir()
        if kubectl is None:
            kubectl = tmp / "fake-kubectl"
            kubectl.write_text(FAKE_KUBECTL)
            kubectl.chmod(0o755)
        if kubeconfig is None:
            kubeconfig = tmp / "kubeconfig"
            kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
        code = textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from mlops_drill.grader.shell import run_shell
            sys.exit(run_shell({str(self.transcript)!r}, {str(kubeconfig)!r},
                               {scenario!r},
                               {{"kubectl": Path({str(kubectl)!r}), "curl": Path("/usr/bin/curl")}},
                               time.time(), source_user_rc=False))
            """)
        self.child = pexpect.spawn(sys.executable, ["-c", code], cwd=str(work),
                                   encoding="utf-8", timeout=20, dimensions=(40, 200))
        self.child.expect(PROMPT)
        self.first_prompt = self.child.before + self.child.after

    def run(self, line: str) -> str:
        self.child.sendline(line)
        self.child.expect(PROMPT)
        return self.child.before

    def events(self, kind: str | None = None) -> list[Event]:
        read = read_transcript(self.transcript)
        assert read.tamper is None
        return [e for e in read.events if kind is None or e.kind == kind]

    def close(self) -> None:
        if self.child.isalive():
            self.child.sendline("exit")
            self.child.expect(pexpect.EOF)
        self.child.close(force=True)


@pytest.fixture()
def shell(tmp_path: Path) -> Iterator[Session]:
    session = Session(tmp_path)
    try:
        yield session
    finally:
        session.close()


def test_prompt_shows_scenario_and_timer(shell: Session) -> None:
    assert "drill:gpu-missing-toleration" in shell.first_prompt
    assert "00:0" in shell.first_prompt


def test_typed_commands_land_with_exit_codes_and_output(shell: Session) -> None:
    out = shell.run("kubectl get pods -n serving")
    assert "fraud-model-1   0/1     Pending" in out
    commands = shell.events("command")
    assert [(e.argv, e.exit_code) for e in commands] == [
        (["kubectl", "get", "pods", "-n", "serving"], 0)]
    assert "Pending" in commands[0].stdout and commands[0].cwd.endswith("drillwork")
    shells = shell.events("shell")
    assert [(e.line, e.exit_code) for e in shells] == [("kubectl get pods -n serving", 0)]


def test_failing_kubectl_keeps_its_exit_code(shell: Session) -> None:
    out = shell.run('kubectl fail; echo "rc=$?"')
    assert "rc=3" in out and "NotFound" in out
    assert [e.exit_code for e in shell.events("command")] == [3]
    assert shell.events("shell")[-1].line == 'kubectl fail; echo "rc=$?"'


def test_ctrl_c_stops_a_streaming_command(shell: Session) -> None:
    shell.child.sendline("kubectl logs -f deploy/fraud-model -n serving")
    shell.child.expect("log line 3")
    shell.child.sendintr()
    shell.child.expect(PROMPT)
    assert "rc=130" in shell.run('echo "rc=$?"')
    logs = shell.events("command")[-1]
    assert logs.exit_code == 130 and "log line 0" in logs.stdout


def test_real_curl_passes_through(shell: Session, server: str) -> None:
    assert "ok" in shell.run(f"curl -s {server}/healthz")
    with socket.socket() as s:  # a port nobody listens on: curl's own exit code 7
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert "rc=7" in shell.run(f'curl -s http://127.0.0.1:{closed}/x; echo "rc=$?"')
    curls = shell.events("command")
    assert [(e.argv[0], e.exit_code) for e in curls] == [("curl", 0), ("curl", 7)]
    assert curls[0].stdout.strip() == "ok"


def test_pipes_stdin_and_tty_are_unchanged(shell: Session) -> None:
    assert "HELLO" in shell.run("echo hello | kubectl stdin | tr a-z A-Z")
    assert "stdout is a tty" in shell.run("kubectl tty")
    assert "stdout is not a tty" in shell.run("kubectl tty | cat")
    captures = [(e.argv[1], e.data["capture"]) for e in shell.events("command")]
    assert captures == [("stdin", "pipe"), ("tty", "pty"), ("tty", "pipe")]


def test_bypassing_the_shim_is_still_in_the_history(shell: Session, tmp_path: Path) -> None:
    shell.run(f"{tmp_path / 'fake-kubectl'} get nodes")
    assert shell.events("command") == []
    assert shell.events("shell")[-1].line.endswith("fake-kubectl get nodes")


def test_hypothesis_typed_in_the_shell_is_recorded(shell: Session) -> None:
    if not Path(sys.executable).with_name("mlops-drill").exists():
        pytest.skip("mlops-drill is not installed next to this interpreter")
    out = shell.run('mlops-drill hypothesize "the GPU taint is not tolerated"')
    assert "recorded" in out
    kinds = [e.kind for e in shell.events()]
    assert kinds == ["session", "hypothesis", "shell"]


def test_session_start_and_end_are_recorded(tmp_path: Path) -> None:
    session = Session(tmp_path)
    session.run("kubectl get pods")
    session.close()
    events = read_transcript(session.transcript).events
    assert events[0].data["action"] == "shell-start"
    assert events[-1].data == {"action": "shell-end", "exit_code": 0}


@pytest.mark.cluster
def test_real_kubectl_on_the_cluster_keeps_its_exit_code(platform, cluster, tmp_path: Path) -> None:
    from mlops_drill.injector import baseline

    session = Session(tmp_path, kubectl=cluster.kubectl_path, kubeconfig=baseline.candidate_kubeconfig_path(platform))
    try:
        assert "fraud-model" in session.run("kubectl get deploy -n serving")
        out = session.run('kubectl get pod no-such-pod -n serving; echo "rc=$?"')
        assert "rc=1" in out and 'pods "no-such-pod" not found' in out
        out = session.run('kubectl get configmaps -n mlops-drill-system; echo "rc=$?"')
        assert "rc=1" in out and "forbidden" in out.lower()
        commands = session.events("command")
        assert [(e.argv[1:3], e.exit_code) for e in commands] == [
            (["get", "deploy"], 0), (["get", "pod"], 1), (["get", "configmaps"], 1)]
        # On a terminal the recorder captures what the candidate saw: stderr merged into stdout.
        assert commands[1].data["capture"] == "pty" and 'pods "no-such-pod" not found' in commands[1].stdout
    finally:
        session.close()
