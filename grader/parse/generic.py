"""Programs without a model of their own (jq, grep, helm...) and the ``mlops-drill`` CLI.

Unknown programs still get their flags and positional words recorded, read
the GNU way, so a matcher can ask "did they grep for OOMKilled". Flags are
taken as booleans unless written ``--name=value``: without the program's
grammar, guessing that a flag takes a value would eat real arguments.
"""
from __future__ import annotations

from typing import Any


# Options of our own CLI that take a value (`--scenario bad-release`); the
# others are switches. Kept here, not imported, so parsing never depends on
# the CLI module loading.
DRILL_VALUE_OPTIONS = frozenset({"scenario", "format", "output", "out", "transcript", "seed",
                                 "backend", "kubeconfig", "confidence", "level", "id", "file",
                                 "timeout", "since", "step", "note"})


def _split_generic(tokens: list[str], takes_value: frozenset[str] = frozenset()
                   ) -> tuple[dict[str, str | bool], list[str]]:
    flags: dict[str, str | bool] = {}
    words: list[str] = []
    only_words = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if only_words or len(tok) < 2 or tok[0] != "-":
            words.append(tok)
        elif tok == "--":
            only_words = True
        elif tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if eq:
                flags[name] = value
            elif name in takes_value and i < len(tokens):
                flags[name] = tokens[i]
                i += 1
            else:
                flags[name] = True
        else:
            flags[tok[1:]] = True
    return flags, words


def parse_generic(argv: list[str]) -> dict[str, Any]:
    flags, words = _split_generic(argv[1:])
    return {"flags": flags, "args": tuple(words)}


def parse_mlops_drill(argv: list[str]) -> dict[str, Any]:
    """``mlops-drill SUBCOMMAND [text...]``: the verb, and the text as the payload.

    ``mlops-drill diagnose "stale features after the refresh job failed"`` and the
    unquoted ``mlops-drill hypothesize bad release`` carry the same payload.
    """
    flags, words = _split_generic(argv[1:], DRILL_VALUE_OPTIONS)
    verb = words[0] if words else None
    rest = words[1:]
    return {"verb": verb, "flags": flags, "args": tuple(rest),
            "payload": " ".join(rest) if rest else None}
