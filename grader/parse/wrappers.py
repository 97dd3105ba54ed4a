"""Commands that run other commands: ``sudo``, ``time``, ``watch``, ``env``, ``sh -c`` ...

A candidate who types ``watch -n 2 kubectl get po -n serving`` or
``sudo -E kubectl ...`` ran kubectl; grading must see kubectl. Each wrapper
is described by which of its own options take a value, so the wrapped
command starts exactly where the wrapper would start it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .flags import is_flag, read_flag


@dataclass(frozen=True)
class Unwrapped:
    """What a wrapper runs: either an argv, or shell text (``watch``, ``sh -c``) to parse again."""

    argv: list[str]
    env: dict[str, str]
    text: str | None = None


# wrapper -> (its options that take a value, how the wrapped command follows)
_WRAPPERS: dict[str, tuple[frozenset[str], str]] = {
    "sudo": (frozenset("ugCDhprtTU") | {"user", "group", "prompt", "chdir", "close-from", "host",
                                        "role", "type", "command-timeout", "other-user"}, "env"),
    "doas": (frozenset("uC"), "argv"),
    "time": (frozenset("fo") | {"format", "output"}, "argv"),
    "nohup": (frozenset(), "argv"),
    "exec": (frozenset("a"), "argv"),
    "builtin": (frozenset(), "argv"),
    "nice": (frozenset("n") | {"adjustment"}, "argv"),
    "ionice": (frozenset("cnpt") | {"class", "classdata"}, "argv"),
    "stdbuf": (frozenset("ioe") | {"input", "output", "error"}, "argv"),
    "unbuffer": (frozenset(), "argv"),
    "caffeinate": (frozenset("tw"), "argv"),
    "env": (frozenset("uCS") | {"unset", "chdir", "split-string"}, "env"),
    "timeout": (frozenset("sk") | {"signal", "kill-after"}, "timeout"),
    "watch": (frozenset("nqs") | {"interval", "equexit", "shotsdir"}, "watch"),
    # the command's arguments also come from stdin: the pipeline says which objects (api.py)
    "xargs": (frozenset("nILPdEsa") | {"max-args", "replace", "max-lines", "max-procs", "delimiter", "eof",
                                         "max-chars", "arg-file"}, "argv"),
}
_SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
# Platform-bundled kubectl: `microk8s kubectl get po`, `minikube kubectl -- get po`.
_KUBECTL_CARRIERS = frozenset({"microk8s", "k3s", "minikube", "microk8s.kubectl"})


def is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and bool(name) and (name[0].isalpha() or name[0] == "_") and \
        name.replace("_", "a").isalnum()


def _skip_options(argv: list[str], i: int, values: frozenset[str]) -> int:
    kinds = {v: "v" for v in values}
    short = {v: v for v in values if len(v) == 1}
    while i < len(argv) and is_flag(argv[i]):
        i = read_flag(argv, i, kinds, short, {})
    if i < len(argv) and argv[i] == "--":
        i += 1
    return i


def _shell_text(argv: list[str]) -> str | None:
    """The script of ``bash -c 'script'`` (options such as ``-euo pipefail`` allowed)."""
    i = 1
    found_c = False
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--") and len(tok) > 2:  # --norc, --login: no argument
            i += 1
            continue
        if tok.startswith(("-", "+")) and len(tok) > 1 and tok != "--":
            letters = tok[1:]
            found_c = found_c or "c" in letters
            i += 2 if "o" in letters else 1  # `-o pipefail` takes the next word
            continue
        return tok if found_c else None
    return None


def unwrap(argv: list[str]) -> Unwrapped:
    """Peels env assignments and wrappers off ``argv`` until the real program is first."""
    env: dict[str, str] = {}
    while argv:
        while argv and is_assignment(argv[0]):
            name, _, value = argv[0].partition("=")
            env[name] = value
            argv = argv[1:]
        if not argv:
            break
        prog = argv[0].rsplit("/", 1)[-1]
        if prog in _SHELLS:
            text = _shell_text(argv)
            if text is not None:
                return Unwrapped([], env, text)
            break
        if prog in _KUBECTL_CARRIERS:
            if len(argv) > 1 and argv[1] == "kubectl":
                rest = argv[2:]
                if rest[:1] == ["--"]:
                    rest = rest[1:]
                return Unwrapped(["kubectl", *rest], env)
            if prog == "microk8s.kubectl":
                return Unwrapped(["kubectl", *argv[1:]], env)
            break
        if prog == "command" and len(argv) > 1 and argv[1] in ("-v", "-V"):
            break  # `command -v kubectl` looks kubectl up; it does not run it
        spec = _WRAPPERS.get(prog)
        if spec is None:
            break
        values, mode = spec
        i = _skip_options(argv, 1, values)
        if mode == "env":
            while i < len(argv) and is_assignment(argv[i]):
                name, _, value = argv[i].partition("=")
                env[name] = value
                i += 1
        elif mode == "timeout":
            i += 1  # the duration
        elif mode == "watch":
            rest = argv[i:]
            if not rest:
                return Unwrapped(argv, env)
            exec_mode = any(a in ("-x", "--exec") for a in argv[1:i])
            if exec_mode:
                argv = rest
                continue
            return Unwrapped([], env, " ".join(rest))
        if i >= len(argv):
            return Unwrapped(argv, env)  # a bare `sudo -i`, `time`: the wrapper is the command
        argv = argv[i:]
    return Unwrapped(argv, env)
