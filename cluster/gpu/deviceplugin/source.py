"""Where the plugin reads its node's GPU inventory from.

The plugin only needs "the current :class:`GpuNode` of my node", so a source is any callable
returning one. On kind the engine keeps the inventory in a JSON file on the node (hostPath), and
a fault is applied by rewriting that file; :class:`JsonFileSource` re-reads it whenever it
changes, which is what turns a fault into a ListAndWatch update.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from mlops_drill.cluster.gpu.model import GpuNode
from mlops_drill.errors import DrillError

InventorySource = Callable[[], GpuNode]


def parse_inventory(text: str, node_name: str, origin: str) -> GpuNode:
    """Accept the two shapes the engine writes: one node, or ``{"<node>": <node or JSON text>}``.

    The mapping shape is the ``gpu-inventory`` ConfigMap's ``data`` written out as-is (values
    are JSON strings there), so one file can serve every GPU node of a kind cluster.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DrillError(f"{origin}:{err.lineno}: GPU inventory is not valid JSON: {err.msg}") from None
    if not isinstance(doc, dict):
        raise DrillError(f"{origin}: GPU inventory must be a JSON object, got {type(doc).__name__}")
    if "node_name" not in doc:
        if node_name not in doc:
            known = ", ".join(sorted(doc)) or "none"
            raise DrillError(f"{origin}: no GPU inventory for node {node_name!r} (nodes in file: {known})")
        doc = doc[node_name]
        if isinstance(doc, str):
            return parse_inventory(doc, node_name, f"{origin}[{node_name}]")
    try:
        node = GpuNode.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise DrillError(f"{origin}: GPU inventory field {field}: {first['msg']}") from None
    if node.node_name != node_name:
        raise DrillError(f"{origin}: GPU inventory is for node {node.node_name!r}, not {node_name!r}")
    return node


class JsonFileSource:
    """Reads ``path`` afresh on every call.

    The file is a few kilobytes, so re-reading is cheaper than being wrong: an mtime check can
    miss a same-size rewrite within one filesystem timestamp tick. The engine replaces the file
    atomically (write + rename); the DaemonSet mounts the *directory*, because a single-file
    bind mount would keep showing the old inode.
    """

    def __init__(self, path: Path, node_name: str) -> None:
        self.path = Path(path)
        self.node_name = node_name

    def __call__(self) -> GpuNode:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            raise DrillError(f"{self.path}: GPU inventory file not found") from None
        return parse_inventory(text, self.node_name, str(self.path))
