"""Turn raw terminal output back into the lines a person saw.

Why a tiny line emulator instead of stripping escape codes with a regex:
readline redraws what the candidate edits (backspace, arrow-key history
recall, tab completion) with cursor moves, erases and carriage returns. A
regex strip leaves ``kubectl get podz\b \bs`` style debris; replaying the
cursor gives the line as finally submitted. Only what matters for one line is
emulated: cursor left/right, carriage return, erase-in-line, delete/insert
characters; everything else (colours, titles, modes) is dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_CSI = re.compile(r"\x1b\[([0-?]*)([ -/]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_OTHER_ESC = re.compile(r"\x1b(?:[()*+][0-9A-Za-z]|[@-Z\\^_=>78])")


@dataclass
class _Line:
    cells: list[str] = field(default_factory=list)
    cursor: int = 0

    def put(self, ch: str) -> None:
        if self.cursor < len(self.cells):
            self.cells[self.cursor] = ch
        else:
            self.cells.extend(" " * (self.cursor - len(self.cells)))
            self.cells.append(ch)
        self.cursor += 1

    def text(self) -> str:
        return "".join(self.cells).rstrip()


@dataclass
class LineReplay:
    """Feed output chunks (with a time each); collect finished lines with their times."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    _cur: _Line = field(default_factory=_Line)
    _pending: str = ""

    def feed(self, data: str, ts: float = 0.0) -> None:
        data = self._pending + data
        self._pending = ""
        data = _OSC.sub("", data)
        data = _OTHER_ESC.sub("", data)
        i, n = 0, len(data)
        while i < n:
            ch = data[i]
            if ch == "\x1b":
                m = _CSI.match(data, i)
                if m:
                    self._csi(m.group(1), m.group(3))
                    i = m.end()
                    continue
                if n - i < 512 and not _looks_complete(data[i:]):
                    self._pending = data[i:]  # sequence split across chunks
                    return
                i += 1
                continue
            if ch == "\n":
                self.lines.append((ts, self._cur.text()))
                self._cur = _Line()
            elif ch == "\r":
                self._cur.cursor = 0
            elif ch == "\b":
                self._cur.cursor = max(0, self._cur.cursor - 1)
            elif ch == "\t":
                self._cur.put(" ")
            elif ch >= " " and ch != "\x7f":
                self._cur.put(ch)
            i += 1

    def finish(self, ts: float = 0.0) -> list[tuple[float, str]]:
        if self._cur.cells:
            self.lines.append((ts, self._cur.text()))
            self._cur = _Line()
        return self.lines

    def _csi(self, params: str, final: str) -> None:
        cur = self._cur
        num = int(params) if params.isdigit() else None
        if final == "D":
            cur.cursor = max(0, cur.cursor - (num or 1))
        elif final == "C":
            cur.cursor += num or 1
        elif final == "G":
            cur.cursor = max(0, (num or 1) - 1)
        elif final == "K":
            if not params or params == "0":
                del cur.cells[cur.cursor:]
            elif params == "1":
                for k in range(min(cur.cursor + 1, len(cur.cells))):
                    cur.cells[k] = " "
            else:
                cur.cells.clear()
        elif final == "P":
            del cur.cells[cur.cursor:cur.cursor + (num or 1)]
        elif final == "@":
            cur.cells[cur.cursor:cur.cursor] = [" "] * (num or 1)
        elif final == "J" and params == "2":
            cur.cells.clear()
            cur.cursor = 0


def _looks_complete(tail: str) -> bool:
    return bool(_CSI.match(tail)) or len(tail) > 1 and tail[1] not in "[]"


def replay(text: str) -> list[str]:
    """All lines of a terminal log as displayed (the last unterminated line included)."""
    r = LineReplay()
    r.feed(text)
    return [line for _, line in r.finish()]
