"""The cluster config (`cluster up --config FILE`): GPU products per GPU node, its one-line errors,
and where it goes (state folder, node pools, kind's node labels, `cluster status`). No cluster here:
the real cluster with an H200 node is tests/test_gpu_products_cluster.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_drill.cluster.backends.base import ClusterInfo, ClusterStatus, NodeState
from mlops_drill.cluster.backends.kind_config import kind_config
from mlops_drill.cluster.config import (CONFIG_FILE, ClusterConfig, load_config, save_config, saved_config,
                                        settle_config)
from mlops_drill.cluster.nodes import node_manifest
from mlops_drill.errors import DrillError

ALLOWED = "allowed: H100, H200, A100 (or 'NVIDIA H100 80GB HBM3', 'NVIDIA H200', 'NVIDIA A100-SXM4-80GB')"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(DrillError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("written, full", [
    ("H200", "NVIDIA H200"), ("h200", "NVIDIA H200"), ("A100", "NVIDIA A100-SXM4-80GB"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"), ("NVIDIA-H200", "NVIDIA H200"),  # the node label form
])
def test_product_names_a_person_writes_become_nvidia_smis(tmp_path, written, full) -> None:
    config = load_config(write(tmp_path, f"gpu_products:\n  gpu-node-1: {written}\n"))
    assert config.products() == {"gpu-node-0": "NVIDIA H100 80GB HBM3", "gpu-node-1": full}


def test_no_config_and_an_empty_file_are_both_h100(tmp_path) -> None:
    assert ClusterConfig().products() == load_config(write(tmp_path, "")).products() == {
        "gpu-node-0": "NVIDIA H100 80GB HBM3", "gpu-node-1": "NVIDIA H100 80GB HBM3"}
    assert saved_config(tmp_path / "no-cluster-yet") == ClusterConfig()


def test_unknown_node_names_file_line_field_and_the_gpu_nodes(tmp_path) -> None:
    path = write(tmp_path, "gpu_products:\n  gpu-node-0: A100\n  gpu-node-3: H200\n")
    assert error_of(path) == f"{path}:3:3: gpu_products.gpu-node-3: unknown GPU node; allowed: gpu-node-0, gpu-node-1"


def test_a_cpu_node_cannot_carry_gpus(tmp_path) -> None:
    path = write(tmp_path, "gpu_products: {cpu-node-0: H100}\n")
    assert error_of(path).startswith(f"{path}:1:16: gpu_products.cpu-node-0: unknown GPU node; allowed: gpu-node-0")


def test_unknown_product_names_file_line_field_and_the_products(tmp_path) -> None:
    path = write(tmp_path, "# mixed pools\ngpu_products:\n  gpu-node-1: B300\n")
    assert error_of(path) == f"{path}:3:3: gpu_products.gpu-node-1: unknown GPU product 'B300'; {ALLOWED}"


def test_product_that_is_not_a_name(tmp_path) -> None:
    path = write(tmp_path, "gpu_products:\n  gpu-node-1: [H200]\n")
    assert error_of(path) == f"{path}:2:3: gpu_products.gpu-node-1: expected a product name; {ALLOWED}"


def test_misspelt_field_names_the_fields(tmp_path) -> None:
    path = write(tmp_path, "gpu_product:\n  gpu-node-1: H200\n")
    assert error_of(path) == f"{path}:1:1: gpu_product: unknown field; allowed: gpu_products"


def test_list_instead_of_mapping(tmp_path) -> None:
    path = write(tmp_path, "gpu_products: [H200]\n")
    assert error_of(path) == (f"{path}:1:1: gpu_products: expected a mapping of GPU node to product, "
                              "e.g. {gpu-node-1: H200}; got list")
    path = write(tmp_path, "- H200\n")
    assert error_of(path) == f"{path}:1:1: <document>: expected a mapping with key gpu_products; got list"


def test_broken_yaml_and_missing_file(tmp_path) -> None:
    path = write(tmp_path, "gpu_products:\n  gpu-node-1: [H200\n")
    assert error_of(path).startswith(f"{path}:3:1: <yaml>: ")
    missing = tmp_path / "nope.yaml"
    assert error_of(missing) == f"{missing}: cannot read cluster config: No such file or directory"


def test_settle_keeps_saved_products_and_refuses_a_change_on_an_existing_cluster(tmp_path) -> None:
    h200 = ClusterConfig(gpu_products={"gpu-node-1": "H200"})
    assert settle_config(tmp_path, h200, cluster_exists=False, name="c") == h200
    assert (tmp_path / CONFIG_FILE).is_file()
    # a later `cluster up` without --config, and the node agent, read the same products
    assert settle_config(tmp_path, None, cluster_exists=True, name="c").products() == h200.products()
    assert saved_config(tmp_path).product_of("gpu-node-1") == "NVIDIA H200"
    # the same products again are fine; other ones need `cluster down` first
    assert settle_config(tmp_path, ClusterConfig(gpu_products={"gpu-node-1": "NVIDIA H200"}), True, "c") == h200
    with pytest.raises(DrillError) as err:
        settle_config(tmp_path, ClusterConfig(gpu_products={"gpu-node-1": "A100"}), True, "c")
    assert str(err.value) == ("cluster c was made with GPU products gpu-node-0=NVIDIA H100 80GB HBM3, "
                              "gpu-node-1=NVIDIA H200; `mlops-drill cluster down --name c` first to change them")
    assert saved_config(tmp_path).products() == h200.products()


def test_a_cluster_made_before_configs_existed_counts_as_h100(tmp_path) -> None:
    with pytest.raises(DrillError, match="gpu-node-1=NVIDIA H100 80GB HBM3; `mlops-drill cluster down"):
        settle_config(tmp_path, ClusterConfig(gpu_products={"gpu-node-1": "H200"}), True, "old")


def test_saved_file_is_itself_a_valid_config(tmp_path) -> None:
    config = ClusterConfig(gpu_products={"gpu-node-0": "A100"})
    path = save_config(tmp_path, config)
    assert load_config(path).products() == config.products()
    assert "gpu-node-1: NVIDIA H100 80GB HBM3" in path.read_text()


def test_node_pools_labels_follow_the_config() -> None:
    pools = {s.name: s for s in ClusterConfig(gpu_products={"gpu-node-1": "H200"}).node_pools()}
    labels = {n: node_manifest(s)["metadata"]["labels"] for n, s in pools.items()}
    assert labels["gpu-node-1"]["nvidia.com/gpu.product"] == "NVIDIA-H200"
    assert labels["gpu-node-0"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert "nvidia.com/gpu.product" not in labels["cpu-node-0"]
    assert [s.name for s in pools.values()] == ["cpu-node-0", "cpu-node-1", "gpu-node-0", "gpu-node-1"]


def test_kind_node_labels_follow_the_config() -> None:
    nodes = kind_config(ClusterConfig(gpu_products={"gpu-node-0": "A100"}).node_pools())["nodes"]
    products = [n["labels"].get("nvidia.com/gpu.product") for n in nodes]
    assert products == [None, None, "NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"]


def test_status_shows_the_products() -> None:
    info = ClusterInfo("c", "embedded", Path("/k"), "https://127.0.0.1:1")
    status = ClusterStatus(info, [], [NodeState("gpu-node-1", True, {"pool": "gpu",
                                                                    "nvidia.com/gpu.product": "NVIDIA-H200"})],
                           gpu_products={"gpu-node-0": "NVIDIA H100 80GB HBM3", "gpu-node-1": "NVIDIA H200"})
    text = status.render()
    assert "gpu:        gpu-node-0=NVIDIA H100 80GB HBM3, gpu-node-1=NVIDIA H200" in text
    assert "gpu-node-1                 Ready pool=gpu gpu=NVIDIA-H200" in text


def test_cli_bad_config_is_one_line_and_starts_nothing(tmp_path) -> None:
    path = write(tmp_path, "gpu_products:\n  gpu-node-1: H300\n")
    env = {**os.environ, "MLOPS_DRILL_STATE": str(tmp_path / "state")}
    result = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "cluster", "up", "--config", str(path),
                             "--name", "bad"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {path}:2:3: gpu_products.gpu-node-1: unknown GPU product 'H300'; {ALLOWED}"]
    assert not (tmp_path / "state").exists()


def test_cli_existing_backend_takes_no_config(tmp_path) -> None:
    path = write(tmp_path, "gpu_products: {gpu-node-1: H200}\n")
    result = subprocess.run([sys.executable, "-m", "mlops_drill.cli", "cluster", "up", "--backend", "existing",
                             "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "--config: an existing cluster's nodes are its own" in result.stderr
