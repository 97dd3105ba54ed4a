"""What every platform process shares: JSON logs, env parsing, HTTP calls, serving.

Kept to the standard library (plus uvicorn to serve) so each app starts fast:
processes are restarted on every rollout, and start-up time is part of what a
candidate sees.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

_app_name = "app"


def set_app_name(name: str) -> None:
    global _app_name
    _app_name = name


def log(level: str, msg: str, **fields: Any) -> None:
    """One JSON object per line on stdout: what ``kubectl logs`` shows."""
    record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "level": level, "logger": _app_name, "msg": msg, **fields}
    sys.stdout.write(json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def release(default: str) -> str:
    """The release this process runs as: the tag of ``CONTAINER_IMAGE`` (contract), else ``default``."""
    image = os.environ.get("CONTAINER_IMAGE", "")
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return default
    return last.split(":", 1)[1] if ":" in last else default


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"invalid value for env {name}: {value!r} is not a number") from None


def env_json_or_file(name: str) -> Any | None:
    """An env var holding JSON text, or the path of a JSON file (how ConfigMaps arrive)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if value[0] in "{[":
        return json.loads(value)
    with open(value) as fh:
        return json.load(fh)


class UpstreamError(Exception):
    """Another service could not be reached or answered with an error."""

    def __init__(self, url: str, reason: str, status: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.status = url, reason, status


def http_json(method: str, url: str, body: Any = None, timeout: float = 3.0) -> Any:
    """Call a JSON endpoint; non-2xx and connection failures raise UpstreamError with the real reason."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        raise UpstreamError(url, f"HTTP {err.code}: {detail}", err.code) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UpstreamError(url, str(reason)) from None


def bind_address() -> tuple[str, int]:
    """``127.0.0.1:$PORT`` under the process kubelet; ``0.0.0.0:8080`` inside a real pod."""
    port = os.environ.get("PORT")
    host = os.environ.get("HOST")
    if not host:
        in_real_pod = port is None and "KUBERNETES_SERVICE_HOST" in os.environ
        host = "0.0.0.0" if in_real_pod else "127.0.0.1"
    return host, int(port or 8080)


def serve(app: Any) -> None:
    """Run an ASGI app until SIGTERM (uvicorn's own logs quiet: ours are the JSON lines)."""
    import uvicorn

    host, port = bind_address()
    log("info", "listening", address=f"{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def metrics_handler():
    """An http.server handler for a background worker's only two pages: ``/metrics`` and its health.

    Why http.server and not FastAPI: a worker whose real work is a loop (the replay, the
    scoring worker) needs no app server to be scraped and probed.
    """
    from http.server import BaseHTTPRequestHandler

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/metrics":
                body, ctype = generate_latest(), CONTENT_TYPE_LATEST
            elif self.path in ("/healthz", "/readyz"):
                body, ctype = b'{"status":"ok"}', "application/json"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return MetricsHandler
