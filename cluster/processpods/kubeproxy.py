"""A kube-proxy stand-in: one local TCP listener per Service port.

Traffic goes only to endpoints the real endpoint controller marks ready (from
EndpointSlices), so an unready or Pending pod really receives nothing. The
table of listeners is written to a JSON file that platform processes read
through ``mlops_drill.mlplatform.discovery``.

An endpoint is matched to its process by the pod UID in the slice's
``targetRef``, not by address: KWOK hands a freed pod IP to the next pod at
once, so while a deleted pod's process is still stopping (or when its runner
outlived a missed watch event) two processes share one IP, and an IP lookup
sent a Service's traffic to the wrong, or the old, process.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from pathlib import Path
from typing import Callable

log = logging.getLogger("mlops_drill.kubeproxy")

# (pod UID or "" when the slice names none, pod IP, target port) -> local port of its process, or None.
Resolver = Callable[[str, str, int], "int | None"]
Endpoint = tuple[str, str, dict[str, int], bool]  # pod UID, address, port name -> port, ready


def _alias_network() -> int:
    """The second octet of this kubelet's Service addresses (127.N.x.y): one per cluster on a machine."""
    return random.Random().randint(100, 250)



async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
               transform: Callable[[bytes], bytes] | None = None) -> None:
    """Copy one direction of a tunnelled connection until it ends, then close the other side.

    ``transform``: what to forward for the bytes read (it may hold back an incomplete frame).
    """
    try:
        while data := await src.read(65536):
            dst.write(transform(data) if transform else data)
            await dst.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            dst.close()
        except Exception:
            pass

class ServiceProxy:
    def __init__(self, table_file: Path, resolve: Resolver, mirror: Path | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        """``mirror``: a second copy of the table (the one pods see); ``on_change``: after the table changed."""
        self.table_file = table_file
        self.mirror = mirror
        self.on_change = on_change
        self.resolve = resolve
        # Each Service also answers on its own loopback address at its own port (127.N.x.y:80), named in the
        # pods' /etc/hosts, so `curl http://fraud-model.serving.svc.cluster.local/` works inside a pod.
        self.alias_net = _alias_network()
        self.aliases: dict[tuple[str, str], str] = {}
        self.alias_servers: dict[tuple[str, str, int], asyncio.base_events.Server] = {}
        self.service_ports: dict[tuple[str, str], list[tuple[str, int]]] = {}  # (ns, name) -> [(port name, port)]
        self.ports: dict[tuple[str, str, int], tuple[asyncio.base_events.Server, int]] = {}
        self.target_ports: dict[tuple[str, str, int], int | str] = {}
        self.endpoints: dict[tuple[str, str], dict[str, list[Endpoint]]] = {}
        # kube-proxy's default (iptables) mode picks an endpoint at random per connection. A round robin
        # shared by every Service fell into step with the replay's fixed pattern of calls, so one pod of
        # three could go without traffic for tens of seconds.
        self._choose = random.Random().choice

    # -- desired state from the API ------------------------------------------------------
    async def service_changed(self, svc: dict, deleted: bool = False) -> None:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ports = [] if deleted or svc["spec"].get("type") == "ExternalName" else svc["spec"].get("ports") or []
        wanted = {(ns, name, int(p["port"])): p.get("targetPort", p["port"]) for p in ports
                  if p.get("protocol", "TCP") == "TCP"}
        for key in [k for k in self.ports if k[:2] == (ns, name) and k not in wanted]:
            server, _ = self.ports.pop(key)
            server.close()
            self.target_ports.pop(key, None)
            alias = self.alias_servers.pop(key, None)
            if alias is not None:
                alias.close()
        if wanted:
            self.service_ports[(ns, name)] = [(p.get("name") or "", int(p["port"])) for p in ports
                                              if p.get("protocol", "TCP") == "TCP"]
        else:
            self.service_ports.pop((ns, name), None)
            self.aliases.pop((ns, name), None)
        for key, target in wanted.items():
            self.target_ports[key] = target
            if key not in self.ports:
                server = await asyncio.start_server(
                    lambda r, w, key=key: self._handle(key, r, w), host="127.0.0.1", port=0)
                self.ports[key] = (server, server.sockets[0].getsockname()[1])
            if key not in self.alias_servers:
                address = self._alias(ns, name)
                try:
                    self.alias_servers[key] = await asyncio.start_server(
                        lambda r, w, key=key: self._handle(key, r, w), host=address, port=key[2])
                except OSError as exc:  # taken (another cluster's alias, or a port below 1024 without root)
                    log.debug("service %s/%s: no listener on %s:%s: %s", ns, name, address, key[2], exc)
        self._write_table()

    def _alias(self, ns: str, name: str) -> str:
        if (ns, name) not in self.aliases:
            used = set(self.aliases.values())
            index = len(used) + 1
            while f"127.{self.alias_net}.{index >> 8}.{index & 255}" in used:
                index += 1
            self.aliases[(ns, name)] = f"127.{self.alias_net}.{index >> 8}.{index & 255}"
        return self.aliases[(ns, name)]

    def service_env(self, namespace: str) -> dict[str, str]:
        """The Service links a kubelet puts in a container's env: every Service of its namespace."""
        env: dict[str, str] = {}
        for (ns, name), ports in sorted(self.service_ports.items()):
            address = self.aliases.get((ns, name))
            if ns != namespace or not ports or address is None:
                continue
            stem = name.upper().replace("-", "_").replace(".", "_")
            first = ports[0][1]
            env[f"{stem}_SERVICE_HOST"] = address
            env[f"{stem}_SERVICE_PORT"] = str(first)
            env[f"{stem}_PORT"] = f"tcp://{address}:{first}"
            for port_name, port in ports:
                if port_name:
                    env[f"{stem}_SERVICE_PORT_{port_name.upper().replace('-', '_')}"] = str(port)
                env[f"{stem}_PORT_{port}_TCP"] = f"tcp://{address}:{port}"
                env[f"{stem}_PORT_{port}_TCP_PROTO"] = "tcp"
                env[f"{stem}_PORT_{port}_TCP_PORT"] = str(port)
                env[f"{stem}_PORT_{port}_TCP_ADDR"] = address
        return env

    def hosts_for(self, namespace: str) -> str:
        """/etc/hosts lines for the Services a pod of ``namespace`` may name (its own seat's, by their seat names).

        Stands in for cluster DNS: the short forms a pod's resolver would try with its search list are spelled out.
        """
        from mlops_drill.cluster.seats.names import namespace_prefix

        prefix = namespace_prefix(namespace)
        lines = []
        for (ns, name), address in sorted(self.aliases.items()):
            if namespace_prefix(ns) != prefix or (ns, name) not in self.service_ports:
                continue
            seen_ns = ns[len(prefix):]
            names = [f"{name}.{seen_ns}.svc.cluster.local", f"{name}.{seen_ns}.svc", f"{name}.{seen_ns}"]
            if ns == namespace:
                names.append(name)
            lines.append(f"{address}\t{' '.join(names)}\n")
        return "".join(lines)

    def endpoints_changed(self, eps: dict, deleted: bool = False) -> None:
        meta = eps["metadata"]
        service = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not service:
            return
        per_service = self.endpoints.setdefault((meta["namespace"], service), {})
        if deleted:
            per_service.pop(meta["name"], None)
            return
        port_map = {p.get("name") or "": int(p["port"]) for p in eps.get("ports") or [] if p.get("port")}
        per_service[meta["name"]] = [
            (str((ep.get("targetRef") or {}).get("uid") or ""), addr, port_map,
             bool((ep.get("conditions") or {}).get("ready")))
            for ep in eps.get("endpoints") or [] for addr in ep.get("addresses") or []
        ]

    # -- data path -----------------------------------------------------------------------
    def _pick(self, key: tuple[str, str, int]) -> int | None:
        target = self.target_ports.get(key)
        candidates = []
        for slice_eps in self.endpoints.get(key[:2], {}).values():
            for uid, addr, port_map, ready in slice_eps:
                if not ready:
                    continue
                port = target if isinstance(target, int) else port_map.get(str(target) if target else "")
                if port is None and port_map:
                    port = next(iter(port_map.values()))
                local = self.resolve(uid, addr, int(port)) if port is not None else None
                if local:
                    candidates.append(local)
        if not candidates:
            return None
        return self._choose(candidates)

    async def _handle(self, key, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = self._pick(key)
        if local is None:  # no ready endpoint: a real Service answers with a refused/reset connection
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", local)
        except OSError:
            writer.close()
            return

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def _write_table(self) -> None:
        table: dict[str, str] = {}
        for (ns, name, port), (_, local) in sorted(self.ports.items()):
            table[f"{ns}/{name}:{port}"] = f"127.0.0.1:{local}"
            table.setdefault(f"{ns}/{name}", f"127.0.0.1:{local}")
        text = json.dumps(table, indent=1, sort_keys=True)
        for path in (self.table_file, self.mirror):
            if path is not None:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.chmod(0o644)
                os.replace(tmp, path)
        self.on_change()

    def close(self) -> None:
        for server, _ in self.ports.values():
            server.close()
        for server in self.alias_servers.values():
            server.close()
