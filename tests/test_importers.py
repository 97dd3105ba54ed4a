"""Recordings made elsewhere become the lines the candidate typed, with times where known.

Each test writes one fixture file in the format's real shape (bash's
HISTTIMEFORMAT file, util-linux ``script`` output with readline's redraws,
an asciinema v2 cast) and imports it through the public entry point.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_drill.errors import DrillError
from mlops_drill.grader.importers import detect_format, import_transcript, load_recording
from mlops_drill.grader.transcript import read_transcript, write_transcript


def _lines(events) -> list[str]:
    return [e.line for e in events]


def test_bash_history_with_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "bash_history"
    path.write_text("#1700000000\nkubectl get pods -n serving\n#1700000042\n"
                    "kubectl describe pod -n serving fraud-model-1\n#1700000100\n"
                    "for p in a b; do\n  kubectl logs $p\ndone\n")
    events = import_transcript(path)
    assert _lines(events) == ["kubectl get pods -n serving",
                              "kubectl describe pod -n serving fraud-model-1",
                              "for p in a b; do\n  kubectl logs $p\ndone"]
    assert [e.ts for e in events] == [1700000000.0, 1700000042.0, 1700000100.0]
    assert all(e.kind == "shell" and not e.data.get("synthetic_ts") for e in events)


def test_bash_history_bad_timestamp_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bash_history"
    path.write_text("#1700000000\nkubectl get pods\n#17000x\nkubectl get nodes\n")
    with pytest.raises(DrillError, match=rf"^{path}:3: bad history timestamp"):
        import_transcript(path)


def test_script_typescript_replays_line_editing(tmp_path: Path) -> None:
    """Backspace, history recall (erase + redraw) and continuation lines, as readline echoes them."""
    path = tmp_path / "session.typescript"
    raw = (
        'Script started on 2024-03-01 10:00:00+00:00 [COMMAND="bash" TERM="xterm"]\n'
        "\x1b[?2004hana@box:~$ kubectl get podz\b \bs -n serving\r\n\x1b[?2004l\r"
        "NAME                 READY   STATUS    RESTARTS   AGE\r\n"
        "fraud-model-1        0/1     Pending   0          3m\r\n"
        "# this is output, not a command\r\n"
        "\x1b[?2004hana@box:~$ curl -s localhost:8080/healthz \\\r\n> -H 'x: 1'\r\n"
        "ok\r\n"
        "\x1b[?2004hana@box:~$ kubectl describe nod\b\x1b[Kde gpu-node-0\r\n"
        "Name: gpu-node-0\r\n"
        "\x1b[?2004hana@box:~$ echo old\rana@box:~$ kubectl get events -n serving\x1b[K\r\n"
        "\x1b[?2004hana@box:~$ exit\r\n"
        "\nScript done on 2024-03-01 10:05:00+00:00 [COMMAND_EXIT_CODE=\"0\"]\n"
    )
    path.write_bytes(raw.encode())
    assert detect_format(raw) == "typescript"
    events = import_transcript(path)
    assert _lines(events) == ["kubectl get pods -n serving",
                              "curl -s localhost:8080/healthz -H 'x: 1'",
                              "kubectl describe node gpu-node-0",
                              "kubectl get events -n serving", "exit"]
    assert events[0].data["synthetic_ts"] and events[1].ts - events[0].ts == 1.0


def test_asciinema_cast_commands_from_output_with_times(tmp_path: Path) -> None:
    path = tmp_path / "drill.cast"
    rows = [{"version": 2, "width": 100, "height": 30, "timestamp": 1700000000},
            [0.5, "o", "\x1b[1;36mdrill:gpu-missing-toleration\x1b[0m \x1b[33m00:00\x1b[0m "
                       "work $ "],
            [1.0, "i", "kubectl get po"], [1.0, "o", "kubectl get po"],
            [1.4, "i", "\r"], [1.4, "o", "\r\n"],
            [1.9, "o", "NAME  READY\r\nfraud-model-1 0/1\r\n"],
            [2.0, "o", "drill:gpu-missing-toleration 00:01 work $ "],
            [5.0, "o", "kubectl describe node gpu-node-0\r\n"],
            [6.0, "o", "drill:gpu-missing-toleration 00:06 work $ "]]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    events = import_transcript(path)
    assert _lines(events) == ["kubectl get po", "kubectl describe node gpu-node-0"]
    assert [e.ts for e in events] == [1700000001.4, 1700000005.0]


def test_asciinema_falls_back_to_keystrokes_when_no_prompt_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "keys.cast"
    rows = [{"version": 2, "width": 80, "height": 24, "timestamp": 1700000000},
            [0.1, "o", ">>> "], [1.0, "i", "kubectl get nodez"], [1.2, "i", "\x7fs"],
            [1.3, "i", "\r"], [2.0, "i", "garbage\x15curl -s localhost:8080/metadata\r"]]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert _lines(import_transcript(path)) == ["kubectl get nodes",
                                               "curl -s localhost:8080/metadata"]


def test_asciinema_bad_event_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.cast"
    path.write_text(json.dumps({"version": 2, "width": 80, "height": 24}) + "\n"
                    '[0.1, "o", "$ "]\n[oops]\n')
    with pytest.raises(DrillError, match=rf"^{path}:3: expected \[time, code, data\]"):
        import_transcript(path)


def test_asciinema_v1_is_refused_with_a_way_out(tmp_path: Path) -> None:
    path = tmp_path / "old.cast"
    path.write_text(json.dumps({"version": 1, "stdout": []}) + "\n")
    with pytest.raises(DrillError, match="asciinema convert"):
        import_transcript(path)


def test_plain_list_of_commands(tmp_path: Path) -> None:
    path = tmp_path / "answer.txt"
    path.write_text("# my answer\n$ kubectl get pods -n serving\n\n"
                    "kubectl logs -n serving \\\n  deploy/fraud-model\ncurl -s localhost/metadata\n")
    events = import_transcript(path)
    assert _lines(events) == ["kubectl get pods -n serving",
                              "kubectl logs -n serving deploy/fraud-model",
                              "curl -s localhost/metadata"]
    assert all(e.data["synthetic_ts"] for e in events)


def test_native_transcript_keeps_its_tamper_verdict(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    write_transcript(path, [{"ts": 1.0, "kind": "shell", "line": "kubectl get pods"},
                            {"ts": 2.0, "kind": "shell", "line": "kubectl get nodes"}])
    assert load_recording(path).tamper is None
    text = path.read_text().replace("get nodes", "get events")
    path.write_text(text)
    assert load_recording(path).first_broken_seq == 1
    assert read_transcript(path).first_broken_seq == 1


def test_imported_events_form_an_intact_chain(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("kubectl get pods\nkubectl get nodes\n")
    out = tmp_path / "out.jsonl"
    write_transcript(out, import_transcript(path))
    assert read_transcript(out).tamper is None


def test_binary_and_empty_inputs_are_one_line_errors(tmp_path: Path) -> None:
    binary = tmp_path / "core"
    binary.write_bytes(b"\x7fELF\x00\x00\x01")
    with pytest.raises(DrillError, match=rf"^{binary}:1: binary data"):
        import_transcript(binary)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing here\n")
    with pytest.raises(DrillError, match=rf"^{empty}: no commands found"):
        import_transcript(empty)
    with pytest.raises(DrillError, match="cannot read"):
        import_transcript(tmp_path / "missing.txt")


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_text_imports_or_fails_with_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "input"
    path.write_text(text, encoding="utf-8")
    try:
        events = import_transcript(path)
    except DrillError as err:
        assert "\n" not in str(err)
    else:
        assert events
