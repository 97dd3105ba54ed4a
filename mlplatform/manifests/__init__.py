"""The healthy baseline of the platform as Kubernetes objects.

The YAML files beside this module are the hand-written part (namespaces,
Deployments, Services, the CronJob and the Job). One object is generated: the
``fraud-model-transforms`` ConfigMap, which must hold exactly the transform
configs training produced, so that serving's transform hash matches the
registry's lineage on a fresh baseline.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
#: Apply order: namespaces first, config before the workloads that read it.
FILES = ("namespaces.yaml", "registry.yaml", "features.yaml", "serving.yaml", "training.yaml", "monitoring.yaml")
PROCESS_LABEL = "mlops-drill.dev/process"


def transforms_configmap(artifact_root: Path | None = None) -> dict[str, Any]:
    """ConfigMap ``serving/fraud-model-transforms``: every version's transform config, by model and version."""
    from mlops_drill.mlplatform.artifacts import ensure_artifacts

    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fraud-model-transforms", "namespace": "serving", "labels": {"app": "fraud-model"}},
        "data": {"transforms.json": _transforms_json(ensure_artifacts(artifact_root))},
    }


@lru_cache(maxsize=4)
def _transforms_json(root: Path) -> str:
    """Read once per artifact folder: the folder is named by the code that built it and never changes."""
    from mlops_drill.mlplatform.artifacts import load_manifest, version_dir

    configs: dict[str, dict[str, Any]] = {}
    for model in load_manifest(root)["models"]:
        for v in model["versions"]:
            path = version_dir(root, model["name"], v["version"]) / "transform.json"
            configs.setdefault(model["name"], {})[v["version"]] = json.loads(path.read_text())
    return json.dumps(configs, sort_keys=True, indent=1) + "\n"


@lru_cache(maxsize=32)
def _parsed(name: str, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    """One manifest file's documents; keyed on its mtime, so an edited file is read again."""
    return tuple(d for d in yaml.safe_load_all((HERE / name).read_text()) if d)


def baseline_documents(artifact_root: Path | None = None) -> list[dict[str, Any]]:
    """Every object of the healthy baseline, in apply order (fresh copies: callers may edit them).

    The parsed YAML is cached: ``reset`` and its health polls ask for the
    baseline many times a second, and parsing it is ~25 ms each time.
    """
    docs: list[dict[str, Any]] = []
    for name in FILES:
        docs.extend(copy.deepcopy(list(_parsed(name, (HERE / name).stat().st_mtime_ns))))
        if name == "namespaces.yaml":
            docs.append(transforms_configmap(artifact_root))
    return docs


def render_yaml(artifact_root: Path | None = None) -> str:
    """The baseline as one multi-document YAML stream (for ``kubectl apply -f -``)."""
    return yaml.safe_dump_all(baseline_documents(artifact_root), sort_keys=False)


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, pod template) pairs for Deployments, Jobs and CronJobs."""
    out = []
    for d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "Job", "DaemonSet", "StatefulSet"):
            out.append((d, spec["template"]))
        elif d["kind"] == "CronJob":
            out.append((d, spec["jobTemplate"]["spec"]["template"]))
    return out
