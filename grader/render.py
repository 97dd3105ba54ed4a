"""One graded transcript, four faces: terminal (rich), Markdown, HTML, JSON.

Why four: the candidate reads the terminal, instructors paste Markdown into
reviews, HTML is mailed or archived (so it is one self-contained file: inline
CSS, no scripts, no external assets) and JSON feeds dashboards (``score``
top-level, ``dimension_scores`` flat). All four show the same facts in the same
order; none adds judgement of its own.
"""
from __future__ import annotations

import html
import io
import json
from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from mlops_drill.errors import DrillError
from mlops_drill.grader.report import GradedTranscript

Format = Literal["rich", "md", "html", "json"]
FORMATS = ("rich", "md", "html", "json")
_STATUS_LABEL = {"step": "step", "repeat": "repeat", "redundant": "redundant", "failed": "failed",
                 "unmatched": "unmatched", "other": "-", "diagnosis": "diagnosis",
                 "hypothesis": "hypothesis", "hint": "hint", "verification": "verification",
                 "ruled-out": "red herring ruled out"}
_STATUS_STYLE = {"step": "green", "repeat": "cyan", "redundant": "yellow", "failed": "red",
                 "unmatched": "yellow", "other": "dim", "diagnosis": "magenta",
                 "hypothesis": "magenta", "hint": "red", "verification": "blue", "ruled-out": "green"}


def _herring_lines(graded: GradedTranscript) -> list[str]:
    """One plain line per red herring: how it was treated, and why it was harmless."""
    said = {"ruled-out": "ruled out at #{}", "touched": "'fixed' at #{} (penalised)", "ignored": "left alone"}
    return [f"{h.signal}: " + said[h.treatment].format(h.touched_at if h.treatment == "touched" else h.ruled_out_at)
            + f" - {h.reason}" for h in graded.red_herrings]


def render(graded: GradedTranscript, fmt: str, *, width: int = 120, color: bool = False) -> str:
    """The graded transcript as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        return to_json(graded)
    if fmt == "md":
        return to_markdown(graded)
    if fmt == "html":
        return to_html(graded)
    if fmt == "rich":
        return to_terminal(graded, width=width, color=color)
    raise DrillError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def _step_cell(c) -> str:
    if c.step:
        return f"{c.step} ({_STATUS_LABEL[c.status]})"
    return _STATUS_LABEL[c.status]


# --------------------------------------------------------------------------- JSON

def to_json(graded: GradedTranscript) -> str:
    body = graded.model_dump(mode="json")
    out = {"score": body.pop("score"),
           "dimension_scores": {d.name: d.score for d in graded.dimensions}, **body}
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- terminal

def to_terminal(graded: GradedTranscript, *, width: int = 120, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, color_system="standard"
                      if color else None, highlight=False, soft_wrap=False)
    print_terminal(graded, console)
    return buf.getvalue()


def print_terminal(graded: GradedTranscript, console: Console) -> None:
    """Straight onto a console, so a real terminal gets colours and its own width."""
    head = f"[bold]{escape(graded.title)}[/bold] ({escape(graded.scenario)})\n" \
           f"[bold]score {graded.score:g}/100[/bold]"
    if graded.seed is not None:
        head += f"\nvariant {escape(graded.variant_text())}"
    if graded.tamper:
        head += f"\n[red]TRANSCRIPT EDITED: {escape(graded.tamper)}[/red]"
    console.print(Panel(head, expand=False))

    dims = Table(title="Dimensions", show_lines=False)
    for col in ("dimension", "score", "weight", "points", "detail"):
        dims.add_column(col, justify="right" if col in ("score", "weight", "points") else "left")
    for d in graded.dimensions:
        dims.add_row(d.name, f"{d.score:g}", f"{d.weight:g}", f"{d.contribution:+g}",
                     escape(d.detail))
    for x in graded.deductions:
        dims.add_row(f"- {x.kind}", "", "", f"{-x.points:+g}", escape(f"{x.id}: {x.why}"))
    console.print(dims)

    cmds = Table(title="Graded transcript", show_lines=False)
    for col in ("#", "t", "command", "step", "notes"):
        cmds.add_column(col, overflow="fold")
    for c in graded.commands:
        style = _STATUS_STYLE[c.status]
        notes = list(c.notes)
        if c.reason and c.status == "step":
            notes.insert(0, f"why: {c.reason}")
        exit_mark = f" [red](exit {c.exit_code})[/red]" if c.exit_code not in (None, 0) else ""
        cmds.add_row(str(c.index), _mmss(c.t), escape(c.line) + exit_mark,
                     f"[{style}]{escape(_step_cell(c))}[/{style}]",
                     escape("\n".join(notes)))
    console.print(cmds)

    if graded.missed:
        console.print("[bold]Missed steps[/bold]")
        for m in graded.missed:
            cmd = f"  `{escape(m.command)}`" if m.command else ""
            console.print(f"  - {escape(m.title)}{cmd}\n    [dim]{escape(m.reason)}[/dim]")
    if graded.strong_next:
        console.print("[bold]What a strong answer would have done next[/bold]")
        for line in graded.strong_next:
            console.print(f"  - {escape(line)}")
    if graded.red_herrings:
        console.print("[bold]Red herrings[/bold] (true, harmless: rule them out, do not fix them)")
        for line in _herring_lines(graded):
            console.print(f"  - {escape(line)}")
    _terminal_extras(graded, console)


def _terminal_extras(graded: GradedTranscript, console: Console) -> None:
    t = graded.times
    console.print("[bold]Times[/bold] (from session start; AIOpsLab-style)"
                  + (" [dim]synthetic timestamps[/dim]" if graded.timing_synthetic else ""))
    console.print(f"  first evidence {_mmss(t.to_first_evidence)}, localisation "
                  f"{_mmss(t.to_localisation)}, root cause {_mmss(t.to_root_cause)}, "
                  f"mitigation {_mmss(t.to_mitigation)}, elapsed {_mmss(t.elapsed)}")
    if graded.hypotheses:
        console.print(f"[bold]Hypotheses[/bold] (first correct at "
                      f"{_mmss(t.to_first_correct_hypothesis)}, "
                      f"{t.fixes_before_correct_hypothesis} fix(es) attempted before it)")
        for h in graded.hypotheses:
            mark = "[green]correct[/green]" if h.correct else "[yellow]wrong[/yellow]"
            console.print(f"  {_mmss(h.t)} {mark} {escape(h.text)}")
    if graded.hints:
        console.print("[bold]Hints[/bold]")
        for h in graded.hints:
            console.print(f"  {_mmss(h.t)} hint {h.index + 1} (-{h.cost:g}): {escape(h.text)}")
    d = graded.diagnosis
    console.print("[bold]Diagnosis[/bold]: " + ("none stated" if d.text is None else
                  f"{'[green]accepted[/green]' if d.accepted else '[red]not accepted[/red]'}"
                  f" - {escape(d.text)}"))


# --------------------------------------------------------------------------- Markdown

def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(graded: GradedTranscript) -> str:
    out = [f"# {graded.title} ({graded.scenario})", "", f"**Score: {graded.score:g}/100**", ""]
    if graded.seed is not None:
        out += [f"Variant {_md(graded.variant_text())}", ""]
    if graded.tamper:
        out += [f"> **Transcript edited:** {graded.tamper}", ""]
    out += ["| dimension | score | weight | points | detail |", "|---|---:|---:|---:|---|"]
    for d in graded.dimensions:
        out.append(f"| {d.name} | {d.score:g} | {d.weight:g} | {d.contribution:+g} | "
                   f"{_md(d.detail)} |")
    for x in graded.deductions:
        out.append(f"| - {x.kind} | | | {-x.points:+g} | {_md(x.id + ': ' + x.why)} |")
    out += ["", "## Graded transcript", "", "| # | t | command | step | notes |",
            "|---:|---|---|---|---|"]
    for c in graded.commands:
        notes = ([f"why: {c.reason}"] if c.reason and c.status == "step" else []) + c.notes
        exit_mark = f" (exit {c.exit_code})" if c.exit_code not in (None, 0) else ""
        out.append(f"| {c.index} | {_mmss(c.t)} | `{_md(c.line)}`{exit_mark} | "
                   f"{_md(_step_cell(c))} | {_md('; '.join(notes))} |")
    if graded.missed:
        out += ["", "## Missed steps", ""]
        out += [f"- **{m.title}**" + (f": `{m.command}`" if m.command else "") + f" - {m.reason}"
                for m in graded.missed]
    if graded.strong_next:
        out += ["", "## What a strong answer would have done next", ""]
        out += [f"- {line}" for line in graded.strong_next]
    if graded.red_herrings:
        out += ["", "## Red herrings", "", "True and harmless: a senior answer rules them out, and does not fix them.", ""]
        out += [f"- {_md(line)}" for line in _herring_lines(graded)]
    t = graded.times
    out += ["", "## Times", "", "| first evidence | localisation | root cause | mitigation | "
            "elapsed |", "|---|---|---|---|---|",
            f"| {_mmss(t.to_first_evidence)} | {_mmss(t.to_localisation)} | "
            f"{_mmss(t.to_root_cause)} | {_mmss(t.to_mitigation)} | {_mmss(t.elapsed)} |"]
    if graded.hypotheses:
        out += ["", "## Hypotheses", "",
                f"First correct at {_mmss(t.to_first_correct_hypothesis)}; "
                f"{t.fixes_before_correct_hypothesis} fix(es) attempted before it.", ""]
        out += [f"- {_mmss(h.t)} {'correct' if h.correct else 'wrong'}: {h.text}"
                for h in graded.hypotheses]
    if graded.hints:
        out += ["", "## Hints", ""]
        out += [f"- {_mmss(h.t)} hint {h.index + 1} (-{h.cost:g}): {h.text}"
                for h in graded.hints]
    d = graded.diagnosis
    out += ["", "## Diagnosis", "", "None stated." if d.text is None else
            f"{'Accepted' if d.accepted else 'Not accepted'}: {d.text}"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1200px;
color:#1d2330;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}
.score{font-size:2.2em;font-weight:700}.tamper{background:#fde2e1;border:1px solid #e5534b;
padding:.6em;border-radius:6px}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border-bottom:1px solid #e3e6ea;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.n{text-align:right;white-space:nowrap}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f4f6f8;
padding:.1em .3em;border-radius:4px;word-break:break-all}
.s-step{color:#1a7f37}.s-repeat{color:#0969da}.s-redundant,.s-unmatched{color:#9a6700}
.s-failed,.s-hint{color:#cf222e}.s-other{color:#6e7781}.s-diagnosis,.s-hypothesis{color:#8250df}
.s-verification{color:#0969da}.s-ruled-out{color:#1a7f37}.why{color:#57606a}.note{display:block}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def to_html(graded: GradedTranscript) -> str:
    p: list[str] = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                    f"<title>{_e(graded.scenario)}: {graded.score:g}/100</title>",
                    f"<style>{_CSS}</style></head><body>",
                    f"<h1>{_e(graded.title)} <small>({_e(graded.scenario)})</small></h1>",
                    f'<div class="score">{graded.score:g}/100</div>']
    if graded.seed is not None:
        p.append(f'<p class="variant">Variant {_e(graded.variant_text())}</p>')
    if graded.tamper:
        p.append(f'<p class="tamper"><b>Transcript edited:</b> {_e(graded.tamper)}</p>')
    p.append("<h2>Dimensions</h2><table><tr><th>dimension</th><th>score</th><th>weight</th>"
             "<th>points</th><th>detail</th></tr>")
    for d in graded.dimensions:
        p.append(f"<tr><td>{_e(d.name)}</td><td class=n>{d.score:g}</td><td class=n>"
                 f"{d.weight:g}</td><td class=n>{d.contribution:+g}</td><td>{_e(d.detail)}</td></tr>")
    for x in graded.deductions:
        p.append(f"<tr><td>- {_e(x.kind)}</td><td></td><td></td><td class=n>{-x.points:+g}</td>"
                 f"<td>{_e(x.id)}: {_e(x.why)}</td></tr>")
    p.append("</table><h2>Graded transcript</h2><table><tr><th>#</th><th>t</th><th>command</th>"
             "<th>step</th><th>notes</th></tr>")
    for c in graded.commands:
        notes = []
        if c.reason and c.status == "step":
            notes.append(f'<span class="note why">why: {_e(c.reason)}</span>')
        notes += [f'<span class="note">{_e(n)}</span>' for n in c.notes]
        exit_mark = f" <b class=s-failed>(exit {c.exit_code})</b>" if c.exit_code not in (None, 0) \
            else ""
        p.append(f"<tr><td class=n>{c.index}</td><td class=n>{_mmss(c.t)}</td>"
                 f"<td><code>{_e(c.line)}</code>{exit_mark}</td>"
                 f'<td class="s-{c.status}">{_e(_step_cell(c))}</td><td>{"".join(notes)}</td></tr>')
    p.append("</table>")
    if graded.missed:
        p.append("<h2>Missed steps</h2><ul>")
        p += [f"<li><b>{_e(m.title)}</b>" + (f": <code>{_e(m.command)}</code>" if m.command else "")
              + f' <span class="why">{_e(m.reason)}</span></li>' for m in graded.missed]
        p.append("</ul>")
    if graded.strong_next:
        p.append("<h2>What a strong answer would have done next</h2><ul>")
        p += [f"<li>{_e(line)}</li>" for line in graded.strong_next]
        p.append("</ul>")
    if graded.red_herrings:
        p.append("<h2>Red herrings</h2><p>True and harmless: a senior answer rules them out, and does not fix "
                 "them.</p><ul>")
        p += [f"<li>{_e(line)}</li>" for line in _herring_lines(graded)]
        p.append("</ul>")
    t = graded.times
    p.append("<h2>Times</h2><table><tr><th>first evidence</th><th>localisation</th>"
             "<th>root cause</th><th>mitigation</th><th>elapsed</th></tr>"
             f"<tr><td>{_mmss(t.to_first_evidence)}</td><td>{_mmss(t.to_localisation)}</td>"
             f"<td>{_mmss(t.to_root_cause)}</td><td>{_mmss(t.to_mitigation)}</td>"
             f"<td>{_mmss(t.elapsed)}</td></tr></table>")
    if graded.hypotheses:
        p.append(f"<h2>Hypotheses</h2><p>First correct at {_mmss(t.to_first_correct_hypothesis)};"
                 f" {t.fixes_before_correct_hypothesis} fix(es) attempted before it.</p><ul>")
        p += [f"<li>{_mmss(h.t)} {'correct' if h.correct else 'wrong'}: {_e(h.text)}</li>"
              for h in graded.hypotheses]
        p.append("</ul>")
    if graded.hints:
        p.append("<h2>Hints</h2><ul>")
        p += [f"<li>{_mmss(h.t)} hint {h.index + 1} (-{h.cost:g}): {_e(h.text)}</li>"
              for h in graded.hints]
        p.append("</ul>")
    d = graded.diagnosis
    p.append("<h2>Diagnosis</h2><p>" + ("None stated." if d.text is None else
             f"{'Accepted' if d.accepted else 'Not accepted'}: {_e(d.text)}") + "</p>")
    p.append("</body></html>")
    return "\n".join(p) + "\n"
