"""The pinned versions and the Go wrapper modules agree, so every binary is built in skew."""
from __future__ import annotations

import re
from pathlib import Path

from mlops_drill.cluster import versions

TOOLCHAIN = Path(__file__).resolve().parents[1] / "cluster" / "toolchain"


def _requires(module: str) -> dict[str, str]:
    """module path -> version for every require line (direct and indirect) of one wrapper go.mod."""
    text = (TOOLCHAIN / module / "go.mod").read_text()
    found = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(?:require\s+)?([\w.\-/]+)\s+(v[\w.\-+]+)(\s*//.*)?$", line)
        if match and not line.lstrip().startswith(("module", "go ")):
            found[match.group(1)] = match.group(2)
    return found


def test_kubernetes_wrapper_pins_the_release_and_every_staging_module_to_it() -> None:
    text = (TOOLCHAIN / "kubernetes" / "go.mod").read_text()
    assert _requires("kubernetes")["k8s.io/kubernetes"] == versions.KUBERNETES
    staging = dict(re.findall(r"^\s*(k8s\.io/[\w\-]+) => k8s\.io/[\w\-]+ (v[\w.]+)$", text, re.M))
    minor_patch = "v0." + versions.KUBERNETES.removeprefix("v1.")
    assert len(staging) >= 30, "every staging module is replaced"
    assert set(staging.values()) == {minor_patch}, staging


def test_etcd_wrapper_and_kubernetes_agree_on_etcd() -> None:
    etcd = _requires("etcd")
    for module in ("go.etcd.io/etcd/server/v3", "go.etcd.io/etcd/etcdctl/v3", "go.etcd.io/etcd/etcdutl/v3"):
        assert etcd[module] == versions.ETCD, module
    assert _requires("kubernetes")["go.etcd.io/etcd/client/v3"] == versions.ETCD


def test_kwok_wrapper_pins_kwok_built_against_the_same_kubernetes_minor() -> None:
    kwok = _requires("kwok")
    assert kwok["sigs.k8s.io/kwok"] == versions.KWOK
    k8s_minor = versions.KUBERNETES.split(".")[1]
    assert kwok["k8s.io/client-go"].split(".")[1] == k8s_minor, kwok["k8s.io/client-go"]
