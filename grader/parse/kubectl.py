"""kubectl's grammar: command path, flags by type, then what the positionals mean per verb.

The parse mirrors cobra/pflag: global flags may come before the verb
(``kubectl -n serving get po``); subcommands are found by skipping flags
(``kubectl rollout -n serving undo``); a flag's type decides whether it takes
the next word, per command (``-f`` is ``--follow`` for ``logs`` but
``--filename`` for ``apply``); ``--`` ends flags. The flag tables come from
kubectl's own help (``kubectl_grammar.py``); what the positionals mean
(``type name``, ``type/name``, ``pod container``, ``pod -- cmd``) is modelled
here verb by verb.
"""
from __future__ import annotations

from functools import cache
from typing import Any

from .flags import is_flag, read_flag
from .kubectl_grammar import COMMANDS as _COMMANDS
from .kubectl_grammar import GLOBAL as _GLOBAL
from .kubectl_resources import canonical_resource

COMMANDS: dict[str, dict[str, Any]] = _COMMANDS  # type: ignore[assignment]
GLOBAL: dict[str, dict[str, str]] = _GLOBAL

Spec = tuple[dict[str, str], dict[str, str]]

# Flags older kubectls had that people still type; accepted so they do not
# swallow or shift the words after them.
_LEGACY: dict[str, Spec] = {
    "exec": ({"pod": "v"}, {"p": "pod"}),
    "get": ({"export": "b", "show-all": "b"}, {"a": "show-all"}),
    "*": ({"record": "b", "include-uninitialized": "b"}, {}),
}

_MUTATING_VERBS = frozenset({"apply", "create", "delete", "patch", "edit", "set", "scale", "label",
                             "annotate", "replace", "autoscale", "cordon", "uncordon", "drain",
                             "taint", "run", "expose"})
_MUTATING_SUBVERBS = frozenset({("rollout", "undo"), ("rollout", "restart"), ("rollout", "pause"),
                                ("rollout", "resume"), ("certificate", "approve"),
                                ("certificate", "deny"), ("auth", "reconcile")})
_READ_ONLY_SUBVERBS = frozenset({("apply", "view-last-applied"), ("create", "token")})

# Verbs whose positionals are `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`, then specs.
_RESOURCE_VERBS = frozenset({"get", "describe", "delete", "edit", "label", "annotate", "patch",
                             "scale", "autoscale", "expose", "wait", "replace", "taint", "rollout",
                             "set", "apply", "diff"})
# Verbs whose trailing positionals are key=value / key- / key:effect specs.
_SPEC_VERBS = frozenset({"label", "annotate", "taint", "set"})
_POD_VERBS = frozenset({"logs", "exec", "attach", "port-forward", "debug"})
_NODE_VERBS = frozenset({"cordon", "uncordon", "drain"})


def _merge(*specs: Spec) -> Spec:
    flags: dict[str, str] = {}
    short: dict[str, str] = {}
    for f, s in specs:
        flags.update(f)
        short.update(s)
    return flags, short


_GLOBAL_SPEC: Spec = _merge((GLOBAL["flags"], GLOBAL["short"]), _LEGACY["*"])


@cache
def _spec(path: tuple[str, ...]) -> Spec:
    """Flags valid at ``path``: the command's own over the globals, as pflag merges them."""
    entry = COMMANDS.get(" ".join(path))
    if entry is None:
        return _GLOBAL_SPEC
    legacy = _LEGACY.get(" ".join(path), ({}, {}))
    return _merge(_GLOBAL_SPEC, legacy, (entry["flags"], entry["short"]))


@cache
def _children(path: tuple[str, ...]) -> dict[str, str]:
    """Subcommand names and aliases at ``path`` -> canonical subcommand name."""
    if not path:
        names = {" ".join(k.split()[:1]) for k in COMMANDS}
        return {n: n for n in names}
    entry = COMMANDS.get(" ".join(path))
    out: dict[str, str] = {}
    for sub in entry["subcommands"] if entry else ():
        out[sub] = sub
        for alias in COMMANDS.get(" ".join((*path, sub)), {}).get("aliases", ()):
            out.setdefault(alias, sub)
    return out


def _skip_flag(tokens: list[str], i: int, spec: Spec) -> int:
    return read_flag(tokens, i, spec[0], spec[1], {})


def _resolve_path(tokens: list[str]) -> tuple[tuple[str, ...], set[int]]:
    """Finds the command path the way cobra does: skip flags, descend while a word names a child."""
    path: tuple[str, ...] = ()
    used: set[int] = set()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            break
        if is_flag(tok):
            i = _skip_flag(tokens, i, _spec(path))
            continue
        child = _children(path).get(tok)
        if child is None:
            if not path:  # a plugin (`kubectl ns`, `kubectl krew`) or a typo: still the verb
                path = (tok,)
                used.add(i)
            break
        path = (*path, child)
        used.add(i)
        if not _children(path):
            break
        i += 1
    return path, used


def _is_spec(token: str, spec_verb: bool) -> bool:
    if token[:1] in ("$", "`"):  # an unexpanded variable or substitution: a name, not a spec
        return False
    if "=" in token:
        return True
    return spec_verb and (":" in token or token.endswith("-"))


def _resource_args(pos: list[str], spec_verb: bool) -> tuple[list[str], list[str], list[str]]:
    """``TYPE[,TYPE] [NAME...]`` or ``TYPE/NAME...``, then the rest -> (types, names, rest)."""
    types: list[str] = []
    names: list[str] = []
    i = 0
    if not pos:
        return types, names, []
    if "/" in pos[0] and not _is_spec(pos[0], spec_verb):
        while i < len(pos) and "/" in pos[i] and not _is_spec(pos[i], spec_verb):
            kind, _, name = pos[i].partition("/")
            types.append(canonical_resource(kind))
            if name:
                names.append(name)
            i += 1
    elif not _is_spec(pos[0], spec_verb):
        types = [canonical_resource(t) for t in pos[0].split(",") if t]
        i = 1
        while i < len(pos) and not _is_spec(pos[i], spec_verb):
            names.append(pos[i])
            i += 1
    return types, names, pos[i:]


def _pod_target(token: str) -> tuple[str, str]:
    """``pod-name`` or ``TYPE/NAME`` for logs/exec/attach/port-forward/debug."""
    if "/" in token:
        kind, _, name = token.partition("/")
        return canonical_resource(kind), name
    return "pods", token


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def parse_kubectl(argv: list[str]) -> dict[str, Any]:
    """Fields of a ParsedCommand for a kubectl argv (``argv[0]`` is the program)."""
    tokens = argv[1:]
    path, used = _resolve_path(tokens)
    spec = _spec(path)
    verb = path[0] if path else None
    flags: dict[str, str | bool] = {}
    pos: list[str] = []
    dash: list[str] | None = None
    exec_cmd: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if i in used:
            i += 1
        elif tok == "--":
            dash = tokens[i + 1:]
            break
        elif is_flag(tok):
            i = read_flag(tokens, i, spec[0], spec[1], flags)
        elif verb == "exec" and len(pos) == 1:  # old form: `kubectl exec POD cmd args`
            exec_cmd = tokens[i:]
            break
        else:
            pos.append(tok)
            i += 1

    out: dict[str, Any] = {"verb": verb,
                           "subverb": " ".join(path[1:]) or None}
    types: list[str] = []
    names: list[str] = []
    rest: list[str] = list(pos)
    namespace = flags.get("namespace")
    sub = path[1] if len(path) > 1 else None

    if verb in _RESOURCE_VERBS:
        types, names, rest = _resource_args(pos, verb in _SPEC_VERBS)
    elif verb == "exec" and isinstance(flags.get("pod"), str):  # old `exec -p POD cmd`
        types, names, rest = ["pods"], [str(flags["pod"])], []
        exec_cmd = [*pos, *exec_cmd]
    elif verb in _POD_VERBS and pos:
        kind, name = _pod_target(pos[0])
        types, names, rest = [kind], [name], pos[1:]
        if verb == "logs" and rest and "container" not in flags:
            out["container"] = rest[0]
    elif verb == "logs" and flags.get("selector"):
        types = ["pods"]
    elif verb in _NODE_VERBS:
        types = ["nodes"]
        names = [p.partition("/")[2] or p for p in pos]
        rest = []
    elif verb == "top" and sub:
        types = ["pods" if sub == "pod" else "nodes"]
        names, rest = pos, []
    elif verb == "create" and sub:
        types = ["serviceaccounts" if sub == "token" else canonical_resource(sub)]
        names, rest = pos[:1], pos[1:]
    elif verb == "run":
        types, names, rest = ["pods"], pos[:1], pos[1:]
    elif verb == "events":
        types = ["events"]
    elif verb == "explain" and pos:
        types = [canonical_resource(pos[0])]
    elif verb == "certificate" and sub:
        types, names, rest = ["certificatesigningrequests"], pos, []
    elif verb == "auth" and sub == "can-i" and len(pos) >= 2:
        types, names, extra = _resource_args(pos[1:], False)
        rest = [pos[0], *extra]
    elif verb == "cp":
        for p in pos:
            remote, colon, _ = p.partition(":")
            if colon and remote and not remote.startswith((".", "/", "~")):
                ns, slash, pod = remote.rpartition("/")
                types, names = ["pods"], [pod]
                if slash and not namespace:
                    namespace = ns
                break
    elif verb == "config":
        names, rest = pos, []

    if dash is not None:
        if verb in ("exec", "debug", "run", "attach"):
            exec_cmd = dash
        else:
            rest = [*rest, *dash]
    out["resources"] = _dedupe(types)
    out["resource"] = types[0] if types else None
    out["names"] = tuple(names)
    out["name"] = names[0] if names else None
    out["args"] = tuple(rest)
    out["exec_command"] = tuple(exec_cmd)
    out["namespace"] = namespace or None if isinstance(namespace, str) else None
    all_ns = flags.get("all-namespaces")
    out["all_namespaces"] = all_ns is True or all_ns == "true"
    for key, flag in (("output", "output"), ("selector", "selector"),
                      ("field_selector", "field-selector"), ("sort_by", "sort-by")):
        value = flags.get(flag)
        out[key] = value if isinstance(value, str) and value else None
    if "container" not in out:  # `set resources/image -c` spells it --containers
        value = flags.get("container", flags.get("containers") if verb == "set" else None)
        out["container"] = value if isinstance(value, str) and value else None
    out["is_mutation"] = _is_mutation(path, flags)
    out["flags"] = flags
    return out


def _is_mutation(path: tuple[str, ...], flags: dict[str, str | bool]) -> bool:
    """Whether running this changes cluster state (dry runs and local-only edits do not)."""
    if not path:
        return False
    verb_sub = path[:2]
    if verb_sub in _READ_ONLY_SUBVERBS:
        return False
    if path[0] not in _MUTATING_VERBS and verb_sub not in _MUTATING_SUBVERBS:
        return False
    dry = flags.get("dry-run")
    if dry is True or (isinstance(dry, str) and dry.lower() not in ("none", "false", "")):
        return False
    if flags.get("local") is True or (path[0] in ("label", "annotate", "set")
                                      and flags.get("list") is True):
        return False
    return True
