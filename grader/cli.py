"""The grader's commands on the ``mlops-drill`` CLI: grade, state, record.

Why ``diagnose``/``hypothesize``/``hint`` only append and print no verdict:
they run inside a live drill, and telling the candidate whether a hypothesis
is right would turn the drill into guessing. The verdict comes with the grade.
"""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from mlops_drill.errors import DrillError

FORMAT_HELP = "rich | md | html | json"


def _load_scenario(ref: str):
    """A scenario id (built-in or from a pack folder), or a path to a scenario YAML (for authors testing a draft)."""
    from mlops_drill.scenarios.loader import load_scenario
    from mlops_drill.scenarios.packs import find_scenario

    path = Path(ref)
    if ref.endswith((".yaml", ".yml")) or path.is_file():
        return load_scenario(path)
    return load_scenario(find_scenario(ref))


def _session_transcript() -> Path:
    from mlops_drill.grader.transcript import TRANSCRIPT_ENV

    value = os.environ.get(TRANSCRIPT_ENV)
    if not value:
        raise DrillError(f"no drill session here (${TRANSCRIPT_ENV} is not set): run this inside "
                         "`mlops-drill shell`")
    return Path(value)


def grade_transcript(
    file: Path = typer.Argument(..., help="transcript: ours (.jsonl), bash history, script "
                                          "typescript, asciinema v2 cast or a plain list"),
    scenario: str = typer.Option(..., "--scenario", "-s", help="scenario id or YAML path"),
    fmt: str = typer.Option("rich", "--format", "-f", help=FORMAT_HELP),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
    seed: Optional[int] = typer.Option(None, "--seed", help="the variant of a parameterised scenario (default: "
                                                            "the values the transcript's `finish` recorded)"),
) -> None:
    """Grade a recorded session against a scenario's expected reasoning."""
    from mlops_drill.grader.grade import grade
    from mlops_drill.grader.importers import load_recording
    from mlops_drill.grader.render import FORMATS, print_terminal, render

    if fmt not in FORMATS:
        raise DrillError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    recording = load_recording(file)
    sc = _variant_of(_load_scenario(scenario), recording, seed, file)
    graded = grade(recording, sc)
    if out is not None:
        out.write_text(render(graded, fmt), encoding="utf-8")
        typer.echo(f"score {graded.score:g}/100 written to {out}", err=True)
    elif fmt == "rich":
        from rich.console import Console

        print_terminal(graded, Console(highlight=False))
    else:
        sys.stdout.write(render(graded, fmt))


def _variant_of(sc, recording, seed: Optional[int], file: Path):
    """The variant to grade against: ``--seed``, else the values `finish` wrote into the transcript.

    Why the recorded values and not a re-draw from the recorded seed: a draw indexes into the scenario's
    choices as the file lists them today, so a file whose choices were reordered or extended since the drill
    would silently grade another incident. The recorded seed is used only by transcripts that carry no values.
    """
    from mlops_drill.scenarios.variants import check_values, draw, render

    if not sc.parameters:
        if seed is not None:
            raise DrillError(f"--seed {seed}: scenario {sc.id} declares no parameters, so it has no variants")
        return sc
    if seed is not None:
        return render(sc, draw(sc, seed), seed)
    recorded = [e.data for e in recording.events
                if e.kind == "session" and e.data.get("action") == "variant" and e.data.get("scenario") == sc.id]
    if not recorded:
        raise DrillError(f"{file}: scenario {sc.id} has variants and this transcript records none: pass --seed N "
                         "(the graded report of the drill names it)")
    last = recorded[-1]
    recorded_seed = last.get("seed")
    if type(recorded_seed) is not int:
        raise DrillError(f"{file}: the recorded variant of {sc.id} has no whole-number seed "
                         f"({recorded_seed!r}): pass --seed N")
    values = last.get("values")
    if values is None:
        return render(sc, draw(sc, recorded_seed), recorded_seed)
    if not isinstance(values, dict):
        raise DrillError(f"{file}: the recorded variant of {sc.id} has values that are not a mapping: pass --seed N")
    check_values(sc, values, f"{file}: recorded variant of {sc.id}")
    return render(sc, values, recorded_seed)


def _record_statement(kind: str, verb: str, words: list[str]) -> None:
    from mlops_drill.grader.transcript import append

    text = " ".join(words).strip()
    if not text:
        raise DrillError(f"mlops-drill {verb}: say what you think, e.g. "
                         f"mlops-drill {verb} \"the new revision lost its GPU toleration\"")
    path = _session_transcript()
    append(path, kind, line=shlex.join(["mlops-drill", verb, text]), data={"text": text},
           argv=["mlops-drill", verb, *words], cwd=os.getcwd(), exit_code=0)
    typer.echo(f"{kind} recorded; it is graded at the end, not now.")


def diagnose(text: List[str] = typer.Argument(..., help="the root cause, in your words")) -> None:
    """State your final diagnosis (the last one counts)."""
    _record_statement("diagnosis", "diagnose", text)


def hypothesize(text: List[str] = typer.Argument(..., help="a cause you suspect")) -> None:
    """Declare a hypothesis; any number, the time to the first correct one is reported."""
    _record_statement("hypothesis", "hypothesize", text)


def hint() -> None:
    """Reveal the next hint of the current scenario (costs points; earlier costs more)."""
    from mlops_drill.grader.shell import SCENARIO_ENV
    from mlops_drill.grader.transcript import append, read_transcript

    path = _session_transcript()
    scenario_id = os.environ.get(SCENARIO_ENV)
    if not scenario_id:
        raise DrillError(f"no scenario in this session (${SCENARIO_ENV} is not set)")
    sc = _load_scenario(scenario_id)
    used = sum(e.kind == "hint" for e in read_transcript(path).events) if path.exists() else 0
    if used >= len(sc.hints):
        typer.echo(f"no more hints: all {len(sc.hints)} used.")
        return
    append(path, "hint", line="mlops-drill hint", data={"index": used}, argv=["mlops-drill", "hint"],
           cwd=os.getcwd(), exit_code=0)
    typer.echo(f"hint {used + 1}/{len(sc.hints)}: {sc.hints[used].text}")


def shell(
    kubeconfig: Optional[Path] = typer.Option(None, "--kubeconfig", help="the candidate's kubeconfig"),
    transcript: Optional[Path] = typer.Option(None, "--transcript", help="JSONL transcript to append to"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="scenario id shown in the prompt"),
) -> None:
    """Open the recorded troubleshooting shell (bash); by default for the scenario running now."""
    from mlops_drill.grader.shell import STARTED_ENV, find_real_tools, run_shell

    if kubeconfig is None or transcript is None or scenario is None:
        if _SESSIONS is None:
            raise DrillError("no running scenario known here: pass --kubeconfig, --transcript and --scenario")
        current = _SESSIONS()
        kubeconfig = kubeconfig or Path(current["kubeconfig"])
        transcript = transcript or Path(current["transcript"])
        scenario = scenario or current["scenario"]

    started = float(os.environ.get(STARTED_ENV) or _session_started(transcript) or time.time())
    code = run_shell(transcript, kubeconfig, scenario, find_real_tools(), started)
    raise typer.Exit(code)


def _session_started(path: Path) -> float | None:
    """The engine's recorded start, so the prompt's timer counts from the fault, not the shell."""
    from mlops_drill.grader.transcript import read_transcript

    if not path.is_file():
        return None
    for event in read_transcript(path).events:
        if event.kind == "session" and "started_at" in event.data:
            return float(event.data["started_at"])
    return None


_SESSIONS: Any = None  # () -> {"kubeconfig", "transcript", "scenario"} of the running drill, from the engine


def register(app: typer.Typer, context: Any = None) -> None:
    """Add the grader's commands to the main CLI.

    ``context``, when given, is a callable returning the running session (kubeconfig,
    transcript, scenario): the engine's, so `mlops-drill shell` needs no arguments.
    """
    global _SESSIONS
    _SESSIONS = context
    app.command("grade-transcript")(grade_transcript)
    app.command("diagnose")(diagnose)
    app.command("hypothesize")(hypothesize)
    app.command("hint")(hint)
    app.command("shell")(shell)
