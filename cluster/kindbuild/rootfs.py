"""Debian userlands made with debootstrap: the kind node's base, and a slim one for images.

kind's own base image (kindest/base) is Debian plus a package list, containerd,
runc, crictl and CNI plugins. Here the same Debian release comes from the Debian
mirror apt already uses, containerd and runc from Debian's packages, and
kind's own files (entrypoint, systemd units, containerd config) from the kind
module's source in the Go module cache, so the node behaves as kind expects.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from mlops_drill.cluster import versions
from mlops_drill.cluster.kindbuild import gobuild
from mlops_drill.cluster.kindbuild.steps import Step, digest, kind_cache, run
from mlops_drill.errors import DrillError

SUITE = "bookworm"
#: kind's base package list (images/base/Dockerfile), less what only rootless or storage e2e tests use,
#: plus Debian's containerd, runc and CNI plugins in place of kind's own builds.
NODE_PACKAGES = (
    "systemd", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount", "kmod",
    "libseccomp2", "pigz", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
    "containerd", "runc", "containernetworking-plugins",
)
#: The platform's Python, and what kube-proxy, flannel and local-path's helper pods run besides their binary.
SLIM_PACKAGES = ("python3", "python3-venv", "ca-certificates", "iptables", "nftables", "conntrack", "iproute2",
                 "procps")
NODE_BASE_IMAGE = "mlops-drill/kind-base"
SLIM_IMAGE = "mlops-drill/debian-slim"
PAUSE_IMAGE = f"registry.k8s.io/pause:{gobuild.PAUSE_VERSION}"


def mirror() -> str:
    """The Debian mirror apt already uses here (deb822 or one-line sources), else deb.debian.org."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            parts = line.split()
            if line.startswith("URIs:") and len(parts) > 1 and "security" not in parts[1]:
                return parts[1]
            if line.startswith("deb ") and "security" not in line:
                return next(p for p in parts[1:] if "://" in p)
    return "http://deb.debian.org/debian"


def kind_source() -> Path:
    """kind's module source (its base image files and manifests), downloaded by the Go build of kind."""
    out = run(["go", "mod", "download", "-json", f"sigs.k8s.io/kind@{gobuild.KIND_VERSION}"], cwd=kind_cache(),
              what="go mod download sigs.k8s.io/kind")
    return Path(json.loads(out)["Dir"])


def debootstrap(target: Path, packages: tuple[str, ...]) -> None:
    if not shutil.which("debootstrap"):
        raise DrillError("debootstrap: command not found; the kind backend builds its node image from a Debian "
                         "rootfs: apt-get install debootstrap")
    done = target / ".mlops-drill-debootstrap"
    if done.is_file() and done.read_text() == ",".join(packages):
        return  # a finished debootstrap from a run that failed later
    shutil.rmtree(target, ignore_errors=True)
    cache = kind_cache() / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", f"--cache-dir={cache}",
         SUITE, str(target), mirror()], nice=True, timeout=1800, what=f"debootstrap {SUITE}")
    # Nothing in an image needs the package lists or docs; they only make every node bigger.
    for junk in ("var/lib/apt/lists", "usr/share/doc", "usr/share/man", "var/cache/apt/archives"):
        shutil.rmtree(target / junk, ignore_errors=True)
        (target / junk).mkdir(parents=True, exist_ok=True)
    done.write_text(",".join(packages))


def docker_import(rootfs: Path, image: str, changes: list[str]) -> None:
    tar = subprocess.Popen(["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."],
                           stdout=subprocess.PIPE)
    assert tar.stdout is not None
    cmd = ["docker", "import"]
    for change in changes:
        cmd += ["--change", change]
    try:
        result = subprocess.run([*cmd, "-", image], stdin=tar.stdout, capture_output=True, text=True)
    finally:
        tar.stdout.close()  # a failed import must not leave tar blocked on a pipe nobody reads
        if tar.poll() is None:
            tar.kill()
        tar.wait()
    if result.returncode != 0 or tar.returncode != 0:
        raise DrillError(f"docker import {image} failed: {(result.stderr or '').strip()[-300:]}")


def _copy_tree(source: Path, target: Path, mode: int) -> None:
    for path in source.rglob("*"):
        if path.is_file():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
            dest.chmod(mode)


def _containerd_config(text: str) -> str:
    """kind's containerd config, for Debian's containerd 1.6 and our local images."""
    lines = []
    skip = False
    for line in text.splitlines():
        if line.startswith("[proxy_plugins"):  # fuse-overlayfs is for rootless kind, not built here
            skip = True
            continue
        if skip and line.startswith("["):
            skip = line.startswith("[proxy_plugins")
        if skip:
            continue
        if line.strip().startswith("sandbox_image"):
            line = f'  sandbox_image = "{PAUSE_IMAGE}"'
        lines.append(line)
        if line.strip() == "SystemdCgroup = true":
            # runcwrap passes through untouched where CAP_SYS_RESOURCE exists, and adapts the spec where not
            lines.append('    BinaryName = "/usr/local/sbin/runcwrap"')
    return "\n".join(lines) + "\n"


def customize_node(root: Path) -> None:
    """Lay kind's base image files over the Debian rootfs, as kind's base Dockerfile does."""
    files = kind_source() / "images" / "base" / "files"
    _copy_tree(files / "usr" / "local" / "bin", root / "usr" / "local" / "bin", 0o755)
    _copy_tree(files / "kind", root / "kind", 0o644)
    _copy_tree(files / "kind" / "bin", root / "kind" / "bin", 0o755)
    _copy_tree(files / "etc", root / "etc", 0o644)
    config = root / "etc" / "containerd" / "config.toml"
    config.write_text(_containerd_config(config.read_text()))
    # kind's units start /usr/local/bin/containerd; Debian installs it in /usr/bin.
    for name in ("containerd", "ctr", "containerd-shim-runc-v2"):
        link = root / "usr" / "local" / "bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(f"/usr/bin/{name}")
    for name, dest in (("crictl", "usr/local/bin/crictl"), ("runcwrap", "usr/local/sbin/runcwrap")):
        shutil.copyfile(gobuild.bin_dir() / name, root / dest)
        (root / dest).chmod(0o755)
    cni = root / "opt" / "cni" / "bin"
    cni.mkdir(parents=True, exist_ok=True)
    for plugin in (root / "usr" / "lib" / "cni").iterdir():
        shutil.copyfile(plugin, cni / plugin.name)
        (cni / plugin.name).chmod(0o755)
    shutil.copyfile(gobuild.bin_dir() / "flannel-cni", cni / "flannel")
    (cni / "flannel").chmod(0o755)
    script = """set -e
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo ReadKMsg=no >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests
"""
    run(["chroot", str(root), "/bin/sh", "-c", script], what="node rootfs setup")
    spec = json.loads(run(["chroot", str(root), "/usr/bin/ctr", "oci", "spec"], what="ctr oci spec"))
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append({"path": "/kind/bin/mount-product-files.sh"})
    spec.get("process", {}).pop("rlimits", None)
    (root / "etc" / "containerd" / "cri-base.json").write_text(json.dumps(spec, indent=2))


def _node_base() -> None:
    root = kind_cache() / "rootfs" / "node"
    debootstrap(root, NODE_PACKAGES)
    customize_node(root)
    docker_import(root, f"{NODE_BASE_IMAGE}:{node_base_stamp()}",
                  ["ENV container=docker", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'])
    shutil.rmtree(root, ignore_errors=True)


def _slim() -> None:
    root = kind_cache() / "rootfs" / "slim"
    debootstrap(root, SLIM_PACKAGES)
    docker_import(root, f"{SLIM_IMAGE}:{slim_stamp()}", ['CMD ["/bin/sh"]'])
    shutil.rmtree(root, ignore_errors=True)


def node_base_stamp() -> str:
    return digest(SUITE, *NODE_PACKAGES, gobuild.KIND_VERSION, Path(__file__), gobuild.GO_BINARIES.__repr__())


def slim_stamp() -> str:
    return digest(SUITE, *SLIM_PACKAGES)


def image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def steps() -> list[Step]:
    stamps = kind_cache() / "stamps"
    return [
        Step(f"base image {SLIM_IMAGE} (debootstrap {SUITE} + python3)", slim_stamp(), stamps / "slim", _slim,
             check=lambda: image_exists(f"{SLIM_IMAGE}:{slim_stamp()}")),
        Step(f"base image {NODE_BASE_IMAGE} (debootstrap {SUITE} + containerd, kind's files)", node_base_stamp(),
             stamps / "node-base", _node_base, check=lambda: image_exists(f"{NODE_BASE_IMAGE}:{node_base_stamp()}")),
    ]


