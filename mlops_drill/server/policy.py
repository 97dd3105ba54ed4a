"""What an agent may run through the API, decided before anything runs.

Why an allowlist and not the shell the humans get: a human's recorded shell
is their own machine, an agent's command runs on the server. On the embedded
backend that server also holds the answer key (scenario files, the engine's
state folder, an unauthenticated etcd on loopback, ``kubectl exec`` that runs
on the host). So one command per request, split with :mod:`shlex` (no shell:
no pipes, ``;``, ``&&``, redirections or ``$(...)``), only ``kubectl`` and
``curl``, and only the forms that stay inside the candidate's kubeconfig and
this session's port-forwards:

* kubectl: the ordinary verbs; no flag that changes who you are or which
  cluster you talk to (``--kubeconfig``, ``--token``, ``--as``, ...), no flag
  that reads or writes local files (``-f`` other than ``-``, ``--from-file``,
  ``-o jsonpath-file=``...), nothing that never ends (``-w``, ``logs -f``),
  no terminal (``-i``/``-t``), and ``exec`` runs ``nvidia-smi`` only.
* curl: http to ``localhost``/``127.0.0.1`` on a port this session forwarded
  with ``kubectl port-forward``; no option that reads or writes files.
* nvidia-smi: refused on the API host (it has no GPU of the drill); it runs
  on a GPU node: ``kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi``.

Anything else raises :class:`Refused` with one line saying what and why.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlops_drill.grader.parse import parse_argv
from mlops_drill.grader.parse.kubectl_grammar import COMMANDS, GLOBAL

TOOLS = ("kubectl", "curl")
NVIDIA_SMI_HOWTO = "kubectl exec -n gpu-operator ds/nvidia-device-plugin-daemonset -- nvidia-smi"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})

KUBECTL_VERBS = frozenset({
    "get", "describe", "logs", "events", "top", "explain", "api-resources", "api-versions", "version",
    "cluster-info", "rollout", "scale", "autoscale", "set", "patch", "label", "annotate", "apply", "create",
    "replace", "delete", "cordon", "uncordon", "drain", "taint", "exec", "port-forward", "wait", "diff",
    "auth", "run", "expose", "options", "help"})
_VERB_ADVICE = {
    "edit": "kubectl edit needs an editor: use kubectl patch, kubectl set, or kubectl apply -f - with the "
            "manifest in the request's stdin",
    "proxy": "kubectl proxy never ends: use kubectl port-forward, then curl",
    "attach": "kubectl attach needs a terminal: use kubectl logs",
    "cp": "kubectl cp reads and writes files on the API host",
    "debug": "kubectl debug needs a terminal and runs on the API host on this cluster",
    "config": "kubectl config reads and edits the kubeconfig: the API runs with the seat's own",
}
# Who you are, which cluster, and which local files kubectl may touch.
_KUBECTL_FORBIDDEN_LONG = {
    "kubeconfig": "the API runs kubectl with the seat's kubeconfig",
    "context": "the API runs kubectl with the seat's kubeconfig",
    "cluster": "the API runs kubectl with the seat's kubeconfig",
    "user": "the API runs kubectl with the seat's kubeconfig",
    "server": "the API runs kubectl with the seat's kubeconfig",
    "token": "the API runs kubectl with the seat's credentials",
    "username": "the API runs kubectl with the seat's credentials",
    "password": "the API runs kubectl with the seat's credentials",
    "as": "impersonation is not part of the seat",
    "as-group": "impersonation is not part of the seat",
    "as-uid": "impersonation is not part of the seat",
    "as-user-extra": "impersonation is not part of the seat",
    "client-certificate": "the API runs kubectl with the seat's credentials",
    "client-key": "the API runs kubectl with the seat's credentials",
    "certificate-authority": "the API runs kubectl with the seat's kubeconfig",
    "insecure-skip-tls-verify": "the API runs kubectl with the seat's kubeconfig",
    "tls-server-name": "the API runs kubectl with the seat's kubeconfig",
    "cache-dir": "it writes files on the API host",
    "log-file": "it writes files on the API host",
    "log-dir": "it writes files on the API host",
    "profile": "it writes files on the API host",
    "profile-output": "it writes files on the API host",
    "output-directory": "it writes files on the API host",
    "kustomize": "it reads files on the API host",
    "from-file": "it reads files on the API host (use --from-literal)",
    "from-env-file": "it reads files on the API host (use --from-literal)",
    "patch-file": "it reads files on the API host (use -p)",
    "follow": "a stream never ends in one request (use --tail or --since)",
    "watch": "a watch never ends in one request (run the get again)",
    "watch-only": "a watch never ends in one request (run the get again)",
    "stdin": "there is no terminal (drop -i)",
    "tty": "there is no terminal (drop -t)",
    "attach": "there is no terminal",
}
_CURL_BOOL = {"s": "silent", "S": "show-error", "f": "fail", "i": "include", "I": "head", "v": "verbose",
              "L": "location", "G": "get", "g": "globoff", "k": "insecure", "N": "no-buffer"}
_CURL_VALUE = {"X": "request", "H": "header", "d": "data", "m": "max-time", "w": "write-out",
               "A": "user-agent", "e": "referer", "u": "user", "b": "cookie", "o": "output", "r": "range"}
_CURL_LONG_BOOL = frozenset(_CURL_BOOL.values()) | {"compressed", "fail-with-body", "http1.1", "raw",
                                                     "no-progress-meter", "show-headers", "path-as-is"}
_CURL_LONG_VALUE = frozenset(_CURL_VALUE.values()) | {
    "data-raw", "data-binary", "data-ascii", "data-urlencode", "json", "connect-timeout", "retry",
    "retry-delay", "retry-max-time", "max-redirs", "url", "expect100-timeout", "keepalive-time"}


class Refused(Exception):
    """A command the API will not run; ``str()`` is the one line the client sees."""


@dataclass(frozen=True)
class Checked:
    """A command that may run: its words as typed, and what the runner must do with it."""

    line: str
    argv: tuple[str, ...]
    tool: str
    verb: str | None = None
    port_forward: bool = False
    uses_stdin: bool = False


def check(line: str, forwarded_ports: frozenset[int] = frozenset(), stdin: str | None = None) -> Checked:
    """The command as it will run, or :class:`Refused` saying why not."""
    if not line.strip():
        raise Refused("empty command: send one kubectl or curl command line")
    if "\n" in line or "\r" in line:
        raise Refused("one command per request: the line contains a newline")
    argv = _split(line)
    tool = argv[0]
    if tool == "nvidia-smi":
        raise Refused(f"nvidia-smi runs on a GPU node, not on the API host: {NVIDIA_SMI_HOWTO}")
    if tool not in TOOLS:
        shown = tool if len(tool) <= 40 else tool[:37] + "..."
        raise Refused(f"{shown!r} is not allowed: only kubectl and curl (and nvidia-smi through kubectl exec)")
    if tool == "kubectl":
        return _check_kubectl(line, argv, stdin)
    if stdin is not None:
        raise Refused("stdin is only read by kubectl ... -f -")
    _check_curl(argv, forwarded_ports)
    return Checked(line=line, argv=tuple(argv), tool="curl")


# --------------------------------------------------------------------------- words

def _split(line: str) -> list[str]:
    """shlex words, after refusing the shell syntax that would mean something else in a shell."""
    quote = None
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            quote = None if ch == "'" else quote
        elif ch == "\\" and quote != "'":
            i += 1
        elif ch == '"':
            quote = None if quote == '"' else '"'
        elif ch == "'" and quote is None:
            quote = "'"
        elif ch == "`" or line.startswith("$(", i):
            raise Refused("command substitution is not supported: no shell runs your line")
        elif quote is None and ch in ";|&<>()":
            op = ch + (line[i + 1] if i + 1 < len(line) and line[i + 1] in ";|&<>" else "")
            advice = " (port-forwards already run in the background)" if op == "&" else ""
            raise Refused(f"shell operator {op!r} is not supported: one command per request, no pipes or "
                          f"redirections{advice}")
        i += 1
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise Refused(f"cannot split the line into words: {exc}") from None
    if not words:
        raise Refused("empty command: send one kubectl or curl command line")
    return words


# --------------------------------------------------------------------------- kubectl

def _kubectl_flags(tokens: list[str], path: tuple[str, ...]) -> list[tuple[str, str | bool]]:
    """Every flag before ``--`` as (long name, value), read as pflag reads it for ``path``."""
    entry = COMMANDS.get(" ".join(path), {"flags": {}, "short": {}})
    kinds = {**GLOBAL["flags"], **entry["flags"]}
    short = {**GLOBAL["short"], **entry["short"]}
    out: list[tuple[str, str | bool]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            break
        if not (len(tok) > 1 and tok[0] == "-"):
            i += 1
            continue
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            if eq:
                out.append((name, value))
            elif kinds.get(name) == "v" and i + 1 < len(tokens):
                out.append((name, tokens[i + 1]))
                i += 1
            else:
                out.append((name, True))
            i += 1
            continue
        cluster, j = tok[1:], 0
        while j < len(cluster):
            name = short.get(cluster[j], cluster[j])
            rest = cluster[j + 1:]
            if kinds.get(name) == "v":
                if rest:
                    out.append((name, rest[1:] if rest[0] == "=" else rest))
                elif i + 1 < len(tokens):
                    out.append((name, tokens[i + 1]))
                    i += 1
                else:
                    out.append((name, ""))
                break
            if rest[:1] == "=":
                out.append((name, rest[1:]))
                break
            out.append((name, True))
            j += 1
        i += 1
    return out


def _check_kubectl(line: str, argv: list[str], stdin: str | None) -> Checked:
    parsed = parse_argv(argv, raw=line)
    verb = parsed.verb
    if verb is None:
        raise Refused("kubectl needs a verb, e.g. kubectl get pods -n serving")
    if verb in _VERB_ADVICE:
        raise Refused(f"kubectl {verb} is not available through the API: {_VERB_ADVICE[verb]}")
    if verb not in KUBECTL_VERBS:
        raise Refused(f"kubectl {verb} is not available through the API (allowed verbs: "
                      f"{', '.join(sorted(KUBECTL_VERBS))})")
    tokens = argv[1:]
    before_dashes = tokens[:tokens.index("--")] if "--" in tokens else tokens
    for tok in before_dashes:  # long names anywhere, even where pflag would read them as a value
        if tok.startswith("--"):
            name = tok[2:].partition("=")[0]
            if name in _KUBECTL_FORBIDDEN_LONG and not (name == "watch" and verb == "rollout"):
                raise Refused(f"kubectl --{name} is not allowed: {_KUBECTL_FORBIDDEN_LONG[name]}")
    path = tuple(p for p in (verb, parsed.subverb) if p)
    uses_stdin = False
    for name, value in _kubectl_flags(tokens, path):
        if name == "watch" and verb == "rollout":
            continue  # `rollout status -w` ends when the rollout does
        if name in _KUBECTL_FORBIDDEN_LONG and value is not False:
            raise Refused(f"kubectl {verb} --{name} is not allowed: {_KUBECTL_FORBIDDEN_LONG[name]}")
        if name == "filename":
            if value != "-":
                raise Refused(f"kubectl -f {value} reads a file on the API host: use -f - and send the "
                              "manifest as the request's stdin")
            uses_stdin = True
        if name == "output" and isinstance(value, str) and value.split("=", 1)[0].endswith("-file"):
            raise Refused(f"kubectl -o {value.split('=', 1)[0]}= reads a file on the API host: give the "
                          "template inline (-o jsonpath=...)")
        if name == "address" and verb == "port-forward" and value not in ("localhost", "127.0.0.1"):
            raise Refused("kubectl port-forward --address: only localhost/127.0.0.1")
    if verb == "exec":
        if not parsed.exec_command or parsed.exec_command[0] != "nvidia-smi":
            raise Refused("kubectl exec runs only nvidia-smi here (on this cluster a pod's exec runs on the "
                          f"API host): e.g. {NVIDIA_SMI_HOWTO}")
    if uses_stdin and stdin is None:
        raise Refused("kubectl -f - reads the manifest from the request's stdin, which is empty")
    if stdin is not None and not uses_stdin:
        raise Refused("stdin was sent but the command does not read it (use -f -)")
    return Checked(line=line, argv=tuple(argv), tool="kubectl", verb=verb,
                   port_forward=verb == "port-forward", uses_stdin=uses_stdin)


# --------------------------------------------------------------------------- curl

def _curl_options(tokens: list[str]) -> tuple[list[tuple[str, str | bool]], list[str]]:
    """(options as (long name, value), URLs) from curl's words; unknown options are refused."""
    opts: list[tuple[str, str | bool]] = []
    urls: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and len(tok) > 2:
            name = tok[2:]
            if name in _CURL_LONG_BOOL:
                opts.append((name, True))
            elif name in _CURL_LONG_VALUE:
                if i + 1 >= len(tokens):
                    raise Refused(f"curl --{name} needs a value")
                opts.append((name, tokens[i + 1]))
                i += 1
            else:
                raise Refused(f"curl --{name} is not allowed here (allowed: -s -S -f -i -I -v -L -G -X -H -d "
                              "--data-raw --json -m -w -o /dev/null --url ...)")
        elif tok.startswith("-") and len(tok) > 1:
            cluster, j = tok[1:], 0
            while j < len(cluster):
                ch = cluster[j]
                if ch in _CURL_BOOL:
                    opts.append((_CURL_BOOL[ch], True))
                    j += 1
                    continue
                if ch in _CURL_VALUE:
                    rest = cluster[j + 1:]
                    if rest:
                        opts.append((_CURL_VALUE[ch], rest))
                    elif i + 1 < len(tokens):
                        opts.append((_CURL_VALUE[ch], tokens[i + 1]))
                        i += 1
                    else:
                        raise Refused(f"curl -{ch} needs a value")
                    break
                raise Refused(f"curl -{ch} is not allowed here (allowed: -s -S -f -i -I -v -L -G -X -H -d -m -w "
                              "-o /dev/null ...)")
        else:
            urls.append(tok)
        i += 1
    urls += [str(v) for n, v in opts if n == "url"]
    return opts, urls


def _check_curl(argv: list[str], forwarded_ports: frozenset[int]) -> None:
    opts, urls = _curl_options(argv[1:])
    for name, value in opts:
        text = str(value)
        if name == "output" and text not in ("/dev/null", "-"):
            raise Refused("curl -o writes a file on the API host: only -o /dev/null")
        if name in ("data", "data-binary", "data-ascii", "json", "header", "write-out") and text.startswith("@"):
            raise Refused(f"curl --{name} @FILE reads a file on the API host: send the data inline")
        if name == "data-urlencode" and "@" in text.split("=", 1)[0]:
            raise Refused("curl --data-urlencode name@FILE reads a file on the API host: send the data inline")
        if name == "cookie" and "=" not in text:
            raise Refused("curl -b FILE reads a file on the API host: give cookies as name=value")
    if not urls:
        raise Refused("curl needs a URL: kubectl port-forward a service first, then curl localhost:PORT/...")
    for url in urls:
        _check_url(url, forwarded_ports)


def _check_url(url: str, forwarded_ports: frozenset[int]) -> None:
    if any(c in url for c in "{}[]"):
        raise Refused("curl URL globbing ({a,b} and [1-9]) is not supported: one URL per request")
    target = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(target)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        raise Refused(f"curl: cannot read the URL {url!r}") from None
    if parts.scheme.lower() != "http":
        raise Refused(f"curl {parts.scheme}:// is not allowed: only http:// to a port-forward of this session")
    ports = ", ".join(str(p) for p in sorted(forwarded_ports)) or "none yet"
    if host not in LOOPBACK_HOSTS or port is None or port not in forwarded_ports:
        raise Refused(f"curl reaches services only through this session's port-forwards (localhost:PORT; "
                      f"forwarded now: {ports}): kubectl port-forward -n NS svc/NAME :PORT")
