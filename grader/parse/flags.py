"""getopt/pflag-style flag reading shared by the tool models.

Why one reader: kubectl (pflag), curl and most GNU tools agree on the
surface syntax (``--long=value``, ``--long value``, ``-abc`` clusters,
``-ovalue``, ``-o=value``); they differ only in which flags take a value,
which each tool model passes in as a table.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

# kind: "b" takes no value, "v" takes one, "o" takes one only as `--flag=value`.
KindOf = Callable[[str], "str | None"]


def is_flag(token: str) -> bool:
    return len(token) > 1 and token[0] == "-" and token != "--"


def coerce(kind: str | None, value: str) -> str | bool:
    """Boolean flags written `--watch=false` keep their truth value, others their text."""
    if kind == "b":
        low = value.lower()
        if low in ("true", "t", "1"):
            return True
        if low in ("false", "f", "0"):
            return False
    return value


def read_flag(tokens: list[str], i: int, kinds: Mapping[str, str], short: Mapping[str, str],
              out: dict[str, str | bool], *, long_equals: bool = True) -> int:
    """Reads the flag at ``tokens[i]`` into ``out``; returns the index after it.

    Unknown flags are recorded as booleans (they never swallow the next word):
    a wrong guess then costs one flag, not the resource name that follows it.
    """
    tok = tokens[i]
    if tok[1] == "-":
        name, eq, value = tok[2:].partition("=")
        kind = kinds.get(name)
        if eq and (long_equals or kind == "v"):
            out[name] = coerce(kind, value)
            return i + 1
        if eq:  # curl has no --name=value; keep the literal unknown option
            out[tok[2:]] = True
            return i + 1
        if kind == "v":
            if i + 1 < len(tokens):
                out[name] = tokens[i + 1]
                return i + 2
            out[name] = ""
            return i + 1
        if kind is None and name.startswith("no-") and kinds.get(name[3:]) == "b":
            out[name[3:]] = False
            return i + 1
        out[name] = True
        return i + 1
    cluster = tok[1:]
    j = 0
    while j < len(cluster):
        ch = cluster[j]
        long = short.get(ch)
        kind = kinds.get(long) if long else None
        key = long or ch
        if kind == "v":
            rest = cluster[j + 1:]
            if rest:
                out[key] = rest[1:] if rest[0] == "=" else rest
                return i + 1
            if i + 1 < len(tokens):
                out[key] = tokens[i + 1]
                return i + 2
            out[key] = ""
            return i + 1
        if cluster[j + 1:j + 2] == "=":
            out[key] = coerce(kind, cluster[j + 2:])
            return i + 1
        out[key] = True
        j += 1
    return i + 1
