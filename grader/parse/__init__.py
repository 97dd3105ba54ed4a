"""The command-line model the grader uses: shell text -> :class:`ParsedCommand`.

Grading compares what a candidate did with a playbook, so it needs to know
that ``k -n serving logs -f deploy/fraud-model -c model --tail 50`` reads the
logs of Deployment ``fraud-model`` in ``serving``, and that
``kubectl apply --dry-run=server -f x.yaml`` changes nothing. Regexes over the
line cannot know that; this package parses: a quote-aware shell scanner
(``shell``), ``shlex`` for words, wrappers peeled off (``wrappers``), then a
model of each tool's grammar (``kubectl``, ``curl``, ``nvidia_smi``,
``generic`` for the rest and the ``mlops-drill`` CLI).

Entry points: :func:`parse_command` (one line), :func:`parse_commands` (a
whole text), :func:`parse_argv` (an argv, as recording shims see it). None
of them raises; a line the shell could not tokenise has ``error`` set.
"""
from .api import MAIN_TOOLS, parse_argv, parse_command, parse_commands
from .kubectl_resources import canonical_resource
from .model import FrozenMap, ParsedCommand

__all__ = ["MAIN_TOOLS", "FrozenMap", "ParsedCommand", "canonical_resource", "parse_argv",
           "parse_command", "parse_commands"]
