"""The instructor's pages: one self-contained HTML file each, no external assets.

Why server-rendered rows plus a few lines of JS (and no front-end build): the
page must work offline in a classroom, show the state at once even with JS
off, and stay small enough to audit. The JS only re-fetches the dashboard and
debrief JSON every 2 s and rewrites cell text (``textContent``, never HTML),
with the same formatting as the Python below.
"""
from __future__ import annotations

import html
import json
from typing import Any

from mlops_drill.drills.model import Drill

SEAT_COLUMNS = ("seat", "state", "phase", "steps", "time", "hints", "fixed", "score", "variant")
STEP_COLUMNS = ("step", "phase", "required", "done", "in_order")

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;min-width:640px} th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3} .muted{color:#777} td.yes{color:#0a6b24;font-weight:600} td.no{color:#b3261e}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    return f"{s // 60}:{s % 60:02d}"


def seat_cells(row: dict[str, Any]) -> dict[str, str]:
    """The text of each seat column (mirrored by ``seatCells`` in the page's JS)."""
    phase = row.get("phase")
    fixed = row.get("fixed")
    return {
        "seat": str(row["seat"]),
        "state": row["state"] if row["state"] != "ready" else ("finished" if row["finished"] else
                                                                "working" if row["joined"] else "waiting to join"),
        "phase": f"{phase['index']}/{phase['of']} {phase['title']}" if phase else "-",
        "steps": f"{row['required_done']}/{row['steps_required']}" if row["steps_required"] else "-",
        "time": _mmss(row.get("elapsed_s")),
        "hints": str(row.get("hints_used", 0)),
        "fixed": "-" if fixed is None else ("yes" if fixed else "no"),
        "score": "-" if row.get("score") is None else f"{row['score']:g}",
        "variant": variant_text(row.get("seed"), row.get("values")),
    }


def variant_text(seed: int | None, values: dict[str, Any] | None) -> str:
    """``seed 7: node=gpu-node-0`` (mirrored by ``variantText`` in the page's JS); the page is the instructor's."""
    if seed is None:
        return "-"
    shown = ", ".join(f"{k}={format(v, 'g') if isinstance(v, float) else v}" for k, v in (values or {}).items())
    return f"seed {seed}" + (f": {shown}" if shown else "")


def _fixed_class(column: str, value: str) -> str:
    return f" class={value}" if column == "fixed" and value in ("yes", "no") else ""


def step_cells(step: dict[str, Any], graded: int) -> dict[str, str]:
    return {"step": step["title"], "phase": step["phase_title"], "required": "yes" if step["required"] else "no",
            "done": f"{step['done']}/{graded}", "in_order": f"{step['in_order']}/{graded}"}


def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}"
            + (f"<script>{script}</script>" if script else "") + "</body></html>")


def index_page(drills: list[Drill]) -> str:
    rows = "".join(f"<tr><td><a href='/drills/{_e(d.id)}'>{_e(d.id)}</a></td><td>{_e(d.scenario)}</td>"
                   f"<td>{len(d.seats)}</td><td>{_e(d.state)}</td></tr>" for d in drills)
    return _page("mlops-drill drills", "<h1>Drills</h1><table><thead><tr><th>drill</th><th>scenario</th>"
                 f"<th>seats</th><th>state</th></tr></thead><tbody>{rows or '<tr><td colspan=4>none yet</td></tr>'}"
                 "</tbody></table>")


def drill_page(dashboard: dict[str, Any], debrief: dict[str, Any]) -> str:
    seat_rows = "".join(
        f"<tr id='seat-{row['seat']}'>" + "".join(f"<td data-f='{c}'{_fixed_class(c, v)}>{_e(v)}</td>"
                                                  for c, v in seat_cells(row).items())
        + "</tr>" for row in dashboard["seats"])
    graded = debrief["seats_graded"]
    step_rows = "".join(
        f"<tr id='step-{_e(s['id'])}'>" + "".join(f"<td data-f='{c}'>{_e(v)}</td>"
                                                 for c, v in step_cells(s, graded).items()) + "</tr>"
        for s in debrief["steps"])
    head = lambda cols: "".join(f"<th>{_e(c.replace('_', ' '))}</th>" for c in cols)  # noqa: E731
    seeded = ""
    if dashboard.get("seed") is not None:
        seeded = (f"seed {dashboard['seed']}" + (" (each seat its own variant, derived from it)"
                                                 if dashboard.get("seed_per_seat") else " (every seat)") + ", ")
    body = (f"<h1>Drill {_e(dashboard['id'])}: {_e(dashboard['title'])}</h1>"
            f"<div class=muted>scenario {_e(dashboard['scenario'])}, {_e(seeded)}"
            f"limit {dashboard['time_limit_minutes']} min, "
            f"<span id=drill-state>{_e(dashboard['state'])}</span>, updated <span id=updated>now</span></div>"
            f"<h2>Seats</h2><table id=seats><thead><tr>{head(SEAT_COLUMNS)}</tr></thead><tbody>{seat_rows}</tbody></table>"
            f"<h2>Debrief</h2><div class=muted>per playbook step: seats that did it / seats graded "
            f"(<span id=graded>{graded}</span>)</div>"
            f"<table id=debrief><thead><tr>{head(STEP_COLUMNS)}</tr></thead><tbody>{step_rows}</tbody></table>"
            f"<p><a href='/api/drills/{_e(dashboard['id'])}/export'>export graded transcripts (zip)</a></p>")
    return _page(f"drill {dashboard['id']}", body, _SCRIPT.replace("__DRILL__", json.dumps(dashboard["id"])))


# Rewrites cell text only; rows are never rebuilt, so the page keeps its place and the
# test can tell an update from a reload (window.__loadedAt stays the same).
_SCRIPT = r"""
window.__loadedAt = Date.now();
const drill = __DRILL__;
function mmss(s){ if(s===null||s===undefined) return '-'; s=Math.max(0,Math.floor(s));
  return Math.floor(s/60)+':'+String(s%60).padStart(2,'0'); }
function seatCells(r){ const p=r.phase;
  return {seat:String(r.seat),
    state: r.state!=='ready' ? r.state : (r.finished ? 'finished' : (r.joined ? 'working' : 'waiting to join')),
    phase: p ? p.index+'/'+p.of+' '+p.title : '-',
    steps: r.steps_required ? r.required_done+'/'+r.steps_required : '-',
    time: mmss(r.elapsed_s), hints: String(r.hints_used||0),
    fixed: r.fixed===null||r.fixed===undefined ? '-' : (r.fixed ? 'yes' : 'no'),
    score: r.score===null||r.score===undefined ? '-' : String(r.score),
    variant: variantText(r.seed, r.values)}; }
function variantText(seed, values){ if(seed===null||seed===undefined) return '-';
  const kv=Object.entries(values||{}).map(([k,v])=>k+'='+v).join(', ');
  return 'seed '+seed+(kv ? ': '+kv : ''); }
function fill(tr, cells){ for(const td of tr.querySelectorAll('td[data-f]')){
  const v=cells[td.dataset.f]; if(td.textContent!==v) td.textContent=v;
  if(td.dataset.f==='fixed') td.className = v==='yes' ? 'yes' : (v==='no' ? 'no' : ''); } }
async function refresh(){
  try{
    const [d,b]=await Promise.all([fetch('/api/drills/'+drill).then(r=>r.json()),
                                   fetch('/api/drills/'+drill+'/debrief').then(r=>r.json())]);
    for(const r of d.seats){ const tr=document.getElementById('seat-'+r.seat); if(tr) fill(tr, seatCells(r)); }
    for(const s of b.steps){ const tr=document.getElementById('step-'+s.id); if(!tr) continue;
      fill(tr,{step:s.title, phase:s.phase_title, required:s.required?'yes':'no',
               done:s.done+'/'+b.seats_graded, in_order:s.in_order+'/'+b.seats_graded}); }
    document.getElementById('graded').textContent=String(b.seats_graded);
    document.getElementById('drill-state').textContent=d.state;
    document.getElementById('updated').textContent=new Date().toLocaleTimeString();
  }catch(e){ document.getElementById('updated').textContent='offline ('+e+')'; }
}
setInterval(refresh, 2000);
"""
