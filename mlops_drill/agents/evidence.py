"""Reading what commands print: kubectl tables, Prometheus text, ages, pod templates.

Why the agents parse kubectl's human tables and not ``-o json`` everywhere: the
grader scores the order of what was looked at, and a person triages with
``get pods -o wide`` and ``get events``; asking for JSON of everything up front
would count as comparing pod templates before reading why the pod is stuck.
Tables are sliced at the header's column starts (kubectl left-aligns columns),
so cells with spaces (``1 (2s ago)``, ``LAST SEEN``) stay whole.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator

_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


def table(text: str) -> list[dict[str, str]]:
    """Rows of a kubectl table as {HEADER: cell}; headers with one space (``LAST SEEN``) kept whole."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s\s)|^)\S+(?: \S+)*", header)]
    names = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [len(header) + 1000])]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, starts[1:] + [len(line) + 1000])]
        rows.append(dict(zip(names, cells)))
    return rows


def age_seconds(age: str) -> float | None:
    """kubectl's AGE / LAST SEEN (``5s``, ``3m2s``, ``2d4h``) in seconds; None when unreadable."""
    parts = re.findall(r"(\d+)([smhdy])", age or "")
    if not parts or "".join(n + u for n, u in parts) != age.strip():
        return None
    return float(sum(int(n) * _AGE_UNITS[u] for n, u in parts))


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def prometheus(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and malformed lines skipped)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        try:
            out.append(Sample(m.group(1), labels, float(m.group(3))))
        except ValueError:
            continue
    return out


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def json_lines(text: str) -> Iterator[dict]:
    """JSON objects of a log (``--prefix`` prefixes stripped); other lines skipped."""
    for line in text.splitlines():
        brace = line.find("{")
        if brace < 0:
            continue
        obj = json_or_none(line[brace:])
        if isinstance(obj, dict):
            yield obj


# --------------------------------------------------------------------------- pod templates

def containers(template: dict) -> list[dict]:
    return list((template.get("spec") or {}).get("containers") or [])


def env_of(container: dict) -> dict[str, dict]:
    return {e.get("name", ""): e for e in container.get("env") or []}


def gpu_count(container: dict) -> int:
    res = container.get("resources") or {}
    for part in ("limits", "requests"):
        value = (res.get(part) or {}).get("nvidia.com/gpu")
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return 1
    return 0


def image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"


def version_key(tag: str) -> tuple:
    """Release tags ordered as releases are: 1.4.2 < 1.5.0 < 1.6.0-rc1 (a release candidate counts as newer)."""
    nums = [int(n) for n in re.findall(r"\d+", tag.split("-", 1)[0])]
    return tuple(nums)


def probe_path(container: dict, kind: str = "readinessProbe") -> str | None:
    probe = container.get(kind) or {}
    return ((probe.get("httpGet") or {}).get("path")) if probe else None


SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIAL", re.I)
PAYLOAD_LOGGING = re.compile(r"LOG.*(PAYLOAD|BODY|BODIES|REQUEST)", re.I)
TRUTHY = frozenset({"1", "true", "yes", "on"})


@dataclass
class TemplateChange:
    """One difference between the previous and the latest revision, and whether it is a risk."""

    what: str
    risky: bool
    kind: str
    container: str | None = None
    var: str | None = None
    before: dict | None = None   # the env entry in the previous revision (None: it was absent)


def template_changes(prev: dict, latest: dict, new_configmaps: frozenset[str] = frozenset()) -> list[TemplateChange]:
    """What the latest revision changed, judged in the direction of the change.

    Why direction matters: rolling back is only safe when the latest change made
    things worse; a revision that restored a toleration or moved a password back
    into a Secret is the fix, not the fault.
    """
    out: list[TemplateChange] = []
    pspec, lspec = prev.get("spec") or {}, latest.get("spec") or {}
    ptol = {t.get("key") for t in pspec.get("tolerations") or []}
    ltol = {t.get("key") for t in lspec.get("tolerations") or []}
    for key in sorted(k for k in ptol - ltol if k):
        out.append(TemplateChange(f"dropped the toleration for the {key} taint", True, "toleration"))
    psel, lsel = pspec.get("nodeSelector") or {}, lspec.get("nodeSelector") or {}
    for key in sorted(set(psel) - set(lsel)):
        out.append(TemplateChange(f"dropped the nodeSelector {key}={psel[key]}", False, "nodeselector"))
    pcs = {c.get("name"): c for c in containers(prev)}
    for lc in containers(latest):
        pc = pcs.get(lc.get("name"))
        if pc is None:
            continue
        name = lc.get("name")
        if gpu_count(pc) and not gpu_count(lc):
            out.append(TemplateChange(f"dropped the nvidia.com/gpu resource request/limit of container {name}",
                                      True, "gpu"))
        pimg, limg = pc.get("image", ""), lc.get("image", "")
        if pimg != limg:
            newer = version_key(image_tag(limg)) > version_key(image_tag(pimg))
            out.append(TemplateChange(f"changed the image from {pimg} to {limg}", newer, "image"))
        ppath, lpath = probe_path(pc), probe_path(lc)
        if ppath != lpath:
            out.append(TemplateChange(f"changed the readiness probe from {ppath} to {lpath}",
                                      ppath == "/readyz" or lpath in (None, "/healthz"), "probe"))
        penv, lenv = env_of(pc), env_of(lc)
        for key, var in lenv.items():
            old = penv.get(key)
            if SECRET_NAME.search(key) and "value" in var and (old is None or "valueFrom" in old):
                out.append(TemplateChange(f"set the credential {key} as a literal plain env value"
                                          + (" instead of a secretKeyRef" if old else ""), True, "literal-secret",
                                          name, key, old))
            elif PAYLOAD_LOGGING.search(key) and str(var.get("value", "")).lower() in TRUTHY and \
                    str((old or {}).get("value", "")).lower() not in TRUTHY:
                out.append(TemplateChange(f"turned on payload logging ({key}={var.get('value')})", True,
                                          "payload-logging", name, key, old))
            elif key.endswith("VERSION") and old is None and "value" in var:
                out.append(TemplateChange(f"pinned {key}={var['value']}", True, "pin", name, key, old))
            elif old is not None and var != old:
                pref = ((old.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
                lref = ((var.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
                if pref and lref and pref != lref:
                    out.append(TemplateChange(f"switched {key} from ConfigMap {pref} to ConfigMap {lref}",
                                              lref in new_configmaps, "configmap"))
                elif "value" in var and "value" in old:
                    out.append(TemplateChange(f"changed {key} from {old['value']} to {var['value']}", False, "env"))
        for key in sorted(set(penv) - set(lenv)):
            out.append(TemplateChange(f"removed the env var {key}", False, "env-removed"))
    return out
