"""The Go binaries of a kind cluster, each built once from its Go module with CGO off.

Kubernetes' own binaries use the embedded cluster's wrapper module (same
versions, same version stamps): kube-apiserver, the controller-manager, the
scheduler, kubectl and etcd are the very files the embedded toolchain built;
kubelet, kubeadm and kube-proxy are built here from the same go.mod. Every other
tool is built as its own main module from the Go module proxy, so its own
``replace`` directives hold, exactly as its maintainers build it.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlops_drill.cluster import versions
from mlops_drill.cluster.kindbuild.steps import Step, digest, go_env, kind_cache, run
from mlops_drill.cluster.toolchain import binaries

HERE = Path(__file__).parent
KIND_VERSION = "v0.33.0"
COREDNS_VERSION = "v1.14.3"  # kubeadm 1.36 names v1.14.2, which the module proxy lacks: the kind config says this tag
PAUSE_VERSION = "3.10.2"  # kubeadm 1.36's PauseVersion
FLANNEL_VERSION = "v0.28.10"
CNI_PLUGINS_VERSION = "v0.9.1"  # the last release with the flannel meta plugin (flannel-io/cni-plugin is not in the proxy)
LOCAL_PATH_VERSION = "v0.0.30"
CRICTL_VERSION = "v1.34.0"


@dataclass(frozen=True)
class GoBinary:
    """``package`` of ``module@version`` (or a folder next to this file when ``module`` is empty)."""

    name: str
    module: str
    version: str
    package: str = "."
    ldflags: str = "-s -w"
    local: str = ""  # folder next to this file: our own small commands
    env: dict[str, str] = field(default_factory=dict)
    #: (file, import path) pairs removed from the module's source before building: optional parts whose
    #: dependencies the module proxy here does not serve
    drop_imports: tuple[tuple[str, str], ...] = ()


def _k8s(name: str) -> GoBinary:
    component = binaries.Component(name, "kubernetes", f"k8s.io/kubernetes/cmd/{name}", versions.KUBERNETES)
    return GoBinary(name, "k8s.io/kubernetes", versions.KUBERNETES, f"k8s.io/kubernetes/cmd/{name}",
                    binaries._ldflags(component))


GO_BINARIES: tuple[GoBinary, ...] = (
    GoBinary("runcwrap", "", "1", local="runcwrap"),
    GoBinary("pause", "", PAUSE_VERSION, local="pause"),
    GoBinary("kind", "sigs.k8s.io/kind", KIND_VERSION),
    GoBinary("crictl", "sigs.k8s.io/cri-tools", CRICTL_VERSION, "./cmd/crictl",
             f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}"),
    GoBinary("flannel", "github.com/flannel-io/flannel", FLANNEL_VERSION, ".",
             f"-s -w -X github.com/flannel-io/flannel/pkg/version.Version={FLANNEL_VERSION}",
             # the cluster uses host-gw: the Tencent Cloud VPC backend's SDK is not in the proxy, and the
             # udp backend needs cgo, while every image binary is static
             drop_imports=(("main.go", "github.com/flannel-io/flannel/pkg/backend/tencentvpc"),
                           ("main.go", "github.com/flannel-io/flannel/pkg/backend/udp"))),
    GoBinary("flannel-cni", "github.com/containernetworking/plugins", CNI_PLUGINS_VERSION, "./plugins/meta/flannel"),
    GoBinary("coredns", "github.com/coredns/coredns", COREDNS_VERSION),
    GoBinary("local-path-provisioner", "github.com/rancher/local-path-provisioner", LOCAL_PATH_VERSION),
    _k8s("kubelet"),
    _k8s("kubeadm"),
    _k8s("kube-proxy"),
)
BY_NAME = {b.name: b for b in GO_BINARIES}
#: Built by the embedded toolchain, reused as they are.
FROM_TOOLCHAIN = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd")


def bin_dir() -> Path:
    return kind_cache() / "bin"


def path_of(name: str) -> Path:
    if name in FROM_TOOLCHAIN:
        return binaries.build_dir() / name
    return bin_dir() / name


def _stamp(binary: GoBinary) -> str:
    extra = [HERE / binary.local / "main.go"] if binary.local else []
    if binary.module == "k8s.io/kubernetes":
        extra += [binaries.HERE / "kubernetes" / "go.mod", binaries.HERE / "kubernetes" / "go.sum"]
    return digest(binary.module, binary.version, binary.package, binary.ldflags, json.dumps(binary.env),
                  repr(binary.drop_imports), *extra)


def _module_source(binary: GoBinary) -> Path:
    """A writable copy of ``module@version`` from the module proxy: its go.mod is the main module."""
    target = kind_cache() / "src" / f"{binary.name}-{binary.version}"
    if (target / "go.mod").is_file():
        return target
    info = json.loads(run(["go", "mod", "download", "-json", f"{binary.module}@{binary.version}"],
                          cwd=kind_cache(), env=go_env(), what=f"go mod download {binary.module}"))
    partial = target.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(info["Dir"], partial)
    for root, dirs, files in os.walk(partial):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    for fname, package in binary.drop_imports:
        source = partial / fname
        kept = [line for line in source.read_text().splitlines(keepends=True) if f'"{package}"' not in line]
        source.write_text("".join(kept))
    partial.replace(target)
    return target


def _kubernetes_wrapper() -> Path:
    """The embedded toolchain's wrapper go.mod, copied, so kubelet's extra go.sum lines stay out of the repo."""
    target = kind_cache() / "src" / f"kubernetes-{versions.KUBERNETES}"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("go.mod", "go.sum"):
        source = (binaries.HERE / "kubernetes" / name).read_bytes()
        if not (target / name).is_file() or name == "go.mod":
            (target / name).write_bytes(source)
    return target


def build(binary: GoBinary) -> None:
    out = bin_dir() / binary.name
    out.parent.mkdir(parents=True, exist_ok=True)
    if binary.local:
        cwd, package = HERE / binary.local, "."
    elif binary.module == "k8s.io/kubernetes":
        cwd, package = _kubernetes_wrapper(), binary.package
    else:
        cwd, package = _module_source(binary), binary.package
    partial = out.with_name(f".{binary.name}.partial")
    cmd = ["go", "build", "-trimpath", "-ldflags", binary.ldflags, "-o", str(partial), package]
    if binary.module == "k8s.io/kubernetes":
        with binaries._build_lock():  # one k8s build at a time on the machine, the embedded toolchain's included
            run(cmd, cwd=cwd, env=go_env(binary.env), nice=True, what=f"go build {binary.name}")
    else:
        run(cmd, cwd=cwd, env=go_env(binary.env), nice=True, what=f"go build {binary.name}")
    partial.replace(out)


def steps() -> list[Step]:
    """One step per binary; the toolchain's control plane first (it is the embedded build, reused)."""
    result = [Step("control plane (embedded toolchain)", binaries._recipe_hash(),
                   bin_dir() / ".toolchain.stamp", lambda: binaries.ensure_toolchain(progress=True),
                   check=lambda: all(path_of(n).is_file() for n in FROM_TOOLCHAIN))]
    for binary in GO_BINARIES:
        result.append(Step(f"go build {binary.name} {binary.version}", _stamp(binary),
                           bin_dir() / f".{binary.name}.stamp", lambda b=binary: build(b),
                           check=lambda b=binary: (bin_dir() / b.name).is_file()))
    return result


if __name__ == "__main__":  # `python -m mlops_drill.cluster.kindbuild.gobuild`: the Go part alone, to start it early
    from mlops_drill.cluster.kindbuild.steps import Progress

    todo = steps()[1:]
    progress = Progress(len(todo))
    for step in todo:
        progress.run(step)
