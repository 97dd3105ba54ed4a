"""Component images and the kind node image, assembled without a registry.

Each Kubernetes component image carries the exact name kubeadm and kind ask for
(``registry.k8s.io/kube-apiserver:v1.36.3``, kind's local-path images, ...), so
containerd finds it in the node and never pulls. Static binaries go into images
``FROM scratch``; the ones that call iptables/nft (kube-proxy, flannel) or a
shell (local-path's helper) are built on the slim Debian image.

``kind build node-image`` cannot run here (it pulls and calls ``ctr info``, which
Debian's containerd 1.6 lacks), so the node image is assembled as it would:
binaries copied in, ``/kind/version`` and the default CNI and storage manifests
written, images imported into the node's containerd, and the container committed
with kind's entrypoint.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlops_drill.cluster import versions
from mlops_drill.cluster.kindbuild import gobuild, rootfs
from mlops_drill.cluster.kindbuild.steps import Step, digest, kind_cache, run
from mlops_drill.errors import DrillError

HERE = Path(__file__).parent
K8S = versions.KUBERNETES
ETCD_TAG = versions.ETCD.lstrip("v") + "-0"  # kubeadm's image tag for etcd 3.6.8
FLANNEL_IMAGE = f"docker.io/mlops-drill/flannel:{gobuild.FLANNEL_VERSION}"
NODE_IMAGE_REPO = "mlops-drill/kind-node"


@dataclass(frozen=True)
class ComponentImage:
    """``image`` holding ``binaries`` (name in our cache -> path in the image) on ``base`` ("scratch" or slim)."""

    image: str
    binaries: tuple[tuple[str, str], ...]
    base: str = "scratch"
    entrypoint: tuple[str, ...] = ()


def _storage_images() -> tuple[str, str]:
    """The local-path provisioner and helper image names kind's storage manifest names."""
    source = (rootfs.kind_source() / "pkg" / "build" / "nodeimage" / "const_storage.go").read_text()
    provisioner = re.search(r'storageProvisionerImage = "([^"]+)"', source)
    helper = re.search(r'storageHelperImage = "([^"]+)"', source)
    if not provisioner or not helper:
        raise DrillError("kind's const_storage.go: no storageProvisionerImage/storageHelperImage constants")
    return provisioner.group(1), helper.group(1)


def component_images() -> list[ComponentImage]:
    slim = f"{rootfs.SLIM_IMAGE}:{rootfs.slim_stamp()}"
    provisioner, helper = _storage_images()
    images = [ComponentImage(f"registry.k8s.io/{name}:{K8S}", ((name, f"/usr/local/bin/{name}"),))
              for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    return images + [
        ComponentImage(f"registry.k8s.io/kube-proxy:{K8S}", (("kube-proxy", "/usr/local/bin/kube-proxy"),), slim),
        ComponentImage(f"registry.k8s.io/etcd:{ETCD_TAG}", (("etcd", "/usr/local/bin/etcd"),)),
        ComponentImage(rootfs.PAUSE_IMAGE, (("pause", "/pause"),), entrypoint=("/pause",)),
        ComponentImage(f"registry.k8s.io/coredns/coredns:{gobuild.COREDNS_VERSION}", (("coredns", "/coredns"),),
                       entrypoint=("/coredns",)),
        ComponentImage(provisioner, (("local-path-provisioner", "/usr/bin/local-path-provisioner"),)),
        ComponentImage(helper, (), slim),
        ComponentImage(FLANNEL_IMAGE, (("flannel", "/opt/bin/flanneld"),), slim),
    ]


def _dockerfile(spec: ComponentImage) -> str:
    lines = [f"FROM {spec.base}"]
    for index, (_, target) in enumerate(spec.binaries):
        lines.append(f"COPY bin{index} {target}")
    if spec.base == "scratch":
        lines += ["COPY tmp /tmp", "ENV PATH=/usr/local/bin:/usr/bin:/bin"]
    if spec.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(list(spec.entrypoint))}")
    return "\n".join(lines) + "\n"


def build_component(spec: ComponentImage) -> None:
    with tempfile.TemporaryDirectory(dir=kind_cache()) as tmp:
        context = Path(tmp)
        (context / "tmp").mkdir(mode=0o1777)
        (context / "tmp").chmod(0o1777)
        for index, (name, _) in enumerate(spec.binaries):
            os.link(gobuild.path_of(name), context / f"bin{index}") if _same_fs(gobuild.path_of(name), context) \
                else subprocess.run(["cp", str(gobuild.path_of(name)), str(context / f"bin{index}")], check=True)
        (context / "Dockerfile").write_text(_dockerfile(spec))
        run(["docker", "build", "-q", "--force-rm", "-t", spec.image, str(context)], env=dict(os.environ, DOCKER_BUILDKIT="0"),
            what=f"docker build {spec.image}")


def _same_fs(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev


def components_stamp() -> str:
    parts = [_dockerfile(spec) for spec in component_images()]
    parts += [(gobuild.bin_dir() / f".{b.name}.stamp").read_text() for b in gobuild.GO_BINARIES
              if (gobuild.bin_dir() / f".{b.name}.stamp").is_file()]
    return digest(*parts, (gobuild.binaries.build_dir() / ".recipe").read_text()
                  if (gobuild.binaries.build_dir() / ".recipe").is_file() else "")


def build_components() -> None:
    for spec in component_images():
        build_component(spec)


# -- the node image ----------------------------------------------------------------------------
def _docker_io_name(name: str) -> str:
    """containerd 1.6 drops short names (``kindest/x:t``) on import: say ``docker.io/kindest/x:t``."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def save_images(images: list[str], out: Path) -> None:
    """``docker save`` with every RepoTag fully qualified, so the node's containerd keeps the names."""
    raw = out.with_suffix(".raw.tar")
    run(["docker", "save", "-o", str(raw), *images], what="docker save")
    with tarfile.open(raw) as source, tarfile.open(out, "w") as target:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.loads(data.read())
                for entry in manifest:
                    entry["RepoTags"] = [_docker_io_name(t) for t in entry.get("RepoTags") or []]
                body = json.dumps(manifest).encode()
                member.size = len(body)
                target.addfile(member, io.BytesIO(body))
            else:
                target.addfile(member, data)
    raw.unlink()


def storage_manifest() -> str:
    """kind's default storage manifest (a Go constant in kind's source), as `kind build node-image` writes it."""
    source = (rootfs.kind_source() / "pkg" / "build" / "nodeimage" / "const_storage.go").read_text()
    provisioner, helper = _storage_images()
    body = source.split("const defaultStorageManifest = `", 1)[1].split("\n`", 1)[0]
    body = body.replace("` + storageProvisionerImage + `", provisioner).replace("` + storageHelperImage + `", helper)
    if "`" in body:
        raise DrillError("kind's const_storage.go: the storage manifest has an unexpected shape")
    return body + "\n"


def cni_manifest() -> str:
    return (HERE / "flannel.yaml").read_text().replace("FLANNEL_IMAGE", FLANNEL_IMAGE)


def node_image() -> str:
    return f"{NODE_IMAGE_REPO}:{K8S}-{node_stamp()}"


def node_stamp() -> str:
    return digest(rootfs.node_base_stamp(), components_stamp(), cni_manifest(), Path(__file__))


def _exec(container: str, script: str, stdin: str | bytes | None = None, what: str = "") -> str:
    return run(["docker", "exec", "-i", container, "sh", "-c", script], input=stdin, what=what or script[:60])


def build_node_image() -> None:
    base = f"{rootfs.NODE_BASE_IMAGE}:{rootfs.node_base_stamp()}"
    container = f"mlops-drill-nodebuild-{os.getpid()}"
    work = kind_cache() / "node-build"
    work.mkdir(parents=True, exist_ok=True)
    images_tar = work / "images.tar"
    save_images([spec.image for spec in component_images()], images_tar)
    run(["docker", "run", "-d", "--privileged", "--name", container, "--entrypoint", "sleep", base, "infinity"],
        what="docker run (node image build)")
    try:
        for name in ("kubeadm", "kubelet", "kubectl"):
            run(["docker", "cp", str(gobuild.path_of(name)), f"{container}:/usr/bin/{name}"], what=f"docker cp {name}")
        _exec(container, "chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl && "
                         "chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl")
        _exec(container, "cat > /kind/version", K8S)
        _exec(container, "mkdir -p /kind/manifests && cat > /kind/manifests/default-cni.yaml", cni_manifest())
        _exec(container, "cat > /kind/manifests/default-storage.yaml", storage_manifest())
        _exec(container, "(containerd > /tmp/containerd.log 2>&1 &) ; "
                         "for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; "
                         "cat /tmp/containerd.log; exit 1", what="containerd in the node image")
        run(["docker", "cp", str(images_tar), f"{container}:/tmp/images.tar"], what="docker cp images")
        _exec(container, "ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests /tmp/images.tar"
                         " && rm /tmp/images.tar", what="ctr images import")
        listed = _exec(container, "ctr --namespace=k8s.io images list -q")
        missing = [spec.image for spec in component_images() if _docker_io_name(spec.image) not in listed.split()]
        if missing:
            raise DrillError(f"the node's containerd lacks {', '.join(missing)} after import")
        # gone or a zombie (the build container's PID 1 is `sleep`, which reaps nobody)
        _exec(container, "pkill containerd; for i in $(seq 1 100); do "
                         "ps -o stat= -C containerd | grep -qv '^Z' || exit 0; sleep 0.2; done; exit 1",
              what="stop containerd")
        _exec(container, "rm -rf /tmp/* /run/containerd")
        committed = f"{NODE_IMAGE_REPO}:committed-{os.getpid()}"
        run(["docker", "commit", container, committed], what="docker commit node image")
        # systemd stops on SIGRTMIN+3 (SIGTERM makes it re-execute); neither import nor commit can set it
        run(["docker", "build", "-q", "--force-rm", "-t", node_image(), "-"], env=dict(os.environ, DOCKER_BUILDKIT="0"),
            input=f'FROM {committed}\nSTOPSIGNAL SIGRTMIN+3\n'
                  'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]\n', what="docker build node image")
        run(["docker", "rmi", committed], what="docker rmi")
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True)
        images_tar.unlink(missing_ok=True)


def steps() -> list[Step]:
    stamps = kind_cache() / "stamps"
    return [
        Step("component images (apiserver, controller-manager, scheduler, proxy, etcd, pause, coredns, "
             "local-path, flannel)", components_stamp, stamps / "components", build_components,
             check=lambda: all(rootfs.image_exists(s.image) for s in component_images())),
        Step("node image", node_stamp, stamps / "node-image", build_node_image,
             check=lambda: rootfs.image_exists(node_image())),
    ]
