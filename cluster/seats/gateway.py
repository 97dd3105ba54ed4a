"""One API endpoint per seat, in front of the shared cluster's API server.

Why a rewriting gateway and not namespace names the candidate must type: the
scenarios, the grader and the playbook speak of ``-n serving`` and
``gpu-node-0``; a seat that had to type ``-n s-3f9a1c-2--serving`` would grade
differently from a single-user drill. Here a request's namespace and node names
gain the seat's prefix on the way in and lose it on the way out, lists keep
only the seat's objects, and every other request goes through unchanged, so a
seat behaves exactly like a cluster of its own (vcluster's idea, without a
second control plane).

Who may do what stays the API server's decision: a seat's engine token is
forwarded with the cluster admin's client certificate, a candidate's token as
an impersonation of the seat's own ``oncall-engineer`` ServiceAccount, which
RBAC binds to the seat's namespaces. A name that already carries another
seat's prefix is refused here, before it reaches the server.

HTTP/1.1 over TLS (kubectl sends no token over plain http; ALPN offers no h2). Answers are
asked for as JSON; protobuf request bodies (kubectl's typed clients) are rewritten by
``protobuf.py``. Upgrades (exec, attach, port-forward) are tunnelled byte for byte once
their request line is rewritten.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import yaml

from mlops_drill.cluster.seats import protobuf
from mlops_drill.cluster.seats.names import (NODE_SELECTOR_ANNOTATION, SEAT_LABEL, SEAT_NAME,
                                             SHARED_CLUSTER_ROLES, seat_id)

log = logging.getLogger("mlops_drill.seats.gateway")

#: Cluster-scoped kinds whose objects belong to one seat (their names carry its prefix).
_SEAT_OWNED = {"nodes": "Node", "namespaces": "Namespace",
               "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding"}
_STRICT = {"nodes", "namespaces"}  # a seat sees only its own; of the rest it also sees the cluster's own
_MAX_BODY = 64 * 1024 * 1024
#: Node folders of the platform (hostPath); on shared nodes a seat's copy carries its prefix.
SEAT_HOST_ROOT = "/var/lib/mlops-drill/"


@dataclass(frozen=True)
class Route:
    """One seat: its prefix and the two tokens that reach it."""

    prefix: str
    admin_token: str
    candidate_token: str
    candidate_user: str = "oncall-engineer"
    candidate_namespace: str = "kube-system"
    #: The seat uses the cluster's own nodes (an existing or kind cluster, whose kubelets are real) instead of
    #: nodes of its own: node names pass unchanged, and the candidate may only read nodes.
    shared_nodes: bool = False

    def ns(self, name: str) -> str:
        return name if name.startswith(self.prefix) else self.prefix + name

    def node(self, name: str) -> str:
        return name if self.shared_nodes else self.prefix + name

    def owned(self, resource: str, name: str) -> str:
        if resource in ("clusterroles", "clusterrolebindings") and (
                name in SHARED_CLUSTER_ROLES or name.startswith("system:")):
            return name
        if resource == "nodes":
            return self.node(name)
        return self.prefix + name


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def status_body(status: int, reason: str, message: str) -> bytes:
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": status}).encode()


# -- requests -------------------------------------------------------------------------------------
def _foreign(name: str, route: Route) -> bool:
    return bool(SEAT_NAME.match(name)) and not name.startswith(route.prefix)


def rewrite_path(path: str, route: Route) -> tuple[str, str | None, str | None]:
    """(path on the cluster, resource the request lists or None, resource the path is about or None)."""
    if unquote(path) != path:
        # The API server decodes a path before routing and authorizing it; compared raw here,
        # `/api/v1/%6eodes/x` would pass as something else than nodes.
        raise Refused(400, "BadRequest", "percent-encoded request paths are not accepted by this seat")
    parts = path.split("/")
    # /api/v1/... -> group part ends at index 3; /apis/g/v/... -> at index 4
    if len(parts) > 1 and parts[1] == "api":
        base = 3
    elif len(parts) > 1 and parts[1] == "apis":
        base = 4
    else:
        return path, None, False
    rest = parts[base:]
    if rest[:1] == ["watch"]:
        # The deprecated `/watch/` paths (kubectl uses `?watch=true`) stream events this parser would not filter.
        raise Refused(400, "BadRequest", "watch paths are not accepted by this seat: use ?watch=true")
    if len(rest) >= 2 and rest[0] == "namespaces" and rest[1]:
        if _foreign(rest[1], route):
            raise Refused(403, "Forbidden", f'namespaces "{rest[1]}" is forbidden for this seat')
        rest[1] = route.ns(rest[1])
        listed = rest[2] if len(rest) == 3 else None
        about = rest[2] if len(rest) >= 3 else "namespaces"
    else:
        listed = rest[0] if len(rest) == 1 else None
        about = rest[0] if rest else None
        if len(rest) >= 2 and rest[0] in _SEAT_OWNED and rest[1]:
            if _foreign(rest[1], route):
                raise Refused(404, "NotFound", f'{rest[0]} "{rest[1]}" not found')
            rest[1] = route.owned(rest[0], rest[1])
    return "/".join(parts[:base] + rest), listed, about


_SELECTOR_NS = ("metadata.namespace", "involvedObject.namespace", "regarding.namespace")
_SELECTOR_NODE = ("spec.nodeName", "source.host")


def rewrite_query(query: str, route: Route, resource: str | None) -> str:
    if not query:
        return query
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "fieldSelector":
            value = ",".join(_rewrite_term(term, route, resource) for term in value.split(","))
        pairs.append((key, value))
    return urlencode(pairs, quote_via=quote)


def _rewrite_term(term: str, route: Route, resource: str | None) -> str:
    match = re.match(r"^([\w.]+)(!=|==|=)(.*)$", term)
    if not match:
        return term
    field, op, value = match.groups()
    if field in _SELECTOR_NS or (field == "metadata.name" and resource == "namespaces"):
        value = route.ns(value) if value else value
    elif field in _SELECTOR_NODE or (field == "metadata.name" and resource == "nodes"):
        value = route.node(value) if value else value
    return f"{field}{op}{value}"


def rewrite_body(doc: Any, route: Route, resource: str | None = None) -> Any:
    """Namespaces, node names and seat-owned cluster objects named as the cluster knows them."""
    if isinstance(doc, list):
        return [rewrite_body(d, route, resource) for d in doc]
    if not isinstance(doc, dict):
        return doc
    kind = doc.get("kind")
    out = {}
    for key, value in doc.items():
        if key == "namespace" and isinstance(value, str) and value:
            if _foreign(value, route):
                raise Refused(403, "Forbidden", f'namespaces "{value}" is forbidden for this seat')
            out[key] = route.ns(value)
        elif key == "nodeName" and isinstance(value, str) and value:
            out[key] = route.node(value)
        elif key == "hostPath" and route.shared_nodes and isinstance(value, dict) \
                and str(value.get("path", "")).startswith(SEAT_HOST_ROOT):
            # Seats on real kubelets share the nodes' folders: each gets its own, named with its prefix
            # (which answers drop again, so the seat sees the platform's path).
            folder, _, leaf = str(value["path"]).rstrip("/").rpartition("/")
            out[key] = {**value, "path": f"{folder}/{route.prefix}{leaf}"}
        elif key == "roleRef" and isinstance(value, dict) and value.get("kind") == "ClusterRole":
            out[key] = {**value, "name": route.owned("clusterroles", str(value.get("name", "")))}
        else:
            out[key] = rewrite_body(value, route, resource)
    if route.shared_nodes:
        pass  # the cluster's own nodes: no seat label to select, no node selector to add
    elif kind == "DaemonSet" or (resource == "daemonsets" and kind is None and "spec" in out):
        # The DaemonSet controller places a pod per matching node before admission adds the seat's
        # node selector: without it in the template, a seat's DaemonSet would count every seat's nodes.
        template = (out.get("spec") or {}).get("template")
        if isinstance(template, dict) and isinstance(template.get("spec"), dict):
            selector = template["spec"].get("nodeSelector") or {}
            template["spec"]["nodeSelector"] = {**selector, SEAT_LABEL: seat_id(route.prefix)}
    meta = out.get("metadata")
    plural = {v: k for k, v in _SEAT_OWNED.items()}.get(kind or "")
    if isinstance(meta, dict) and plural and isinstance(meta.get("name"), str):
        meta["name"] = route.owned(plural, meta["name"]) if plural != "namespaces" else route.ns(meta["name"])
        if kind == "Namespace" and not route.shared_nodes:
            annotations = meta.setdefault("annotations", {}) or {}
            annotations[NODE_SELECTOR_ANNOTATION] = f"{SEAT_LABEL}={seat_id(route.prefix)}"
            meta["annotations"] = annotations
    return out


# -- responses ------------------------------------------------------------------------------------
def _keep(meta: dict, route: Route, resource: str | None) -> bool:
    namespace = meta.get("namespace")
    if namespace:
        return namespace.startswith(route.prefix)
    name = meta.get("name") or ""
    if name.startswith(route.prefix):
        return True
    strict = resource in _STRICT and not (route.shared_nodes and resource == "nodes")
    return not strict and not SEAT_NAME.match(name)


def filter_doc(doc: Any, route: Route, resource: str | None) -> Any:
    """Only the seat's objects of a list, a Table, or one watch event."""
    if not isinstance(doc, dict):
        return doc
    if isinstance(doc.get("items"), list):
        doc["items"] = [i for i in doc["items"] if not isinstance(i, dict)
                        or _keep(i.get("metadata") or {}, route, resource)]
    if doc.get("kind") == "Table" and isinstance(doc.get("rows"), list):
        doc["rows"] = [r for r in doc["rows"]
                       if _keep(((r.get("object") or {}).get("metadata") or {}), route, resource)]
    return doc


def _event_kept(event: dict, route: Route, resource: str | None) -> bool:
    obj = event.get("object")
    if not isinstance(obj, dict) or event.get("type") in ("ERROR", "BOOKMARK"):
        return True
    if obj.get("kind") == "Table":
        filter_doc(obj, route, resource)
        return bool(obj.get("rows"))
    return _keep(obj.get("metadata") or {}, route, resource)


def hide_seat(doc: Any, seat: str) -> Any:
    """Drop the seat's own placement marks (node label, namespace and pod node selectors).

    They are how the shared cluster keeps a seat on its nodes, not part of the
    platform; left in, `kubectl get ds` would show a node selector no manifest has.
    """
    if isinstance(doc, dict):
        return {k: hide_seat(v, seat) for k, v in doc.items() if not _seat_mark(k, v, seat)}
    if isinstance(doc, list):
        return [hide_seat(v, seat) for v in doc]
    if isinstance(doc, str) and seat in doc and SEAT_LABEL in doc:
        return ",".join(p for p in doc.split(",") if p != f"{SEAT_LABEL}={seat}")
    return doc


_MARKS = {SEAT_LABEL, NODE_SELECTOR_ANNOTATION}


def _seat_mark(key: str, value: Any, seat: str) -> bool:
    if key.startswith("f:"):  # managedFields: the field, whoever set it
        return key[2:] in _MARKS
    return key in _MARKS and isinstance(value, str) and seat in value


def rewrite_response(body: bytes, route: Route, resource: str | None, listing: bool) -> bytes:
    if body[:1] == b"{":
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if doc is not None:
            if listing:
                doc = filter_doc(doc, route, resource)
            body = json.dumps(hide_seat(doc, seat_id(route.prefix)), separators=(",", ":")).encode()
    return body.replace(route.prefix.encode(), b"")


# -- HTTP/1.1 ------------------------------------------------------------------------------------
async def _read_head(reader: asyncio.StreamReader) -> tuple[str, list[tuple[str, str]]] | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        raise Refused(431, "RequestHeaderFieldsTooLarge", "request headers too large")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    if (_header(headers, "transfer-encoding") or "").lower() == "chunked":
        chunks = []
        async for chunk in _chunks(reader):
            chunks.append(chunk)
        return b"".join(chunks)
    length = int(_header(headers, "content-length") or 0)
    if length > _MAX_BODY:
        raise Refused(413, "RequestEntityTooLarge", "request body too large")
    return await reader.readexactly(length) if length else b""


async def _chunks(reader: asyncio.StreamReader):
    while True:
        size_line = await reader.readline()
        if not size_line:
            return
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data


_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "authorization", "host",
        "accept-encoding", "proxy-connection", "te", "trailer", "impersonate-user", "impersonate-group",
        "impersonate-uid"}


class Gateway:
    """All seats' endpoints, served by one asyncio loop in a background thread."""

    def __init__(self, upstream: str, ca_file: Path, cert_file: Path, key_file: Path,
                 serving: tuple[Path, Path, Path] | None = None) -> None:
        parsed = urlsplit(upstream)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.ssl = ssl.create_default_context(cafile=str(ca_file))
        self.ssl.load_cert_chain(str(cert_file), str(key_file))
        # kubectl sends no bearer token over plain http, so seats are served over TLS too: on the embedded
        # cluster with kwokctl's certificate (valid for 127.0.0.1 and signed by its CA); elsewhere with
        # ``serving`` (certificate, key, the CA a seat's kubeconfig trusts), made for 127.0.0.1.
        serving_cert, serving_key, self.serving_ca = serving or (cert_file, key_file, ca_file)
        self.serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.serving.load_cert_chain(str(serving_cert), str(serving_key))
        self.serving.set_alpn_protocols(["http/1.1"])
        self.loop = asyncio.new_event_loop()
        self.servers: dict[str, asyncio.base_events.Server] = {}
        self.routes: dict[str, Route] = {}
        self.ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="seat-gateway")
        self._thread.start()

    @classmethod
    def for_kubeconfig(cls, kubeconfig: Path, own_tls: Path | None = None) -> "Gateway":
        """The gateway in front of the cluster ``kubeconfig`` reaches as its admin.

        ``own_tls``: a folder where the gateway keeps its own serving certificate and the
        kubeconfig's inline credentials as files (an existing cluster's flattened kubeconfig).
        """
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        if own_tls is None:
            return cls(cluster["server"], Path(cluster["certificate-authority"]),
                       Path(user["client-certificate"]), Path(user["client-key"]))
        from mlops_drill.cluster.seats.tls import credential_files, serving_certificate

        ca, cert, key = credential_files(kubeconfig, cluster, user, own_tls)
        return cls(cluster["server"], ca, cert, key, serving=serving_certificate(own_tls))

    def _call(self, coro: Awaitable) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def add(self, route: Route, port: int = 0) -> int:
        """Serve ``route`` on 127.0.0.1:``port`` (0: any free port); returns the port."""
        async def start() -> int:
            server = await asyncio.start_server(lambda r, w: self._serve(route, r, w), "127.0.0.1", port,
                                                limit=1024 * 1024, ssl=self.serving)
            self.servers[route.prefix] = server
            self.routes[route.prefix] = route
            self.ports[route.prefix] = server.sockets[0].getsockname()[1]
            return self.ports[route.prefix]

        try:
            return self._call(start())
        except OSError as exc:
            raise OSError(f"seat gateway: port {port} on 127.0.0.1 is in use ({exc.strerror})") from exc

    def remove(self, prefix: str) -> None:
        server = self.servers.pop(prefix, None)
        self.routes.pop(prefix, None)
        self.ports.pop(prefix, None)
        if server is not None:
            self.loop.call_soon_threadsafe(server.close)

    def close(self) -> None:
        """Stop every endpoint and the loop, open connections (watches, port-forwards) included."""
        async def stop_all() -> None:
            for server in self.servers.values():
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self._call(stop_all())
        finally:
            self.servers.clear()
            self.routes.clear()
            self.ports.clear()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)

    # -- one client connection ----------------------------------------------------------------
    async def _serve(self, route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                try:
                    head = await _read_head(reader)
                    if head is None:
                        return
                    request_line, headers = head
                    body = await _read_body(reader, headers)
                    tunnel, upstream = await self._exchange(route, request_line, headers, body, upstream,
                                                            reader, writer)
                except Refused as exc:
                    await _send(writer, exc.status, exc.reason, status_body(exc.status, exc.reason, str(exc)))
                    tunnel = False
                if tunnel or (_header(headers, "connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except Exception:  # one broken exchange must not stop the seat's endpoint
            log.exception("seat %s: gateway request failed", route.prefix)
        finally:
            if upstream is not None:
                upstream[1].close()
            writer.close()

    def _identity(self, route: Route, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        auth = _header(headers, "authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if token and token == route.admin_token:
            return []
        if token and token == route.candidate_token:
            ns = route.ns(route.candidate_namespace)
            return [("Impersonate-User", f"system:serviceaccount:{ns}:{route.candidate_user}"),
                    ("Impersonate-Group", "system:serviceaccounts"),
                    ("Impersonate-Group", f"system:serviceaccounts:{ns}"),
                    ("Impersonate-Group", "system:authenticated")]
        raise Refused(401, "Unauthorized", "Unauthorized")

    async def _exchange(self, route: Route, request_line: str, headers: list[tuple[str, str]], body: bytes,
                        upstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        method, target, _version = request_line.split(" ", 2)
        identity = self._identity(route, headers)
        split_target = urlsplit(target)
        path, resource, about = rewrite_path(split_target.path, route)
        if identity and route.shared_nodes and about == "nodes" and method not in ("GET", "HEAD"):
            # Every seat of the drill schedules on these nodes: a cordon or a taint here would reach them all.
            raise Refused(403, "Forbidden", "nodes are shared by every seat of this drill: read-only here")
        query = rewrite_query(split_target.query, route, resource)
        params = dict(parse_qsl(split_target.query))
        streaming = params.get("watch") in ("true", "1") or params.get("follow") in ("true", "1")
        upgrade = _header(headers, "upgrade") is not None
        content_type = (_header(headers, "content-type") or "").lower()
        if body and "protobuf" in content_type:
            try:
                body = protobuf.rewrite_body(body, resource, route.ns, route.node)
            except ValueError as exc:
                raise Refused(400, "BadRequest", f"protobuf body not understood: {exc}") from None
        elif body and method in ("POST", "PUT", "PATCH"):
            body = _rewrite_request_body(body, content_type, route, about)
        out = [(k, v) for k, v in headers if k.lower() not in _HOP and not k.lower().startswith("impersonate-")
               and not (upgrade and k.lower() == "upgrade")]
        out = [(k, v.replace("application/vnd.kubernetes.protobuf", "application/json")) if k.lower() == "accept"
               else (k, v) for k, v in out]
        out += identity
        out.append(("Host", f"{self.host}:{self.port}"))
        if upgrade:
            out += [("Connection", "Upgrade"), ("Upgrade", _header(headers, "upgrade") or "")]
        if body or method in ("POST", "PUT", "PATCH"):
            out.append(("Content-Length", str(len(body))))
        target_out = path + (f"?{query}" if query else "")
        request = (f"{method} {target_out} HTTP/1.1\r\n".encode("latin-1")
                   + "".join(f"{k}: {v}\r\n" for k, v in out).encode("latin-1") + b"\r\n" + body)
        while True:
            # A kept-alive connection the API server has since closed fails at once, before any answer:
            # the request is sent again on a fresh connection. A fresh one that fails is a real failure.
            fresh = upstream is None or upstream[1].is_closing()
            if fresh:
                upstream = await asyncio.open_connection(self.host, self.port, ssl=self.ssl, limit=1024 * 1024)
            up_reader, up_writer = upstream
            try:
                up_writer.write(request)
                await up_writer.drain()
                head = await _read_head(up_reader)
            except (ConnectionError, OSError):
                head = None
            if head is not None:
                break
            up_writer.close()
            upstream = None
            if fresh:
                raise ConnectionError("the API server closed the connection")
        status_line, resp_headers = head
        code = int(status_line.split(" ", 2)[1])
        if code == 101:
            writer.write((status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in resp_headers) + "\r\n")
                         .encode("latin-1"))
            await writer.drain()
            await _pipe_both(reader, writer, up_reader, up_writer)
            return True, None
        keep = [(k, v) for k, v in resp_headers if k.lower() not in _HOP]
        chunked = (_header(resp_headers, "transfer-encoding") or "").lower() == "chunked"
        if method == "HEAD" or code in (204, 304):
            writer.write(_head_bytes(status_line, keep + [("Content-Length", "0")]))
            await writer.drain()
            return False, upstream
        if streaming and code == 200:
            writer.write(_head_bytes(status_line, keep + [("Transfer-Encoding", "chunked")]))
            await writer.drain()
            await self._stream(route, resource, chunked, up_reader, writer, params)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            up_writer.close()
            return False, None
        if chunked:
            data = b"".join([c async for c in _chunks(up_reader)])
        else:
            data = await up_reader.readexactly(int(_header(resp_headers, "content-length") or 0))
        listing = method == "GET" and resource is not None
        # Discovery and OpenAPI documents (no resource in the path) hold nothing of a seat, and are large.
        data = rewrite_response(data, route, resource, listing) if about is not None \
            else data.replace(route.prefix.encode(), b"")
        writer.write(_head_bytes(status_line, keep + [("Content-Length", str(len(data)))]) + data)
        await writer.drain()
        if (_header(resp_headers, "connection") or "").lower() == "close":
            up_writer.close()
            return False, None
        return False, upstream

    async def _stream(self, route: Route, resource: str | None, chunked: bool, up_reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, params: dict[str, str]) -> None:
        """Watch events and followed logs, line by line, as they come."""
        watch = params.get("watch") in ("true", "1")
        pending = b""

        async def source():
            if chunked:
                async for chunk in _chunks(up_reader):
                    yield chunk
            else:
                while True:
                    data = await up_reader.read(65536)
                    if not data:
                        return
                    yield data

        async for chunk in source():
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            out = []
            for line in lines:
                if watch and line.strip():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        event = None
                    if isinstance(event, dict):
                        if not _event_kept(event, route, resource):
                            continue
                        line = json.dumps(hide_seat(event, seat_id(route.prefix)), separators=(",", ":")).encode()
                out.append(line.replace(route.prefix.encode(), b"") + b"\n")
            data = b"".join(out)
            if data:
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
        if pending:
            data = pending.replace(route.prefix.encode(), b"")
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _rewrite_request_body(body: bytes, content_type: str, route: Route, resource: str | None) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError:
        if "yaml" not in content_type:
            return body
        try:
            doc = yaml.safe_load(body)
        except yaml.YAMLError:
            return body
    return json.dumps(rewrite_body(doc, route, resource), separators=(",", ":")).encode()


def _head_bytes(status_line: str, headers: list[tuple[str, str]]) -> bytes:
    return (status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n").encode("latin-1")


async def _send(writer: asyncio.StreamWriter, status: int, reason: str, body: bytes) -> None:
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()


async def _pipe_both(a_reader, a_writer, b_reader, b_writer) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(pipe(a_reader, b_writer), pipe(b_reader, a_writer))

