"""Shell structure: where one command ends and the next begins.

``shlex`` splits words but knows nothing of ``;``, ``&&``, ``|``, redirections,
here-documents or ``$(...)``, and a ``|`` inside quotes or a jsonpath must not
split anything. This scanner walks the text once, honouring quotes and
substitutions, and cuts it into pipelines of stages; each stage's text then
goes through ``shlex`` for the words. Redirections are dropped from the words
(``2>&1`` is not an argument), here-document bodies are kept as the pipeline's
stdin, and the bodies of command substitutions are handed back so the caller
can parse the commands they run as well.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# Runs of characters that need no attention; a speed-up, not a parser.
_PLAIN = re.compile(r"[^\\'\"$`#\n;&|<>() \t]+")
# A copied terminal prompt at the start of a line: `$ `, `% `, `user@host:~/x$ `,
# `[user@host dir]$ `, optionally after a `(venv) `. `# ` is handled apart.
_PROMPT = re.compile(r"[ \t]*(?:\([\w.-]+\)[ \t]*)?"
                     r"(?:\[[^\]\n]*\][$#%]|[\w.-]+@[\w.-]+(?::[^\s$#%]*)?[$#%]|[$%])[ \t]+")
_NEEDS_SHLEX = re.compile(r"['\"\\\r\n]")
_REDIRECT_OPS = ("<<<", "<<-", "&>>", "<<", "&>", ">>", ">&", ">|", "<&", "<>", ">", "<")
_WORD_END = frozenset(" \t\n;&|<>()")
_MAX_NESTING = 64

# A `# ` at the start of a line is a root prompt only when a command we know
# follows; otherwise it is a comment (bash history and notes have both).
PROMPT_HASH_TOOLS = frozenset({"kubectl", "k", "curl", "nvidia-smi", "mlops-drill", "sudo",
                               "watch", "time", "kubecolor"})


@dataclass
class Pipeline:
    """One pipeline (``a | b | c``): what becomes one ParsedCommand."""

    text: str
    stages: list[str] = field(default_factory=list)
    heredoc: str | None = None
    substitutions: list[str] = field(default_factory=list)
    error: str | None = None
    # Stage texts hold `\x01N\x01` where a `$(...)`/backquote stood, so shlex
    # keeps it one word whatever quotes it contains; split_words puts it back.
    placeholders: dict[str, str] = field(default_factory=dict)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.out: list[Pipeline] = []
        self.stage: list[str] = []
        self.stages: list[str] = []
        self.subs: list[str] = []
        self.herestring: str | None = None
        self.error: str | None = None
        self.start = 0
        self.pending: list[tuple[str, bool, int]] = []
        self.spans: list[tuple[int, int]] = []
        self.placeholders: dict[str, str] = {}
        self.nesting = 0
        self.too_deep = False

    # -- quoting helpers: each returns the index just past the construct, or -1
    def _dquote_end(self, i: int) -> int:
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
            elif c == '"':
                return j + 1
            elif c == "$" and s.startswith("(", j + 1):
                j = self._subst_end(j + 1)
                if j < 0:
                    return -1
            elif c == "`":
                j = self._backtick_end(j)
                if j < 0:
                    return -1
            else:
                j += 1
        return -1

    def _backtick_end(self, i: int) -> int:
        s, n = self.s, self.n
        j = i + 1
        while j < n:
            c = s[j]
            if c == "\\":
                j += 2
            elif c == "`":
                self.subs.append(s[i + 1:j])
                self.spans.append((i, j + 1))
                return j + 1
            else:
                j += 1
        return -1

    def _paren_end(self, i: int) -> int:
        """``i`` at an opening paren; index past its match, quotes respected."""
        if self.nesting >= _MAX_NESTING:  # `"$("$("$(...` would exhaust the stack
            self.too_deep = True
            return -1
        self.nesting += 1
        try:
            return self._paren_scan(i)
        finally:
            self.nesting -= 1

    def _paren_scan(self, i: int) -> int:
        s, n = self.s, self.n
        depth = 0
        j = i
        while j < n:
            c = s[j]
            if c == "(":
                depth += 1
                j += 1
            elif c == ")":
                depth -= 1
                j += 1
                if depth == 0:
                    return j
            elif c == "\\":
                j += 2
            elif c == "'":
                k = s.find("'", j + 1)
                if k < 0:
                    return -1
                j = k + 1
            elif c == '"':
                j = self._dquote_end(j)
                if j < 0:
                    return -1
            elif c == "`":
                j = self._backtick_end(j)
                if j < 0:
                    return -1
            else:
                j += 1
        return -1

    def _subst_end(self, i: int) -> int:
        """``i`` at the paren of ``$(``; records the body unless it is ``$((`` arithmetic."""
        mark, span_mark = len(self.subs), len(self.spans)
        end = self._paren_end(i)
        del self.subs[mark:]  # nested ones are found again when the body is parsed
        del self.spans[span_mark:]
        if end > 0:
            self.spans.append((i - 1, end))
            if not self.s.startswith("((", i):
                self.subs.append(self.s[i + 1:end - 1])
        return end

    def _chunk(self, start: int, end: int, span_mark: int) -> str:
        """Source ``[start, end)`` with the substitutions found since ``span_mark`` as placeholders."""
        spans = self.spans[span_mark:]
        del self.spans[span_mark:]
        if not spans:
            return self.s[start:end]
        parts: list[str] = []
        at = start
        for a, b in spans:
            key = f"\x01{len(self.placeholders)}\x01"
            self.placeholders[key] = self.s[a:b]
            parts.append(self.s[at:a])
            parts.append(key)
            at = b
        parts.append(self.s[at:end])
        return "".join(parts)

    def _word_end(self, i: int) -> int:
        s, n = self.s, self.n
        while i < n and s[i] not in _WORD_END:
            c = s[i]
            if c == "'":
                k = s.find("'", i + 1)
                i = n if k < 0 else k + 1
            elif c == '"':
                k = self._dquote_end(i)
                i = n if k < 0 else k
            elif c == "\\":
                i += 2
            else:
                i += 1
        return min(i, n)

    # -- structure
    def _at_word_start(self) -> bool:
        return not self.stage or self.stage[-1][-1] in " \t"

    def _end_stage(self) -> None:
        text = "".join(self.stage).strip()
        if text:
            self.stages.append(text)
        self.stage = []

    def _end_pipeline(self, end: int) -> None:
        self._end_stage()
        if self.stages or self.subs or self.error or self.herestring is not None:
            self.out.append(Pipeline(self.s[self.start:end].strip(), self.stages,
                                     self.herestring, self.subs, self.error, self.placeholders))
        self.stages, self.subs, self.herestring, self.error = [], [], None, None
        self.placeholders = {}
        self.spans = []

    def _skip_prompt(self, i: int) -> int:
        s = self.s
        m = _PROMPT.match(s, i)
        if m:
            return m.end()
        j = i
        while j < self.n and s[j] in " \t":
            j += 1
        if s.startswith("# ", j):
            word = s[j + 2:self._word_end(j + 2)]
            if word.rsplit("/", 1)[-1] in PROMPT_HASH_TOOLS:
                return j + 2
        return i

    def _heredoc_bodies(self, i: int) -> int:
        s = self.s
        for delim, strip_tabs, index in self.pending:
            lines: list[str] = []
            while i < self.n:
                j = s.find("\n", i)
                j = self.n if j < 0 else j
                line = s[i:j]
                i = j + 1
                if (line.lstrip("\t") if strip_tabs else line) == delim:
                    break
                lines.append(line)
            body = "\n".join(lines) + ("\n" if lines else "")
            if index < len(self.out):
                self.out[index].heredoc = body
        self.pending = []
        return min(i, self.n)

    def _redirect(self, i: int) -> int:
        s = self.s
        if self.stage and self.stage[-1].isdigit() and (
                len(self.stage) == 1 or self.stage[-2][-1] in " \t"):
            self.stage.pop()  # the fd number in `2>` is not an argument
        op = next(o for o in _REDIRECT_OPS if s.startswith(o, i))
        i += len(op)
        if op in ("<", ">") and s.startswith("(", i):  # process substitution
            end = self._subst_end(i)
            if end < 0:
                self.error = "unclosed process substitution"
                return self.n
            self.spans.pop()
            self.stage.append("/dev/fd/63 ")
            return end
        while i < self.n and s[i] in " \t":
            i += 1
        end = self._word_end(i)
        word = s[i:end]
        if op in ("<<", "<<-"):
            delim = word.replace("'", "").replace('"', "").replace("\\", "")
            if delim:
                self.pending.append((delim, op == "<<-", len(self.out)))
        elif op == "<<<":
            try:
                self.herestring = " ".join(shlex.split(word)) + "\n"
            except ValueError:
                self.herestring = word + "\n"
        self.stage.append(" ")
        return end

    def scan(self) -> list[Pipeline]:
        s, n = self.s, self.n
        i = self._skip_prompt(0)
        self.start = i
        while i < n:
            m = _PLAIN.match(s, i)
            if m:
                self.stage.append(m.group())
                i = m.end()
                continue
            c = s[i]
            if c in " \t":
                self.stage.append(" ")
                i += 1
            elif c == "\\":
                if s.startswith("\n", i + 1):
                    i += 2
                else:
                    self.stage.append(s[i:i + 2])
                    i += 2
            elif c in "'\"`" or (c == "$" and s.startswith("(", i + 1)):
                mark = len(self.spans)
                if c == "'":
                    k = s.find("'", i + 1)
                    end = -1 if k < 0 else k + 1
                elif c == '"':
                    end = self._dquote_end(i)
                elif c == "`":
                    end = self._backtick_end(i)
                else:
                    end = self._subst_end(i + 1)
                if end < 0:
                    kind = {"'": "single quote", '"': "double quote", "`": "backtick"}.get(c, "$(")
                    self.error = (f"substitutions nested deeper than {_MAX_NESTING}"
                                  if self.too_deep else f"unclosed {kind} at column {i + 1}")
                    self.stage.append(s[i:])
                    i = n
                else:
                    self.stage.append(self._chunk(i, end, mark))
                    i = end
            elif c == "$":
                if s.startswith("{", i + 1):
                    k = s.find("}", i + 2)
                    end = n if k < 0 else k + 1
                    self.stage.append(s[i:end])
                    i = end
                else:
                    self.stage.append("$")
                    i += 1
            elif c == "#":
                if self._at_word_start():
                    k = s.find("\n", i)
                    i = n if k < 0 else k
                else:
                    self.stage.append("#")
                    i += 1
            elif c == "\n":
                self._end_pipeline(i)
                i = self._heredoc_bodies(i + 1) if self.pending else i + 1
                i = self._skip_prompt(i)
                self.start = i
            elif c == ";" or c == ")":
                self._end_pipeline(i)
                i += 1
                self.start = i
            elif c == "&":
                if s.startswith("&>", i):
                    i = self._redirect(i)
                else:
                    self._end_pipeline(i)
                    i += 2 if s.startswith("&&", i) else 1
                    self.start = i
            elif c == "|":
                if s.startswith("||", i):
                    self._end_pipeline(i)
                    i += 2
                    self.start = i
                else:
                    self._end_stage()
                    i += 2 if s.startswith("|&", i) else 1
            elif c in "<>":
                i = self._redirect(i)
            else:  # "(" opening a subshell: the commands inside stand on their own
                self._end_pipeline(i)
                i += 1
                self.start = i
        self._end_pipeline(n)
        if self.pending:
            self._heredoc_bodies(n)
        return self.out


def split_pipelines(text: str) -> list[Pipeline]:
    """Cut shell text into pipelines; never raises (problems land in ``error``).

    CRLF line ends (histories saved on Windows) read as LF: a stray ``\r`` would
    otherwise glue itself to the last word or to a here-document delimiter.
    """
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    return _Scanner(text).scan()


def _restore(words: list[str], placeholders: dict[str, str]) -> list[str]:
    if not placeholders:
        return words
    out = []
    for word in words:
        if "\x01" in word:
            for key, text in placeholders.items():
                word = word.replace(key, text)
        out.append(word)
    return out


def split_words(stage: str, placeholders: dict[str, str] | None = None
                ) -> tuple[list[str], str | None]:
    """shlex words of one stage, plus why it could not be tokenised (best effort then)."""
    if not _NEEDS_SHLEX.search(stage):
        # Nothing quoted or escaped: shlex would split on its whitespace only,
        # and the scanner already turned every blank outside quotes into " ".
        return _restore([w for w in stage.split(" ") if w], placeholders or {}), None
    try:
        return _restore(shlex.split(stage), placeholders or {}), None
    except ValueError as exc:
        reason = f"cannot tokenise: {exc}"
    for closer in ('"', "'", "\\"):
        try:
            fixed = stage + closer if closer != "\\" else stage[:-1]
            return _restore(shlex.split(fixed), placeholders or {}), reason
        except ValueError:
            continue
    return _restore(stage.split(), placeholders or {}), reason
