"""curl's grammar: options by type, the URL, and the HTTP request they add up to.

The method is what curl would send, not only what ``-X`` says: data options
(``-d``, ``--data-*``, ``--json``, ``-F``) make a POST, ``-T`` a PUT, ``-I`` a
HEAD, ``-G`` turns data into a query string on a GET, and ``-X`` overrides all
of them. A URL without a scheme is http, as curl assumes.

``http_mutation`` says whether the request changes server state. A POST to an
inference or query endpoint (``/predict``, ``:predict``, ``/v2/models/m/infer``,
``/search``) reads; it does not mutate, so reproducing a symptom with a POST
is evidence, not an action.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .curl_grammar import OPTIONS, SHORT
from .flags import is_flag, read_flag

_KINDS = {**OPTIONS, "help": "b"}  # `-h` takes an optional category only in newer curls
_DATA = ("data", "data-ascii", "data-binary", "data-raw", "data-urlencode")
_FORM = ("form", "form-string")
_MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Last path segment (or `:verb` suffix) of endpoints that answer questions
# rather than change state.
READ_ENDPOINTS = frozenset({"predict", "predictions", "infer", "inference", "invocations", "score",
                            "explain", "classify", "generate", "completions", "embeddings",
                            "search", "_search", "query", "query_range", "query_exemplars",
                            "series", "labels", "rank", "rerank", "tokenize", "graphql",
                            "get", "list", "lookup", "batch-predict", "predict_proba"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _is_read_endpoint(path: str) -> bool:
    """Either of the last two segments names a read (`/predict`, `/predict/batch`, `m:predict`)."""
    for segment in path.rstrip("/").lower().split("/")[-2:]:
        if segment.rsplit(":", 1)[-1] in READ_ENDPOINTS:
            return True
    return False


def _split_url(url: str) -> dict[str, Any]:
    target = url if "://" in url else f"http://{url}"
    try:
        parts = urlsplit(target)
        port = parts.port
        host = parts.hostname
    except ValueError:
        return {"url_path": None, "url_host": None, "port": None}
    scheme = parts.scheme.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
    return {"url_path": parts.path or "/", "url_host": host or None, "port": port}


def parse_curl(argv: list[str]) -> dict[str, Any]:
    """Fields of a ParsedCommand for a curl argv (``argv[0]`` is the program)."""
    tokens = argv[1:]
    flags: dict[str, str | bool] = {}
    urls: list[str] = []
    headers: list[str] = []
    data: list[str] = []
    json_parts: list[str] = []
    form: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not is_flag(tok) or tok == "-":
            if tok != "--":
                urls.append(tok)
            i += 1
            continue
        seen: dict[str, str | bool] = {}
        i = read_flag(tokens, i, _KINDS, SHORT, seen, long_equals=False)
        for key, value in seen.items():
            if key == "header" and isinstance(value, str):
                headers.append(value)
            elif key in _DATA and isinstance(value, str):
                data.append(value)
            elif key == "json" and isinstance(value, str):
                json_parts.append(value)
            elif key in _FORM and isinstance(value, str):
                form.append(value)
            elif key == "url" and isinstance(value, str):
                urls.append(value)
            flags[key] = value

    method = flags.get("request")
    http_method: str | None
    if not urls:  # `curl -s` alone sends nothing
        http_method = None
    elif isinstance(method, str) and method:
        http_method = method.upper()
    elif flags.get("head") is True:
        http_method = "HEAD"
    elif flags.get("get") is True:
        http_method = "GET"
    elif flags.get("upload-file"):
        http_method = "PUT"
    elif data or json_parts or form:
        http_method = "POST"
    else:
        http_method = "GET"
    if json_parts:
        lower = [h.split(":", 1)[0].strip().lower() for h in headers]
        if "content-type" not in lower:
            headers.append("Content-Type: application/json")
        if "accept" not in lower:
            headers.append("Accept: application/json")
    pieces = [*data, *form] + (["".join(json_parts)] if json_parts else [])
    url = urls[0] if urls else None
    out: dict[str, Any] = {"verb": http_method, "http_method": http_method, "url": url,
                           "headers": tuple(headers), "payload": "&".join(pieces) if pieces else None,
                           "flags": flags, "args": tuple(urls[1:])}
    if url is not None:
        out.update(_split_url(url))
    path = out.get("url_path") or "/"
    out["http_mutation"] = http_method in _MUTATING_METHODS and not _is_read_endpoint(path)
    out["output"] = flags.get("output") if isinstance(flags.get("output"), str) else None
    return out
