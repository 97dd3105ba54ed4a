"""Turn a pod's container spec into a local process invocation, the way a kubelet would.

Pure functions over plain dicts (the pod as the API returns it), so they are
easy to test without a cluster: env resolution (values, ConfigMap, Secret and
field refs), volume mounts mapped onto host folders, and the command line.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlops_drill.cluster.seats.names import namespace_prefix

PROCESS_LABEL = "mlops-drill.dev/process"

# lookup(kind, namespace, name) -> data dict (ConfigMap .data, Secret .data base64-decoded) or None.
Lookup = Callable[[str, str, str], "dict[str, str] | None"]


class SpecError(Exception):
    """A container that a real kubelet would refuse to start (CreateContainerConfigError)."""


@dataclass
class ProcessSpec:
    argv: list[str]
    env: dict[str, str]
    container: str
    image: str
    container_port: int | None
    readiness: dict[str, Any] | None
    liveness: dict[str, Any] | None
    volumes: dict[str, Path] = field(default_factory=dict)  # mountPath -> host folder
    readonly: set[str] = field(default_factory=set)  # mountPaths mounted read-only (ConfigMap, Secret, readOnly)
    working_dir: str = ""  # the container's workingDir ("" = the image's, / here)


def _field_ref(pod: dict, path: str) -> str:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise SpecError(f"unsupported fieldRef {path}")


def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion; $$ escapes, unknown names stay as written."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", repl, value)


def resolve_env(pod: dict, container: dict, lookup: Lookup) -> dict[str, str]:
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = source.get(key)
            if ref:
                data = lookup(kind, namespace, ref["name"])
                if data is None and not ref.get("optional"):
                    raise SpecError(f'{kind.lower()} "{ref["name"]}" not found')
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for item in container.get("env") or []:
        name = item["name"]
        if "value" in item:
            env[name] = _expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = _field_ref(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind, ref = ("ConfigMap", source["configMapKeyRef"]) if "configMapKeyRef" in source \
                else ("Secret", source["secretKeyRef"])
            data = lookup(kind, namespace, ref["name"])
            if data is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                what = f'{kind.lower()} "{ref["name"]}"'
                raise SpecError(f"{what} not found" if data is None else f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}")
            env[name] = data[ref["key"]]
        elif "resourceFieldRef" in source:
            env[name] = "0"
        else:
            env[name] = ""
    return env


def map_volumes(pod: dict, container: dict, pod_dir: Path, volumes_root: Path, lookup: Lookup) -> dict[str, Path]:
    """Host folders for the container's mounts; ConfigMap and Secret files are written out.

    A PersistentVolumeClaim keeps one folder per claim (so a checkpoint survives
    the pod), an emptyDir one folder per pod, as on a real node.
    """
    namespace = pod["metadata"]["namespace"]
    by_name = {v["name"]: v for v in pod.get("spec", {}).get("volumes") or []}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = by_name.get(mount["name"])
        if volume is None:
            continue
        if "persistentVolumeClaim" in volume:
            host = folder_within(volumes_root, f'{namespace}/{volume["persistentVolumeClaim"]["claimName"]}',
                                 f'persistentVolumeClaim "{volume["persistentVolumeClaim"]["claimName"]}"')
        elif "hostPath" in volume:
            # A seat of a shared cluster has nodes of its own, so its host folders are its own too.
            host = folder_within(volumes_root, f'_host/{namespace_prefix(namespace)}/{volume["hostPath"]["path"]}',
                                 f'hostPath "{volume["hostPath"]["path"]}"')
        else:
            host = folder_within(pod_dir, f'volumes/{mount["name"]}', f'volume "{mount["name"]}"')
        for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
            if key in volume:
                ref_name = volume[key].get("name") or volume[key].get("secretName")
                data = lookup(kind, namespace, ref_name) or {}
                for fname, content in data.items():
                    (host / fname).write_text(content)
        target = folder_within(host, mount["subPath"], f'subPath "{mount["subPath"]}"') if mount.get("subPath") else host
        mounts[mount["mountPath"].rstrip("/") or "/"] = target
    return mounts


def folder_within(root: Path, relative: str, what: str) -> Path:
    """``root/relative`` as a real folder inside ``root``, made if missing; SpecError on a way out.

    Why: pods write their volumes, so a pod can plant a symlink (``ln -s / data/esc``) or a
    mount can name ``..``; bubblewrap binds a source after resolving it on the host, so
    ``hostPath: /data/esc`` in a second pod would bind the host's root. Each component is
    checked without following links, then the result is checked to resolve inside ``root``.
    """
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SpecError(f"{what}: must not contain '..'")
    root.mkdir(parents=True, exist_ok=True)
    path = root
    for part in parts:
        path = path / part
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            pass
        if path.is_symlink() or not path.is_dir():
            raise SpecError(f"{what}: {part} is a symlink or not a directory on the node")
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(path), real_root]) != real_root:
        raise SpecError(f"{what}: resolves outside the pod's volumes")
    return path


def rewrite_paths(value: str, mounts: dict[str, Path]) -> str:
    """Point a container path at the host folder that holds it (longest mount wins)."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(mounts[mount_path]) + value[len(mount_path):]
    return value


def build_argv(container: dict, env: dict[str, str]) -> list[str]:
    argv = [_expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv:
        raise SpecError("no command: process-backed containers must set command")
    if argv[0] in ("python", "python3") or re.fullmatch(r"python3\.\d+", argv[0]):
        argv[0] = sys.executable  # the interpreter that has mlops_drill installed
    return argv


def readonly_mounts(pod: dict, container: dict) -> set[str]:
    """mountPaths a kubelet mounts read-only: ConfigMap, Secret and projected volumes, and ``readOnly`` mounts."""
    by_name = {v["name"]: v for v in pod.get("spec", {}).get("volumes") or []}
    found = set()
    for mount in container.get("volumeMounts") or []:
        volume = by_name.get(mount["name"]) or {}
        if mount.get("readOnly") or any(k in volume for k in ("configMap", "secret", "projected", "downwardAPI")):
            found.add(mount["mountPath"].rstrip("/") or "/")
    return found


def process_spec(pod: dict, lookup: Lookup, pod_dir: Path, volumes_root: Path, sandboxed: bool = False) -> ProcessSpec:
    """Everything needed to run the pod's first container as a local process.

    ``sandboxed``: the volumes appear at their mountPath, so the container's own paths stay as written;
    otherwise they are pointed at the host folders that hold them.
    """
    container = pod["spec"]["containers"][0]
    env = resolve_env(pod, container, lookup)
    mounts = map_volumes(pod, container, pod_dir, volumes_root, lookup)
    rewrite = (lambda value: value) if sandboxed else (lambda value: rewrite_paths(value, mounts))
    env = {k: rewrite(v) for k, v in env.items()}
    ports = [p["containerPort"] for p in container.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    return ProcessSpec(
        argv=[rewrite(a) for a in build_argv(container, env)],
        env=env,
        container=container["name"],
        image=container.get("image", ""),
        container_port=ports[0] if ports else None,
        readiness=container.get("readinessProbe"),
        liveness=container.get("livenessProbe"),
        volumes=mounts,
        readonly=readonly_mounts(pod, container),
        working_dir=container.get("workingDir") or "",
    )


def gpu_request(pod: dict) -> int:
    total = 0
    for container in pod.get("spec", {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        total += int(limits.get("nvidia.com/gpu") or requests.get("nvidia.com/gpu") or 0)
    return total
