"""The cluster config: what a user chooses about the drill cluster's nodes (``cluster up --config FILE``).

Real clusters mix GPU products, and a drill reads differently on an H200 node than on
an H100 one (memory, power cap, the ``nvidia.com/gpu.product`` label). The node names
users see stay ``gpu-node-0``/``gpu-node-1``; the config only says which product each
GPU node's board carries::

    gpu_products:
      gpu-node-1: H200        # short names H100, H200, A100, or nvidia-smi's own names

``cluster up`` keeps the effective config in the cluster's state folder, so the node
agent (a separate process that writes the GPU inventory) and every later command
(``cluster up`` without ``--config``, ``start``, ``reset``) see the same products.
Without a config both GPU nodes carry H100s, as before.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mlops_drill.cluster.gpu.products import A100, H100, H200, PRODUCTS, UnknownProduct, product
from mlops_drill.cluster.nodes import GPU_NODES, NODE_POOLS, NodeSpec
from mlops_drill.errors import DrillError

#: The effective config, written by ``cluster up`` into the cluster's state folder.
CONFIG_FILE = "cluster-config.yaml"
#: What a person types; the inventory and nvidia-smi use the full names.
SHORT_NAMES = {"H100": H100.name, "H200": H200.name, "A100": A100.name}


def allowed_products() -> str:
    return f"{', '.join(SHORT_NAMES)} (or {', '.join(repr(n) for n in PRODUCTS)})"


def product_name(name: str) -> str:
    """The full product name for a short name, nvidia-smi's name or its node-label form."""
    name = name.strip()
    short = {k.lower(): v for k, v in SHORT_NAMES.items()}.get(name.lower())
    if short:
        return short
    try:
        return product(name).name
    except UnknownProduct:
        raise ValueError(f"unknown GPU product {name!r}; allowed: {allowed_products()}") from None


class ClusterConfig(BaseModel):
    """What ``cluster up --config`` accepts; an empty config is the default cluster."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: GPU node -> product; a GPU node left out carries H100s.
    gpu_products: dict[str, str] = {}

    @field_validator("gpu_products", mode="before")
    @classmethod
    def _mapping(cls, value: object) -> object:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping of GPU node to product, e.g. {{gpu-node-1: H200}}; "
                             f"got {type(value).__name__}")
        for node, name in value.items():
            if node not in GPU_NODES:
                raise _Located((node,), f"unknown GPU node; allowed: {', '.join(GPU_NODES)}")
            if not isinstance(name, str):
                raise _Located((node,), f"expected a product name; allowed: {allowed_products()}")
            try:
                product_name(name)
            except ValueError as err:
                raise _Located((node,), str(err)) from None
        return value

    @field_validator("gpu_products")
    @classmethod
    def _full_names(cls, value: dict[str, str]) -> dict[str, str]:
        return {node: product_name(name) for node, name in sorted(value.items())}

    def product_of(self, node: str) -> str:
        """The full product name of a GPU node (H100 where the config says nothing)."""
        return self.gpu_products.get(node, H100.name)

    def products(self) -> dict[str, str]:
        """Every GPU node's product, defaults included."""
        return {node: self.product_of(node) for node in GPU_NODES}

    def node_pools(self) -> tuple[NodeSpec, ...]:
        """The drill's node pools with each GPU node carrying its configured product."""
        return tuple(replace(spec, gpu_product=self.product_of(spec.name)) if spec.pool == "gpu" else spec
                     for spec in NODE_POOLS)

    def summary(self) -> str:
        """One line for ``cluster status``: ``gpu-node-0=NVIDIA H100 80GB HBM3, gpu-node-1=NVIDIA H200``."""
        return ", ".join(f"{node}={name}" for node, name in self.products().items())


class _Located(ValueError):
    """A problem with one entry of ``gpu_products``: where it is, below the field."""

    def __init__(self, loc: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.loc, self.problem = loc, problem


def load_config(path: str | Path) -> ClusterConfig:
    """Read a config file; any problem is one line ``file:line:col: field: problem``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DrillError(f"{path}: cannot read cluster config: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise DrillError(f"{path}:1:1: <file>: not UTF-8 text (byte {err.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (err.context, err.problem) if p) or "malformed YAML"
        raise DrillError(f"{path}:{line}:{col}: <yaml>: {problem}") from None
    except yaml.YAMLError as err:
        raise DrillError(f"{path}:1:1: <yaml>: {' '.join(str(err).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DrillError(f"{path}:1:1: <document>: expected a mapping with key gpu_products; "
                         f"got {type(data).__name__}")
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as err:
        from mlops_drill.scenarios.loader import located

        error = err.errors(include_url=False)[0]
        loc = tuple(str(p) for p in error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "extra_forbidden":
            problem = f"unknown field; allowed: {', '.join(ClusterConfig.model_fields)}"
        elif isinstance(cause, _Located):
            loc, problem = loc + cause.loc, cause.problem
        else:
            problem = str(cause) if cause is not None else error["msg"]
        raise DrillError(located(path, loc, problem)) from None


def saved_config(state: Path) -> ClusterConfig:
    """The config a cluster was started with (the default one for a cluster started without)."""
    path = Path(state) / CONFIG_FILE
    return load_config(path) if path.is_file() else ClusterConfig()


def save_config(state: Path, config: ClusterConfig) -> Path:
    """Write the effective config (full product names, every GPU node) where the node agent reads it."""
    path = Path(state) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"gpu_products": config.products()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by `mlops-drill cluster up`: the products this cluster's nodes were made with\n"
                   + yaml.safe_dump(body, sort_keys=False))
    tmp.replace(path)
    return path


def settle_config(state: Path, requested: ClusterConfig | None, cluster_exists: bool, name: str) -> ClusterConfig:
    """The config ``cluster up`` goes on with, saved in ``state``.

    Without ``--config`` a cluster keeps the products it was made with. A different config for a
    cluster that exists is refused: its nodes and inventory were made with the old products,
    and changing a node's board under a drill is not what a config is for.
    """
    saved = saved_config(state)
    if requested is None:
        config = saved
    elif cluster_exists and saved.products() != requested.products():
        raise DrillError(f"cluster {name} was made with GPU products {saved.summary()}; "
                         f"`mlops-drill cluster down --name {name}` first to change them")
    else:
        config = requested
    save_config(state, config)
    return config
