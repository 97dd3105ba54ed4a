"""docs/playbook-coverage.md: one row per "Mention" of the playbook's High-Value Scenarios, naming real scenarios."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_drill.scenarios.loader import load_catalogue

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "playbook-coverage.md"
PLAYBOOK = ROOT.parent / "shared" / "playbook" / "mlops-interview-playbook.txt"


def rows() -> list[tuple[str, str, str]]:
    out = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("family", "---"):
            out.append((cells[0], cells[1], cells[2]))
    return out


def playbook_mentions(text: str) -> list[str]:
    """The items under each "Mention:" of the High-Value Scenarios section, in order."""
    section = text.split("High-Value Scenarios To Practice", 1)[1].split("Strong Signals", 1)[0]
    mentions, taking = [], False
    for line in section.splitlines():
        line = line.strip()
        if line.endswith("Mention:"):
            taking = True
        elif taking and line and not _is_heading(line, section):
            mentions.append(line)
    return mentions


def _is_heading(line: str, section: str) -> bool:
    return section.find(line + "\n") != -1 and (section.find(line + "\n" + line) != -1 or
                                                 re.search(rf"{re.escape(line)}\n[^\n]*Mention:", section) is not None)


def test_every_scenario_named_in_the_table_exists() -> None:
    catalogue = set(load_catalogue())
    named = set()
    for _, _, where in rows():
        plain = re.sub(r"\([^)]*\)", "", where).split("**gap**")[0]  # ids, without the notes and the gap
        named |= {w.strip(" ;") for w in plain.split(",") if w.strip(" ;")}
    assert named and named <= catalogue, named - catalogue


@pytest.mark.skipif(not PLAYBOOK.is_file(), reason="the shared playbook is not beside this checkout")
def test_every_playbook_mention_has_a_row() -> None:
    mentions = playbook_mentions(PLAYBOOK.read_text(encoding="utf-8"))
    assert len(mentions) >= 20
    assert sorted(m for _, m, _ in rows()) == sorted(mentions)
